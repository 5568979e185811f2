"""Multi-process training (classify.distributed): two CPU processes on gloo, launched as `make train GPUS=2` does."""
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from classify import distributed, model_io, train
from classify.metrics import compute_eer
from test_train import make_images
from spec2img.fileio import stale_parts

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mislabel_some_val_images(images: Path) -> int:
    """Copy 2 bonafide-looking val images into spoof/ and 1 spoof-looking one into bonafide/, so that
    no model scores every val image right (a metric over part of the split would differ); return the val count."""
    val = images / "val"
    for src, label in ((val / "bonafide" / "bonafide_000.png", "spoof"), (val / "bonafide" / "bonafide_001.png",
                       "spoof"), (val / "spoof" / "spoof_000.png", "bonafide")):
        shutil.copy(src, val / label / f"mislabeled_{src.name}")
    return len(list(val.rglob("*.png")))


@pytest.mark.slow
def test_two_processes_train_one_model_score_all_of_val_and_write_one_run_folder(tmp_path):
    images = make_images(tmp_path / "images", n_train=24, n_val=12)
    n_val = mislabel_some_val_images(images)  # 15: odd, so the 2-way split pads one image
    runs, debug = tmp_path / "runs", tmp_path / "debug"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()),
           "-m", "classify.train", "--images", str(images), "--arch", "simple_cnn", "--no-pretrained",
           "--epochs", "2", "--bs", "8", "--out", str(runs)]
    env = {**os.environ, distributed.DEBUG_WEIGHTS_ENV: str(debug), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    folders = [p for p in runs.iterdir() if p.name != "latest"]
    assert len(folders) == 1, folders  # rank 1 wrote nothing of its own
    run = folders[0]
    assert (runs / "latest").resolve() == run.resolve()
    assert not stale_parts(run)
    ranks = [json.loads((debug / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]  # gradients were averaged
    assert ranks[0]["run_dir"] == ranks[1]["run_dir"] == str(run)
    assert ranks[0]["valid_items_scored"] == ranks[1]["valid_items_scored"] == n_val
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["processes"] == 2 and cfg["bs_per_process"] == 4 and cfg["settings"]["bs"] == 8
    assert "2 processes" in (run / "train.log").read_text()

    # the saved weights are the kept ones every rank holds, and the history's metrics are theirs on all of val
    model, desc = model_io.load_model(run)
    assert distributed.weights_digest(model) == ranks[0]["weights_sha256"]
    with open(run / "history.csv", newline="") as f:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    assert len(history) == 2
    kept = min(history, key=lambda r: (r["eer"], r["valid_loss"]))
    paths = sorted((images / "val").rglob("*.png"))
    labels = np.array([0 if p.parent.name == "bonafide" else 1 for p in paths])
    logits = model_io.predict_logits(model, np.stack([np.asarray(Image.open(p)) for p in paths]), desc)
    score = model_io.bonafide_score(logits)
    assert kept["accuracy"] == pytest.approx(np.mean((score <= 0) == (labels == 1)), abs=1e-6)
    assert kept["eer"] == pytest.approx(compute_eer(score[labels == 0], score[labels == 1])[0], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("failing_rank", [0, 1])
def test_out_of_memory_on_one_process_stops_both_with_the_clear_message(tmp_path, failing_rank):
    images = make_images(tmp_path / "images", n_train=24, n_val=8)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(REPO / "tests" / "oom_on_one_rank.py"),
           "--images", str(images), "--arch", "simple_cnn", "--no-pretrained", "--epochs", "2", "--bs", "8",
           "--out", str(runs)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OOM_RANK": str(failing_rank), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    said = f"CUDA out of memory in process {failing_rank} of 2 with --bs 8 (simple_cnn): try --bs 4"
    assert output.count(said) >= 2, output[-4000:]  # the failed process's own message, and the other's
    assert f"[process {1 - failing_rank} stops too]" in output, output[-4000:]
    assert not list(runs.rglob("model.safetensors"))  # no run pretends to have finished


def test_the_batch_must_split_evenly_across_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="multiple of 3"):
        train.TrainConfig(arch="simple_cnn", bs=64, pretrained=False).validate()
    assert distributed.per_process_bs(66) == 22
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.per_process_bs(65) == 65


def test_sync_batchnorm_round_trip_keeps_efficientnet_b0_identical():
    """timm's BatchNormAct2d holds its SiLU: torch's converter dropped it (logits off by ~4) and the old
    restore rebuilt ReLU layers; the round trip must give back the very network that was trained."""
    from classify import archs
    torch.manual_seed(0)
    model = archs.build_model(archs.builder_settings("efficientnet_b0")).eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        before = model(x)
    classes = [(name, type(m)) for name, m in model.named_modules()]
    params = dict(model.named_parameters())
    synced, originals = distributed.sync_batchnorm(model)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == len(originals) > 49
    with torch.no_grad():
        torch.testing.assert_close(synced(x), before, rtol=0, atol=0)  # the activations still run while synced
    synced.train()
    synced(torch.randn(4, 3, 32, 48))  # a training step moves the running statistics of the synced layers
    moved = {k: v.clone() for k, v in synced.state_dict().items()}
    restored = distributed.restore_batchnorm(synced, originals).eval()
    assert [(name, type(m)) for name, m in restored.named_modules()] == classes  # SiLU stays SiLU
    assert all(restored.get_parameter(k) is p for k, p in params.items())  # what the optimizer holds
    after = restored.state_dict()
    assert after.keys() == moved.keys() and all(torch.equal(after[k], moved[k]) for k in moved)
    model_again = archs.build_model(archs.builder_settings("efficientnet_b0")).eval()
    model_again.load_state_dict(after)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model_again(x), rtol=0, atol=0)  # what model.json rebuilds


def test_torch_sync_batchnorm_conversion_would_drop_timm_activations():
    """The defect the round trip above guards against, shown on the CPU (timm #1254)."""
    from classify import archs
    torch.manual_seed(0)
    model = archs.build_model(archs.builder_settings("efficientnet_b0")).eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        before = model(x)
        dropped = nn.SyncBatchNorm.convert_sync_batchnorm(model)(x)
    assert not torch.allclose(before, dropped, atol=1e-3)


def test_trainer_sync_batchnorm_branch_trains_synced_layers_and_hands_back_the_originals(tmp_path, monkeypatch):
    """CPU twin of the CUDA-only branch of DataParallelTrainer: BatchNorm converted before the fit
    (timm's converter), trained as SyncBatchNorm, the original layer objects back afterwards."""
    from fastai.callback.core import Callback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from timm.layers import BatchNormAct2d
    from timm.layers.norm_act import SyncBatchNormAct
    from classify import data
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(distributed.ShardedDL, "_broadcast", lambda self, t, rank: list(t))  # one process: no group
    images = make_images(tmp_path / "images", n_train=8, n_val=4)
    dls, *_ = data.build_dataloaders(images, bs=4, device="cpu", log=lambda m: None)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4, act_layer=nn.SiLU), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    bn, weight = model[1], model[1].weight.detach().clone()
    seen = []

    class Spy(Callback):
        def before_batch(self):
            seen.append(type(self.learn.model.get_submodule("1")))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=train.optimizer_for(torch.device("cpu")))
    learn.add_cbs([distributed.DataParallelTrainer(torch.device("cpu"), sync_bn=True), Spy()])
    learn.fit(1, 1e-2)
    assert seen and set(seen) == {SyncBatchNormAct}  # trained synced, activation kept
    assert learn.model[1] is bn and type(bn) is BatchNormAct2d and isinstance(bn.act, nn.SiLU)
    assert not torch.equal(bn.weight.detach(), weight)  # the training reached the original layer
    assert any(p is bn.weight for group in learn.opt.param_groups for p in group["params"])
    assert int(bn.num_batches_tracked) == 2  # the synced layer's running statistics are the original's
