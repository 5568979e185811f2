"""Training throughput: images/s of the project's training path against a plain PyTorch ceiling.

    python -m benchmarks.train_throughput [--arch resnet18] [--height 64 --width 200] [--bs 32]
                                          [--images 192] [--epochs 2] [--steps N] [--datablock] [--threads N]

In one process, on the same model (random weights), input size, batch size and device:
  ceiling    a plain PyTorch loop over batches already in device memory (float, normalized,
             channels_last, as the model takes them): forward, cross-entropy, backward, AdamW step.
             CUDA: bf16 (fp16 where bf16 is not native) autocast + fused AdamW; CPU: float32 + foreach
             AdamW (what classify.train uses).
  project    what `make train` runs (`python -m classify.train --loader auto --no-pretrained`):
             a generated PNG tree + spec.json on disk → classify.data.build_dataloaders (decode once,
             timed and printed separately) → classify.train.build_learner → fit_one_cycle with the
             best-epoch and history callbacks. One warm-up epoch, then --epochs timed epochs.
  datablock  (--datablock; always on CUDA) the same with `--loader datablock`: fastai's DataBlock
             streaming PNGs from disk through worker processes.
How the ratio is taken: the ceiling runs before and after each path, and a path's fastest timed
training phase is compared with the faster of those two ceiling runs. On the CPU, whose speed
changes from minute to minute when other jobs share the machine, the project's path is also
measured paired: after each of its training steps one ceiling step runs, so both see the same
load, and the ratio is the ceiling's step time over the project's (the headline on the CPU; the
DataBlock path keeps its loader processes busy in the background, so it is not paired).
Prints images/s, the ratios (target >= 90%), the one-time decode, and the peak host memory
(resident set of this process: the ceiling's before any data is loaded, the project's up to the
end of its warm-up epoch) and GPU memory (torch's allocator peak). Writes
benchmarks/out/train_throughput.json. Defaults: on the CPU resnet18 at 64x200, batch 32; on CUDA
resnet101 and efficientnet_b4 at 128x400 (3 channels), batch 128.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch
from fastai.callback.core import Callback
from fastai.torch_core import find_bs, set_seed

from classify import archs
from classify.callbacks import EpochHistory, KeepBestEpoch
from classify.data import build_dataloaders
from classify.devices import autocast, autocast_dtype, default_device
from classify.train import TrainConfig, build_learner, fit
from spec2img.cli import build_parser, parse_settings
from spec2img.config import SpecConfig, save_spec
from spec2img.fileio import write_atomic
from spec2img.rows import LABELS

OUT = Path(__file__).resolve().parent / "out"
CPU_DEFAULTS = dict(arch=["resnet18"], height=64, width=200, bs=32, images=192)
CUDA_DEFAULTS = dict(arch=["resnet101", "efficientnet_b4"], height=128, width=400, bs=128, images=128 * 24)


# ---------------------------------------------------------------- measuring

def synchronize(device: torch.device):
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakRSS:
    """Samples this process's resident set size every 50 ms while in use; `.peak_mb`."""

    def __init__(self):
        self.peak_mb, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, me.memory_info().rss / 2 ** 20)
            self._stop.wait(0.05)

    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def report(self) -> dict:
        """Return the peak host MB and, on CUDA, the peak GPU MB allocated by torch."""
        gpu = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
        return {"peak_host_rss_mb": round(self.peak_mb), "peak_gpu_mb": None if gpu is None else round(gpu)}


class PhaseTimer(Callback):
    """Records, per epoch, the seconds and images of the training phase and of the whole epoch, and the
    time between the ends of consecutive training steps (data, transforms, step and callbacks: a step's
    whole cost; meaningful on the CPU, where nothing runs asynchronously)."""
    order = 100  # after every other callback's after_train / after_epoch work

    def __init__(self, device: torch.device):
        self.device, self.epochs = device, []

    def before_epoch(self):
        synchronize(self.device)
        self.epoch_start, self.images, self.steps = time.perf_counter(), 0, []

    def before_train(self):
        synchronize(self.device)
        self.train_start = self.last = time.perf_counter()

    def after_batch(self):
        if self.training:
            self.images += find_bs(self.yb)
            now = time.perf_counter()
            self.steps.append(now - self.last)
            self.last = now

    def after_train(self):
        synchronize(self.device)
        self.train_seconds = time.perf_counter() - self.train_start

    def after_epoch(self):
        synchronize(self.device)
        self.epochs.append({"train_images": self.images, "train_s": self.train_seconds,
                            "epoch_s": time.perf_counter() - self.epoch_start, "step_s": self.steps})


# ---------------------------------------------------------------- the data on disk

