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
  the whole batch) and plain BatchNorm again afterwards, for saving and export; on the CPU each
  process normalizes over its own share and DDP copies rank 0's running statistics to all.
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
    """Leave the process group (if this process joined one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def broadcast_from_main(obj):
    """Return rank 0's `obj` on every rank (a picklable object; unchanged in a single process)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def barrier():
    """Wait until every process gets here (no-op in a single process)."""
    if is_distributed():
        torch.distributed.barrier()


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
    are sharded) for the CPU too, with the model handed back with plain BatchNorm after each fit."""

    def __init__(self, device: torch.device):
        # SyncBatchNorm runs on GPUs only; on the CPU, DDP broadcasts rank 0's BatchNorm buffers instead
        super().__init__(sync_bn=device.type == "cuda", cpu=device.type != "cuda")
        self.device = device

    def before_fit(self):
        self.bn_types = {name: type(m) for name, m in self.learn.model.named_modules()
                         if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        super().before_fit()

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else ShardedDL(dl, device=self.device)

    def after_fit(self):
        super().after_fit()
        self.learn.model = restore_batchnorm(self.learn.model, self.bn_types)


def restore_batchnorm(model: nn.Module, bn_types: dict[str, type]) -> nn.Module:
    """Return `model` with each SyncBatchNorm named in `bn_types` replaced by its original class,
    keeping the same parameter and buffer tensors (the optimizer keeps working on them)."""
    for name, cls in bn_types.items():
        module = model.get_submodule(name) if name else model
        if not isinstance(module, nn.SyncBatchNorm) or cls is nn.SyncBatchNorm:
            continue
        plain = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            plain.weight, plain.bias = module.weight, module.bias
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(plain, buffer, getattr(module, buffer))
        plain.train(module.training)
        if not name:
            return plain
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)
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
