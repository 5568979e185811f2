"""CPU twins of the CUDA-only branches: mixed precision (bf16, fp16 + GradScaler), fused AdamW, the
pretrained fine_tune path under both, the precision and GPU-placement decisions, the pinned staging
branch of the in-memory loader, the score precision of inference, and no host synchronization per
training batch. CI has no GPU: these run the same code with the device type taken from the data."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from torch import nn
from torch.overrides import TorchFunctionMode

from classify import archs, data, devices, model_io, train
from test_model_io import description
from test_train import config, make_images, quiet

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- decisions

@pytest.mark.parametrize("capability, native, expected", [
    ((9, 0), True, "bf16"),     # H100 / H200
    ((8, 0), True, "bf16"),     # A100
    ((7, 0), False, "fp16"),    # V100: torch counts emulated bf16 as supported, too slow to use
    ((7, 5), False, "fp16"),    # T4
])
def test_auto_precision_takes_bf16_only_where_the_gpu_computes_it(monkeypatch, capability, native, expected):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return native or including_emulation  # emulation is always "supported"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert devices.resolve_precision(torch.device("cuda", 0)) == expected
    assert devices.autocast_dtype(torch.device("cuda", 0)) == {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]
    assert all(flag is False for flag in asked)  # emulation never counts
    assert devices.resolve_precision("cpu") == "fp32" and devices.autocast_dtype("cpu") is None
    assert devices.resolve_precision(torch.device("cuda", 0), "fp32") == "fp32"  # an explicit choice stands
    with pytest.raises(ValueError, match="--precision"):
        devices.resolve_precision("cpu", "fp8")


def test_images_go_to_the_requested_gpu_and_its_free_memory_decides(monkeypatch):
    asked = []

    def mem_get_info(device=None):
        asked.append(torch.device(device))
        return 8 * 2**30, 80 * 2**30  # 8 GiB free
    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    gpu1 = torch.device("cuda", 1)
    assert data.storage_for(2**30, gpu1) == gpu1 and asked == [gpu1]  # 1 GiB <= 25% of 8 GiB: on GPU 1, not GPU 0
    assert data.storage_for(3 * 2**30, gpu1) == torch.device("cpu")  # too big for the GPU's share
    assert data.storage_for(3 * 2**30, gpu1, "device") == gpu1  # forced
    assert data.storage_for(1, gpu1, "host") == torch.device("cpu")  # forced staging
    assert data.storage_for(2**30, "cuda") == torch.device("cuda", 3)  # a bare "cuda" is the current GPU
    assert asked[-1] == torch.device("cuda", 3)
    assert data.storage_for(1, torch.device("cpu")) == torch.device("cpu")
    assert devices.default_device("cuda") == torch.device("cuda", 3)
    assert devices.default_device("cpu") == torch.device("cpu")


def test_host_images_for_a_gpu_are_staged_and_batches_go_to_that_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4096, 2**30))  # 4 KiB free: no room
    monkeypatch.setattr(data.ImageTensors, "to", lambda self, device: self)  # nothing can move to a GPU here
    train_set, valid_set = tensors(16), tensors(8)
    tfms = data.batch_transforms(archs.IMAGENET_MEAN, archs.IMAGENET_STD, None, None)
    dls = data.memory_dataloaders(train_set, valid_set, 4, torch.device("cuda", 1), tfms)
    assert dls.train.stage and dls.valid.stage and dls.train.device == torch.device("cuda", 1)
    assert dls.storage.startswith("cpu") and "staged" in dls.storage
    roomy = data.memory_dataloaders(train_set, valid_set, 4, torch.device("cuda", 1), tfms, storage="device")
    assert not roomy.train.stage and roomy.storage == "cuda:1"


def tensors(n: int, seed: int = 0) -> data.ImageTensors:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (n, 1, 8, 12), dtype=np.uint8))
    return data.ImageTensors(images, torch.arange(n) % 2, [Path(f"{i}.png") for i in range(n)])


def test_pinned_staging_branch_gives_the_same_batches_as_direct_slicing():
    dataset = tensors(21)
    batches = {}
    for stage in (False, True):
        dl = data.TensorBatchDL(dataset, bs=4, shuffle=True, drop_last=False, stage=stage, device=torch.device("cpu"))
        dl.rng.seed(7)
        batches[stage] = list(dl)
    assert len(batches[True]) == 6  # 21 images: 5 full batches and one of 1
    for (xs, ys), (x, y) in zip(batches[True], batches[False]):
        assert torch.equal(xs, x) and torch.equal(ys, y) and xs.dtype == torch.uint8
    assert data.TensorBatchDL(dataset, bs=4, stage=True).new().stage  # fastai's .new keeps it


# ---------------------------------------------------------------- inference precision

@pytest.mark.parametrize("arch", ["simple_cnn", "lcnn"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_scores_keep_float32_resolution(arch, precision):
    torch.manual_seed(0)
    model = archs.build_model(archs.builder_settings(arch)).eval()
    desc = description(arch)
    images = np.random.default_rng(0).integers(0, 256, (512, 32, 48), dtype=np.uint8)
    exact = model_io.predict_logits(model, images, desc, "cpu", bs=128, precision="fp32")
    mixed = model_io.predict_logits(model, images, desc, "cpu", bs=128, precision=precision)
    assert mixed.dtype == np.float32
    assert np.abs(mixed - exact).max() <= 0.03 * np.abs(exact).max()
    assert len(np.unique(model_io.bonafide_score(mixed))) >= len(np.unique(model_io.bonafide_score(exact)))
    # what the final layer in float32 prevents: the whole network in bf16 ties most scores
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = model(model_io.images_to_input(images, desc, "cpu")).float().numpy()
    assert len(np.unique(model_io.bonafide_score(rounded))) < 0.5 * len(images)


def test_the_final_layer_hooks_are_gone_after_the_block():
    model = archs.build_model(archs.builder_settings("simple_cnn")).eval()
    layer = devices.final_linear(model)
    assert layer is model[-1]
    with devices.float32_final_layer(model), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 3, 16, 16)).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")  # autocast is back on after the final layer
    assert not layer._forward_hooks and not layer._forward_pre_hooks


# ---------------------------------------------------------------- training under mixed precision

class RecordDtypes(Callback):
    """Records the first convolution's and the final layer's output dtypes and the GradScaler's state."""
    order = 90

    def before_fit(self):
        model = self.learn.model
        first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        self.seen = {"conv": set(), "final": set(), "scaler": None, "steps": 0}
        self.hooks = [first_conv.register_forward_hook(lambda m, i, o: self.seen["conv"].add(o.dtype)),
                      devices.final_linear(model).register_forward_hook(lambda m, i, o: self.seen["final"].add(o.dtype))]

    def after_step(self):
        scaler = getattr(self.learn, "scaler", None)
        self.seen["scaler"] = None if scaler is None else scaler.is_enabled()
        self.seen["steps"] += 1

    def after_fit(self):
        for h in self.hooks:
            h.remove()


