"""fastai metrics and callbacks used by classify.train (importable, so export.pkl can be loaded).

The validation metrics gather logits on the device and compute accuracy, ROC-AUC and EER once per
epoch (one host synchronization per epoch); the loss trackers replace the Recorder's, which copy
every batch's loss to the CPU. `KeepBestEpoch` keeps the lowest-EER weights, `EpochHistory` writes
history.csv after every epoch.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback, CancelStepException
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.progress import ProgressCallback
from fastai.learner import AvgLoss, AvgSmoothLoss, Metric
from fastai.optimizer import OptimWrapper
from fastai.torch_core import find_bs
from torch.nn.parallel import DistributedDataParallel

from classify import runfolder
from classify.devices import DTYPES, autocast, float32_final_layer
from classify.metrics import BONAFIDE, SPOOF, compute_eer, roc_auc


# ---------------------------------------------------------------- epoch metrics (one host sync per epoch)

class EpochScoreMetric(Metric):
    """A validation metric computed once per epoch from the logits gathered on the device."""
    fn_name = "score"

    def reset(self):
        self.preds, self.targs = [], []

    def count(self) -> int:
        """Return how many validation images the last validation scored (over all processes)."""
        return sum(len(t) for t in self.targs)

    def accumulate(self, learn):
        # no .cpu() here: the batches stay on the device until `value`, one sync per epoch. In a
        # multi-process run, to_detach gathers every rank's batch (padding removed): all ranks score all of val
        self.preds.append(learn.to_detach(learn.pred, cpu=False))
        self.targs.append(learn.to_detach(learn.yb[0], cpu=False))

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (labels, bonafide log-odds logits[:,0]-logits[:,1]) of the epoch's validation images."""
        preds = torch.cat(self.preds).float()
        targs = torch.cat(self.targs)
        if targs.ndim > 1:  # soft (mixup) targets
            targs = targs.argmax(-1)
        score = preds[:, 0] - preds[:, SPOOF]  # log-odds: no float32 softmax saturation into ties
        both = torch.stack([targs.to(score.dtype), score]).cpu().numpy().astype(np.float64)
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
    def compute(labels, score):
        return float(np.mean((score <= 0) == (labels == SPOOF)))  # spoof when softmax spoof prob >= 0.5


class ValidRocAuc(EpochScoreMetric):
    fn_name = "roc_auc"

    @staticmethod
    def compute(labels, score):
        return roc_auc(labels, -score)  # spoof is the positive class


class ValidEER(EpochScoreMetric):
    fn_name = "eer"

    @staticmethod
    def compute(labels, score):
        return compute_eer(score[labels == BONAFIDE], score[labels == SPOOF])[0]


# ---------------------------------------------------------------- callbacks

class DeviceLosses(Callback):
    """Keep the Recorder's running losses on the device (fastai's copy them to the CPU every batch)."""
    order = 49  # before the Recorder (50)

    def before_fit(self):
        # through __dict__: fastai warns on callback attributes that shadow the learner's (`loss`)
        self.recorder.__dict__.update(loss=DeviceAvgLoss(), smooth_loss=DeviceSmoothLoss())


class DeviceAvgLoss(AvgLoss):
    # validation: to_detach gathers the batch loss of every process and averages it, the same on every rank
    def accumulate(self, learn):
        bs = find_bs(learn.yb)
        self.total += learn.to_detach(learn.loss.mean(), cpu=False).float() * bs
        self.count += bs


class DeviceSmoothLoss(AvgSmoothLoss):
    def accumulate(self, learn):
        self.count += 1
        # this process's loss only (no gather across processes every step): train_loss is rank 0's
        loss = learn.to_detach(learn.loss.mean(), cpu=False, gather=False).float()
        self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)


class SparseProgress(ProgressCallback):
    """fastai's progress bar showing the smoothed loss without waiting for the device: every `every`
    batches the loss is copied asynchronously into (pinned) host memory, and the bar shows the last
    copy that has arrived."""
    every = 25

    def before_fit(self):
        super().before_fit()
        cuda = self.dls.device is not None and torch.device(self.dls.device).type == "cuda"
        self.host_loss = torch.zeros((), dtype=torch.float32, pin_memory=cuda)
        self.host_view = self.host_loss.numpy()  # shares memory with host_loss: reading it is no tensor call
        self.copied = None  # CUDA event recorded after the last copy (None: nothing pending)

    def after_batch(self):
        self.pbar.update(self.iter + 1)
        if not hasattr(self, "smooth_loss") or self.iter % self.every:
            return
        if self.copied is not None and self.copied.query():
            self.pbar.comment = f"{float(self.host_view):.4f}"
            self.copied = None
        if self.copied is None:
            loss = self.smooth_loss.detach()
            self.host_loss.copy_(loss, non_blocking=True)
            if loss.device.type == "cuda":
                self.copied = torch.cuda.Event()
                self.copied.record()
            else:  # the copy is done already
                self.pbar.comment = f"{float(self.host_view):.4f}"

    def after_fit(self):
        self.host_loss = self.host_view = self.copied = None  # nothing of it goes into export.pkl
        super().after_fit()


