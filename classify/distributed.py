"""Training in several processes (GPUs, machines) with fastai's distributed callback and Hugging Face accelerate.

Launch with `accelerate launch --multi_gpu --num_processes N -m classify.train ...` (or `torchrun
--nproc_per_node N -m classify.train ...`); several machines add accelerate's --num_machines,
--machine_rank, --main_process_ip and --main_process_port. The launcher sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `setup` joins the process group: NCCL with one GPU per
process on CUDA, gloo on the CPU (so a CPU-only machine runs the same code, e.g. in the tests).
Keep --multi_gpu on a CPU-only machine too: `accelerate launch --cpu --num_processes N` starts a
single process (accelerate's multi-CPU launch goes through mpirun).

What each process does:
- It decodes the whole train and val split itself (each GPU holds its own copy of the images).
- `--bs` is the batch of one optimizer step over all processes: each process takes bs / N images
  of it, a distinct shard (fastai's `DistributedDL`: the epoch's order is drawn on rank 0 and
  broadcast, then split). The gradients are averaged by DistributedDataParallel (accelerate's
  `prepare`), so the learning rate, the schedule and the steps per epoch are those of one process
  with the same --bs. On CUDA, BatchNorm layers become SyncBatchNorm during fit (statistics over
  the whole batch; timm's BatchNormAct2d becomes timm's SyncBatchNormAct, keeping its activation)
  and the original layer objects are put back afterwards, for saving and export; on the CPU each
  process normalizes over its own share and DDP copies rank 0's running statistics to all.
- A process that fails in a way every process must hear of (out of memory) posts its message in
  the process group's key-value store before it exits; every other process prints it and stops,
  rather than waiting in a collective for a peer that is gone (see `FailureWatch`).
- Validation is split the same way; the logits are gathered on every rank (padding removed), so
  accuracy, ROC-AUC and EER cover the whole validation split and every rank picks the same best
  epoch. The validation loss is the mean over the ranks; train_loss is rank 0's smoothed loss.
- Only rank 0 creates the run folder (its name is broadcast to the others) and writes files.
  On several machines, every machine needs the images at the --images path; the run folder is
  written on the machine of rank 0.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import torch
from fastai.callback.progress import ProgressCallback
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.torch_core import num_distrib, rank_distrib
from torch import nn

from spec2img.fileio import write_json

DEBUG_WEIGHTS_ENV = "CLASSIFY_DEBUG_WEIGHTS_DIR"  # when set, every rank writes rank<r>.json there (see write_debug)


def world_size() -> int:
    """Return the number of training processes (1 without a multi-process launcher)."""
    return max(1, num_distrib())


def is_distributed() -> bool:
    """Return True when this process is one of several launched together."""
    return world_size() > 1


def local_rank() -> int:
    """Return this process's index among the processes of its machine."""
    return int(os.environ.get("LOCAL_RANK", rank_distrib()))


def local_world_size() -> int:
    """Return the number of training processes on this machine."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))


def per_process_bs(bs: int) -> int:
    """Return each process's share of the batch `bs`; ValueError when it does not split evenly."""
    n = world_size()
    if bs % n:
        raise ValueError(f"--bs {bs} is the batch of all {n} processes together and must split evenly: "
                         f"use a multiple of {n} (e.g. --bs {max(n, bs - bs % n)})")
    return bs // n


def setup(default: torch.device) -> torch.device:
    """Return this process's device; in a multi-process launch, first join the process group
    (NCCL with GPU `LOCAL_RANK` on CUDA, gloo on the CPU). Single process: `default`."""
    if not is_distributed():
        return default
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if k not in os.environ]
    if missing:
        raise SystemExit(f"WORLD_SIZE={world_size()} but {', '.join(missing)} not set: launch with "
                         f"`accelerate launch --multi_gpu --num_processes N -m classify.train ...` or torchrun")
    if default.type == "cuda":
        n_gpus = torch.cuda.device_count()
        if local_rank() >= n_gpus:
            raise SystemExit(f"process {local_rank()} on this machine has no GPU of its own ({n_gpus} visible): "
                             f"launch at most {n_gpus} processes per machine (--num_processes)")
        torch.cuda.set_device(local_rank())
        device, backend = torch.device("cuda", local_rank()), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not torch.distributed.is_initialized():
        extra = {"device_id": device} if device.type == "cuda" else {}
        torch.distributed.init_process_group(backend, init_method="env://", **extra)
    return device


