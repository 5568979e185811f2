"""Train a spoof detector on images/{train,val}: `python -m classify.train --images images --arch resnet101`.

Pretrained architectures: fastai `vision_learner` + `fine_tune` (frozen body for --freeze-epochs,
then the whole network, one-cycle). From scratch (--no-pretrained, or simple_cnn): `fit_one_cycle`.
The epoch table shows loss, accuracy, ROC-AUC and EER on the val split; the epoch with the lowest
validation EER is kept. Outputs go to a new run folder (see classify.runfolder).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback
from fastai.learner import AvgLoss, AvgSmoothLoss, Learner, Metric
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import OptimWrapper
from fastai.torch_core import find_bs, set_seed
from fastcore.script import Param, call_parse, store_true

from classify import archs, runfolder
from classify.data import AugmentConfig, build_dataloaders, default_device
from classify.model_io import save_model
from spec2img.rows import LABELS


@dataclass(frozen=True)
class TrainConfig:
    images: str = "images"        # folder written by spec2img (spec.json, train/, val/)
    arch: str = "resnet101"       # one of classify.archs.ARCHS
    epochs: int = 5               # epochs of whole-network training (after the frozen ones when pretrained)
    lr: float = 0.0               # peak learning rate; 0 = 2e-3 for fine-tuning, 3e-3 from scratch
    bs: int = 64                  # batch size (per process)
    freeze_epochs: int = 1        # pretrained only: epochs training the new head with the body frozen
    size: int = 0                 # model input height (width keeps the aspect); 0 = the images' own size
    pretrained: bool = True       # start from ImageNet weights (needs them downloaded or cached)
    seed: int = 0                 # seeds Python, numpy and torch; same seed + data + device = same result
    out: str = "runs"             # parent folder of the run folders
    balance: str = "weights"      # none | weights (class-weighted loss) | sampler (balanced batches)
    mixup: float = 0.0            # mixup Beta(alpha, alpha) parameter; 0 = off
    early_stop: int = 0           # stop after this many epochs without a better validation EER; 0 = off
    loader: str = "auto"          # auto | memory (decode once, batches from RAM/GPU) | datablock (stream PNGs)
    workers: int = 0              # PNG decoding threads (memory) or loader processes (datablock); 0 = all cores
    augment: bool = True          # time shift + SpecAugment masks on training batches

    def peak_lr(self) -> float:
        """Return the learning rate actually used."""
        return self.lr or (2e-3 if self.fine_tunes() else 3e-3)

    def fine_tunes(self) -> bool:
        """Return True when training starts from ImageNet weights (fine_tune rather than fit_one_cycle)."""
        return self.pretrained and archs.get_arch(self.arch).library != "scratch"


# ---------------------------------------------------------------- epoch metrics (one host sync per epoch)

def roc_auc(labels: np.ndarray, spoof_prob: np.ndarray) -> float:
    """Return the area under the ROC curve for detecting spoof (label 1) by `spoof_prob` (ties count half)."""
    from scipy.stats import rankdata
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(spoof_prob)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def equal_error_rate(labels: np.ndarray, spoof_prob: np.ndarray) -> float:
    """Return the EER: the rate where missed spoofs equal falsely rejected bonafide, sweeping the threshold."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(spoof_prob, dtype=np.float64)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # thresholds between distinct scores
    tp = np.r_[0, np.cumsum(y)[last]]
    fp = np.r_[0, np.cumsum(~y)[last]]
    miss = 1 - tp / n_pos            # spoof below the threshold, labelled bonafide
    false_alarm = fp / n_neg         # bonafide at or above it, labelled spoof
    i = np.argmin(np.abs(miss - false_alarm))
    return float((miss[i] + false_alarm[i]) / 2)


