"""Conversion throughput: the project's converter (1 worker, all workers) against the reference projects'
per-clip librosa.display.specshow + matplotlib savefig, on the same generated 4-s clips.

Prints clips/s, the ratios against the targets (1 worker >= 10x matplotlib; all workers >= 80% of linear
scaling) and the peak memory of the process tree at two corpus sizes (it should stay flat). Also writes
benchmarks/out/convert_throughput.json.  Usage: python -m benchmarks.convert_throughput [--clips 200]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from spec2img import SpecConfig
from spec2img.convert import ConvertOptions, convert_rows, resolve_workers
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
    """Samples the memory of this process and all its descendants every 0.25 s; `.peak_mb`. Uses the
    proportional set size (shared pages split among the processes that share them, so forked workers
    are not counted as copies of the parent) where the OS gives it, else RSS."""

    def __init__(self):
        self.peak_mb, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
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


def run_converter(rows, out: Path, workers: int, cfg: SpecConfig) -> tuple[float, float]:
    """Return (clips/s, peak MB) of the project's converter writing `rows` into a fresh `out`."""
    opts = ConvertOptions(workers=workers, progress=False)
    with PeakMemory() as memory:
        start = time.perf_counter()
        summary = convert_rows(rows, out, cfg, opts, out.parent, "folders", log=lambda *_: None)
        seconds = time.perf_counter() - start
    assert summary.converted == len(rows), summary.skipped[:3]
    return len(rows) / seconds, memory.peak_mb


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


def run_reference(rows, out: Path, cfg: SpecConfig) -> tuple[float, float]:
    """Return (clips/s, peak MB) of the matplotlib approach on `rows`."""
    import matplotlib
    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    with PeakMemory() as memory:
        start = time.perf_counter()
        for row in rows:
            reference_clip(row.path, out / f"{row.clip_id}.png", cfg)
        seconds = time.perf_counter() - start
    return len(rows) / seconds, memory.peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="4-s clips for the converter runs")
    parser.add_argument("--reference-clips", type=int, default=40, help="clips for the (slow) matplotlib approach")
    parser.add_argument("--memory-factor", type=int, default=4, help="the second memory run uses this many times more clips")
    parser.add_argument("--rounds", type=int, default=2, help="converter runs per setting; the best counts (shared machines are noisy)")
    args = parser.parse_args()
    cfg = SpecConfig()
    cores = resolve_workers(0)
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        tmp = Path(tmp)
        print(f"generating {args.clips * args.memory_factor} clips of {cfg.duration:g} s ...", flush=True)
        rows = make_corpus(tmp / "audio", args.clips * args.memory_factor)
        small = rows[:args.clips]
        run_converter(small[:8], tmp / "warmup", 1, cfg)               # imports, mel filter bank
        run_reference(small[:3], tmp / "warmup_ref", cfg)
        ref_rate, ref_mb = run_reference(small[:args.reference_clips], tmp / "reference", cfg)
        one, every = [], []
        for r in range(args.rounds):                                   # interleaved: same machine load
            one.append(run_converter(small, tmp / f"one{r}", 1, cfg))
            every.append(run_converter(small, tmp / f"all{r}", 0, cfg))
        (one_rate, one_mb), (all_rate, all_mb) = max(one), max(every)
        big_rate, big_mb = run_converter(rows, tmp / "all_big", 0, cfg)
    speedup = one_rate / ref_rate
    scaling = all_rate / (cores * one_rate)
    result = {
        "cores": cores, "clips": args.clips, "reference_clips": args.reference_clips, "rounds": args.rounds,
        "all_clips_per_s": {"converter_1_worker": [round(r, 2) for r, _ in one],
                            f"converter_{cores}_workers": [round(r, 2) for r, _ in every]},
        "clips_per_s": {"matplotlib_specshow": round(ref_rate, 2), "converter_1_worker": round(one_rate, 2),
                        f"converter_{cores}_workers": round(all_rate, 2)},
        "one_worker_vs_matplotlib": round(speedup, 2),
        "scaling_efficiency": round(scaling, 3),
        "peak_memory_mb": {"matplotlib_specshow": round(ref_mb), "converter_1_worker": round(one_mb),
                        f"converter_{cores}_workers_{args.clips}_clips": round(all_mb),
                        f"converter_{cores}_workers_{len(rows)}_clips": round(big_mb)},
    }
    print(f"\n{'approach':34s} {'clips/s':>9s} {'peak memory (MB, process tree)':>31s}")
    print(f"{'matplotlib specshow + savefig':34s} {ref_rate:9.1f} {ref_mb:31.0f}   ({args.reference_clips} clips)")
    print(f"{'converter, 1 worker':34s} {one_rate:9.1f} {one_mb:31.0f}   ({args.clips} clips)")
    print(f"{f'converter, {cores} workers':34s} {all_rate:9.1f} {all_mb:31.0f}   ({args.clips} clips)")
    print(f"{f'converter, {cores} workers':34s} {big_rate:9.1f} {big_mb:31.0f}   ({len(rows)} clips)")
    print(f"\n1 worker / matplotlib:            {speedup:6.1f}x   (target >= 10x: {'met' if speedup >= 10 else 'NOT met'})")
    print(f"scaling efficiency on {cores} cores:    {scaling:6.0%}   (all workers / ({cores} x 1 worker); "
          f"target >= 80%: {'met' if scaling >= 0.8 else 'NOT met'})")
    print(f"peak memory, {args.clips} -> {len(rows)} clips: {all_mb:.0f} -> {big_mb:.0f} MB "
          f"({'flat' if big_mb <= all_mb * 1.15 + 20 else 'GROWS'})")
    OUT.mkdir(exist_ok=True)
    (OUT / "convert_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {OUT / 'convert_throughput.json'}")


if __name__ == "__main__":
    main()
