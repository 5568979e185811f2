"""Writing files so that a reader never sees half of one: the project's one temp-file-and-rename.

Every file the project writes (PNGs, manifests, run files, scores, plots, reports, weights) is first
written under a temporary name in its own folder, `.<name>~<host>-<pid>.part` (hidden, never matching a
`*.png` or `*.csv` pattern, unique per process even across machines sharing a folder), then moved onto its
final name in one step by `publish` (`os.replace`: atomic within one file system). A killed writer leaves
at most a temporary file; `remove_stale_parts` deletes those on the next run.
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TEMP_SUFFIX = ".part"
_OWNER_MARK = "~"      # between the final name and the writer's host-pid (clip ids never hold "~")


def temporary_path(path: Path) -> Path:
    """Return the temporary name this process writes `path` under before publishing it."""
    path = Path(path)
    return path.with_name(f".{path.name}{_OWNER_MARK}{socket.gethostname()}-{os.getpid()}{TEMP_SUFFIX}")


def is_temporary(name: str) -> bool:
    """Return True for a file name made by `temporary_path`."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and _OWNER_MARK in name


def final_name(temporary_name: str) -> str:
    """Return the name a temporary file was to be published as ('.a.png~host-1.part' -> 'a.png')."""
    return temporary_name[1:].rsplit(_OWNER_MARK, 1)[0]


def publish(temporary: Path, path: Path) -> Path:
    """Move a finished temporary file (or symlink) onto `path` in one step; return `path`."""
    os.replace(temporary, path)
    return Path(path)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (parent folders created) to write to; when the block ends
    normally the file is published as `path`, when it raises the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def write_atomic(path: Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write `data` (text or bytes) to `path` atomically; return `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)
    return Path(path)


def write_json(path: Path, obj) -> Path:
    """Write `obj` as indented JSON (non-JSON values as their str) atomically; return `path`."""
    return write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def stale_parts(folder: Path, recursive: bool = False) -> list[Path]:
    """Return the temporary files under `folder` (left by killed writers, or being written right now)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(".*" + TEMP_SUFFIX) if recursive else folder.glob(".*" + TEMP_SUFFIX)
    return sorted(p for p in found if is_temporary(p.name))


def remove_stale_parts(folder: Path, recursive: bool = False) -> int:
    """Delete the temporary files under `folder`; return how many. Only call it where no other process
    is writing (e.g. under a lock, or on a folder this run owns)."""
    removed = 0
    for path in stale_parts(folder, recursive):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
