"""Prediction throughput: clips/s of `classify.predict`'s front end (1 worker and all workers), of the model
alone, and end to end, against the bound min(front end, model).

    python -m benchmarks.predict_throughput [--run RUN] [--clips 1000] [--frontend-clips 4000] [--unique 200]
                                            [--arch lcnn] [--bs 64] [--rounds 3] [--workers 0]

Generates `--unique` 4-second WAV clips (benchmarks.convert_throughput.make_corpus: speech-like, a quarter at
22.05 kHz) and scores `--clips` files cycling through them (the front end alone: `--frontend-clips`, a few
seconds of work, so that starting the workers, pool_start_s, counts as it does at scale and not as much as
in a one-second run). Without --run, a run folder with random weights
(`--arch`, pretrained=False, saved as classify.train saves it, default spec) is made there too: throughput
does not depend on the weights. Timed, each round interleaved so that all see the same machine load, the
best round counting:
  front end, 1 worker     classify.windows.iter_pieces in this process: probe, decode, resample, window,
                          clip_to_image (what one conversion worker does, without the PNG)
  front end, N workers    the same in N worker processes (the parallel front end), pieces back in input order
                          (starting the workers included)
  model                   classify.model_io.predict_logits on ready window images (batches of --bs; at most
                          512 windows: its rate is steady)
  end to end              classify.predict.score_files with N workers: front end overlapped with the model
                          (pool start included), rows assembled in input order
Figures: frontend_scaling = N-worker clips/s / (N x 1-worker clips/s) (target >= 0.8 on the CPU);
machine_scaling = the same for N one-worker front ends run side by side in forked processes, each on 1/N of
the clips, with no pool (what N busy cores give on this machine: below 1 on SMT siblings, shared caches or a
shared machine), and frontend_vs_independent = the parallel front end / that; pool_start_s = the seconds to
start the N workers;
end_to_end_vs_bound = end to end / min(front end with N workers, model) (target >= 0.9); and the CPU time per
clip of this process and its workers. On CUDA the model and end to end also run on the GPU. The
conversion stage (1 process, PNGs and manifest written) is timed once for reference. Writes
benchmarks/out/predict_throughput.json.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.convert_throughput import cpu_seconds, make_corpus, run_independently
from classify import model_io, predict, runfolder
from classify.archs import build_model
from classify.train import TrainConfig, model_description
from classify.windows import iter_pieces, resolve_workers
from spec2img.cli import build_parser, parse_settings
from spec2img.config import SpecConfig
from spec2img.convert import ConvertOptions, convert_rows
from spec2img.fileio import write_json
from spec2img.rows import ClipRow

OUT = Path(__file__).resolve().parent / "out"


def make_run(folder: Path, arch: str, spec: SpecConfig) -> Path:
    """Return a run folder holding `arch` with random weights, as classify.train would save it."""
    description = model_description(TrainConfig(arch=arch, pretrained=False), spec.to_dict(), spec.image_shape)
    run = folder / f"{arch}-bench"
    model_io.save_model(run, build_model(description["builder"], pretrained=False).eval(), description)
    runfolder.mark_complete(run)
    return run


def timed(fn, n: int) -> dict:
    """Return clips/s and CPU ms per clip (this process and its workers) of `fn()` handling `n` clips."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), cpu_seconds()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"clips_per_s": n / seconds, "cpu_ms_per_clip": 1000 * (cpu_seconds() - cpu) / n, "seconds": seconds}


def front_end(files: list[Path], spec: SpecConfig, workers: int) -> list[np.ndarray]:
    """Return every window image of `files` rendered by the predict front end with `workers` processes."""
    images = []
    for piece in iter_pieces(list(enumerate(files)), spec, 0.5, workers):
        if piece.error:
            raise SystemExit(f"benchmark clip failed: {files[piece.index]}: {piece.error}")
        images.append(piece.images)
    return images


def pool_start_seconds(spec: SpecConfig, workers: int) -> float:
    """Return the seconds from asking for `workers` front-end workers to the first answer from each (forking
    this process, which holds torch, and setting the workers up)."""
    from spec2img.convert import worker_pool
    start = time.perf_counter()
    with worker_pool(workers, spec, torch_free=True) as pool:
        for task in [pool.submit(_answer, k) for k in range(workers)]:   # one each: the least busy takes it
            task.get()
        return time.perf_counter() - start


def _answer(arg, out):
    """A task that does nothing (for pool_start_seconds)."""
    return arg