def teardown():
    """Leave the process group (if this process joined one); after a failure, just exit (a peer is gone,
    and destroying the group could wait for it)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and not _FAILED:
        torch.distributed.destroy_process_group()


def broadcast_from_main(obj):
    """Return rank 0's `obj` on every rank (a picklable object; unchanged in a single process)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


class ShardedDL(DistributedDL):
    """fastai's `DistributedDL` (rank 0's epoch order, split evenly across ranks, padded by repeating
    items; gathered outputs unpadded), broadcasting over the group's own backend: fastai's sends a
    CUDA tensor, which gloo (CPU training) cannot."""

    def _broadcast(self, t, rank):
        device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
        t = torch.tensor(t, dtype=torch.long, device=device)
        torch.distributed.broadcast(t, rank)
        return t.cpu().tolist()


class DataParallelTrainer(DistributedTrainer):
    """fastai's `DistributedTrainer` (accelerate wraps the model in DistributedDataParallel, loaders
    are sharded) for the CPU too, with SyncBatchNorm on CUDA done by timm's converter (fastai's uses
    torch's, which drops the activation of timm's BatchNormAct2d) and undone after each fit."""

    def __init__(self, device: torch.device, sync_bn: bool | None = None):
        super().__init__(sync_bn=False, cpu=device.type != "cuda")  # fastai must not convert: done here
        # SyncBatchNorm runs on GPUs only; on the CPU, DDP broadcasts rank 0's BatchNorm buffers instead
        self.convert_bn = device.type == "cuda" if sync_bn is None else sync_bn
        self.device, self.originals = device, {}

    def before_fit(self):
        if self.convert_bn:
            self.learn.model, self.originals = sync_batchnorm(self.learn.model)
        super().before_fit()

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else ShardedDL(dl, device=self.device)

    def after_fit(self):
        model = self.learn.model  # fastai's after_fit, also when accelerate did not wrap the model (one process)
        self.learn.model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        self.learn.dls.loaders = self.old_dls
        self.learn.model = restore_batchnorm(self.learn.model, self.originals)
        self.originals = {}


def sync_batchnorm(model: nn.Module) -> tuple[nn.Module, dict[str, nn.Module]]:
    """Return (model with every BatchNorm as SyncBatchNorm, {name: original layer}). timm's converter
    keeps timm's BatchNormAct2d activation (SyncBatchNormAct); the parameters and buffers are shared."""
    from timm.layers import convert_sync_batchnorm
    originals = {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    return convert_sync_batchnorm(model), originals


def restore_batchnorm(model: nn.Module, originals: dict[str, nn.Module]) -> nn.Module:
    """Return `model` with each layer named in `originals` put back (the same objects, so the same classes
    and activations), holding the converted layer's current parameter and buffer tensors."""
    for name, original in originals.items():
        current = model.get_submodule(name) if name else model
        if current is not original:
            for key, _ in list(original.named_parameters(recurse=False)) + list(original.named_buffers(recurse=False)):
                setattr(original, key, getattr(current, key))  # the tensors the optimizer and DDP worked on
            original.train(current.training)
        if not name:
            return original
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, original)
    return model


