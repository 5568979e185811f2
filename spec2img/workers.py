"""Worker processes that end with their parent, the start method every process pool uses, and OrderedPool.

A pool's workers are separate processes: when the parent is killed (`kill -9`, the OOM killer, a cluster
job's time limit) nothing stops them, and they go on converting and writing files for a while, then print
BrokenPipe tracebacks. `end_with_parent`, called first in every pool's initializer, prevents that: on Linux
the kernel kills the worker the moment its parent dies (prctl PR_SET_PDEATHSIG, SIGKILL); elsewhere, or
where prctl is refused, a daemon thread polls the parent's pid every PARENT_POLL_SECONDS and exits the
worker when it changes. A killed worker leaves at most a temporary file (spec2img.fileio), which the next
run removes.

`OrderedPool` is the pool conversion and prediction's front end run their workers in (spec2img.convert,
classify.windows): the caller collects each task's result when it wants it, in any order, with no helper
threads here, bulk results (window images) come back through shared memory, and a worker that dies fails only
the task it was running (WorkerDied) and is replaced; `in_order` and `results_or_split` turn that into "every
item gets its result, and the item a worker dies on gets an error result".
"""
from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterator

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


# ---------------------------------------------------------------- a pool whose results are collected in order

class WorkerDied(RuntimeError):
    """The worker process holding a task ended before returning its result (killed, or crashed in a library)."""


@dataclass
class _Worker:
    process: Any                                        # a multiprocessing Process
    connection: Connection                              # this process's end of the worker's duplex pipe
    queued: deque = field(default_factory=deque)        # ids of the tasks sent to it and not yet answered, oldest first


class OrderedPool:
    """Worker processes running `fn(arg, out)` tasks whose results the caller collects one by one with
    `submit(...).get()`, in whatever order it needs (classify.windows: submission order).

    Why not multiprocessing.Pool: it moves every result through helper threads and one shared pipe, and a
    worker sending a large result waits until the parent's result thread has read it. For prediction's front end
    on 2 cores that kept it at ~75 % of linear scaling; this pool measured ~85 %, as much as two independent
    processes reach there (benchmarks.predict_throughput). Here each worker has its own pipe and at most a few
    queued tasks, and nothing is read until the caller asks.

    Where workers are forked, each task gets a slot of `slot_bytes` in shared memory (`slots` of them, reused as
    results are collected; none free: `out` is None): `fn` may write its bulk into `out` (a writable memoryview of
    the slot) and return a small description of it, and `collect(result, out)` in this process copies it out
    before the slot is reused. So a worker never waits for this process, busy with a model batch, to read
    megabytes of images. Spawned workers (not Linux) get `out` None and send everything through their pipe.

    A worker that dies fails the task it was running with WorkerDied, naming how it ended; a new worker takes its
    place and runs the tasks that were waiting behind that one. Closing the pool (or leaving its `with` block)
    stops every worker."""

    def __init__(self, workers: int, context: mp.context.BaseContext, initializer: Callable | None = None,
                 initargs: tuple = (), slots: int = 0, slot_bytes: int = 0):
        self._context, self._initializer, self._initargs = context, initializer, initargs
        shared = slots > 0 and slot_bytes > 0 and context.get_start_method() == "fork"
        self._slot_bytes = slot_bytes if shared else 0
        self._memory = mmap.mmap(-1, slots * slot_bytes) if shared else None   # anonymous, shared with forks
        self._free = list(range(slots)) if shared else []   # reused last-in first-out: few pages ever touched
        self._slot: dict[int, int] = {}                     # task id -> its slot (-1: none)
        self._sent: dict[int, tuple] = {}                   # task id -> (fn, arg) until answered (to send again)
        self._answers: dict[int, tuple[bool, Any]] = {}     # task id -> (succeeded, result or exception)
        self._next_id = 0
        self._workers: list[_Worker] = []
        for _ in range(workers):
            self._workers.append(self._start())

    def _start(self) -> _Worker:
        mine, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, daemon=True, name="pool-worker",
                                        args=(theirs, self._memory, self._slot_bytes, self._initializer,
                                              self._initargs))
        process.start()
        theirs.close()                                  # only the worker holds its end: its death reads as EOF here
        return _Worker(process, mine)

    def submit(self, fn: Callable[[Any, memoryview | None], Any], arg: Any,
               collect: Callable[[Any, memoryview | None], Any] | None = None) -> "PendingTask":
        """Queue `fn(arg, out)` on the least busy worker; `collect(result, out)` runs here when it is collected."""
        task_id, self._next_id = self._next_id, self._next_id + 1
        self._slot[task_id] = self._free.pop() if self._free else -1
        self._sent[task_id] = (fn, arg)
        self._send(min(self._workers, key=lambda w: len(w.queued)), task_id)
        return PendingTask(self, task_id, collect)

    def _send(self, worker: _Worker, task_id: int) -> None:
        worker.queued.append(task_id)
        try:
            worker.connection.send((task_id, self._slot[task_id], *self._sent[task_id]))
        except OSError:                                 # the worker is gone: found (and replaced) on reading
            pass

    def _collect(self, task_id: int, collect: Callable | None) -> Any:
        while task_id not in self._answers:
            self._read_answers()
        succeeded, value = self._answers.pop(task_id)
        slot = self._slot.pop(task_id)
        try:
            if not succeeded:
                raise value
            if collect is None:
                return value
            with self._view(slot) as out:
                return collect(value, out)
        finally:
            if slot >= 0:
                self._free.append(slot)

    def _view(self, slot: int):
        if slot < 0:
            return nullcontext(None)
        return memoryview(self._memory)[slot * self._slot_bytes:(slot + 1) * self._slot_bytes]

    def _read_answers(self) -> None:
        """Wait for at least one answer (or a worker's death) and file what arrived."""
        busy = {w.connection: w for w in self._workers if w.queued}
        if not busy:
            raise RuntimeError("OrderedPool: no task is pending")
        for connection in wait(list(busy)):
            worker = busy[connection]
            try:
                task_id, succeeded, value = connection.recv()
            except (EOFError, OSError):
                self._replace(worker)
                continue
            worker.queued.remove(task_id)
            del self._sent[task_id]
            self._answers[task_id] = (succeeded, value)

    def _replace(self, worker: _Worker) -> None:
        """Fail the task the dead worker was running with WorkerDied, start another worker in its place and
        send it the tasks that were waiting behind that one (a worker runs its tasks in the order received,
        and every answer it sent before dying has been read)."""
        worker.process.join(5)
        running, *waiting = worker.queued
        self._answers[running] = (False, WorkerDied(describe_exit(worker.process.exitcode)))
        del self._sent[running]
        worker.connection.close()
        replacement = self._start()
        self._workers[self._workers.index(worker)] = replacement
        for task_id in waiting:
            self._send(replacement, task_id)

    def close(self) -> None:
        """Stop every worker (unfinished tasks are dropped) and release the shared memory."""
        for worker in self._workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self._workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        self._workers = []
        if self._memory is not None:
            try:
                self._memory.close()
            except BufferError:                         # a view is still held by a caller: freed with it
                pass

    def __enter__(self) -> "OrderedPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class PendingTask:
    """A submitted task; `get()` returns its (collected) result, raising what the task raised or WorkerDied."""
    pool: OrderedPool
    task_id: int
    collect: Callable | None = None

    def get(self) -> Any:
        return self.pool._collect(self.task_id, self.collect)


