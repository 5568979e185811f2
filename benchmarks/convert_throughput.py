"""Conversion throughput: the project's converter (1 worker, all workers) against the reference projects'
per-clip librosa.display.specshow + matplotlib savefig, on the same generated 4-s clips.

Prints clips/s, the ratios against the targets (1 worker >= 10x matplotlib; all workers >= 80% of linear
scaling) and the peak memory of the process tree at two corpus sizes (it should stay flat). Also writes
benchmarks/out/convert_throughput.json.  Usage: python -m benchmarks.convert_throughput [--clips 200]
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from spec2img import SpecConfig
from spec2img.cli import build_parser, parse_settings
from spec2img.convert import ConvertOptions, convert_rows, resolve_workers
from spec2img.fileio import write_json
from spec2img.rows import ClipRow

OUT = Path(__file__).resolve().parent / "out"


def make_corpus(folder: Path, n: int, seconds: float = 4.0, seed: int = 0) -> list[ClipRow]:
    """Write n speech-like clips (harmonic tone with a moving pitch, plus noise); return their rows.
    A quarter are at 22.05 kHz so that both approaches resample some clips."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sr = 22050 if i % 4 == 3 else 16000
        t = np.arange(int(seconds * sr)) / sr
        f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        wave = sum(np.sin(h * phase) / h for h in range(1, 12)) * 0.1 + rng.normal(0, 0.01, t.size)
        label = ("bonafide", "spoof")[i % 2]
        path = folder / label / f"clip{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave.astype(np.float32), sr, subtype="PCM_16")
        rows.append(ClipRow(f"clip{i:05d}", path, label, ("train", "val", "test")[i % 3]))
    return rows


class PeakMemory:
    """Samples the memory of a process (default: this one) and all its descendants every 0.25 s;
    `.peak_mb`. Uses the proportional set size (shared pages split among the processes that share
    them, so forked workers are not counted as copies of the parent) where the OS gives it, else RSS."""

    def __init__(self, pid: int | None = None):
        self.pid, self.peak_mb, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process(self.pid)
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += getattr(proc.memory_full_info(), "pss", None) or proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_mb = max(self.peak_mb, total / 2 ** 20)
            self._stop.wait(0.25)            # reading smaps costs ~2 ms per process: sample sparingly

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cpu_seconds() -> float:
    """Return CPU time used so far by this process and its finished (reaped) children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_converter(rows, out: Path, workers: int, cfg: SpecConfig) -> dict:
    """Return clips/s and CPU ms per clip of the converter writing `rows` into a fresh `out`."""
    opts = ConvertOptions(workers=workers, progress=False)
    start, cpu = time.perf_counter(), cpu_seconds()
    summary = convert_rows(rows, out, cfg, opts, out.parent, "folders", log=lambda *_: None)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    assert summary.converted == len(rows), summary.skipped[:3]
    return {"clips": len(rows), "clips_per_s": round(len(rows) / seconds, 2),
            "cpu_ms_per_clip": round(1000 * cpu / len(rows), 2)}


def run_converter_for_memory(rows, out: Path, workers: int, cfg: SpecConfig) -> dict:
    """Return clips/s and peak MB of the converter run in a fresh process (as the command line runs),
    so the number is not inflated by what this benchmark process has loaded or freed before."""
    import multiprocessing as mp
    child = mp.get_context("spawn").Process(target=run_converter, args=(rows, out, workers, cfg))
    start = time.perf_counter()
    child.start()
    with PeakMemory(child.pid) as memory:
        child.join()
    assert child.exitcode == 0, f"conversion process failed ({child.exitcode})"
    return {"clips": len(rows), "seconds_with_start_up": round(time.perf_counter() - start, 2),
            "peak_memory_mb": round(memory.peak_mb)}


def reference_clip(path: Path, out: Path, cfg: SpecConfig) -> None:
    """The reference projects' way: librosa.load, melspectrogram, power_to_db, specshow, savefig."""
    import librosa
    import librosa.display
    import matplotlib.pyplot as plt
    y, sr = librosa.load(path, sr=cfg.sample_rate, duration=cfg.duration)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                         win_length=cfg.win_length, n_mels=cfg.n_mels)
    db = librosa.power_to_db(mel, ref=np.max)
    fig = plt.figure(figsize=(4, 1.28))
    librosa.display.specshow(db, sr=sr, hop_length=cfg.hop_length, cmap="gray")
    plt.axis("off")
    fig.savefig(out, bbox_inches="tight", pad_inches=0)
    plt.close(fig)


def run_reference(rows, out: Path, cfg: SpecConfig) -> dict:
    """Return clips/s and peak MB of the matplotlib approach on `rows`."""
    import matplotlib
    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    with PeakMemory() as memory:
        start = time.perf_counter()
        for row in rows:
            reference_clip(row.path, out / f"{row.clip_id}.png", cfg)
        seconds = time.perf_counter() - start
    return {"clips": len(rows), "clips_per_s": round(len(rows) / seconds, 2), "peak_memory_mb": round(memory.peak_mb)}


