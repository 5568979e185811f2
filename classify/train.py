"""Train a spoof detector on images/{train,val}: `classify-train --images images --arch resnet101`.

Pretrained architectures: fastai `vision_learner` + `fine_tune` (frozen body for --freeze-epochs,
then the whole network, one-cycle), from ImageNet weights that torchvision / timm download or find in
their caches, or that `--weights FILE` gives (classify.weightfile). From scratch (--no-pretrained, simple_cnn or lcnn): `fit_one_cycle`.
The epoch table shows loss, accuracy, ROC-AUC and EER on the val split; the epoch with the lowest
validation EER is kept. Outputs go to a new run folder (see classify.runfolder).
Several GPUs or machines: `accelerate launch --multi_gpu --num_processes N -m classify.train ...`
(see classify.distributed: --bs is split across the processes, rank 0 writes the run folder).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from fastai.callback.channelslast import ChannelsLast
from fastai.callback.mixup import MixUp
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner.fit_one_cycle, fine_tune)
from fastai.callback.progress import ProgressCallback
from fastai.callback.tracker import EarlyStoppingCallback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import OptimWrapper
from fastai.torch_core import rank_distrib, set_seed

from classify import archs, devices, distributed, runfolder, weightfile
from classify.callbacks import (DeviceLosses, DeviceMixedPrecision, EpochHistory, KeepBestEpoch, SparseProgress,
                                ValidAccuracy, ValidEER, ValidRocAuc)
from classify.data import LOADERS, STORAGES, AugmentConfig, build_dataloaders
from classify.devices import default_device
from classify.model_io import save_model
from spec2img.cli import build_parser as build_cli, parse_settings
from spec2img.fileio import EXIT_WRITE_FAILED, OutputWriteError, atomic_path, check_writable_folder
from spec2img.rows import LABELS


@dataclass(frozen=True)
class TrainConfig:
    images: str = "images"        # folder written by spec2img (spec.json, train/, val/)
    arch: str = "resnet101"       # classify.archs.ARCHS: resnet18/34/50/101, efficientnet_b0/b4/lite0, simple_cnn,
                                  # lcnn
    epochs: int = 5               # epochs of whole-network training (after the frozen ones when pretrained)
    lr: float = 0.0               # peak learning rate; 0 = 2e-3 for fine-tuning, 3e-3 from scratch
    bs: int = 64                  # batch size of one step; a multi-process launch splits it evenly across processes
    freeze_epochs: int = 1        # pretrained only: epochs training the new head with the body frozen
    size: int = 0                 # model input height (width keeps the aspect); 0 = the images' own size
    pretrained: bool = True       # start from ImageNet weights (needs them downloaded or cached, or --weights)
    weights: str = ""             # local file with the ImageNet weights of the arch's body (safetensors or a
                                  # PyTorch state dict) instead of a download; "" = torchvision's / timm's own
    seed: int = 0                 # seeds Python, numpy and torch; same seed + data + device = same result
    out: str = "runs"             # parent folder of the run folders
    balance: Literal["none", "weights", "sampler"] = "weights"  # class imbalance: none, weights (class-weighted
                                                                # loss) or sampler (balanced batches)
    mixup: float = 0.0            # mixup Beta(alpha, alpha) parameter; 0 = off
    early_stop: int = 0           # stop after this many epochs without a better validation EER; 0 = off
    loader: Literal["auto", "memory", "cache", "datablock"] = "auto"  # auto, memory (decode the PNGs once, batches
                                  # from RAM or GPU), cache (batches read from a packed file of the decoded images
                                  # beside them) or datablock (stream the PNGs); auto: memory within the budget,
                                  # else cache
    memory_gb: float = 0.0        # memory budget of the decoded images (loader auto), GiB; 0 = half the available RAM
    workers: int = 0              # PNG decoding threads (memory) or loader processes (datablock); 0 = all cores
    augment: bool = True          # time shift + SpecAugment masks on training batches
    precision: str = field(default="auto",  # auto: bf16 on GPUs with native bf16, fp16 on older GPUs, fp32 on
                           metadata={"choices": devices.PRECISIONS})  # the CPU
    storage: str = field(default="auto",  # memory loader: auto (on the GPU when the images fit its share), device
                         metadata={"choices": STORAGES})  # or host (pinned staging)

    def peak_lr(self) -> float:
        """Return the learning rate actually used."""
        return self.lr or (2e-3 if self.fine_tunes() else 3e-3)

    def fine_tunes(self) -> bool:
        """Return True when training starts from ImageNet weights (fine_tune rather than fit_one_cycle)."""
        return self.pretrained and archs.get_arch(self.arch).library != "scratch"

    def validate(self) -> "TrainConfig":
        """Return self, or raise ValueError naming the setting that cannot work (UnknownArchError for --arch)."""
        archs.get_arch(self.arch)
        problems = [f"--{name.replace('_', '-')} {value} must be {rule}" for name, value, rule, ok in (
            ("epochs", self.epochs, ">= 0", self.epochs >= 0),
            ("freeze_epochs", self.freeze_epochs, ">= 0", self.freeze_epochs >= 0),
            ("bs", self.bs, ">= 1", self.bs >= 1), ("lr", self.lr, ">= 0", self.lr >= 0),
            ("size", self.size, ">= 0", self.size >= 0),
            ("mixup", self.mixup, "finite and >= 0", 0 <= self.mixup < math.inf),
            ("early_stop", self.early_stop, ">= 0", self.early_stop >= 0),
            ("workers", self.workers, ">= 0", self.workers >= 0),
            ("precision", self.precision, "one of " + ", ".join(devices.PRECISIONS), self.precision in devices.PRECISIONS),
            ("storage", self.storage, "one of " + ", ".join(STORAGES), self.storage in STORAGES),
            ("loader", self.loader, "one of " + ", ".join(LOADERS), self.loader in LOADERS),
            ("memory_gb", self.memory_gb, ">= 0", self.memory_gb >= 0)) if not ok]
        if Path(self.out).exists() and not Path(self.out).is_dir():
            problems.append(f"--out {self.out} is a file: give the folder that holds the run folders")
        if self.bs >= 1 and distributed.is_distributed():
            try:
                distributed.per_process_bs(self.bs)
            except ValueError as e:
                problems.append(str(e))
        if self.weights and not self.pretrained:
            problems.append("--weights gives ImageNet weights to start from: drop --no-pretrained, or --weights")
        elif self.weights and not self.fine_tunes():
            problems.append(f"--weights: {self.arch} is trained from scratch and has no ImageNet body; use one of "
                            f"{', '.join(weightfile.pretrained_arch_names())}")
        if self.epochs + (self.freeze_epochs if self.fine_tunes() else 0) < 1:
            problems.append("there is no epoch to train: raise --epochs")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ---------------------------------------------------------------- building the learner

def fused_adamw(device: torch.device) -> bool:
    """Return True when AdamW should run fused (one kernel for all parameters): on CUDA. On the CPU the
    foreach implementation is as fast; tests switch this on to run the CUDA branch on the CPU."""
    return device.type == "cuda"


def optimizer_for(device: torch.device):
    """Return the opt_func: torch AdamW through fastai's OptimWrapper, fused on CUDA, foreach on the CPU."""
    flag = {"fused": True} if fused_adamw(device) else {"foreach": True}
    return partial(OptimWrapper, opt=torch.optim.AdamW, **flag)