def describe_exit(exitcode: int | None) -> str:
    """Return how a process ended, for a message: "killed by SIGKILL", "exit code 3", "still running"."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _serve(connection: Connection, memory: mmap.mmap | None, slot_bytes: int, initializer: Callable | None,
           initargs: tuple) -> None:
    """A worker's loop: run each task received with its slot of shared memory, send back (id, ok, result)."""
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):                    # the pool is gone
            return
        task_id, slot, fn, arg = message
        out = memoryview(memory)[slot * slot_bytes:(slot + 1) * slot_bytes] if slot >= 0 and memory else None
        try:
            answer = (task_id, True, fn(arg, out))
        except Exception as error:                     # the caller's get() raises it
            answer = (task_id, False, error)
        try:
            connection.send(answer)
        except (EOFError, OSError):
            return
        except Exception as error:                     # a result or exception that cannot be pickled
            connection.send((task_id, False, RuntimeError(f"{type(error).__name__}: {error}")))


def in_order(submit: Callable[[Any], Callable[[], Any]], tasks: Iterator, in_flight: int) -> Iterator:
    """Yield the result of each task in order, with at most `in_flight` of them submitted ahead (`submit(task)`
    queues it and returns a function that waits for its result)."""
    pending = deque(submit(t) for t in islice(tasks, in_flight))
    while pending:
        result = pending.popleft()()
        pending.extend(submit(t) for t in islice(tasks, 1))   # keep the workers busy while this one is used
        yield result


def results_or_split(task: PendingTask, items: list, submit: Callable[[list], Callable[[], list]],
                     died: Callable[[Any, WorkerDied], Any]) -> list:
    """Return the task's results (a list, one per item of `items`). When its worker died running it, run its
    items again one per task (`submit([item])`), so that only the item a worker dies on again is lost: its
    result is `died(item, error)`."""
    try:
        return task.get()
    except WorkerDied as error:
        if len(items) > 1:
            return [result for item in items for result in submit([item])()]
        return [died(items[0], error)]


def map_in_order(pool: OrderedPool, fn: Callable[[list, memoryview | None], list], items: list, chunksize: int,
                 in_flight: int, died: Callable[[Any, WorkerDied], Any]) -> Iterator:
    """Yield the result of each item, in order: `fn(chunk, out)` runs on chunks of `chunksize` items in the
    pool, at most `in_flight` chunks ahead, and returns one result per item; an item a worker dies on gives
    `died(item, error)` (results_or_split)."""
    def submit(chunk: list) -> Callable[[], list]:
        task = pool.submit(fn, chunk)
        return lambda: results_or_split(task, chunk, submit, died)
    chunks = (items[s:s + chunksize] for s in range(0, len(items), chunksize))
    for results in in_order(submit, chunks, in_flight):
        yield from results
