"""The run folder runs/<arch>-<yyyymmdd-hhmmss>/: its creation, runs/latest, config.json, history, curves, log.

Only the process of rank 0 writes (fastai's `rank_distrib()`); in a multi-process launch the
other ranks get `None` from `create_run_dir` and every writer here returns without writing.
Every file is written to a temporary name and renamed, so an interrupted run leaves no half file.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fastai.torch_core import rank_distrib

from spec2img import fileio

HISTORY_COLUMNS = ("epoch", "train_loss", "valid_loss", "accuracy", "roc_auc", "eer", "time")
LATEST = "latest"

# The evaluation's outputs form one set (classify.outputset): RUN/evaluations/<split>-<time>-<pid>/ holds them all,
# and RUN/evaluation is a symlink to the current complete set, swapped in one step. Readers resolve it once
# (`evaluation_dir`) and read every file of the set from the folder it resolved to.
EVALUATION_LINK = "evaluation"
EVALUATIONS_DIR = "evaluations"
THRESHOLDS_FILE = "thresholds.json"     # decision threshold tuned on val (classify.thresholds)
CALIBRATION_FILE = "calibration.json"   # score -> LLR map fitted on val (classify.calibration)
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
SCORES_FILE = "scores.csv"              # a copy of scores-<evaluated split>.csv


def scores_csv_name(split: str) -> str:
    """Return the name of a split's score table (every clip: label, metadata, spoof_prob, score, llr, pred)."""
    return f"scores-{split}.csv"


def scores_2019_name(split: str) -> str:
    """Return the name of the ASVspoof 2019 CM score file: `<trial> <system|-> <key> <score>`."""
    return f"scores-{split}.txt"


def scores_2021_name(split: str) -> str:
    """Return the name of the ASVspoof 2021 eval-package score file: `<trial> <score>`."""
    return f"scores-{split}-2021.txt"


def scores_asvspoof5_name(split: str) -> str:
    """Return the name of the ASVspoof 5 evaluation-package score file: TSV `filename<TAB>cm-score` (LLRs)."""
    return f"scores-{split}-asvspoof5.tsv"


def evaluation_dir(run_dir: Path) -> Path | None:
    """Return the folder of the run's current evaluation output set, resolved once (read every file of the set
    from it), or None before any evaluation. A run evaluated by an older version keeps its files at the top."""
    run_dir = Path(run_dir)
    link = run_dir / EVALUATION_LINK
    if link.is_symlink() or link.is_dir():
        target = Path(os.path.realpath(link))
        return target if target.is_dir() else None
    return run_dir if (run_dir / THRESHOLDS_FILE).is_file() else None


def is_main_process() -> bool:
    """Return True in a single-process run and in the rank-0 process of a distributed one."""
    return rank_distrib() == 0


def write_atomic(path: Path, text: str):
    """Write `text` to `path` atomically (rank 0 only)."""
    if is_main_process():
        fileio.write_atomic(path, text)


def write_json(path: Path, obj: dict):
    """Write `obj` as indented JSON, atomically (rank 0 only)."""
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def create_run_dir(out, arch: str, seed: int, now: float | None = None) -> Path | None:
    """Create and return out/<arch>-<yyyymmdd-hhmmss>/ (suffix -s<seed>, then -2, -3… if taken); None off rank 0."""
    if not is_main_process():
        return None
    out = Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = f"{arch}-{stamp}"
    candidates = [base, f"{base}-s{seed}"] + [f"{base}-s{seed}-{k}" for k in range(2, 1000)]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise fileio.output_error(error, out) from None
    for name in candidates:
        try:
            (out / name).mkdir()
            return out / name
        except FileExistsError:
            continue
        except OSError as error:  # read-only, no permission, no space for a folder
            raise fileio.output_error(error, out / name) from None
    raise FileExistsError(f"cannot find a free run folder name under {out} for {base}")


def point_latest(out, run_dir: Path):
    """Atomically make out/latest a relative symlink to `run_dir` (rank 0 only)."""
    if not is_main_process() or run_dir is None:
        return
    out = Path(out)
    with fileio.atomic_path(out / LATEST) as tmp:
        tmp.symlink_to(os.path.relpath(Path(run_dir).resolve(), out.resolve()))


