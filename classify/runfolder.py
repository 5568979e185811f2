"""The run folder runs/<arch>-<yyyymmdd-hhmmss>/: its file names, its completeness, and the one check of whether
a run can be used; also its creation, runs/latest, config.json, history, curves and log.

Contract: classify.train writes config.json, history.csv, curves.png, model.safetensors, model.json, export.pkl,
train.log and, last of all, complete.json (COMPLETE); only then does it point runs/latest at the folder. A
folder without complete.json is a training that was killed or failed: evaluation and prediction refuse it
(`check_run`, RunFolderError) and runs/latest never points at it. classify.evaluate adds its output set
(thresholds.json, calibration.json, metrics.json, report.html, the score files and plots) under evaluations/.

Only the process of rank 0 writes (fastai's `rank_distrib()`); in a multi-process launch the other ranks get
`None` from `create_run_dir` and every writer here returns without writing. Every file is written atomically
(spec2img.fileio), so an interrupted run leaves no half file.
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

from spec2img import fileio

# ---------------------------------------------------------------- the files of a run folder
MODEL_WEIGHTS = "model.safetensors"    # the weights (classify.model_io), loaded without unpickling
MODEL_JSON = "model.json"              # how to rebuild the network, its input and the spectrogram settings
CONFIG = "config.json"                 # every training setting, spec, versions, device, seed
HISTORY = "history.csv"                # one row per epoch (HISTORY_COLUMNS)
CURVES = "curves.png"                  # loss and validation EER per epoch
EXPORT = "export.pkl"                  # fastai's Learner.export (a pickle: loaded only when trusted)
TRAIN_LOG = "train.log"                # everything training printed
COMPLETE = "complete.json"             # written last by classify.train: the run finished
LATEST = "latest"                      # runs/latest: symlink to the newest complete run
HISTORY_COLUMNS = ("epoch", "train_loss", "valid_loss", "accuracy", "roc_auc", "eer", "time")
TRAIN_HINT = "train one with `make train` or `classify-train --images images --out runs`"
PICKLE_WARNING = (
    "export.pkl is a Python pickle: loading it executes whatever code the file contains, so a tampered "
    "or downloaded run can run any command as you. Only use --trust-pickle for runs you made yourself "
    "or got from someone you trust.")

# The evaluation's outputs form one set (classify.outputset): RUN/evaluations/<split>-<time>-<pid>/ holds them all,
# and RUN/evaluation is a symlink to the current complete set, swapped in one step. Readers resolve it once
# (`evaluation_dir`) and read every file of the set from the folder it resolved to.
EVALUATION_LINK = "evaluation"
EVALUATIONS_DIR = "evaluations"
THRESHOLDS_FILE = "thresholds.json"     # decision threshold tuned on val (classify.thresholds)
CALIBRATION_FILE = "calibration.json"   # score -> LLR map fitted on val (classify.calibration)
METRICS_FILE = "metrics.json"           # every evaluation number with its formula
REPORT_FILE = "report.html"             # the self-contained evaluation page
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


def plot_png(name: str, split: str | None = None) -> str:
    """Return the file of evaluation plot `name` (e.g. roc) for `split`: roc-test.png; training_curves.png
    for a plot of the whole run (split None)."""
    return f"{name}.png" if split is None else f"{name}-{split}.png"


class RunFolderError(Exception):
    """A run folder that cannot be used; str() names the folder, what is wrong and what to do."""


def is_complete(run_dir) -> bool:
    """Return True when classify.train finished the run (its complete.json exists)."""
    return (Path(run_dir) / COMPLETE).is_file()


def check_run(run_dir, allow_pickle: bool = False) -> str:
    """Return the file the run's model loads from (MODEL_WEIGHTS, or EXPORT with `allow_pickle` when the run
    has no weights file) when `run_dir` is a complete training run; RunFolderError otherwise. The one check
    of whether a run is usable: evaluation, prediction and model_io.load_model all call it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"run folder {run_dir} does not exist ({TRAIN_HINT})")
    if not is_complete(run_dir):
        newest = newest_complete_run(run_dir.resolve().parent)
        raise RunFolderError(
            f"{run_dir} is an incomplete run: its training was interrupted or failed before writing {COMPLETE} "
            f"(see its {TRAIN_LOG}), so it is ignored. Train again"
            + (f", or use the newest complete run, {newest}" if newest else f" ({TRAIN_HINT})"))
    if (run_dir / MODEL_WEIGHTS).is_file() and (run_dir / MODEL_JSON).is_file():
        return MODEL_WEIGHTS
    if not (run_dir / MODEL_WEIGHTS).is_file() and (run_dir / EXPORT).is_file():
        if allow_pickle:
            return EXPORT
        raise RunFolderError(
            f"{run_dir / MODEL_WEIGHTS} not found: this run only has {EXPORT}, which is refused. {PICKLE_WARNING} "
            f"Rerun with --trust-pickle to load it anyway, or retrain to get {MODEL_WEIGHTS} + {MODEL_JSON}.")
    missing = " and ".join(n for n in (MODEL_JSON, MODEL_WEIGHTS) if not (run_dir / n).is_file())
    raise RunFolderError(f"{run_dir} has no {missing}: it holds no trained weights; train again ({TRAIN_HINT})")


def newest_complete_run(out) -> Path | None:
    """Return the most recently completed run folder under `out`, or None."""
    out = Path(out)
    done = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink() and is_complete(p)] if out.is_dir() else []
    return max(done, key=lambda p: (p / COMPLETE).stat().st_mtime, default=None)


def read_config(run_dir) -> dict:
    """Return the run's config.json ({} when it has none); RunFolderError when it is unreadable."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunFolderError(f"cannot read {path}: {error}") from None


def mark_complete(run_dir, **facts) -> Path | None:
    """Write complete.json (the files present and `facts`), the last file of a finished training (rank 0 only)."""
    if not is_main_process() or run_dir is None:
        return None
    run_dir = Path(run_dir)
    files = sorted(p.name for p in run_dir.iterdir() if p.is_file() and not fileio.is_temporary(p.name))
    path = run_dir / COMPLETE
    write_json(path, {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files, **facts})
    return path

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
    from fastai.torch_core import rank_distrib   # here, so that reading a run folder does not import fastai
    return rank_distrib() == 0


def write_atomic(path: Path, text: str):
    """Write `text` to `path` atomically (rank 0 only)."""
    if is_main_process():
        fileio.write_atomic(path, text)


def write_json(path: Path, obj: dict):
    """Write `obj` as indented JSON, atomically (rank 0 only)."""
    if is_main_process():
        fileio.write_json(path, obj)


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
    write_atomic(Path(run_dir) / HISTORY, buf.getvalue())


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
    with fileio.atomic_path(Path(run_dir) / CURVES) as tmp:
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
