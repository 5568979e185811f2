"""Helpers of the fault-injection tests: commands in subprocesses, signals at chosen moments, worker
processes, and a small disk that can be filled or made read-only.

The disk is a real tmpfs when this process may mount one (root with CAP_SYS_ADMIN, as on a developer
machine or a privileged CI runner); elsewhere (most CI containers) it is emulated inside the subprocesses
by tests/faultinject/sitecustomize.py, which makes Python's writes under the folder fail with ENOSPC or
EROFS exactly as the kernel would. Either way the command under test sees the same OSError.
FAULT_EMULATE_DISK=1 in the environment of pytest forces the emulation.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULTINJECT = Path(__file__).resolve().parent / "faultinject"
SMALL_SPEC = ["--duration", "1", "--n-mels", "32", "--hop-length", "320"]   # 32 x 50 images


def python_env(extra: dict | None = None, pythonpath: list[Path] = ()) -> dict:
    """Return the environment of a command under test: this repository importable, one math thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULT_DISK_")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [*pythonpath, REPO])
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.update(extra or {})
    return env


def module_command(module: str, *args) -> list[str]:
    """Return the command line `python -m module args...` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


class Command:
    """A command running in the background, its output going to files (no pipe can fill up and block it)."""

    def __init__(self, argv: list[str], folder: Path, env: dict, name: str = "cmd"):
        folder.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = folder / f"{name}.out", folder / f"{name}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_until(self, condition, timeout: float = 120.0, what: str = "the condition") -> None:
        """Poll `condition()` every 20 ms until it holds; fail if the command ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"the command ended (exit {self.proc.returncode}) before {what}:\n"
                                     f"{self.stdout}\n{self.stderr}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"{what} did not happen within {timeout} s:\n{self.stdout}\n{self.stderr}")
            time.sleep(0.02)

    def send(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def finish(self, timeout: float = 300.0) -> int:
        """Wait for the command to end; return its exit status (negative: killed by that signal)."""
        return self.proc.wait(timeout)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


def run(argv: list[str], env: dict, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """Run a command to its end; return the completed process with text stdout and stderr."""
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_no_traceback(*texts: str) -> None:
    """Fail when a Python traceback (or a worker's BrokenPipe report) reached the user."""
    for text in texts:
        assert "Traceback (most recent call last)" not in text and "BrokenPipeError" not in text, text


# ---------------------------------------------------------------- processes

def children_of(pid: int) -> list[int]:
    """Return the pids of the live processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    """Return True while `pid` exists and is not a zombie (dead, waiting to be collected)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Return the pids still running after `timeout` seconds (empty when all have ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(map(is_running, pids)):
        time.sleep(0.05)
    return [p for p in pids if is_running(p)]


def count_files(folder: Path, pattern: str) -> int:
    """Return how many files under `folder` match `pattern` (recursively)."""
    return sum(1 for _ in Path(folder).rglob(pattern)) if Path(folder).is_dir() else 0


# ---------------------------------------------------------------- a small disk

def can_mount_tmpfs(probe: Path) -> bool:
    """Return True when this process can mount (and unmount) a tmpfs at `probe` (never when the environment
    sets FAULT_EMULATE_DISK=1, which runs the disk tests as CI containers do)."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux") or os.environ.get("FAULT_EMULATE_DISK") == "1":
        return False
    probe.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
    if done.returncode != 0:
        return False
    subprocess.run(["umount", str(probe)], capture_output=True)
    return True


class SmallDisk:
    """A folder on a disk of `size` bytes: `fill(free)` leaves `free` bytes, `free_space()` deletes the filler,
    `set_read_only(flag)`; `env` is what commands writing there need (the emulation's settings, if any)."""

    def __init__(self, path: Path, size: int, real: bool):
        self.path, self.size, self.real = Path(path), size, real
        self.filler = self.path / "filler.bin"
        self.read_only = False
        self.path.mkdir(parents=True, exist_ok=True)
        if real:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.path)], check=True)

    @property
    def kind(self) -> str:
        return "tmpfs" if self.real else "emulated"

    def env(self, extra: dict | None = None) -> dict:
        if self.real:
            return python_env(extra)
        disk = {"FAULT_DISK_DIR": str(self.path), "FAULT_DISK_BYTES": str(self.size)}
        if self.read_only:
            disk["FAULT_DISK_READONLY"] = "1"
        return python_env({**disk, **(extra or {})}, pythonpath=[FAULTINJECT])

    def available(self) -> int:
        if self.real:
            stats = os.statvfs(self.path)
            return stats.f_bavail * stats.f_frsize
        used = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return self.size - used

    def footprint(self, sizes) -> int:
        """Return the space files of these byte sizes take on this disk (tmpfs allocates whole pages)."""
        page = 4096 if self.real else 1
        return sum(-(-int(size) // page) * page for size in sizes)

    def fill(self, free: int) -> None:
        """Write a filler file so that about `free` bytes stay available."""
        self.free_space()
        with open(self.filler, "wb") as f:
            f.write(b"\0" * max(0, self.available() - free))

    def free_space(self) -> None:
        self.filler.unlink(missing_ok=True)

    def set_read_only(self, flag: bool) -> None:
        self.read_only = flag
        if self.real:
            subprocess.run(["mount", "-o", f"remount,{'ro' if flag else 'rw'}", str(self.path)], check=True)

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