class EpochScoreMetric(Metric):
    """A validation metric computed once per epoch from the logits gathered on the device."""
    fn_name = "score"

    def reset(self):
        self.preds, self.targs = [], []

    def accumulate(self, learn):
        # no .cpu() here: the batches stay on the device until `value`, one sync per epoch
        self.preds.append(learn.to_detach(learn.pred, cpu=False))
        self.targs.append(learn.to_detach(learn.yb[0], cpu=False))

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (labels, spoof probabilities) of the epoch's validation images."""
        preds = torch.cat(self.preds).float()
        targs = torch.cat(self.targs)
        if targs.ndim > 1:  # mixup's soft targets are not used in validation, but be safe
            targs = targs.argmax(-1)
        prob = torch.softmax(preds, dim=-1)[:, LABELS.index("spoof")]
        both = torch.stack([targs.to(prob.dtype), prob]).cpu().numpy()
        return both[0].astype(int), both[1]

    @property
    def value(self):
        if not self.preds:
            return None
        return self.compute(*self.scores())

    @property
    def name(self):
        return self.fn_name


class ValidAccuracy(EpochScoreMetric):
    fn_name = "accuracy"

    @staticmethod
    def compute(labels, prob):
        return float(np.mean((prob >= 0.5) == (labels == 1)))


class ValidRocAuc(EpochScoreMetric):
    fn_name = "roc_auc"
    compute = staticmethod(roc_auc)


class ValidEER(EpochScoreMetric):
    fn_name = "eer"
    compute = staticmethod(equal_error_rate)


# ---------------------------------------------------------------- callbacks

class DeviceLosses(Callback):
    """Keep the Recorder's running losses on the device (fastai's copy them to the CPU every batch)."""
    order = 49  # before the Recorder (50)

    def before_fit(self):
        self.recorder.loss, self.recorder.smooth_loss = DeviceAvgLoss(), DeviceSmoothLoss()


class DeviceAvgLoss(AvgLoss):
    def accumulate(self, learn):
        bs = find_bs(learn.yb)
        self.total += learn.to_detach(learn.loss.mean(), cpu=False).float() * bs
        self.count += bs


class DeviceSmoothLoss(AvgSmoothLoss):
    def accumulate(self, learn):
        self.count += 1
        loss = learn.to_detach(learn.loss.mean(), cpu=False).float()
        self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)


class SparseProgress(ProgressCallback):
    """fastai's progress bar, reading the smoothed loss (a host sync) only every `every` batches."""
    every = 25

    def after_batch(self):
        self.pbar.update(self.iter + 1)
        if hasattr(self, "smooth_loss") and self.iter % self.every == 0:
            self.pbar.comment = f"{self.smooth_loss.item():.4f}"


class KeepBestEpoch(TrackerCallback):
    """Remember the weights of the epoch with the lowest validation EER, across fine_tune's two fits."""
    order = 61

    def __init__(self):
        super().__init__(monitor="eer", comp=np.less, reset_on_fit=False)
        self.state, self.best_epoch, self.total_epochs = None, None, 0

    def after_epoch(self):
        super().after_epoch()
        if self.new_best or self.state is None:
            self.state = {k: v.detach().clone() for k, v in self.learn.model.state_dict().items()}
            self.best_epoch = self.total_epochs
        self.total_epochs += 1

    def restore(self):
        """Load the best epoch's weights into the model; return its (global) epoch number."""
        if self.state is not None:
            self.learn.model.load_state_dict(self.state)
        return self.best_epoch


class EpochHistory(Callback):
    """Append each epoch's row (numbered across fits) to history.csv and redraw curves.png."""
    order = 62

    def __init__(self, run_dir: Path | None, best: KeepBestEpoch):
        self.run_dir, self.best, self.rows, self.started = run_dir, best, [], None

    def before_epoch(self):
        self.started = time.perf_counter()

    def after_epoch(self):
        names = list(self.recorder.metric_names[1:])
        values = dict(zip(names, self.recorder.values[-1]))
        row = {k: float(values.get(k, float("nan"))) for k in runfolder.HISTORY_COLUMNS[1:-1]}
        self.rows.append({"epoch": len(self.rows), **row, "time": round(time.perf_counter() - self.started, 3)})
        if self.run_dir is not None:
            runfolder.write_history(self.run_dir, self.rows)
            runfolder.plot_curves(self.run_dir, self.rows, self.best.best_epoch)


# ---------------------------------------------------------------- building the learner

def optimizer_for(device: torch.device):
    """Return the opt_func: torch AdamW through fastai's OptimWrapper, fused on CUDA, foreach on the CPU."""
    flag = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return partial(OptimWrapper, opt=torch.optim.AdamW, **flag)


