"""Test-only fault injection: a full or read-only disk for one folder, emulated in a subprocess.

Used by tests/test_faults*.py where a real small file system cannot be mounted (no root, no user
namespaces: most CI containers). The tests put this folder on the subprocess's PYTHONPATH, so Python
imports this module at start-up; it does nothing unless FAULT_DISK_DIR is set:
  FAULT_DISK_DIR=<folder>     the emulated disk: files under it (at any depth) are on it
  FAULT_DISK_BYTES=<n>        its size: a write that would take the files under it past n bytes fails with
                              ENOSPC "No space left on device", as on a full disk (a filler file under the
                              folder takes the space; deleting it frees the disk, as it would for real)
  FAULT_DISK_READONLY=1       every write, mkdir, rename, link or delete under it fails with EROFS
Only Python-level file operations are intercepted (open/io.open, os.mkdir/replace/rename/symlink/unlink/
rmdir); libraries writing from C (torch.save, safetensors) bypass it, so the first Python write fails.
"""
import builtins
import errno
import io
import os

_DIR = os.environ.get("FAULT_DISK_DIR")


def _install(root: str) -> None:
    root = os.path.realpath(root)
    quota = int(os.environ.get("FAULT_DISK_BYTES", "0") or 0)
    readonly = os.environ.get("FAULT_DISK_READONLY") == "1"
    real_open = io.open

    def on_disk(path) -> bool:
        try:
            full = os.path.realpath(os.fsdecode(os.fspath(path)))
        except TypeError:                     # a file descriptor
            return False
        return full == root or full.startswith(root + os.sep)

    def refuse(path, code):
        raise OSError(code, os.strerror(code), os.fsdecode(os.fspath(path)))

    def used() -> int:
        total = 0
        for folder, _, names in os.walk(root):
            for name in names:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
        return total

    class QuotaFileIO(io.FileIO):
        def write(self, data):
            if quota and used() + len(data) > quota:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    def guarded_open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True,
                     opener=None):
        writing = any(c in mode for c in "wax+")
        if not (writing and isinstance(file, (str, bytes, os.PathLike)) and on_disk(file)):
            return real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
        if readonly:
            refuse(file, errno.EROFS)
        raw = QuotaFileIO(file, mode.replace("b", "").replace("t", ""), closefd=closefd, opener=opener)
        if buffering == 0:
            return raw
        size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
        buffered = (io.BufferedRandom if "+" in mode else io.BufferedWriter)(raw, buffer_size=size)
        if "b" in mode:
            return buffered
        text = io.TextIOWrapper(buffered, encoding, errors, newline, line_buffering=buffering == 1)
        text.mode = mode
        return text

    builtins.open = io.open = guarded_open

    if readonly:
        def refusing(real, n_paths=1):
            def call(*args, **kwargs):
                for path in args[:n_paths]:
                    if on_disk(path):
                        refuse(path, errno.EROFS)
                return real(*args, **kwargs)
            return call
        for name, n_paths in (("mkdir", 1), ("rmdir", 1), ("unlink", 1), ("remove", 1), ("replace", 2),
                              ("rename", 2), ("symlink", 2), ("link", 2)):
            setattr(os, name, refusing(getattr(os, name), n_paths))


if _DIR:
    _install(_DIR)
