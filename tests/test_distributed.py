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


def test_the_batch_must_split_evenly_across_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="multiple of 3"):
        train.TrainConfig(arch="simple_cnn", bs=64, pretrained=False).validate()
    assert distributed.per_process_bs(66) == 22
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.per_process_bs(65) == 65


def test_sync_batchnorm_is_turned_back_into_plain_batchnorm_with_the_same_tensors():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
                          nn.Sequential(nn.BatchNorm1d(3)))
    model(torch.randn(5, 1, 8, 8))  # running statistics move away from their defaults
    types = {n: type(m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model[1].weight
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(synced[1], nn.SyncBatchNorm) and isinstance(synced[4][0], nn.SyncBatchNorm)
    plain = distributed.restore_batchnorm(synced, types)
    assert type(plain[1]) is nn.BatchNorm2d and type(plain[4][0]) is nn.BatchNorm1d
    assert plain[1].weight is weight  # the optimizer still holds the same parameters
    after = plain.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