def build_learner(cfg: TrainConfig, dls, class_weights: list[float], device: torch.device,
                  body_weights: weightfile.BodyWeights | None = None) -> Learner:
    """Return the Learner: vision_learner for ImageNet architectures, a plain Learner for simple_cnn, lcnn and
    --no-pretrained. `body_weights` (--weights) replace the download: the body is loaded from them, then frozen."""
    arch = archs.get_arch(cfg.arch)
    loss = CrossEntropyLossFlat(weight=torch.tensor(class_weights, dtype=torch.float32, device=device))
    kwargs = dict(loss_func=loss, opt_func=optimizer_for(device), lr=cfg.peak_lr(),
                  metrics=[ValidAccuracy(), ValidRocAuc(), ValidEER()])
    if arch.library == "scratch":
        model = archs.build_model(archs.builder_settings(cfg.arch))
        learn = Learner(dls, model, **kwargs)
    else:
        from fastai.vision.learner import vision_learner
        download = cfg.pretrained and body_weights is None
        with archs.pretrained_weights_errors(arch.source, arch.library, download):
            learn = vision_learner(dls, archs.fastai_arch(arch), normalize=False, n_out=archs.N_CLASSES,
                                   pretrained=download, **archs.pretrained_kwargs(arch, download), **archs.HEAD,
                                   **kwargs)
        if body_weights is not None:
            weightfile.load_body(learn.model, body_weights)
            learn.freeze()  # as vision_learner does for downloaded weights (fine_tune freezes again anyway)
    learn.remove_cb(ProgressCallback)
    learn.add_cbs([SparseProgress(), DeviceLosses()])
    if cfg.mixup > 0:
        learn.add_cb(MixUp(cfg.mixup))
    learn.add_cb(ChannelsLast())  # the batches are channels_last too: 5-25% faster on the CPU, ~2x on CUDA
    precision = devices.resolve_precision(device, cfg.precision)
    if precision != "fp32":  # autocast on the batches' device; the final Linear stays float32
        learn.add_cb(DeviceMixedPrecision(precision))
    return learn