def build_learner(cfg: TrainConfig, dls, class_weights: list[float], device: torch.device) -> Learner:
    """Return the Learner: vision_learner for ImageNet architectures, a plain Learner for simple_cnn."""
    arch = archs.get_arch(cfg.arch)
    loss = CrossEntropyLossFlat(weight=torch.tensor(class_weights, dtype=torch.float32, device=device))
    kwargs = dict(loss_func=loss, opt_func=optimizer_for(device), lr=cfg.peak_lr(),
                  metrics=[ValidAccuracy(), ValidRocAuc(), ValidEER()])
    if arch.library == "scratch":
        model = archs.build_model(archs.builder_settings(cfg.arch))
        learn = Learner(dls, model, **kwargs)
    else:
        from fastai.vision.learner import vision_learner
        factory = archs.torchvision_factory(arch.source) if arch.library == "torchvision" else arch.source
        with archs.pretrained_weights_errors(arch.source, arch.library, cfg.pretrained):
            learn = vision_learner(dls, factory, normalize=False, n_out=archs.N_CLASSES,
                                   pretrained=cfg.pretrained, **archs.HEAD, **kwargs)
    learn.remove_cb(ProgressCallback)
    learn.add_cbs([SparseProgress(), DeviceLosses()])
    if cfg.mixup > 0:
        learn.add_cb(MixUp(cfg.mixup))
    if device.type == "cuda":
        from fastai.callback.channelslast import ChannelsLast
        bf16 = torch.cuda.is_bf16_supported()
        learn.add_cbs([ChannelsLast(), MixedPrecision("bf16" if bf16 else "fp16")])
    return learn


def model_description(cfg: TrainConfig, spec_dict: dict, input_shape) -> dict:
    """Return model.json's content (classify.model_io) for this training run."""
    return {"arch": cfg.arch, "classes": list(LABELS), "spoof_index": LABELS.index("spoof"),
            "input": {"height": int(input_shape[0]), "width": int(input_shape[1]), "channels": 3},
            "normalize": {"mean": list(archs.IMAGENET_MEAN), "std": list(archs.IMAGENET_STD)},
            "spec": spec_dict, "pretrained": cfg.fine_tunes(), "builder": archs.builder_settings(cfg.arch)}


def fit(learn: Learner, cfg: TrainConfig):
    """Run the schedule: fine_tune when starting from ImageNet weights, else fit_one_cycle."""
    try:
        if cfg.fine_tunes():
            learn.fine_tune(cfg.epochs, base_lr=cfg.peak_lr(), freeze_epochs=cfg.freeze_epochs)
        else:
            learn.fit_one_cycle(cfg.epochs, cfg.peak_lr())
    except torch.OutOfMemoryError as e:
        raise SystemExit(f"CUDA out of memory with --bs {cfg.bs} ({cfg.arch}): try --bs {max(1, cfg.bs // 2)}"
                         f"{' or --loader datablock to keep the images off the GPU' if cfg.loader != 'datablock' else ''}"
                         f". ({str(e).splitlines()[0]})") from None


def run_config(cfg: TrainConfig, spec_dict: dict, summary, device, run_dir) -> dict:
    """Return config.json's content: every setting, the spec, the data path taken, versions, device."""
    return {"settings": asdict(cfg), "lr_used": cfg.peak_lr(), "schedule": "fine_tune" if cfg.fine_tunes()
            else "fit_one_cycle", "augment": asdict(AugmentConfig()) if cfg.augment else None,
            "data": asdict(summary), "spec": spec_dict, "versions": runfolder.package_versions(),
            "git_commit": runfolder.git_commit(), "device": runfolder.device_description(device),
            "seed": cfg.seed, "run_dir": str(run_dir), "images": str(Path(cfg.images).resolve())}


def export_learner(learn: Learner, path: Path):
    """Write fastai's export.pkl (the learner without data; needs the `classify` package to load)."""
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, (KeepBestEpoch, EpochHistory))])
    for m in learn.metrics:
        m.reset()
    learn.export(Path(path).resolve())


