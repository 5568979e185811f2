"""Prediction throughput: clips/s of `classify.predict` end to end from audio files, against the
conversion stage's clips/s on the same clips.

    python -m benchmarks.predict_throughput [--run RUN] [--clips 100] [--arch resnet18] [--bs 64]

Generates `--clips` 4-second WAV clips in a temporary folder, the same ones the conversion benchmark
uses (benchmarks.convert_throughput.make_corpus: speech-like, a quarter at 22.05 kHz). Without --run, a run folder with random weights (`--arch`, pretrained=False, saved with
classify.model_io.save_model and the default spec) is made there too: throughput does not depend on
the weights. Timed, after a two-clip warm-up:
  convert       spec2img.convert.convert_rows, 1 process (decode, image, PNG write, manifest)
  predict/cpu   classify.predict.score_files on the CPU: decode, windows, images, batched model
  predict/cuda  the same on the GPU, when there is one
and, to show where prediction time goes, its two halves on the CPU: the front end alone
(decode + clip_to_image of every window) and the model alone (predict_logits on ready images).
Prints clips/s for each and the ratio predict / convert; writes benchmarks/out/predict_throughput.json.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from benchmarks.convert_throughput import make_corpus
from classify import model_io, predict, runfolder
from classify.archs import build_model
from classify.train import TrainConfig, model_description
from spec2img.cli import build_parser, parse_settings
from spec2img.config import SpecConfig
from spec2img.convert import ConvertOptions, convert_rows
from spec2img.features import clip_to_image
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


def timed(fn) -> float:
    """Return the seconds `fn()` takes (CUDA work included)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_convert(rows: list[ClipRow], folder: Path, spec: SpecConfig) -> float:
    """Return the conversion stage's clips/s with one process on `rows` (after a 2-clip warm-up)."""
    quiet = dict(log=lambda m: None)
    convert_rows(rows[:2], folder / "warmup_images", spec, ConvertOptions(workers=1, progress=False),
                 folder / "audio", "folders", **quiet)
    seconds = timed(lambda: convert_rows(rows, folder / "images", spec, ConvertOptions(workers=1, progress=False),
                                         folder / "audio", "folders", **quiet))
    return len(rows) / seconds


def bench_predict(files: list[Path], run: Path, device: str, bs: int) -> float:
    """Return predict's clips/s end to end on `device` (model load excluded, 2-clip warm-up)."""
    predictor = predict.load_predictor(run, device, bs, log=lambda m: None)
    predict.score_files(files[:2], predictor, bs=bs, progress=False)
    rows = []
    seconds = timed(lambda: rows.extend(predict.score_files(files, predictor, bs=bs, progress=False)))
    failed = [r for r in rows if r.status != "ok"]
    if failed:
        raise SystemExit(f"benchmark clips failed to score: {failed[0]}")
    return len(files) / seconds


def bench_halves(files: list[Path], run: Path, bs: int) -> tuple[float, float, int]:
    """Return (front-end clips/s, model clips/s, windows) on the CPU: the two halves of predict."""
    model, description = model_io.load_model(run, "cpu")
    spec = SpecConfig.from_dict(description["spec"])
    images: list[np.ndarray] = []

    def front_end():
        with threadpool_limits(limits=1, user_api="blas"):     # as predict.score_files does
            for path in files:
                images.extend(clip_to_image(w, spec) for _, w in predict.iter_file_windows(path, spec))
    front = timed(front_end)
    batch = np.stack(images)
    model_io.predict_logits(model, batch[:2], description, "cpu", bs)
    back = timed(lambda: model_io.predict_logits(model, batch, description, "cpu", bs))
    return len(files) / front, len(files) / back, len(batch)


@dataclass(frozen=True)
class PredictBench:
    run: Path | None = None       # an existing run folder (default: make one with random weights)
    arch: str = "resnet18"        # architecture of the made run
    clips: int = 100              # number of clips
    bs: int = 64                  # predict batch size


def main():
    args, = parse_settings(build_parser("python -m benchmarks.predict_throughput", __doc__.split("\n\n")[0],
                                        [PredictBench]), None, PredictBench)
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        folder = Path(tmp)
        spec = (SpecConfig.from_dict(model_io.read_description(args.run)["spec"]) if args.run else SpecConfig())
        rows = make_corpus(folder / "audio", args.clips, spec.duration)
        run = args.run or make_run(folder, args.arch, spec)
        files = [r.path for r in rows]
        arch = model_io.read_description(run).get("arch")
        print(f"{len(files)} clips of {spec.duration:g} s, spec {spec.image_shape[0]}x{spec.image_shape[1]}, "
              f"model {arch} ({'given run' if args.run else 'random weights'}), bs {args.bs}, "
              f"torch threads {torch.get_num_threads()}")
        convert = bench_convert(rows, folder, spec)
        results = {"convert (1 process)": convert}
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            results[f"predict/{device}"] = bench_predict(files, run, device, args.bs)
        front, back, windows = bench_halves(files, run, args.bs)
        results["  predict/cpu front end only"] = front
        results["  predict/cpu model only"] = back
        for name, rate in results.items():
            print(f"{name:32s} {rate:9.1f} clips/s")
        for device in devices:
            print(f"ratio predict/{device} / convert: {results[f'predict/{device}'] / convert:.2f}")
        print(f"({windows} windows for {len(files)} clips; convert writes PNGs and a manifest, predict "
              f"batches every window through the model)")
        report = {"clips": len(files), "seconds_per_clip": spec.duration, "arch": arch, "bs": args.bs,
                  "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name() if "cuda" in devices
                  else None, "clips_per_s": results,
                  "ratio_to_convert": {d: results[f"predict/{d}"] / convert for d in devices}}
        write_json(OUT / "predict_throughput.json", report)


if __name__ == "__main__":
    main()
