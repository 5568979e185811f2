"""Writing files so that a reader never sees half of one: the project's one temp-file-and-rename.

Every file the project writes (PNGs, manifests, run files, scores, plots, reports, weights) is first
written under a temporary name in its own folder, `.<name>~<host>-<pid>.part` (hidden, never matching a
`*.png` or `*.csv` pattern, unique per process even across machines sharing a folder), then moved onto its
final name in one step by `publish` (`os.replace`: atomic within one file system). A killed writer leaves
at most a temporary file; `remove_stale_parts` deletes those on the next run.

When a write fails (a full disk, a read-only file system, no permission) the temporary file is removed and
`OutputWriteError` is raised naming the final file and the cause; every command stops on it with exit status
`EXIT_WRITE_FAILED`, after saying what it had written, and a rerun once the cause is fixed completes the work.
"""
from __future__ import annotations

import errno
import json
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TEMP_SUFFIX = ".part"
_OWNER_MARK = "~"      # between the final name and the writer's host-pid (clip ids never hold "~")


EXIT_WRITE_FAILED = 4  # exit status of every command that stopped because an output could not be written
_ADVICE = {  # what to fix, by errno; each command adds what a rerun then does
    errno.ENOSPC: "free space on that disk (or write elsewhere)",
    errno.EDQUOT: "free space within your disk quota (or write elsewhere)",
    errno.EROFS: "the file system is read-only: remount it writable, or write elsewhere",
    errno.EACCES: "you have no permission to write there: fix the folder's permissions, or write elsewhere",
    errno.EPERM: "you have no permission to write there: fix the folder's permissions, or write elsewhere",
    errno.EFBIG: "the file is larger than this file system (or `ulimit -f`) allows: write elsewhere",
    errno.EEXIST: "a file stands where a folder is needed: remove it, or write elsewhere",
    errno.ENOTDIR: "a file stands where a folder is needed: remove it, or write elsewhere",
}


class OutputWriteError(OSError):
    """An output file or folder could not be written (disk full, read-only, no permission). str() names the
    file and the cause; `advice` says what to do. Every command stops on it with EXIT_WRITE_FAILED."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"

    @property
    def advice(self) -> str:
        return _ADVICE.get(self.errno, "fix the cause")


def output_error(error: OSError, path: Path | str | None = None) -> OutputWriteError:
    """Return `error` as an OutputWriteError naming `path` (default: the file the error names)."""
    if isinstance(error, OutputWriteError) and path is None:
        return error
    strerror = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
    name = path if path is not None else error.filename
    return OutputWriteError(error.errno or 0, strerror, "an output file" if name is None else str(name))


def check_writable_folder(folder: Path) -> Path:
    """Return `folder` when it (or, if missing, the nearest folder above it, where it would be created) can
    be written; else raise OutputWriteError naming it (read-only file system, no permission, a file in the
    way), so that a command fails before its long work rather than at the end. Creates nothing."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        code = errno.EEXIST if existing == folder else errno.ENOTDIR
        raise OutputWriteError(code, f"{existing} is a file, not a folder", str(folder))
    if not os.access(existing, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        code = errno.EROFS if read_only else errno.EACCES
        raise OutputWriteError(code, os.strerror(code), str(existing))
    return folder


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
    normally the file is published as `path`, when it raises the temporary file is removed (an OSError
    becomes OutputWriteError naming `path`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(error, error.filename or path.parent) from None
    tmp = temporary_path(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException as error:
        refused = None if isinstance(error, (OSError, KeyboardInterrupt, SystemExit)) else _disk_refusal(error, tmp)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(error, OSError) and not isinstance(error, OutputWriteError):
            raise output_error(error, path) from None
        if refused is not None:
            raise OutputWriteError(refused, os.strerror(refused), str(path)) from error
        raise


LOW_SPACE_BYTES = 2**20   # a writer failing with less free space than this is taken to have hit a full disk


def _disk_refusal(error: BaseException, tmp: Path) -> int | None:
    """Return the errno behind a failed write that a library reported without an OSError (safetensors:
    "... (os error 28)"; torch.save: "unexpected pos ..."), from its message or the state of the file system
    (read-only, or nearly full while the temporary file is still there); None when the disk is not the cause."""
    found = re.search(r"os error (\d+)", str(error))
    if found:
        return int(found.group(1))
    try:
        stats = os.statvfs(tmp.parent)
    except (OSError, AttributeError):     # no statvfs (Windows)
        return None
    if stats.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if stats.f_bavail * stats.f_frsize < LOW_SPACE_BYTES:
        return errno.ENOSPC
    return None


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