def measure(args, cfg: SpecConfig, cores: int) -> dict:
    """Run every approach on the same generated clips; return the numbers."""
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        tmp = Path(tmp)
        print(f"generating {args.clips} clips of {cfg.duration:g} s ...", flush=True)
        small = make_corpus(tmp / "audio", args.clips)
        # the large corpus for the memory check names each file several times under other clip ids
        rows = [replace(r, clip_id=f"{r.clip_id}_{k}") for k in range(args.memory_factor) for r in small]
        run_converter(small[:8], tmp / "warmup", 1, cfg)               # imports, mel filter bank
        run_reference(small[:3], tmp / "warmup_ref", cfg)
        print("running ...", flush=True)
        result = {"cores": cores, "reference": run_reference(small[:args.reference_clips], tmp / "ref", cfg)}
        one, every = [], []
        for r in range(args.rounds):                                   # interleaved: same machine load
            one.append(run_converter(small, tmp / f"one{r}", 1, cfg))
            every.append(run_converter(small, tmp / f"all{r}", 0, cfg))
        result["one_worker"] = max(one, key=lambda x: x["clips_per_s"])
        result["all_workers"] = max(every, key=lambda x: x["clips_per_s"])
        result["rounds"] = {"one_worker": [x["clips_per_s"] for x in one],
                            "all_workers": [x["clips_per_s"] for x in every]}
        result["memory_small"] = run_converter_for_memory(small, tmp / "mem_small", 0, cfg)
        result["memory_big"] = run_converter_for_memory(rows, tmp / "mem_big", 0, cfg)
        result["load_average_1min"] = round(os.getloadavg()[0], 2)
    one, every = result["one_worker"], result["all_workers"]
    result["one_worker_vs_matplotlib"] = round(one["clips_per_s"] / result["reference"]["clips_per_s"], 2)
    result["scaling_efficiency"] = round(every["clips_per_s"] / (cores * one["clips_per_s"]), 3)
    result["cpu_efficiency"] = round(one["cpu_ms_per_clip"] / every["cpu_ms_per_clip"], 3)
    return result


def print_report(r: dict) -> None:
    """Print the table, the ratios against the targets and the memory at two corpus sizes."""
    cores, ref, one, every = r["cores"], r["reference"], r["one_worker"], r["all_workers"]
    small, big = r["memory_small"], r["memory_big"]
    print(f"\n{'approach':32s} {'clips':>6s} {'clips/s':>9s} {'CPU ms/clip':>12s} {'peak MB (tree)':>15s}")
    for name, x in (("matplotlib specshow + savefig", ref), ("converter, 1 worker", one),
                    (f"converter, {cores} workers", every), (f"converter, {cores} workers", small),
                    (f"converter, {cores} workers", big)):
        rate = f"{x['clips_per_s']:.1f}" if "clips_per_s" in x else "-"
        cpu = f"{x['cpu_ms_per_clip']:.1f}" if "cpu_ms_per_clip" in x else "-"
        mb = f"{x['peak_memory_mb']}" if "peak_memory_mb" in x else "-"
        print(f"{name:32s} {x['clips']:6d} {rate:>9s} {cpu:>12s} {mb:>15s}")
    speedup, scaling, cpu_eff = r["one_worker_vs_matplotlib"], r["scaling_efficiency"], r["cpu_efficiency"]
    print(f"\n1 worker / matplotlib:        {speedup:6.1f}x  (target >= 10x: {'met' if speedup >= 10 else 'NOT met'})")
    print(f"scaling on {cores} cores:            {scaling:6.0%}   ({cores}-worker clips/s / ({cores} x 1-worker clips/s); "
          f"target >= 80%: {'met' if scaling >= 0.8 else 'NOT met'}; best of {len(r['rounds']['one_worker'])} rounds "
          f"{r['rounds']})")
    print(f"CPU per clip, 1 vs {cores} workers:  {cpu_eff:6.0%}   (below 100% = work the pool adds; wall-clock "
          f"scaling also needs idle cores: 1-min load average {r['load_average_1min']} on {cores} cores)")
    flat = big["peak_memory_mb"] <= small["peak_memory_mb"] * 1.15 + 20
    print(f"peak memory, {small['clips']} -> {big['clips']} clips: {small['peak_memory_mb']} -> "
          f"{big['peak_memory_mb']} MB ({'flat' if flat else 'GROWS'}; proportional set size of the process tree)")


@dataclass(frozen=True)
class ConvertBench:
    clips: int = 400              # 4-s clips for the converter runs (a pool's start-up costs ~0.3 CPU-s, so small
                                  # corpora understate its scaling)
    reference_clips: int = 40     # clips for the (slow) matplotlib approach
    memory_factor: int = 4        # the second memory run uses this many times more clips
    rounds: int = 2               # converter runs per setting; the best counts (shared machines are noisy)


def main() -> None:
    args, = parse_settings(build_parser("python -m benchmarks.convert_throughput", __doc__.splitlines()[0],
                                        [ConvertBench]), None, ConvertBench)
    result = measure(args, SpecConfig(), resolve_workers(0))
    print_report(result)
    print(f"written to {write_json(OUT / 'convert_throughput.json', result)}")


if __name__ == "__main__":
    main()