class DeviceMixedPrecision(MixedPrecision):
    """fastai's MixedPrecision on the device the batches are on (fastai's is CUDA only), with the final
    Linear in float32 (classify.devices.float32_final_layer), for `precision` "bf16" or "fp16".

    fp16 scales the loss with a GradScaler. With a fused optimizer (AdamW fused=True, the CUDA default)
    the scaler hands its inf check to the optimizer's kernel, which skips the step on the device: no
    host synchronization per batch (fastai's fake-optimizer step and its `scales` list each wait for
    the device)."""

    def __init__(self, precision: str = "bf16"):
        super().__init__(amp_mode=precision)
        self.precision = precision

    def before_fit(self):
        device = torch.device(self.dls.device or "cpu")
        dtype = DTYPES[self.precision]
        self.autocast = autocast(device, dtype)
        self.learn.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.scales = None
        self.fp32_head = float32_final_layer(self.model)
        self.fp32_head.__enter__()

    def before_step(self):
        if not self.scaler.is_enabled():  # bf16: a plain optimizer step
            return
        opt = self.opt.opt if isinstance(self.opt, OptimWrapper) else None
        if opt is not None and getattr(opt, "_step_supports_amp_scaling", False):
            self.scaler.step(opt)  # unscale, inf check and skip inside the fused kernel
            raise CancelStepException()  # done: fastai must not step again (after_step still updates the scale)
        self.skipped = True
        self.scaler.step(self)  # fastai's way: `self` is the optimizer, `step` below clears `skipped`
        if self.skipped:
            raise CancelStepException()

    def after_fit(self):
        if getattr(self, "fp32_head", None) is not None:
            self.fp32_head.__exit__(None, None, None)
        self.fp32_head = None
        super().after_fit()


class KeepBestEpoch(Callback):
    """Remember the weights of the epoch with the lowest validation EER (ties: lower validation loss),
    across fine_tune's two fits; `restore` loads them."""
    # Not fastai's SaveModelCallback: it pickles a checkpoint to disk per improvement, has no tie-break, and at
    # the end of each fit reloads its best, so fine_tune's unfrozen fit would restart from the best frozen epoch.
    order = 61  # after the Recorder (50) has logged the epoch

    def __init__(self):
        self.state, self.best_epoch, self.best_key, self.total_epochs = None, None, None, 0

    def after_epoch(self):
        values = dict(zip(self.recorder.metric_names[1:], self.recorder.values[-1]))
        eer, loss = values.get("eer", float("nan")), values.get("valid_loss", float("nan"))
        key = (np.inf if np.isnan(eer) else eer, np.inf if np.isnan(loss) else loss)
        if self.best_key is None or key < self.best_key:
            model = self.learn.model
            model = model.module if isinstance(model, DistributedDataParallel) else model  # during a multi-process fit
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.best_epoch, self.best_key = self.total_epochs, key
        self.total_epochs += 1

    def restore(self) -> int | None:
        """Load the best epoch's weights into the model; return its epoch number (counted across fits)."""
        if self.state is not None:
            self.learn.model.load_state_dict(self.state)
        return self.best_epoch


class EpochHistory(Callback):
    """Append each epoch's row (numbered across fits) to `rows` and rewrite history.csv."""
    # Not fastai's CSVLogger: at fine_tune's second fit it truncates the file (or, appending, repeats the header)
    # and restarts the epoch count, and it writes times as "mm:ss" text; this file is rewritten atomically.
    order = 62

    def __init__(self, run_dir: Path | None):
        self.run_dir, self.rows, self.started = run_dir, [], None

    def before_epoch(self):
        self.started = time.perf_counter()

    def after_epoch(self):
        names = list(self.recorder.metric_names[1:])
        values = dict(zip(names, self.recorder.values[-1]))
        row = {k: float(values.get(k, float("nan"))) for k in runfolder.HISTORY_COLUMNS[1:-1]}
        self.rows.append({"epoch": len(self.rows), **row, "time": round(time.perf_counter() - self.started, 3)})
        if self.run_dir is not None:
            runfolder.write_history(self.run_dir, self.rows)