@pytest.mark.parametrize("precision, fused", [("bf16", False), ("fp16", False), ("fp16", True), ("bf16", True)])
def test_mixed_precision_training_runs_on_the_data_device(tmp_path, monkeypatch, precision, fused):
    monkeypatch.setattr(train, "fused_adamw", lambda device: fused)  # fused=True is the CUDA default
    images = make_images(tmp_path / "images", n_train=16, n_val=8)
    recorder = RecordDtypes()
    build = train.build_learner
    monkeypatch.setattr(train, "build_learner", lambda *a, **k: build(*a, **k).add_cb(recorder))
    result = train.train(config(images, tmp_path / "runs", arch="lcnn", precision=precision, epochs=2), log=quiet)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert recorder.seen["conv"] == {dtype}  # the body ran under autocast on the CPU
    assert recorder.seen["final"] == {torch.float32}  # the classifier did not
    assert recorder.seen["scaler"] is (precision == "fp16")  # fp16 scales the loss, bf16 does not
    assert recorder.seen["steps"] > 0
    opt = result.learn.opt.opt
    assert bool(opt.defaults.get("fused")) is fused
    assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["eer"]) for row in result.history)
    cfg = json.loads((result.run_dir / "config.json").read_text())
    assert cfg["precision_used"] == precision
    # the saved network is the float32 one, and it scores like the learner did
    model, desc = model_io.load_model(result.run_dir)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in result.learn.model.modules())


def test_fp16_with_fused_adamw_skips_a_step_with_overflowing_gradients_on_the_device():
    """The CUDA default (fp16 GradScaler + fused AdamW) hands the inf check to the optimizer kernel."""
    from fastai.callback.core import CancelStepException
    from classify.callbacks import DeviceMixedPrecision
    layer = nn.Linear(4, 2)
    opt = train.optimizer_for(torch.device("cuda"))(layer.parameters(), lr=0.1)  # what CUDA gets: fused
    assert opt.opt.defaults["fused"] is True
    cb = DeviceMixedPrecision("fp16")
    cb.learn = type("L", (), {})()
    cb.learn.dls = type("D", (), {"device": torch.device("cpu")})()
    cb.learn.model, cb.learn.opt = layer, opt
    cb.before_fit()
    cb.learn.scaler.scale(torch.ones(()))  # the loss of the step: the scaler starts at 2**16
    weight = layer.weight.detach().clone()
    layer.weight.grad = torch.full_like(layer.weight, float("inf"))
    layer.bias.grad = torch.zeros_like(layer.bias)
    with pytest.raises(CancelStepException):  # fastai must not step again
        cb.before_step()
    assert torch.equal(layer.weight, weight)  # the kernel skipped the step
    scale = cb.learn.scaler.get_scale()
    cb.learn.scaler.update()
    assert cb.learn.scaler.get_scale() == scale / 2  # and the scale backs off
    cb.after_fit()