def train(cfg: TrainConfig, log=print) -> Path | None:
    """Train per `cfg`, write the run folder, and return its path (None on ranks other than 0)."""
    archs.get_arch(cfg.arch)  # an unknown name stops here, before any data is read
    if cfg.fine_tunes():
        archs.weights_location  # noqa: B018  (download errors are reported by build_learner)
    set_seed(cfg.seed, reproducible=True)
    device = default_device()
    dls, spec, spec_dict, summary = build_dataloaders(
        cfg.images, cfg.bs, device, cfg.loader, cfg.balance, cfg.size, AugmentConfig() if cfg.augment else None,
        workers=cfg.workers, log=log)
    learn = build_learner(cfg, dls, summary.class_weights, device)
    run_dir = runfolder.create_run_dir(cfg.out, cfg.arch, cfg.seed)
    with runfolder.tee_output(run_dir / "train.log" if run_dir else None):
        if run_dir:
            log(f"run folder: {run_dir}")
            runfolder.write_json(run_dir / "config.json", run_config(cfg, spec_dict, summary, device, run_dir))
        best = KeepBestEpoch()
        learn.add_cbs([best, EpochHistory(run_dir, best)])
        if cfg.early_stop:
            learn.add_cb(EarlyStoppingCallback(monitor="eer", comp=np.less, patience=cfg.early_stop))
        fit(learn, cfg)
        best_epoch = best.restore()
        rows = next(cb for cb in learn.cbs if isinstance(cb, EpochHistory)).rows
        kept = rows[best_epoch]
        log(f"kept epoch {best_epoch}: validation EER {100 * kept['eer']:.2f}%, accuracy {kept['accuracy']:.4f}, "
            f"ROC-AUC {kept['roc_auc']:.4f}")
        if run_dir:
            save_model(run_dir, learn.model, model_description(cfg, spec_dict, summary.input_shape))
            runfolder.plot_curves(run_dir, rows, best_epoch)
            export_learner(learn, run_dir / "export.pkl")
            runfolder.point_latest(cfg.out, run_dir)
            log(f"run folder: {run_dir} (runs/latest points to it)")
    return run_dir


@call_parse
def main(
    images: Param("folder written by spec2img (spec.json, train/, val/)", str) = "images",
    arch: Param(f"architecture: {', '.join(archs.ARCHS)}", str) = "resnet101",
    epochs: Param("epochs of whole-network training (after the frozen ones when pretrained)", int) = 5,
    lr: Param("peak learning rate; 0 = 2e-3 when fine-tuning, 3e-3 from scratch", float) = 0.0,
    bs: Param("batch size", int) = 64,
    freeze_epochs: Param("pretrained only: epochs with the ImageNet body frozen", int) = 1,
    size: Param("model input height, width keeps the aspect; 0 = the images' own size", int) = 0,
    no_pretrained: Param("train from random weights instead of ImageNet weights", store_true) = False,
    pretrained: Param("start from ImageNet weights (the default)", store_true) = False,
    seed: Param("random seed", int) = 0,
    out: Param("parent folder of the run folders", str) = "runs",
    balance: Param("class imbalance: none, weights (weighted loss) or sampler (balanced batches)", str) = "weights",
    mixup: Param("mixup alpha; 0 = off", float) = 0.0,
    early_stop: Param("stop after this many epochs without a better validation EER; 0 = off", int) = 0,
    loader: Param("auto, memory (decode PNGs once, batches from memory) or datablock (stream from disk)", str) = "auto",
    workers: Param("PNG decoding threads / loader processes; 0 = all cores", int) = 0,
    no_augment: Param("switch off time shift and SpecAugment masking", store_true) = False,
):
    "Fine-tune (or train from scratch) a spoof detector on spectrogram images; writes runs/<arch>-<time>/."
    if pretrained and no_pretrained:
        raise SystemExit("error: --pretrained and --no-pretrained contradict each other")
    cfg = TrainConfig(images=images, arch=arch, epochs=epochs, lr=lr, bs=bs, freeze_epochs=freeze_epochs, size=size,
                      pretrained=not no_pretrained, seed=seed, out=out, balance=balance, mixup=mixup,
                      early_stop=early_stop, loader=loader, workers=workers, augment=not no_augment)
    try:
        train(cfg)
    except (archs.UnknownArchError, archs.PretrainedWeightsUnavailable, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