def package_versions() -> dict:
    """Return the versions of the packages a result depends on."""
    import fastai
    import numpy
    import timm
    import torch
    import torchvision
    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "fastai": fastai.__version__, "timm": timm.__version__, "numpy": numpy.__version__}


def git_commit(folder: Path | None = None) -> str | None:
    """Return the git commit of the code (with '-dirty' when files are modified), or None outside a git checkout."""
    folder = Path(folder or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        if not commit:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_description(device) -> str:
    """Return a readable name of the training device (GPU model on CUDA, core count on CPU)."""
    import torch
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def write_history(run_dir: Path, rows: list[dict]):
    """Write history.csv (one row per epoch, HISTORY_COLUMNS) atomically (rank 0 only)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(run_dir) / "history.csv", buf.getvalue())


def plot_curves(run_dir: Path, rows: list[dict], best_epoch: int | None = None):
    """Draw curves.png: training and validation loss, and validation EER, per epoch (rank 0 only)."""
    if not is_main_process() or not rows:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_eer) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="training loss")
    ax_loss.plot(epochs, [r["valid_loss"] for r in rows], "o-", label="validation loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_eer.plot(epochs, [100 * r["eer"] for r in rows], "o-", color="C3", label="validation EER")
    if best_epoch is not None:
        ax_eer.axvline(best_epoch, color="grey", ls="--", label=f"kept: epoch {best_epoch}")
    ax_eer.set_xlabel("epoch")
    ax_eer.set_ylabel("EER (%)")
    ax_eer.legend()
    for ax in (ax_loss, ax_eer):
        ax.grid(alpha=0.3)
    fig.suptitle(Path(run_dir).name)
    fig.tight_layout()
    with fileio.atomic_path(Path(run_dir) / "curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


class _Tee(io.TextIOBase):
    """A text stream writing to the original stream and to a log file (progress-bar redraws collapsed)."""

    def __init__(self, stream, log):
        self.stream, self.log, self.pending = stream, log, ""
        self.failed: OSError | None = None  # the log could not be written (disk full): the terminal goes on

    def write(self, s):
        self.stream.write(s)
        if self.failed is None:
            self.pending += s
            *lines, self.pending = self.pending.split("\n")
            try:
                for line in lines:  # keep what a terminal would finally show after carriage returns
                    self.log.write(line.rsplit("\r", 1)[-1] + "\n")
                self.log.flush()
            except OSError as error:   # the run's own next write (history.csv, weights) stops it, by name
                self.failed = error
        return len(s)

    def flush(self):
        self.stream.flush()
        if self.failed is None:
            try:
                self.log.flush()
            except OSError as error:
                self.failed = error

    def isatty(self):
        return self.stream.isatty()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")

    def close_log(self):
        if self.pending and self.failed is None:
            try:
                self.log.write(self.pending.rsplit("\r", 1)[-1] + "\n")
            except OSError as error:
                self.failed = error
        self.pending = ""


class tee_output:
    """Context manager copying stdout and stderr into `path` (train.log) on rank 0; a no-op elsewhere."""

    def __init__(self, path: Path | None):
        self.path = path

    def __enter__(self):
        if self.path is None or not is_main_process():
            return self
        try:
            self.file = open(self.path, "a", encoding="utf-8")
        except OSError as error:
            raise fileio.output_error(error, self.path) from None
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(sys.stdout, self.file), _Tee(sys.stderr, self.file)
        return self

    def __exit__(self, exc_type, exc, tb):
        if hasattr(self, "saved"):
            for tee in (sys.stdout, sys.stderr):
                tee.close_log()
            sys.stdout, sys.stderr = self.saved
            try:
                if exc_type is not None:  # the error that ended the run belongs in its log too
                    import traceback
                    self.file.write("".join(traceback.format_exception(exc_type, exc, tb)))
                self.file.close()
            except OSError:           # a full disk: the log keeps what it had; the error is reported anyway
                pass
        return False
