"""Worker processes that end with their parent, and the start method every process pool uses.

A pool's workers are separate processes: when the parent is killed (`kill -9`, the OOM killer, a cluster
job's time limit) nothing stops them, and they go on converting and writing files for a while, then print
BrokenPipe tracebacks. `end_with_parent`, called first in every pool's initializer, prevents that: on Linux
the kernel kills the worker the moment its parent dies (prctl PR_SET_PDEATHSIG, SIGKILL); elsewhere, or
where prctl is refused, a daemon thread polls the parent's pid every PARENT_POLL_SECONDS and exits the
worker when it changes. A killed worker leaves at most a temporary file (spec2img.fileio), which the next
run removes.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time

PARENT_POLL_SECONDS = 0.5   # how often the portable fallback checks that the parent still lives
_PR_SET_PDEATHSIG = 1       # linux/prctl.h


def pool_context(torch_free: bool = False) -> mp.context.BaseContext:
    """Fork on Linux (workers inherit the imported libraries: fast start); spawn elsewhere or when torch is
    loaded in this process (forking its thread pools is unsafe), unless `torch_free`: workers that never call
    torch (numpy, soundfile, soxr, librosa only: no OpenMP, no CUDA) are forked even then, as PyTorch's own
    DataLoader forks its workers."""
    if sys.platform.startswith("linux") and (torch_free or "torch" not in sys.modules):
        return mp.get_context("fork")
    return mp.get_context("spawn")


def end_with_parent(parent_pid: int) -> str:
    """Make this worker process end when process `parent_pid` (its parent) dies; return how: "pdeathsig"
    (Linux kernel) or "watch" (a polling thread). Exits at once if the parent is already gone."""
    how = "watch"
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                how = "pdeathsig"
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:    # the parent died before the request above was in place
        os._exit(1)
    if how == "watch":
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-parent", daemon=True).start()
    return how


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)                       # no cleanup: the parent that would collect results is gone