def model_description(cfg: TrainConfig, spec_dict: dict, input_shape) -> dict:
    """Return model.json's content (classify.model_io) for this training run."""
    return {"arch": cfg.arch, "classes": list(LABELS), "spoof_index": LABELS.index("spoof"),
            "input": {"height": int(input_shape[0]), "width": int(input_shape[1]), "channels": 3},
            "normalize": {"mean": list(archs.IMAGENET_MEAN), "std": list(archs.IMAGENET_STD)},
            "spec": spec_dict, "pretrained": cfg.fine_tunes(), "builder": archs.builder_settings(cfg.arch)}


def fit(learn: Learner, cfg: TrainConfig):
    """Run the schedule: fine_tune when starting from ImageNet weights, else fit_one_cycle. Out of memory
    (in any process of a multi-process run) stops every process with a message saying what to change."""
    with distributed.FailureWatch() as watch:
        try:
            if cfg.fine_tunes():
                learn.fine_tune(cfg.epochs, base_lr=cfg.peak_lr(), freeze_epochs=cfg.freeze_epochs)
            else:
                learn.fit_one_cycle(cfg.epochs, cfg.peak_lr())
        except Exception as e:
            if devices.is_out_of_memory(e):
                message = out_of_memory_message(cfg, e)
                watch.announce(message)
                raise SystemExit(message) from None
            if isinstance(e, RuntimeError) and "can't allocate memory" in str(e):  # the CPU allocator's message
                message = (f"error: out of memory with --bs {cfg.bs} and --size {cfg.size or 'the images own'} "
                           f"({cfg.arch}): lower --bs or --size. ({str(e).strip().splitlines()[-1][:200]})")
                watch.announce(message)
                raise SystemExit(message) from None
            if watch.peer_failure() is not None:  # this process's error follows another's failure, already printed
                raise SystemExit(1) from None
            raise


def out_of_memory_message(cfg: TrainConfig, error: BaseException) -> str:
    """Return what to change after running out of GPU memory during training."""
    n = distributed.world_size()
    where = f" in process {rank_distrib()} of {n}" if n > 1 else ""
    hint = "" if cfg.loader in ("cache", "datablock") else " or --loader cache to keep the images off the GPU"
    return (f"CUDA out of memory{where} with --bs {cfg.bs} ({cfg.arch}): try --bs {max(n, cfg.bs // 2)}{hint}. "
            f"({devices.out_of_memory_line(error)})")


def run_config(cfg: TrainConfig, spec_dict: dict, summary, device, run_dir,
               body_weights: weightfile.BodyWeights | None = None) -> dict:
    """Return config.json's content: every setting, the spec, the data path taken, versions, device(s), and
    where the ImageNet weights came from."""
    return {"settings": asdict(cfg), "lr_used": cfg.peak_lr(), "schedule": "fine_tune" if cfg.fine_tunes()
            else "fit_one_cycle", "augment": asdict(AugmentConfig()) if cfg.augment else None,
            "data": asdict(summary), "spec": spec_dict, "versions": runfolder.package_versions(),
            "git_commit": runfolder.git_commit(), "device": runfolder.device_description(device),
            "precision_used": devices.resolve_precision(device, cfg.precision),
            "processes": distributed.world_size(), "bs_per_process": cfg.bs // distributed.world_size(),
            "seed": cfg.seed, "run_dir": str(run_dir), "images": str(Path(cfg.images).resolve()),
            "pretrained_weights": pretrained_weights_record(cfg, body_weights)}


