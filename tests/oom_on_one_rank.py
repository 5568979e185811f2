"""Test helper, run by `accelerate launch`: classify.train's command line, with a CUDA out-of-memory
error raised on process OOM_RANK at its second training batch (before the backward pass, so the other
process is already waiting for it in the gradient all-reduce)."""
import os

import torch
from fastai.callback.core import Callback
from fastai.torch_core import rank_distrib

from classify import train


class RaiseOutOfMemory(Callback):
    def before_backward(self):
        if self.training and self.iter == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (raised by the test)")


def build_learner_failing_on_one_rank(*args, _build=train.build_learner, **kwargs):
    learn = _build(*args, **kwargs)
    if rank_distrib() == int(os.environ["OOM_RANK"]):
        learn.add_cb(RaiseOutOfMemory())
    return learn


train.build_learner = build_learner_failing_on_one_rank
train.main()
