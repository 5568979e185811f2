"""The GPU check (`make bench-gpu`): every CUDA path of the project once, in one go, and one table.

    python -m benchmarks.gpu_check [--out benchmarks/out] [--work DIR] [--device cuda] [--budget 480]
    python -m benchmarks.gpu_check --smoke      # the same steps at a tiny size on the CPU (what CI runs)

Steps, each the command a user runs, in a subprocess with its output kept in WORK/logs/<step>.log:
  demo          synthetic demo corpus (spec2img.demo) converted to images (python -m spec2img)
  lcnn memory   classify.train --arch lcnn on the in-memory loader (images on the GPU)
  lcnn datablock  the same on fastai's DataBlock loader (PNG streaming, worker processes)
  lcnn staged   the in-memory loader with the images forced into host memory: pinned staging
  resnet101, efficientnet_b4   one epoch each from random weights (--no-pretrained: nothing downloaded)
  evaluate      classify.evaluate on the device, for the LCNN and the EfficientNet run
  predict       classify.predict on the device and on the CPU over the demo audio; scores compared
  export.pkl    classify.predict --trust-pickle from a copy of the run holding export.pkl and
                config.json only (no model.safetensors, no model.json); compared with the safetensors scores
  bench-train   benchmarks.train_throughput (CUDA defaults: resnet101 and efficientnet_b4 at
                3x128x400, batch 128): project path / plain-PyTorch ceiling, out of core (image cache,
                memory budget below the data) / ceiling, DataBlock / ceiling
  bench-predict benchmarks.predict_throughput: the front end's clips/s with 1 and all workers and its
                scaling, the model's, and end to end on the CPU and the GPU against min(front end, model)
A failed step is reported and the next one runs; a step not started before --budget seconds is
skipped, so the check ends in time. The table goes to stdout and, with every figure, to
OUT/gpu_check.json (rewritten after each step: a check cut short keeps what it measured).
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from classify import runfolder
from spec2img.cli import build_parser, parse_settings
from spec2img.fileio import write_json

REPO = Path(__file__).resolve().parents[1]
BENCH_OUT = REPO / "benchmarks" / "out"  # where the throughput benchmarks write their JSON


@dataclass(frozen=True)
class CheckConfig:
    out: str = str(BENCH_OUT)     # folder of gpu_check.json
    work: str = ""                # scratch folder for data, images, runs and logs ("" = a temporary one, removed)
    device: str = ""              # torch device of the GPU steps ("" = cuda when available, else cpu)
    smoke: bool = False           # tiny sizes and tiny architectures, for a CPU run end to end (CI)
    budget: float = 480.0         # seconds: no step starts after this (8 minutes)


@dataclass(frozen=True)
class Sizes:
    clips_per_class: int   # demo corpus size (bonafide clips; as many spoof)
    speakers: int          # demo speakers
    spec_args: tuple       # extra spectrogram flags of the conversion
    lcnn_epochs: int       # epochs of each LCNN run
    lcnn_bs: int           # batch of the LCNN runs
    big_archs: tuple       # the two large architectures, one epoch each
    big_bs: int            # their batch
    bench_train: tuple     # benchmarks.train_throughput flags
    bench_predict: tuple   # benchmarks.predict_throughput flags


# bench-train's host-memory check (--memory-sizes) belongs to the CPU run; bench-predict scores enough clips
# that starting its 16 workers (forks of a process holding torch and CUDA) is a small part of the time
GPU_SIZES = Sizes(200, 20, (), 6, 64, ("resnet101", "efficientnet_b4"), 64, ("--memory-sizes", "0"),
                  ("--clips", "4000", "--frontend-clips", "16000", "--rounds", "1"))
SMOKE_SIZES = Sizes(8, 4, ("--n-mels", "32", "--duration", "1"), 1, 16, ("resnet18", "efficientnet_b0"), 16,
                    ("--arch", "simple_cnn", "--height", "32", "--width", "100", "--bs", "8", "--images", "32",
                     "--epochs", "1", "--steps", "2", "--memory-sizes", "0"),
                    ("--clips", "6", "--frontend-clips", "6", "--arch", "simple_cnn", "--bs", "8", "--rounds", "1"))


@dataclass
class Step:
    name: str                  # row label
    status: str = "skipped"    # ok | FAILED | CHECK (ran, a comparison is off) | skipped
    seconds: float = 0.0       # wall time of the step's command(s)
    figure: str = ""           # the one-line result shown in the table
    details: dict = field(default_factory=dict)  # every number, for the JSON


class Check:
    """Runs the steps in order, keeping the budget, and records them."""

    def __init__(self, cfg: CheckConfig, work: Path):
        import torch
        self.cfg, self.work, self.steps, self.started = cfg, work, [], time.monotonic()
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.sizes = SMOKE_SIZES if cfg.smoke else GPU_SIZES
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.header = {"device": device_name(self.device), "torch": torch.__version__, "python": platform.python_version(),
                       "smoke": cfg.smoke, "budget_s": cfg.budget, "work": str(work)}

    def left(self) -> float:
        """Return the seconds of the budget not yet used."""
        return self.cfg.budget - (time.monotonic() - self.started)

    def run(self, step: Step, *commands: list[str]) -> bool:
        """Run `commands` (python -m ... argument lists) one after the other for `step`; return True when all
        exit 0. Output goes to logs/<step>.log; a failure's last lines go into the step's details."""
        if self.left() <= 0:
            step.status, step.figure = "skipped", "over the time budget"
            return False
        log = self.logs / (step.name.replace(" ", "_").replace("/", "_") + ".log")
        start = time.monotonic()
        with open(log, "a") as out:
            for args in commands:
                out.write(f"$ python {' '.join(map(str, args))}\n")
                out.flush()
                try:
                    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, stdout=out,
                                          stderr=subprocess.STDOUT, timeout=max(10.0, self.left()))
                except subprocess.TimeoutExpired:
                    step.status, step.figure = "FAILED", f"still running at the budget's end (see {log})"
                    step.seconds = time.monotonic() - start
                    return False
                if proc.returncode != 0:
                    tail = log.read_text(errors="replace").strip().splitlines()[-12:]
                    step.status, step.figure = "FAILED", f"exit {proc.returncode}: {tail[-1] if tail else ''}"[:160]
                    step.details["log_tail"] = tail
                    step.seconds = time.monotonic() - start
                    return False
        step.seconds = time.monotonic() - start
        step.status = "ok"
        return True

    def record(self, step: Step):
        """Add `step` to the report and rewrite gpu_check.json."""
        self.steps.append(step)
        self.write()

    def report(self) -> dict:
        """Return the JSON report: the machine, the steps and the headline figures."""
        return {**self.header, "elapsed_s": round(time.monotonic() - self.started, 1),
                "steps": [asdict(s) for s in self.steps],
                "ok": all(s.status == "ok" for s in self.steps)}

    def write(self):
        out = Path(self.cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "gpu_check.json", self.report())


def device_name(device: str) -> str:
    """Return the GPU's name, or the CPU's core count."""
    import torch
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device}: {torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu: {os.cpu_count()} cores"


# ---------------------------------------------------------------- reading results

def read_history(run: Path) -> list[dict]:
    """Return history.csv's rows as floats."""
    with open(run / runfolder.HISTORY, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def train_figures(run: Path) -> dict:
    """Return what a training run reports: loader, storage, precision, img/s per epoch, kept validation EER."""
    config = json.loads((run / runfolder.CONFIG).read_text())
    history = read_history(run)
    n_train = sum(config["data"]["counts"]["train"].values())
    n_val = sum(config["data"]["counts"]["val"].values())
    times = [row["time"] for row in history]
    best = min(history, key=lambda r: (r["eer"], r["valid_loss"]))
    return {"run": str(run), "loader": config["data"]["loader"], "storage": config["data"]["storage"],
            "precision": config.get("precision_used"), "epochs": len(history), "train_images": n_train,
            "val_images": n_val, "epoch_s": times,
            # the first epoch includes cuDNN autotuning and warm-up; the fastest is the steady state
            "images_per_s_fastest_epoch": (n_train + n_val) / min(times) if min(times) > 0 else None,
            "val_eer_kept": best["eer"], "train_loss_last": history[-1]["train_loss"]}


def latest_run(runs: Path) -> Path:
    """Return the run folder runs/latest points to."""
    return (runs / "latest").resolve()


def read_predictions(path: Path) -> dict[str, dict]:
    """Return {file: row} of a `classify.predict --format json` output."""
    return {row["path"]: row for row in json.loads(path.read_text())["files"]}


def compare_predictions(a: dict, b: dict) -> dict:
    """Return how far two predictions of the same files are apart (scores, probabilities, labels)."""
    import numpy as np
    common = [k for k in a if k in b and a[k]["status"] == "ok" and b[k]["status"] == "ok"]
    if not common:
        return {"files": 0}
    sa, sb = (np.array([p[k]["score"] for k in common]) for p in (a, b))
    pa, pb = (np.array([p[k]["spoof_prob"] for k in common]) for p in (a, b))
    return {"files": len(common), "max_abs_score_diff": float(np.abs(sa - sb).max()),
            "score_range": float(sa.max() - sa.min()), "max_abs_prob_diff": float(np.abs(pa - pb).max()),
            "label_agreement": float(np.mean([a[k]["label"] == b[k]["label"] for k in common])),
            "distinct_scores": [len(np.unique(sa)), len(np.unique(sb))]}


def close_enough(c: dict) -> bool:
    """Return True when two predictions agree as bf16/fp16 autocast against float32 should."""
    return (c.get("files", 0) > 0 and c["label_agreement"] >= 0.98
            and c["max_abs_score_diff"] <= 0.02 * max(1.0, c["score_range"]))


def move_bench_json(name: str, keep_in: Path, restore: bytes | None):
    """Move benchmarks/out/<name> into `keep_in` and put back the file that was there before (smoke runs
    must not overwrite a user's measured figures)."""
    produced = BENCH_OUT / name
    if produced.is_file():
        shutil.copy(produced, keep_in / name)
    if restore is not None:
        produced.write_bytes(restore)
    elif produced.is_file():
        produced.unlink()


# ---------------------------------------------------------------- the steps

def step_demo(check: Check) -> bool:
    s, w = check.sizes, check.work
    step = Step("demo data -> images")
    ok = check.run(step, ["-m", "spec2img.demo", w / "data", "--clips-per-class", s.clips_per_class,
                          "--speakers", s.speakers],
                   ["-m", "spec2img", w / "data", "--out", w / "images", "--dataset", "auto", *s.spec_args])
    if ok:
        spec = json.loads((w / "images" / "spec.json").read_text())
        pngs = sum(1 for _ in (w / "images").rglob("*.png")) - sum(1 for _ in (w / "images" / "audit").rglob("*.png"))
        step.details = {"clips": 2 * s.clips_per_class, "images": pngs,
                        "image_shape": [spec.get("image_height"), spec.get("image_width")]}
        step.figure = f"{2 * s.clips_per_class} clips -> {pngs} images {spec.get('image_height')}x{spec.get('image_width')}"
    check.record(step)
    return ok


def step_train(check: Check, name: str, arch: str, epochs: int, bs: int, *flags) -> Path | None:
    runs = check.work / "runs" / name.replace(" ", "_")
    step = Step(f"train {name}")
    ok = check.run(step, ["-m", "classify.train", "--images", check.work / "images", "--arch", arch, "--no-pretrained",
                          "--epochs", epochs, "--bs", bs, "--out", runs, *flags])
    run = latest_run(runs) if ok else None
    if run is not None:
        f = step.details = train_figures(run)
        rate = f["images_per_s_fastest_epoch"]
        step.figure = (f"{rate:,.0f} img/s (fastest epoch, with validation), val EER {100 * f['val_eer_kept']:.1f}%, "
                       f"{f['precision']}, {f['loader']} on {f['storage']}")
        expected_storage = {"staged": "staged" if check.device.startswith("cuda") else "cpu",
                            "datablock": "disk"}.get(name.split()[-1])
        if expected_storage and expected_storage not in f["storage"]:
            step.status = "CHECK"
            step.figure += f" (expected {expected_storage})"
    check.record(step)
    return run


def step_evaluate(check: Check, name: str, run: Path | None) -> dict | None:
    step = Step(f"evaluate {name} ({check.device})")
    if run is None:
        step.figure = "no run to evaluate"
        check.record(step)
        return None
    ok = check.run(step, ["-m", "classify.evaluate", run, "--split", "test", "--device", check.device])
    if ok:
        metrics = json.loads((runfolder.evaluation_dir(run) / runfolder.METRICS_FILE).read_text())
        eer = metrics["metrics"]["eer"]["value"]
        step.details = {"test_eer": eer, "counts": metrics["counts"]}
        step.figure = f"test EER {100 * eer:.2f}% on {sum(metrics['counts']['test'].values())} images"
    check.record(step)
    return step.details if ok else None


def step_predict(check: Check, run: Path | None) -> None:
    """Predict on the device and on the CPU, compare; then from an export.pkl-only copy of the run."""
    audio = check.work / "data"
    outputs = {}
    for device in dict.fromkeys([check.device, "cpu"]):
        step = Step(f"predict ({device})")
        if run is None:
            step.figure = "no run to predict with"
            check.record(step)
            continue
        out = check.work / f"predict-{device.replace(':', '')}.json"
        if check.run(step, ["-m", "classify.predict", "--run", run, audio, "--out", out, "--format", "json",
                            "--device", device, "--no-progress"]):
            outputs[device] = read_predictions(out)
            n = len(outputs[device])
            step.details = {"files": n, "clips_per_s_with_startup": n / step.seconds}
            step.figure = f"{n} files in {step.seconds:.1f} s (start-up and model load included)"
        check.record(step)
    if len(outputs) == 2:
        step = Step(f"predict {check.device} vs cpu")
        c = step.details = compare_predictions(outputs[check.device], outputs["cpu"])
        step.status = "ok" if close_enough(c) else "CHECK"
        step.figure = (f"max |score diff| {c['max_abs_score_diff']:.2g} (score range {c['score_range']:.3g}), "
                       f"labels agree {100 * c['label_agreement']:.1f}%, distinct scores {c['distinct_scores']}")
        check.record(step)
    step = Step(f"predict export.pkl only ({check.device})")
    if run is None or check.device not in outputs:
        step.figure = "no safetensors prediction to compare with"
        check.record(step)
        return
    pickled = check.work / "pickle-only-run"
    pickled.mkdir(exist_ok=True)
    for name in (runfolder.EXPORT, runfolder.CONFIG, runfolder.COMPLETE):  # no model.safetensors, no model.json
        shutil.copy(run / name, pickled / name)
    out = check.work / "predict-pickle.json"
    if check.run(step, ["-m", "classify.predict", "--run", pickled, audio, "--out", out, "--format", "json",
                        "--device", check.device, "--trust-pickle", "--no-progress"]):
        c = step.details = compare_predictions(read_predictions(out), outputs[check.device])
        step.status = "ok" if c["files"] and c["max_abs_score_diff"] <= 1e-3 * max(1.0, c["score_range"]) else "CHECK"
        step.figure = f"{c['files']} files; max |score diff| vs safetensors {c['max_abs_score_diff']:.2g}"
    check.record(step)


def step_bench_train(check: Check):
    before = (BENCH_OUT / "train_throughput.json").read_bytes() if (BENCH_OUT / "train_throughput.json").is_file() else None
    step = Step("bench-train")
    ok = check.run(step, ["-m", "benchmarks.train_throughput", "--device", check.device, *check.sizes.bench_train])
    if ok:
        report = json.loads((BENCH_OUT / "train_throughput.json").read_text())
        rows = []
        for arch, r in report["archs"].items():
            detail = {"ceiling_img_s": r["ceiling"]["images_per_s"], "project_img_s": r["project"]["images_per_s"],
                      "project_ratio": r["ratio"], "out_of_core_img_s": r["out-of-core"]["images_per_s"],
                      "out_of_core_ratio": r["out_of_core_ratio"]}
            if "datablock" in r:
                detail.update(datablock_img_s=r["datablock"]["images_per_s"], datablock_ratio=r["datablock"]["ratio"])
            step.details[arch] = detail
            rows.append(f"{arch} {r['project']['images_per_s']:,.0f}/{r['ceiling']['images_per_s']:,.0f} img/s = "
                        f"{r['ratio']:.2f}, out of core {r['out_of_core_ratio']:.2f}"
                        + (f", datablock {r['datablock']['ratio']:.2f}" if "datablock" in r else ""))
        step.details["shape"] = [report["height"], report["width"], report["bs"]]
        step.figure = "project/ceiling: " + "; ".join(rows) + f" ({report['height']}x{report['width']}, bs {report['bs']})"
    if check.cfg.smoke:
        move_bench_json("train_throughput.json", check.work, before)
    check.record(step)


def step_bench_predict(check: Check):
    before = (BENCH_OUT / "predict_throughput.json").read_bytes() if (BENCH_OUT / "predict_throughput.json").is_file() else None
    step = Step("bench-predict")
    if check.run(step, ["-m", "benchmarks.predict_throughput", *check.sizes.bench_predict]):
        report = json.loads((BENCH_OUT / "predict_throughput.json").read_text())
        rates = {k.strip(): v for k, v in report.get("clips_per_s", {}).items() if isinstance(v, (int, float))}
        ratios = {k: v for k, v in report.items() if isinstance(v, (int, float)) and
                  any(w in k for w in ("ratio", "scaling", "bound"))}
        ratios.update({f"ratio_to_convert/{k}": v for k, v in (report.get("ratio_to_convert") or {}).items()})
        step.details = {"clips_per_s": rates, "ratios": ratios}
        step.figure = "; ".join(f"{k} {v:,.0f} clips/s" for k, v in rates.items() if k.startswith("predict"))
        if ratios:
            step.figure += "; " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
    if check.cfg.smoke:
        move_bench_json("predict_throughput.json", check.work, before)
    check.record(step)


def print_table(check: Check):
    """Print the one table: step, status, seconds, figure."""
    h = check.header
    print(f"\nGPU check on {h['device']} (torch {h['torch']}, Python {h['python']}"
          f"{', SMOKE: tiny sizes' if h['smoke'] else ''}), {time.monotonic() - check.started:.0f} s in all")
    width = max(len(s.name) for s in check.steps) if check.steps else 10
    print(f"{'step':{width}s}  {'status':7s} {'time s':>7s}  figure")
    for s in check.steps:
        print(f"{s.name:{width}s}  {s.status:7s} {s.seconds:7.1f}  {s.figure}")
    print(f"written to {Path(check.cfg.out) / 'gpu_check.json'}; logs in {check.logs}")


def run_check(cfg: CheckConfig) -> int:
    """Run every step; return 0 when all are ok, 1 otherwise."""
    work = Path(cfg.work) if cfg.work else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    check = Check(cfg, work)
    print(f"GPU check: {check.header['device']}, work folder {work}, budget {cfg.budget:.0f} s", flush=True)
    try:
        if step_demo(check):
            s = check.sizes
            lcnn = step_train(check, "lcnn memory", "lcnn", s.lcnn_epochs, s.lcnn_bs, "--loader", "memory")
            step_train(check, "lcnn datablock", "lcnn", s.lcnn_epochs, s.lcnn_bs, "--loader", "datablock")
            step_train(check, "lcnn staged", "lcnn", s.lcnn_epochs, s.lcnn_bs, "--loader", "memory", "--storage", "host")
            big = [step_train(check, arch, arch, 1, s.big_bs) for arch in s.big_archs]
            step_evaluate(check, "lcnn", lcnn)
            step_evaluate(check, s.big_archs[-1], big[-1])
            step_predict(check, lcnn)
        step_bench_train(check)
        step_bench_predict(check)
    finally:
        check.write()
        print_table(check)
        if not cfg.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if check.report()["ok"] else 1


def main(argv=None) -> int:
    cfg, = parse_settings(build_parser("python -m benchmarks.gpu_check", __doc__.split("\n\n")[0], [CheckConfig]),
                          argv, CheckConfig)
    return run_check(cfg)


if __name__ == "__main__":
    sys.exit(main())
