"""images/manifest.csv: one row per clip, written incrementally per shard and merged atomically.

Each conversion run appends its rows (flushed one by one, so a killed run keeps them) to
`manifest.parts/shard-K-of-N.csv.part`, renames it to `shard-K-of-N.csv` when its shard is done,
then merges every finished part present into `manifest.csv` (temporary name + rename). Shards run
on several machines therefore never write the same file; the last one to finish leaves the
complete manifest, and any later run (a resume is cheap) merges again.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable

from .fileio import output_error, publish, write_atomic
from .rows import LABELS, SPLITS

MANIFEST_FILE = "manifest.csv"
PARTS_DIR = "manifest.parts"
# the contract's columns, in order; then the columns this stage adds at the end
CONTRACT_COLUMNS = ("clip_id", "path", "label", "split", "system", "speaker", "condition", "duration",
                    "sample_rate", "channels", "status", "image")
EXTRA_COLUMNS = ("peak_dbfs",      # peak sample level of the rendered excerpt (mono, resampled), dBFS
                 "rms_dbfs",       # RMS level of the same excerpt, dBFS
                 "augmentation",   # transforms of an augmented variant ("" for original clips)
                 "subset",         # the key's evaluation subset (ASVspoof 2021: eval, progress, hidden_track)
                 "family",         # attack family (ASVspoof 2021 DF: vocoder type)
                 "leading_silence",   # seconds of silence before the speech, in the file as stored (spec2img.cues)
                 "trailing_silence",  # seconds of silence after it
                 "bandwidth")      # effective bandwidth of the file at its own sample rate, Hz (spec2img.cues)
COLUMNS = CONTRACT_COLUMNS + EXTRA_COLUMNS
STATUS_OK = "ok"
AUG_MARK = "__aug"                 # augmented variant k of clip X has clip_id X__aug<k>


def skipped_status(reason: str) -> str:
    """Return the status text of a clip that could not be converted."""
    return f"skipped: {reason}"


def part_name(shard: int, n_shards: int) -> str:
    """Return the file name of shard K of N's manifest part."""
    return f"shard-{shard}-of-{n_shards}.csv"


def read_rows(path: Path) -> list[dict]:
    """Return the rows of a manifest file; a last line cut short by a killed writer is ignored."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("clip_id") and None not in row.values() and None not in row:
            rows.append({col: row.get(col, "") for col in COLUMNS})
    return rows


def previous_rows(images: Path) -> dict[str, dict]:
    """Return {clip_id: row} from the manifest and every part (finished or cut short) in `images`,
    the most recently modified file winning; used to resume without decoding audio again."""
    images = Path(images)
    sources = [images / MANIFEST_FILE]
    parts = images / PARTS_DIR
    if parts.is_dir():
        sources += [p for p in parts.iterdir() if p.name.endswith((".csv", ".csv.part"))]
    found = []
    for path in sources:
        try:
            found.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue
    rows: dict[str, dict] = {}
    for _, path in sorted(found):
        try:
            for row in read_rows(path):
                rows[row["clip_id"]] = row
        except OSError:
            continue
    return rows


class PartWriter:
    """Appends manifest rows to `manifest.parts/<name>.part`, flushing each; `finish()` renames it."""

    def __init__(self, images: Path, shard: int, n_shards: int):
        folder = Path(images) / PARTS_DIR
        self.path = folder / part_name(shard, n_shards)
        self.partial = self.path.with_name(self.path.name + ".part")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.partial, "w", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="ignore")
            self._writer.writeheader()
            self._file.flush()
        except OSError as error:
            raise output_error(error, self.partial) from None

    def write(self, rows: Iterable[dict]) -> None:
        """Append and flush `rows`; fileio.OutputWriteError naming the part when the disk refuses them."""
        try:
            for row in rows:
                self._writer.writerow(row)
            self._file.flush()
        except OSError as error:
            raise output_error(error, self.partial) from None

    def finish(self) -> Path:
        """Close and atomically rename the part to its final name; return that path."""
        try:
            self._file.close()
            return publish(self.partial, self.path)
        except OSError as error:
            raise output_error(error, self.path) from None

    def close(self) -> None:
        """Close without finishing (an interrupted run leaves the .part for the next run to read; rows that
        a full disk refused are simply converted again)."""
        if not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass


def sort_key(row: dict) -> tuple:
    """Order rows by split, label, clip id, with augmented variants right after their original."""
    base, _, k = row["clip_id"].partition(AUG_MARK)
    split = SPLITS.index(row["split"]) if row["split"] in SPLITS else len(SPLITS)
    label = LABELS.index(row["label"]) if row["label"] in LABELS else len(LABELS)
    return (split, label, base, int(k) if k.isdigit() else -1, row["clip_id"])


def write_manifest(path: Path, rows: Iterable[dict]) -> Path:
    """Write `rows` (sorted) to `path` atomically (spec2img.fileio); return `path`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=sort_key))
    return write_atomic(path, buffer.getvalue())


def merge_parts(images: Path, expected_ids: set[str] | None = None) -> tuple[Path, set[str]]:
    """Merge every finished part in `images/manifest.parts/` into `images/manifest.csv`; return
    (path, clip ids written). Rows of the same clip: the newest part wins; with `expected_ids`, rows
    of clips that are not in the current dataset are dropped. Merges again if a part appeared
    meanwhile (another shard finishing at the same moment)."""
    images = Path(images)
    folder = images / PARTS_DIR
    while True:
        parts = sorted(folder.glob("shard-*-of-*.csv"), key=lambda p: p.stat().st_mtime) \
            if folder.is_dir() else []
        seen = [(p.name, p.stat().st_mtime_ns) for p in parts]
        rows: dict[str, dict] = {}
        for part in parts:
            for row in read_rows(part):
                rows[row["clip_id"]] = row
        if expected_ids is not None:
            rows = {k: v for k, v in rows.items() if k in expected_ids}
        path = write_manifest(images / MANIFEST_FILE, rows.values())
        now = sorted(folder.glob("shard-*-of-*.csv"), key=lambda p: p.stat().st_mtime) \
            if folder.is_dir() else []
        if [(p.name, p.stat().st_mtime_ns) for p in now] == seen:
            return path, set(rows)