@contextlib.contextmanager
def data_parallel(learn, device: torch.device):
    """Within the block, `learn` trains as one of the launched processes (nothing changes in a single process)."""
    if not is_distributed():
        yield learn
        return
    trainer = DataParallelTrainer(device)
    learn.add_cb(trainer)
    progress = [cb for cb in learn.cbs if isinstance(cb, ProgressCallback)] if rank_distrib() else []
    learn.remove_cbs(progress)  # one progress bar and epoch table: rank 0's
    try:
        yield learn
    finally:
        learn.remove_cb(trainer)
        learn.add_cbs(progress)


# ---------------------------------------------------------------- stopping every process together

FAILURE_KEY = "classify/failure"      # the store key holding the failed process's message
SEEN_KEY = "classify/failure_seen"    # counter: how many processes' watchers have read it


class FailureWatch:
    """Context manager: in a multi-process run, a thread of each process polls the process group's
    key-value store for a failure posted by any process (`announce`). On finding one it prints the
    message, counts itself as having seen it, and waits for this process to end on its own (the
    collective it waits in fails once the failed process is gone; gloo does so at once). If it
    has not ended after `grace_s` (NCCL can wait until its timeout), the thread ends the process.
    A no-op in a single process."""

    def __init__(self, poll_s: float = 0.2, grace_s: float = 30.0, ack_timeout_s: float = 10.0):
        self.poll_s, self.grace_s, self.ack_timeout_s = poll_s, grace_s, ack_timeout_s
        self.message, self.announced, self.store = None, False, None
        self.done = threading.Event()

    def __enter__(self):
        if is_distributed() and torch.distributed.is_initialized():
            from torch.distributed.distributed_c10d import _get_default_store
            self.store = _get_default_store()
            threading.Thread(target=self._watch, name="classify-failure-watch", daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        return False

    def _watch(self):
        while not self.done.wait(self.poll_s):
            try:
                if not self.store.check([FAILURE_KEY]):
                    continue
                self.message = self.store.get(FAILURE_KEY).decode()
                if not self.announced:  # the failed process prints its own message
                    print(f"error: {self.message} [process {rank_distrib()} stops too]", file=sys.stderr, flush=True)
                self.store.add(SEEN_KEY, 1)
            except Exception:  # the store went with rank 0's process: the main thread's own error ends this one
                return
            if not self.done.wait(self.grace_s):
                os._exit(1)
            return

    def announce(self, message: str):
        """Post `message` for every process, then wait (at most ack_timeout_s) until all have read it."""
        if self.store is None:
            return
        self.announced = True
        global _FAILED
        _FAILED = True
        try:
            self.store.set(FAILURE_KEY, message)
            deadline = time.monotonic() + self.ack_timeout_s
            while self.store.add(SEEN_KEY, 0) < world_size() and time.monotonic() < deadline:
                time.sleep(0.05)
        except Exception:
            pass  # the store is gone: nothing more can be told

    def peer_failure(self) -> str | None:
        """Return the message another process posted (None when no process failed)."""
        if self.message is not None and not self.announced:
            global _FAILED
            _FAILED = True
            return self.message
        return None


_FAILED = False  # set once a failure was posted or heard: teardown then leaves the group without a goodbye


def weights_digest(model: nn.Module) -> str:
    """Return the SHA-256 of every parameter and buffer of `model` (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        t = tensor.detach().to("cpu").contiguous().reshape(-1)  # 1-d: 0-d tensors (num_batches_tracked) too
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def write_debug(model: nn.Module, run_dir, valid_items: int | None):
    """When CLASSIFY_DEBUG_WEIGHTS_DIR is set, write rank<r>.json there: this rank's weights digest,
    the run folder it was told and how many validation images the last validation scored."""
    folder = os.environ.get(DEBUG_WEIGHTS_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    record = {"rank": rank_distrib(), "world_size": world_size(), "weights_sha256": weights_digest(model),
              "run_dir": None if run_dir is None else str(run_dir), "valid_items_scored": valid_items}
    write_json(Path(folder) / f"rank{rank_distrib()}.json", record)