def end_to_end(files: list[Path], predictor, bs: int, workers: int) -> None:
    """Score `files` with classify.predict.score_files; stop when one fails."""
    rows = predict.score_files(files, predictor, bs=bs, progress=False, workers=workers)
    failed = [r for r in rows if r.status != "ok"]
    if failed:
        raise SystemExit(f"benchmark clips failed to score: {failed[0]}")


def bench_convert(rows: list[ClipRow], folder: Path, spec: SpecConfig) -> float:
    """Return the conversion stage's clips/s with one process on `rows` (after a 2-clip warm-up)."""
    quiet = dict(log=lambda m: None)
    convert_rows(rows[:2], folder / "warmup_images", spec, ConvertOptions(workers=1, progress=False),
                 folder / "audio", "folders", **quiet)
    start = time.perf_counter()
    convert_rows(rows, folder / "images", spec, ConvertOptions(workers=1, progress=False), folder / "audio",
                 "folders", **quiet)
    return len(rows) / (time.perf_counter() - start)


def measure(args: "PredictBench", folder: Path, unique: int) -> dict:
    """Run every measurement on the same clips (`unique` generated files, cycled); return the report."""
    spec = SpecConfig.from_dict(model_io.read_description(args.run)["spec"]) if args.run else SpecConfig()
    print(f"generating {unique} clips of {spec.duration:g} s ...", flush=True)
    rows = make_corpus(folder / "audio", unique, spec.duration)
    files = [rows[i % len(rows)].path for i in range(args.clips)]
    many = [rows[i % len(rows)].path for i in range(args.frontend_clips or args.clips)]   # the front end alone
    run = args.run or make_run(folder, args.arch, spec)
    arch = model_io.read_description(run).get("arch")
    workers = resolve_workers(args.workers, len(files))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    predictors = {d: predict.load_predictor(run, d, args.bs, log=lambda m: None) for d in devices}
    models = {d: model_io.load_model(run, d) for d in devices}
    print(f"{len(files)} clips ({len(rows)} files), spec {spec.image_shape[0]}x{spec.image_shape[1]}, model {arch} "
          f"({'given run' if args.run else 'random weights'}), bs {args.bs}, {workers} workers, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    images = np.concatenate(front_end(files[:8], spec, 1))               # warm-up: imports, mel filter bank
    for d in devices:
        model_io.predict_logits(*models[d][:1], images[:2], models[d][1], d, args.bs)
        end_to_end(files[:4], predictors[d], args.bs, 1)
    images = np.concatenate(front_end(files, spec, 1))
    rounds: dict[str, list[dict]] = {}
    for r in range(args.rounds):                                          # interleaved: the same machine load
        print(f"round {r + 1}/{args.rounds} ...", flush=True)
        rounds.setdefault("front end, 1 worker", []).append(timed(lambda: front_end(many, spec, 1), len(many)))
        rounds.setdefault(f"front end, {workers} workers", []).append(
            timed(lambda: front_end(many, spec, workers), len(many)))
        seconds = run_independently(front_end, [(many[k::workers], spec, 1) for k in range(workers)])
        rounds.setdefault(f"front end, {workers} x 1 side by side", []).append(
            {"clips_per_s": len(many) / seconds, "cpu_ms_per_clip": None, "seconds": seconds})
        for d in devices:
            model, description = models[d]
            some = images[:max(args.bs, min(len(images), 512))]       # the model's rate is steady: fewer windows do
            rounds.setdefault(f"model/{d}", []).append(
                timed(lambda: model_io.predict_logits(model, some, description, d, args.bs), len(some)))
            rounds.setdefault(f"predict/{d} end to end", []).append(
                timed(lambda: end_to_end(files, predictors[d], args.bs, workers), len(files)))
    best = {name: max(runs, key=lambda x: x["clips_per_s"]) for name, runs in rounds.items()}
    one, every = best["front end, 1 worker"], best[f"front end, {workers} workers"]
    report = {"clips": len(files), "frontend_clips": len(many), "files": len(rows), "windows": int(len(images)),
              "seconds_per_clip": spec.duration,
              "arch": arch, "bs": args.bs, "workers": workers, "cores": resolve_workers(0, 1 << 20),
              "torch_threads": torch.get_num_threads(),
              "cuda": torch.cuda.get_device_name() if "cuda" in devices else None,
              "clips_per_s": {name: round(x["clips_per_s"], 1) for name, x in best.items()},
              "cpu_ms_per_clip": {name: round(x["cpu_ms_per_clip"], 2) for name, x in best.items()
                                  if x["cpu_ms_per_clip"] is not None},
              "rounds": {name: [round(x["clips_per_s"], 1) for x in runs] for name, runs in rounds.items()}}
    report["frontend_scaling"] = round(every["clips_per_s"] / (workers * one["clips_per_s"]), 3)
    apart = best[f"front end, {workers} x 1 side by side"]["clips_per_s"]
    report["machine_scaling"] = round(apart / (workers * one["clips_per_s"]), 3)
    report["frontend_vs_independent"] = round(every["clips_per_s"] / apart, 3)
    report["pool_start_s"] = round(pool_start_seconds(spec, workers), 3)
    report["frontend_cpu_efficiency"] = round(one["cpu_ms_per_clip"] / every["cpu_ms_per_clip"], 3)
    for d in devices:
        bound = min(every["clips_per_s"], best[f"model/{d}"]["clips_per_s"])
        key = "end_to_end_vs_bound" if d == "cpu" else f"end_to_end_vs_bound_{d}"
        report[key] = round(best[f"predict/{d} end to end"]["clips_per_s"] / bound, 3)
    convert = bench_convert(rows, folder, spec)
    report["clips_per_s"]["convert (1 process)"] = round(convert, 1)
    report["ratio_to_convert"] = {d: round(best[f"predict/{d} end to end"]["clips_per_s"] / convert, 2) for d in devices}
    report["load_average_1min"] = round(os.getloadavg()[0], 2)
    return report


def print_report(r: dict) -> None:
    """Print the table and the ratios against the targets."""
    print(f"\n{'path':32s} {'clips/s':>9s} {'CPU ms/clip':>12s}   rounds")
    for name, rate in r["clips_per_s"].items():
        cpu = r["cpu_ms_per_clip"].get(name)
        print(f"{name:32s} {rate:9.1f} {'-' if cpu is None else f'{cpu:.2f}':>12s}   {r['rounds'].get(name, '')}")
    n, scaling = r["workers"], r["frontend_scaling"]
    print(f"\nfront end scaling on {n} workers: {scaling:6.0%}  ({n}-worker clips/s / ({n} x 1-worker clips/s); "
          f"target >= 80%: {'met' if scaling >= 0.8 else 'NOT met'}); CPU per clip, 1 vs {n} workers: "
          f"{r['frontend_cpu_efficiency']:.0%}")
    print(f"this machine's own scaling: {r['machine_scaling']:6.0%}  ({n} one-worker front ends side by side, each on "
          f"1/{n} of the clips, no pool); the parallel front end reaches {r['frontend_vs_independent']:.0%} of that; "
          f"starting its {n} workers takes {r['pool_start_s']:.2f} s")
    for key in [k for k in r if k.startswith("end_to_end_vs_bound")]:
        device = key.rpartition("_")[2] if key != "end_to_end_vs_bound" else "cpu"
        print(f"end to end / min(front end, model) on {device}: {r[key]:6.0%}  (target >= 90%: "
              f"{'met' if r[key] >= 0.9 else 'NOT met'})")
    print(f"({r['clips']} clips of {r['seconds_per_clip']:g} s scored, {r['frontend_clips']} rendered by the front end "
          f"alone, {r['windows']} windows; model {r['arch']}, bs {r['bs']}; 1-min load average "
          f"{r['load_average_1min']} on {r['cores']} cores: wall-clock scaling needs idle cores)")


@dataclass(frozen=True)
class PredictBench:
    run: Path | None = None       # an existing run folder (default: make one with random weights)
    arch: str = "lcnn"            # architecture of the made run
    clips: int = 1000             # clips scored per timed run of the model and end to end
    frontend_clips: int = 4000    # clips per timed run of the front end alone (0: --clips); starting its workers
                                  # (~0.08 s on 2 cores with torch loaded) is then ~2 % of the run
    unique: int = 200             # distinct generated files, cycled through
    bs: int = 64                  # predict batch size
    workers: int = 0              # front-end workers (0: every core)
    rounds: int = 3               # timed rounds; the best counts


def main():
    args, = parse_settings(build_parser("python -m benchmarks.predict_throughput", __doc__.split("\n\n")[0],
                                        [PredictBench]), None, PredictBench)
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        report = measure(args, Path(tmp), min(args.unique, args.clips))
    print_report(report)
    write_json(OUT / "predict_throughput.json", report)
    print(f"written to {OUT / 'predict_throughput.json'}")


if __name__ == "__main__":
    main()