def pretrained_weights_record(cfg: TrainConfig, body_weights: weightfile.BodyWeights | None) -> dict | None:
    """Return where the body's ImageNet weights came from (the --weights file's name and sha256), None from scratch."""
    if not cfg.fine_tunes():
        return None
    if body_weights is not None:
        return {"source": "file", **body_weights.record()}
    return {"source": archs.get_arch(cfg.arch).library}  # torchvision's / timm's download or cache


def export_learner(learn: Learner, path: Path):
    """Write fastai's export.pkl: the learner with the DataBlock pipeline (PNG path → prediction) and no data.

    The in-memory loaders have no per-item pipeline, so the export carries the equivalent empty
    DataBlock loaders instead: `load_learner(...).predict("x.png")` works whichever loader trained it.
    Loading it needs the `classify` package importable (run from the repository root).
    """
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, (KeepBestEpoch, EpochHistory))])
    for m in learn.metrics:
        m.reset()
    trained_on = learn.dls
    if hasattr(trained_on, "for_export"):
        learn.dls = trained_on.for_export()
    try:
        with atomic_path(Path(path).resolve()) as tmp:   # torch.save writes straight to the name it is given
            learn.export(tmp)
    finally:
        learn.dls = trained_on


@dataclass
class TrainResult:
    run_dir: Path | None   # the run folder (None on ranks other than 0)
    learn: Learner         # the trained learner, holding the kept (lowest validation EER) weights
    best_epoch: int        # the kept epoch, counted across fine_tune's frozen and unfrozen fits
    history: list[dict]    # one dict per epoch, the rows of history.csv


class LateEarlyStopping(EarlyStoppingCallback):
    """fastai's early stopping, run after the best-epoch and history callbacks have seen the epoch."""
    order = 63