def write_image_tree(root: Path, n_train: int, n_val: int, height: int, width: int, seed: int = 0) -> Path:
    """Write images/{train,val}/{bonafide,spoof}/*.png (8-bit grayscale, classes told apart by which half
    of the rows is brighter) and a spec.json whose image shape is height x width; return the root."""
    import cv2
    base = SpecConfig()
    spec = SpecConfig(n_mels=height, duration=width * base.hop_length / base.sample_rate)
    if spec.image_shape != (height, width):
        raise SystemExit(f"--width {width} gives no whole spectrogram duration at hop {base.hop_length}")
    save_spec(spec, root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for k, label in enumerate(LABELS):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n // 2 + (n % 2 if k == 0 else 0)):
                img = rng.integers(0, 90, (height, width), dtype=np.uint8)
                rows = slice(height // 2, height) if label == "bonafide" else slice(0, height // 2)
                img[rows] += 100
                cv2.imwrite(str(folder / f"{label}_{i:05d}.png"), img)
    return root


# ---------------------------------------------------------------- the ceiling

class CeilingLoop:
    """A plain PyTorch training loop of `arch` on a pool of ready batches held on `device`."""

    def __init__(self, arch: str, shape: tuple[int, int], bs: int, device: torch.device, pool_batches: int = 4):
        from classify.train import optimizer_for
        torch.manual_seed(0)
        model = archs.build_model(archs.builder_settings(arch), pretrained=False)
        self.model = model.to(device, memory_format=torch.channels_last).train()
        wrapper = optimizer_for(device)  # fastai's OptimWrapper partial: take the same torch AdamW and flags
        self.opt = wrapper.keywords["opt"](self.model.parameters(), lr=1e-3,
                                           **{k: v for k, v in wrapper.keywords.items() if k != "opt"})
        self.x = torch.randn(pool_batches * bs, 3, *shape, device=device).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, archs.N_CLASSES, (pool_batches * bs,), device=device)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.device, self.bs, self.pool_batches, self.i = device, bs, pool_batches, 0
        self.dtype = autocast_dtype(device)  # what classify.train picks: bf16 (native) or fp16 on CUDA, none on the CPU
        self.settings = {"precision": f"{str(self.dtype).replace('torch.', '')} autocast" if self.dtype else "float32",
                         "memory_format": "channels_last",
                         "optimizer": f"AdamW ({'fused' if device.type == 'cuda' else 'foreach'})"}

    def step(self):
        """Run one training step on the next batch of the pool."""
        k = (self.i % self.pool_batches) * self.bs
        self.i += 1
        with autocast(self.device, self.dtype):
            logits = self.model(self.x[k:k + self.bs])
        loss = self.loss_fn(logits.float(), self.y[k:k + self.bs])
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def warm_up(self, steps: int = 2):
        """Run `steps` untimed steps (allocator, oneDNN/cuDNN kernel choice)."""
        for _ in range(steps):
            self.step()
        synchronize(self.device)

    def run(self, steps: int, warmup: int = 2) -> dict:
        """Return images/s over `steps` steps after `warmup` untimed ones, and each step's seconds."""
        self.warm_up(warmup)
        start = last = time.perf_counter()
        step_s = []
        for _ in range(steps):
            self.step()
            now = time.perf_counter()
            step_s.append(now - last)  # meaningful on the CPU only (CUDA queues work asynchronously)
            last = now
        synchronize(self.device)
        seconds = time.perf_counter() - start
        return {"images_per_s": steps * self.bs / seconds, "steps": steps, "seconds": seconds, "step_s": step_s,
                **self.settings}


def measure_ceiling(arch, shape, bs, steps, device) -> dict:
    """Return a fresh ceiling loop's run with the memory peaks while it was built and ran."""
    with PeakRSS() as memory:
        result = CeilingLoop(arch, shape, bs, device).run(steps)
    return {**result, **memory.report()}


class PairedCeiling(Callback):
    """From the first timed epoch on, runs one ceiling step after every training step of the project's
    path (CPU only) and restarts the PhaseTimer's step clock after it, so that the two alternate."""
    order = PhaseTimer.order + 1

    def __init__(self, make_loop, timer: PhaseTimer, memory: "PeakRSS"):
        self.make_loop, self.timer, self.memory = make_loop, timer, memory
        self.loop, self.epochs, self.project_memory = None, [], None

    def before_epoch(self):
        if self.epoch >= 1 and self.loop is None:
            self.project_memory = self.memory.report()  # the project's own peak, before the ceiling exists
            self.loop = self.make_loop()
            self.loop.warm_up()
            self.timer.epoch_start = time.perf_counter()  # the epoch's time starts after the ceiling's set-up
        self.steps = []

    def after_batch(self):
        if self.training and self.loop is not None:
            start = time.perf_counter()
            self.loop.step()
            self.steps.append(time.perf_counter() - start)
            self.timer.last = time.perf_counter()

    def after_epoch(self):
        if self.loop is not None:
            self.epochs.append(self.steps)


# ---------------------------------------------------------------- the project's path

def project_run(images: Path, arch: str, bs: int, epochs: int, device: torch.device, loader: str,
                paired: bool = False) -> dict:
    """Return the project's path (as classify.train runs it, no run folder) timed per epoch; `paired`
    alternates its training steps with ceiling steps (see PairedCeiling)."""
    cfg = TrainConfig(images=str(images), arch=arch, epochs=1 + epochs, bs=bs, pretrained=False, loader=loader)
    set_seed(cfg.seed, reproducible=device.type != "cuda")
    messages = []
    with PeakRSS() as memory:
        start = time.perf_counter()
        dls, _, _, summary = build_dataloaders(images, cfg.bs, device, cfg.loader, cfg.balance, cfg.size,
                                               log=messages.append)
        decode_s = time.perf_counter() - start
        learn = build_learner(cfg, dls, summary.class_weights, device)
        timer = PhaseTimer(device)
        pairs = PairedCeiling(lambda: CeilingLoop(arch, summary.input_shape, bs, device), timer, memory)
        learn.add_cbs([KeepBestEpoch(), EpochHistory(None), timer] + ([pairs] if paired else []))
        fit(learn, cfg)
    timed = timer.epochs[1:]  # the first epoch warms up (allocator, cuDNN autotuning, worker start-up)
    for epoch, ceiling_steps in zip(timed, pairs.epochs if paired else []):
        for key in ("train_s", "epoch_s"):  # the project's own time: without the ceiling steps run in between
            epoch[key] -= sum(ceiling_steps)
    best = min(timed, key=lambda e: e["train_s"] / e["train_images"])
    result = {"loader": summary.loader, "storage": summary.storage,
              "images_per_s": best["train_images"] / best["train_s"],
              "median_step_s": float(np.median([t for e in timed for t in e["step_s"]])),
              "epoch_images_per_s": best["train_images"] / best["epoch_s"],
              "validation_s": best["epoch_s"] - best["train_s"], "val_images": sum(summary.counts["val"].values()),
              "one_time_setup_s": decode_s, "epochs": timer.epochs, **(pairs.project_memory or memory.report()),
              "data_log": [m for m in messages if m.startswith("data:")]}
    if paired:  # the project's steps and the ceiling's, alternating: same count, same batch size
        project_s = sum(t for e in timed for t in e["step_s"])
        ceiling_s = sum(t for e in pairs.epochs for t in e)
        n_images = sum(e["train_images"] for e in timed)
        result["paired"] = {"project_images_per_s": n_images / project_s, "ceiling_images_per_s": n_images / ceiling_s,
                            "ratio": ceiling_s / project_s, "ceiling_step_s": pairs.epochs}
    return result


# ---------------------------------------------------------------- report

def run_arch(arch: str, images: Path, args, device: torch.device) -> dict:
    """Return the ceiling and the project's path (and the DataBlock path) for one architecture, each path
    run between two ceiling runs (and the project's also paired with ceiling steps on the CPU)."""
    shape = (args.height, args.width)
    steps = args.steps or max(5, args.images // args.bs)
    print(f"\n== {arch}: {args.height}x{args.width} input (3 channels), batch {args.bs}, {device}", flush=True)
    paths = [("project", "auto")] + ([("datablock", "datablock")] if args.datablock or device.type == "cuda" else [])
    ceilings = [measure_ceiling(arch, shape, args.bs, steps, device)]
    print(f"{'ceiling (plain loop)':24s} {ceilings[0]['images_per_s']:8.1f} img/s", flush=True)
    result = {}
    for name, loader in paths:
        paired = name == "project" and device.type == "cpu"
        run = project_run(images, arch, args.bs, args.epochs, device, loader, paired)
        print(f"{name + ' path':24s} {run['images_per_s']:8.1f} img/s"
              + (f" (paired: {run['paired']['project_images_per_s']:.1f} img/s against the ceiling's "
                 f"{run['paired']['ceiling_images_per_s']:.1f})" if paired else ""), flush=True)
        ceilings.append(measure_ceiling(arch, shape, args.bs, steps, device))
        print(f"{'ceiling (again)':24s} {ceilings[-1]['images_per_s']:8.1f} img/s", flush=True)
        run["ceiling_images_per_s"] = max(c["images_per_s"] for c in ceilings[-2:])
        run["sequential_ratio"] = run["images_per_s"] / run["ceiling_images_per_s"]
        run["ratio"] = run["paired"]["ratio"] if paired else run["sequential_ratio"]
        result[name] = run
    memory = {k: ceilings[0][k] for k in ("peak_host_rss_mb", "peak_gpu_mb")}  # before any project data existed
    result["ceiling"] = {**max(ceilings, key=lambda c: c["images_per_s"]), **memory}
    result["ceiling_runs"] = [c["images_per_s"] for c in ceilings]
    result["ratio"] = result["project"]["ratio"]
    return result


def print_report(arch: str, r: dict):
    """Print one architecture's table and ratios."""
    c = r["ceiling"]

    def gpu(x):
        return "-" if x["peak_gpu_mb"] is None else str(x["peak_gpu_mb"])
    print(f"\n{arch:32s} {'img/s':>9s} {'peak host MB':>13s} {'peak GPU MB':>12s}")
    print(f"{'ceiling (plain PyTorch loop)':32s} {c['images_per_s']:9.1f} {c['peak_host_rss_mb']:13d} {gpu(c):>12s}"
          f"   ({c['precision']}, {c['memory_format']}, {c['optimizer']}; runs "
          + ", ".join(f"{x:.1f}" for x in r["ceiling_runs"]) + ")")
    rows = [("project (make train)", r["project"])] + ([("datablock (--loader datablock)", r["datablock"])]
                                                     if "datablock" in r else [])
    for name, x in rows:
        print(f"{name:32s} {x['images_per_s']:9.1f} {x['peak_host_rss_mb']:13d} {gpu(x):>12s}"
              f"   ({x['loader']} path, images on {x['storage']}; with validation of {x['val_images']} images: "
              f"{x['epoch_images_per_s']:.1f} img/s)")
    print(f"one-time setup of the project path (scan + decode PNGs into memory): "
          f"{r['project']['one_time_setup_s']:.2f} s")
    for name, x in rows:
        short = name.split()[0]
        if "paired" in x:
            print(f"ratio {short} / ceiling, paired steps: {x['ratio']:6.1%}  (target >= 90%: "
                  f"{'met' if x['ratio'] >= 0.9 else 'NOT met'}); one after the other: {x['sequential_ratio']:.1%}")
        else:
            target = f"  (target >= 90%: {'met' if x['ratio'] >= 0.9 else 'NOT met'})" if short == "project" else ""
            print(f"ratio {short} / ceiling: {x['ratio']:6.1%}{target}")


@dataclass
class TrainBench:
    arch: list[str] | None = None  # architectures (default: resnet18 on the CPU, resnet101 and efficientnet_b4 on CUDA)
    height: int | None = None      # image height = n_mels (default 64 CPU, 128 CUDA)
    width: int | None = None       # image width = frames (default 200 CPU, 400 CUDA)
    bs: int | None = None          # batch size (default 32 CPU, 128 CUDA)
    images: int | None = None      # training images written (default 192 CPU, 3072 CUDA); validation gets a
                                   # quarter as many
    epochs: int = 2                # timed epochs of the project's path after one warm-up
    steps: int = 0                 # timed ceiling steps (0: one epoch's batches)
    datablock: bool = False        # also time --loader datablock (always on CUDA)
    device: str | None = None      # cpu or cuda (default: cuda when available)
    threads: int = 0               # torch CPU threads for both paths (0: torch's own; 1 steadies the numbers on a
                                   # machine other jobs share)


def main():
    args, = parse_settings(build_parser("python -m benchmarks.train_throughput", __doc__.split("\n\n")[0],
                                        [TrainBench]), None, TrainBench)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device(args.device)
    for key, value in (CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as classify.train does
    for arch in args.arch:
        archs.get_arch(arch)
    baseline_mb = round(psutil.Process().memory_info().rss / 2 ** 20)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
              f"cpu: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
              "torch": torch.__version__, "height": args.height, "width": args.width, "bs": args.bs,
              "train_images": args.images, "timed_epochs": args.epochs, "pretrained": False,
              "host_rss_after_imports_mb": baseline_mb, "archs": {}}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        start = time.perf_counter()
        images = write_image_tree(Path(tmp) / "images", args.images, max(args.bs, args.images // 4),
                                  args.height, args.width)
        print(f"wrote {args.images} training and {max(args.bs, args.images // 4)} validation PNGs "
              f"({args.height}x{args.width}) in {time.perf_counter() - start:.1f} s; {report['device']}")
        for arch in args.arch:
            report["archs"][arch] = run_arch(arch, images, args, device)
    for arch, r in report["archs"].items():
        print_report(arch, r)
    print(f"(peak host MB = resident set of this one process while the part ran; {baseline_mb} MB after imports)")
    report["load_average_1min"] = round(os.getloadavg()[0], 2)
    write_atomic(OUT / "train_throughput.json", json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nwritten to {OUT / 'train_throughput.json'} (1-min load average {report['load_average_1min']})")


if __name__ == "__main__":
    main()