@pytest.mark.slow
def test_pretrained_fine_tune_with_a_frozen_body_under_fp16_and_fused_adamw(tmp_path, monkeypatch):
    import torchvision
    from torchvision.models import _api
    torch.manual_seed(1)
    stand_in = torchvision.models.resnet18().state_dict()  # "ImageNet weights" without the network
    monkeypatch.setattr(_api, "load_state_dict_from_url", lambda url, *a, **k: stand_in)
    monkeypatch.setattr(train, "fused_adamw", lambda device: True)
    images = make_images(tmp_path / "images", n_train=32, n_val=4)  # 8 steps: the scaler skips the first few
    frozen_grads, body_changed = [], []

    class WatchFrozenBody(Callback):
        def after_backward(self):
            if self.training and not frozen_grads:  # the frozen epoch's first step
                frozen_grads.append(self.learn.model[0][0].weight.grad)

        def after_train(self):
            body = self.learn.model[0][0].weight.detach()
            body_changed.append(not torch.equal(body, stand_in["conv1.weight"]))
    build = train.build_learner
    monkeypatch.setattr(train, "build_learner", lambda *a, **k: build(*a, **k).add_cb(WatchFrozenBody()))
    result = train.train(config(images, tmp_path / "runs", arch="resnet18", pretrained=True, epochs=1, bs=4,
                                freeze_epochs=1, precision="fp16"), log=quiet)
    assert len(result.history) == 2 and frozen_grads == [None]  # the body had no gradient while frozen
    assert body_changed == [False, True]  # ... and trained once unfrozen
    assert result.learn.opt.opt.defaults["fused"] is True
    assert all(np.isfinite(row["valid_loss"]) for row in result.history)


# ---------------------------------------------------------------- no host synchronization per batch

SYNCS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu, torch.Tensor.__bool__,
         torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.nonzero}
PROJECT = tuple(str(REPO / folder) for folder in ("classify", "spec2img"))


class HostSyncs(TorchFunctionMode):
    """Records each call that makes the host wait for the device (.item(), .cpu(), .tolist(), .numpy(),
    bool/float/int of a tensor, nonzero, .to("cpu")), with the first caller outside torch."""

    def __init__(self, roots=PROJECT):
        super().__init__()
        self.roots, self.calls = roots, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        to_host = func is torch.Tensor.to and "cpu" in (*args[1:], *kwargs.values())  # spelled out: .to("cpu")
        if func in SYNCS or to_host:
            frame = sys._getframe(1)
            while frame is not None and "/torch/" in frame.f_code.co_filename:
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(self.roots):
                code = frame.f_code
                self.calls.append(f"{func.__name__} at {code.co_filename}:{frame.f_lineno} ({code.co_name})")
        return func(*args, **kwargs)


class CountTrainingSyncs(Callback):
    """Holds a HostSyncs mode over every training phase (batches, loader, callbacks), not validation."""
    order = -10

    def __init__(self, roots=PROJECT):
        self.mode, self.batches = HostSyncs(roots), 0

    def before_train(self):
        self.mode.__enter__()

    def after_batch(self):
        self.batches += self.training

    def after_train(self):
        self.mode.__exit__(None, None, None)


@pytest.mark.parametrize("precision, fused", [("fp32", False), ("bf16", True), ("fp16", True)])
def test_training_batches_make_no_host_synchronization_in_the_project_code(tmp_path, monkeypatch, precision, fused):
    monkeypatch.setattr(train, "fused_adamw", lambda device: fused)
    images = make_images(tmp_path / "images", n_train=24, n_val=8)
    counter = CountTrainingSyncs()
    build = train.build_learner
    monkeypatch.setattr(train, "build_learner", lambda *a, **k: build(*a, **k).add_cb(counter))
    monkeypatch.setattr("classify.callbacks.SparseProgress.every", 1)  # the progress bar reads the loss every batch
    train.train(config(images, tmp_path / "runs", arch="simple_cnn", epochs=2, bs=4, mixup=0.2, precision=precision),
                log=quiet)
    assert counter.batches >= 10
    assert counter.mode.calls == []


def test_the_host_sync_guard_sees_a_sync_in_a_batch_callback(tmp_path, monkeypatch):
    """The guard above can fail: an .item() per batch in code it watches is caught."""
    images = make_images(tmp_path / "images", n_train=8, n_val=4)
    counter = CountTrainingSyncs(roots=PROJECT + (__file__,))

    class ReadsTheLoss(Callback):
        def after_batch(self):
            self.learn.loss.item()
    build = train.build_learner
    monkeypatch.setattr(train, "build_learner", lambda *a, **k: build(*a, **k).add_cbs([counter, ReadsTheLoss()]))
    train.train(config(images, tmp_path / "runs", arch="simple_cnn", bs=4), log=quiet)
    assert counter.batches >= 2 and len(counter.mode.calls) >= counter.batches
    assert all(call.startswith("item at ") for call in counter.mode.calls)
