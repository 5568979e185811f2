"""Publishing an evaluation's outputs as one set: all of them, or none.

Layout of a run folder after `classify.evaluate`:
    RUN/evaluation -> evaluations/test-20250101-120000-4242     symlink to the current complete set
    RUN/evaluations/test-20250101-120000-4242/                   thresholds.json, calibration.json, metrics.json,
                                                                 report.html, scores-*.csv/.txt/.tsv, plots
Every file of a new evaluation is written into a fresh folder; only when the last one is complete is the
`evaluation` link replaced, in one rename (spec2img.fileio.atomic_path, os.replace). A process killed at any
instant therefore leaves the link on the previous complete set or on the new complete set, never on a mix:
classify.predict cannot pair a new thresholds.json with an old report. Readers resolve the link once
(classify.runfolder.evaluation_dir) and read every file from the folder it named. An interrupted set is an
orphan folder that the next evaluation deletes; after a swap the folders kept are the new set, the one it
replaced (a reader may still be reading it), the newest set of every other split, and the folders of other
evaluations still running (their process is alive).
"""
from __future__ import annotations

import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from spec2img import fileio

from .runfolder import EVALUATION_LINK, EVALUATIONS_DIR, REPORT_FILE, evaluation_dir

_SET_NAME = re.compile(r"^(?P<split>.+)-\d{8}-\d{6}-(?P<pid>\d+)(-\d+)?$")   # <split>-<yyyymmdd-hhmmss>-<pid>[-k]


def new_set_folder(run_dir: Path, split: str) -> Path:
    """Create and return a fresh, empty set folder RUN/evaluations/<split>-<yyyymmdd-hhmmss>-<pid>[-k]."""
    parent = Path(run_dir) / EVALUATIONS_DIR
    parent.mkdir(parents=True, exist_ok=True)
    base = f"{split}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for k in range(1000):
        folder = parent / (base if k == 0 else f"{base}-{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"no free evaluation folder name under {parent}")


def publish_set(run_dir: Path, folder: Path) -> Path:
    """Point RUN/evaluation at the complete set `folder` in one step, then delete superseded sets; return `folder`."""
    run_dir = Path(run_dir)
    previous = evaluation_dir(run_dir) if (run_dir / EVALUATION_LINK).is_symlink() else None
    with fileio.atomic_path(run_dir / EVALUATION_LINK) as tmp:
        tmp.symlink_to(os.path.relpath(Path(folder).resolve(), run_dir.resolve()))
    prune_sets(run_dir, keep={Path(folder).resolve()} | ({previous.resolve()} if previous else set()))
    return Path(folder)


def prune_sets(run_dir: Path, keep: set[Path]) -> list[Path]:
    """Delete the set folders other than `keep` and the newest complete set of each split that `keep` lacks
    (orphans of killed evaluations included); return what was deleted."""
    parent = Path(run_dir) / EVALUATIONS_DIR
    sets = sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    keep = {Path(p).resolve() for p in keep}
    kept_splits = {_split_of(p) for p in keep}
    newest: dict[str, Path] = {}
    for p in sets:                           # names sort by split, then time: the last one seen is the newest
        split = _split_of(p)
        if split and split not in kept_splits and (p / REPORT_FILE).is_file():   # the report is written last
            newest[split] = p.resolve()
    survivors = keep | set(newest.values())
    removed = [p for p in sets if p.resolve() not in survivors and not _writer_alive(p)]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def _split_of(folder: Path) -> str:
    m = _SET_NAME.match(Path(folder).name)
    return m["split"] if m else ""


def _writer_alive(folder: Path) -> bool:
    """Return True when another process that is still running made the set folder (it may still be writing it,
    or about to publish it: a concurrent evaluation of the same run)."""
    m = _SET_NAME.match(Path(folder).name)
    if not m or int(m["pid"]) == os.getpid():
        return False
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:                   # someone else's live process
        return True
    return True


@contextmanager
def output_set(run_dir: Path, split: str) -> Iterator[Path]:
    """Yield a fresh set folder to write an evaluation's files into; publish it when the block ends normally,
    delete it when the block raises."""
    folder = new_set_folder(run_dir, split)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    publish_set(run_dir, folder)
