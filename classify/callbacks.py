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
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.learner import AvgLoss, AvgSmoothLoss, Metric
from fastai.torch_core import find_bs
from torch.nn.parallel import DistributedDataParallel

from classify import runfolder
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
    """fastai's progress bar, reading the smoothed loss (a host sync) only every `every` batches."""
    every = 25

    def after_batch(self):
        self.pbar.update(self.iter + 1)
        if hasattr(self, "smooth_loss") and self.iter % self.every == 0:
            self.pbar.comment = f"{self.smooth_loss.item():.4f}"


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
