"""classify.predict's rows written as they finish, so an interrupted run keeps what it scored.

Order: input order. A row is written as soon as it and every row before it are finished (one model batch
often finishes several at once).

With `--out FILE`, each finished row is appended to `FILE.<key>.part` and flushed: CSV rows for a CSV
output, JSON Lines (one object per row, full precision) for a JSON output. A killed run leaves that file,
readable as it is (`pandas.read_csv` / `read_json(lines=True)`). `<key>` is a digest of what the scores
depend on (the run's model file, threshold, calibration, prior, hop, spectrogram settings), so rerunning
the same command finds the part, keeps its `ok` rows without reading those files again (files that failed
are tried again; their new row is appended, and the last row of a file counts), and appends the rest. A run
with other settings leaves the part alone and starts its own. At the end FILE is written atomically (every
row once, in input order) and the part is removed. The part is locked while a run writes to it, so two
runs never interleave their rows in one file.

Without `--out`: the table and `--format csv` are printed row by row; `--format json` (a document) at the end.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable, Iterable, TextIO

from spec2img.fileio import output_error, write_atomic

PART_SUFFIX = ".part"


class PartLockedError(Exception):
    """Another run is writing the same part file; str() names it."""


def part_path(out: Path, key: str) -> Path:
    """Return the part file of output `out` for settings digest `key`."""
    out = Path(out)
    return out.with_name(f"{out.name}.{key}{PART_SUFFIX}")


def other_parts(out: Path, key: str) -> list[Path]:
    """Return the part files of `out` left by runs with other settings."""
    out = Path(out)
    mine = part_path(out, key)
    return sorted(p for p in out.parent.glob(f"{out.name}.*{PART_SUFFIX}") if p != mine)


def parse_row(row_type, values: dict):
    """Return a `row_type` dataclass from CSV strings or JSON values: "" is None for optional numbers."""
    kwargs = {}
    for f in fields(row_type):
        if f.name not in values:
            continue
        value, kind = values[f.name], str(f.type)
        if isinstance(value, str) and kind != "str":
            if value == "":
                value = None if "None" in kind else f.default
            elif kind.startswith("int"):
                value = int(value)
            elif kind.startswith("float"):
                value = float(value)
        kwargs[f.name] = value
    return row_type(**kwargs)


def read_part(path: Path, row_type, fmt: str) -> list:
    """Return the rows of a part file (`fmt` "json": JSON Lines, else CSV); a torn last line (a write cut
    short) is left out."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    rows = []
    records = (json.loads(line) for line in lines if line.strip()) if fmt == "json" else csv.DictReader(lines)
    while True:
        try:
            values = next(records)
        except StopIteration:
            return rows
        except ValueError:          # an unreadable JSON line
            continue
        try:
            rows.append(parse_row(row_type, values))
        except (ValueError, TypeError):
            continue


class RowStream:
    """Writes rows as they finish: to the part file of `out` (when given) and to `stdout` (`show`: "table",
    "csv" or "" for nothing); `finish` publishes `out`."""

    def __init__(self, out: Path | None, fmt: str, key: str, cells: Callable[[object], dict], columns: list[str],
                 show: str = "table", table_header: str = "", table_line: Callable[[object], str] | None = None,
                 stdout: TextIO | None = None):
        self.out, self.fmt, self.key, self.cells, self.columns = out, fmt, key, cells, columns
        self.show, self.table_header, self.table_line = show, table_header, table_line
        self.stdout = stdout or sys.stdout
        self.part = part_path(out, key) if out is not None else None
        self._file = None
        self._kept: set[int] = set()       # id() of resumed rows: already in the part
        self._shown = False

    def open(self, row_type) -> dict[str, object]:
        """Lock and open the part file (when writing to a file); return {path: row} of the `ok` rows it
        already holds, from an interrupted run with the same settings. PartLockedError when another run
        writes it."""
        if self.part is None:
            return {}
        try:
            return self._open(row_type)
        except OSError as error:                   # cannot create or append to the part: OutputWriteError
            raise output_error(error, self.part) from None

    def _open(self, row_type) -> dict[str, object]:
        self._file = _open_locked(self.part)
        if self._file.tell() == 0:
            if self.fmt != "json":
                self._file.write(_csv_text([], self.columns, header=True))
            self._file.flush()
            return {}
        last = {r.path: r for r in read_part(self.part, row_type, self.fmt)}
        self._file.write(_complete_last_line(self.part))
        self._file.flush()
        return {path: r for path, r in last.items() if r.status == "ok"}

    def keep(self, row) -> None:
        """Mark a resumed row: shown again, not written to the part again."""
        self._kept.add(id(row))

    def write(self, row) -> None:
        """Append one finished row to the part (flushed) and show it."""
        if self._file is not None and id(row) not in self._kept:
            try:
                self._file.write(self._encode(row))
                self._file.flush()
            except OSError as error:               # disk full, the folder gone read-only: OutputWriteError
                raise output_error(error, self.part) from None
        self._show_header()
        if self.show == "csv":
            self.stdout.write(_csv_text([self.cells(row)], self.columns, header=False))
        elif self.show == "table" and self.table_line is not None:
            self.stdout.write(self.table_line(row) + "\n")
        self.stdout.flush()

    def _show_header(self) -> None:
        if not self._shown:
            self._shown = True
            if self.show == "csv":
                self.stdout.write(_csv_text([], self.columns, header=True))
            elif self.show == "table" and self.table_header:
                self.stdout.write(self.table_header + "\n")

    def _encode(self, row) -> str:
        if self.fmt == "json":
            return json.dumps(asdict(row)) + "\n"
        return _csv_text([self.cells(row)], self.columns, header=False)

    def finish(self, text: str) -> None:
        """Write `text` (every row, in input order) to `out` atomically and remove the part."""
        self._show_header()
        self.stdout.flush()
        if self.out is not None:
            write_atomic(self.out, text)
            self.close()
            self.part.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the part (it stays on disk: an interrupted run's finished rows) and release its lock."""
        if self._file is not None and not self._file.closed:
            self._file.close()


def _csv_text(rows: Iterable[dict], columns: list[str], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _complete_last_line(path: Path) -> str:
    """Return "\\n" when the part ends in a torn line (a write cut short), so the next row starts a line."""
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return "" if f.read(1) == b"\n" else "\n"


def _open_locked(path: Path):
    """Open `path` for appending, holding an exclusive lock (released when the file is closed or the
    process dies); PartLockedError when another run holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a", encoding="utf-8", newline="")
    try:
        import fcntl
    except ImportError:            # no flock (Windows): unlocked
        return f
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise PartLockedError(f"{path} is being written by another classify.predict run with the same --out and "
                              f"settings: wait for it to finish, or choose another --out") from None
    return f