def train(cfg: TrainConfig, log=print) -> TrainResult:
    """Train per `cfg`, write the run folder (rank 0), and return where it is with the trained learner."""
    cfg.validate()  # a wrong setting or an unknown --arch stops here, before any data is read
    if runfolder.is_main_process():
        check_writable_folder(cfg.out)  # a read-only or unwritable --out stops here too, not after training
    if not runfolder.is_main_process():
        log = _silent  # one copy of each message: rank 0's
    if cfg.pretrained and not cfg.fine_tunes():
        log(f"{cfg.arch} has no ImageNet weights: training it from random weights")
    # a bad --weights file or missing downloads stop here (WeightsFileError, PretrainedWeightsUnavailable),
    # before the images are decoded
    body_weights = weightfile.read_body_weights(cfg.weights, cfg.arch) if cfg.weights else None
    if body_weights is None and cfg.fine_tunes():
        archs.build_model(archs.builder_settings(cfg.arch), pretrained=True)
    device = distributed.setup(default_device())  # a multi-process launch joins its process group here
    n_procs = distributed.world_size()
    # bit-reproducible on the CPU; on CUDA seeded, but cuDNN autotuning (much faster) picks kernels per run
    set_seed(cfg.seed, reproducible=device.type != "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    early = []  # what is printed before the run folder exists, copied into train.log

    def log_early(msg):
        log(msg)
        early.append(msg)

    if n_procs > 1:
        log_early(f"process group: {n_procs} processes on {device.type} ({torch.distributed.get_backend()}); "
                  f"batch {cfg.bs} = {n_procs} x {cfg.bs // n_procs} images per process")
    precision = devices.resolve_precision(device, cfg.precision)
    if precision != "fp32":
        log_early(f"mixed precision: {precision} autocast on {device} (the final layer in float32)")
    if body_weights is not None:
        log_early(f"ImageNet weights of the {cfg.arch} body: {body_weights.path} "
                  f"({len(body_weights.state)} tensors, sha256 {body_weights.sha256[:16]}...)")
    # the processes of one machine share its cores for decoding
    workers = cfg.workers or (max(1, (os.cpu_count() or 1) // distributed.local_world_size()) if n_procs > 1 else 0)
    dls, spec, spec_dict, summary = build_dataloaders(
        cfg.images, cfg.bs // n_procs, device, cfg.loader, cfg.balance, cfg.size,
        AugmentConfig() if cfg.augment else None, workers=workers, storage=cfg.storage, memory_gb=cfg.memory_gb,
        log=log_early)
    learn = build_learner(cfg, dls, summary.class_weights, device, body_weights)
    if n_procs > 1:  # same initial weights everywhere (DDP broadcasts rank 0's); distinct augmentation draws
        torch.manual_seed(cfg.seed + 1000 * rank_distrib())
    # rank 0 names and creates the run folder; the others learn its name (nothing is written off rank 0)
    run_dir = runfolder.create_run_dir(cfg.out, cfg.arch, cfg.seed)
    run_name = distributed.broadcast_from_main(None if run_dir is None else str(run_dir))
    if run_dir:
        runfolder.write_atomic(run_dir / runfolder.TRAIN_LOG, "".join(m + "\n" for m in early))
    with runfolder.tee_output(run_dir / runfolder.TRAIN_LOG if run_dir else None):
        if run_dir:
            log(f"run folder: {run_dir}")
            runfolder.write_json(run_dir / runfolder.CONFIG,
                                 run_config(cfg, spec_dict, summary, device, run_dir, body_weights))
        best = KeepBestEpoch()
        history = EpochHistory(run_dir)
        learn.add_cbs([best, history] + ([LateEarlyStopping("eer", np.less, patience=cfg.early_stop)]
                                         if cfg.early_stop else []))
        with distributed.data_parallel(learn, device):
            fit(learn, cfg)
        best_epoch = best.restore()
        kept = history.rows[best_epoch]
        scored = learn.metrics[0].count()
        log(f"trained {len(history.rows)} epochs in {sum(r['time'] for r in history.rows):.0f} s; kept epoch "
            f"{best_epoch}: validation EER {100 * kept['eer']:.2f}%, accuracy {kept['accuracy']:.4f}, "
            f"ROC-AUC {kept['roc_auc']:.4f} ({scored} validation images scored"
            + (f" across {n_procs} processes)" if n_procs > 1 else ")"))
        distributed.write_debug(learn.model, run_name, scored)
        if run_dir:
            save_model(run_dir, learn.model, model_description(cfg, spec_dict, summary.input_shape))
            runfolder.plot_curves(run_dir, history.rows, best_epoch)
            export_learner(learn, run_dir / runfolder.EXPORT)
            runfolder.mark_complete(run_dir, best_epoch=best_epoch, epochs=len(history.rows))  # last: the run is usable
            runfolder.point_latest(cfg.out, run_dir)
            log(f"run folder: {run_dir} ({Path(cfg.out) / runfolder.LATEST} points to it)")
    return TrainResult(run_dir, learn, best_epoch, history.rows)


def _silent(_msg):
    pass


def build_parser():
    """Return the command line: one option per TrainConfig field (spec2img.cli)."""
    return build_cli("classify-train", __doc__.split("\n\n", 1)[0].split(": ", 1)[0],
                     [TrainConfig], epilog=__doc__.split("\n\n", 1)[1])


def main(argv: list[str] | None = None) -> None:
    """Fine-tune (or train from scratch) a spoof detector on spectrogram images; writes runs/<arch>-<time>/."""
    cfg, = parse_settings(build_parser(), argv, TrainConfig)
    try:
        train(cfg)
    except (archs.UnknownArchError, archs.PretrainedWeightsUnavailable, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    except OutputWriteError as e:  # disk full, read-only: the run folder stays unfinished, runs/latest unchanged
        print(f"error: training stopped: {e}\n  {e.advice}, then train again (into a new run folder; "
              f"{Path(cfg.out) / runfolder.LATEST} still points to the last finished run)", file=sys.stderr)
        raise SystemExit(EXIT_WRITE_FAILED) from None
    except KeyboardInterrupt:
        print(f"\ninterrupted: this run folder stays unfinished and {Path(cfg.out) / runfolder.LATEST} still points to "
              f"the last finished run; train again to start over", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
