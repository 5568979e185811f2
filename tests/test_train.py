"""classify.train and classify.data on tiny generated spectrogram trees (CPU, no pretrained weights)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classify import data, model_io, train
from classify.metrics import compute_eer
from spec2img.config import SpecConfig, save_spec
from spec2img.fileio import stale_parts

SMALL_SPEC = SpecConfig(n_mels=32, duration=0.5)  # 32 x 50 images


def make_images(root: Path, n_train: int = 24, n_val: int = 12, spec: SpecConfig = SMALL_SPEC, seed: int = 0,
                splits=("train", "val", "test")) -> Path:
    """Write an images/ tree whose classes are easy to tell apart: bonafide energy in the low half
    (bottom rows), spoof energy in the high half, with noise everywhere; return the root."""
    save_spec(spec, root)
    h, w = spec.image_shape
    rng = np.random.default_rng(seed)
    for split in splits:
        n = n_train if split == "train" else n_val
        for label in ("bonafide", "spoof"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n // 2):
                img = rng.integers(0, 60, (h, w)).astype(np.float64)
                img[(slice(h // 2, h) if label == "bonafide" else slice(0, h // 2))] += 120
                Image.fromarray(img.clip(0, 255).astype(np.uint8), "L").save(folder / f"{label}_{i:03d}.png")
    return root


def config(images, out, **kw) -> train.TrainConfig:
    settings = dict(images=str(images), out=str(out), arch="simple_cnn", epochs=1, bs=8, pretrained=False,
                    workers=2, seed=0)
    return train.TrainConfig(**{**settings, **kw})


def quiet(_msg):
    pass


def read_val_pngs(paths):
    return np.stack([np.asarray(Image.open(p)) for p in paths])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:load_learner")
def test_resnet18_one_epoch_writes_the_whole_run_folder(tmp_path):
    images = make_images(tmp_path / "images")
    result = train.train(config(images, tmp_path / "runs", arch="resnet18"), log=quiet)
    run = result.run_dir
    for name in ("config.json", "history.csv", "curves.png", "model.safetensors", "model.json", "export.pkl",
                 "train.log"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    done = json.loads((run / "complete.json").read_text())      # written last: the run is usable
    assert {"model.safetensors", "model.json", "export.pkl", "config.json"} <= set(done["files"])
    assert done["best_epoch"] == result.best_epoch
    assert not stale_parts(run)
    assert run.name.startswith("resnet18-") and len(run.name) == len("resnet18-yyyymmdd-hhmmss")
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and not os.path.isabs(os.readlink(latest)) and latest.resolve() == run.resolve()

    history = (run / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,valid_loss,accuracy,roc_auc,eer,time" and len(history) == 2
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["settings"]["arch"] == "resnet18" and cfg["seed"] == 0 and cfg["data"]["loader"] == "memory"
    assert cfg["spec"]["image_height"] == 32 and {"torch", "fastai", "timm", "numpy"} <= set(cfg["versions"])
    assert "device" in cfg and "git_commit" in cfg
    desc = json.loads((run / "model.json").read_text())
    assert desc["format_version"] == 1 and desc["classes"] == ["bonafide", "spoof"] and desc["spoof_index"] == 1
    assert desc["input"] == {"height": 32, "width": 50, "channels": 3} and desc["pretrained"] is False
    assert "epoch" in (run / "train.log").read_text()

    # validation accuracy beats chance, and the reloaded safetensors model gives the learner's predictions
    kept = result.history[result.best_epoch]
    assert kept["accuracy"] > 0.5
    valid = result.learn.dls.valid
    learner_probs, targets = result.learn.get_preds(dl=valid)
    model, desc = model_io.load_model(run)
    logits = model_io.predict_logits(model, read_val_pngs(valid.dataset.paths), desc, bs=5)
    np.testing.assert_allclose(model_io.spoof_probability(logits), learner_probs[:, 1].numpy(), atol=1e-5)
    score = model_io.bonafide_score(logits)
    labels = targets.numpy()
    assert compute_eer(score[labels == 0], score[labels == 1])[0] == pytest.approx(kept["eer"], abs=1e-6)
    # fastai users: export.pkl predicts from a PNG path, agreeing with the safetensors model
    from fastai.learner import load_learner
    exported = load_learner(run / "export.pkl")
    label, _, probs = exported.predict(valid.dataset.paths[0])
    assert float(probs[1]) == pytest.approx(model_io.spoof_probability(logits)[0], abs=1e-5)


def test_simple_cnn_learns_and_same_seed_gives_same_metrics(tmp_path):
    images = make_images(tmp_path / "images")
    first = train.train(config(images, tmp_path / "runs", epochs=2), log=quiet)
    second = train.train(config(images, tmp_path / "runs", epochs=2), log=quiet)
    assert first.run_dir != second.run_dir  # same second: the -s<seed> suffix keeps them apart
    strip = [{k: v for k, v in row.items() if k != "time"} for row in first.history]
    assert strip == [{k: v for k, v in row.items() if k != "time"} for row in second.history]
    assert first.history[-1]["roc_auc"] > 0.9  # learns to rank spoof above bonafide
    assert (tmp_path / "runs" / "latest").resolve() == second.run_dir.resolve()


@pytest.mark.parametrize("size, shape", [(0, (32, 50)), (16, (16, 25))])
def test_memory_and_datablock_paths_give_the_same_validation_batches(tmp_path, size, shape):
    images = make_images(tmp_path / "images", n_train=8, n_val=6)
    mem, *_ = data.build_dataloaders(images, bs=6, device="cpu", loader="memory", size=size, log=quiet)
    blk, *_ = data.build_dataloaders(images, bs=6, device="cpu", loader="datablock", size=size, workers=1, log=quiet)
    (xm, ym), (xb, yb) = mem.valid.one_batch(), blk.valid.one_batch()
    assert xm.shape == (6, 3, *shape) and xm.dtype == torch.float32
    torch.testing.assert_close(xm, torch.as_tensor(xb))
    assert ym.tolist() == torch.as_tensor(yb).tolist()
    # the same preprocessing as model_io (what evaluation and prediction use)
    desc = {"input": {"height": shape[0], "width": shape[1]}, "normalize": {"mean": data_mean(), "std": data_std()},
            "spec": {"image_height": 32, "image_width": 50}}
    torch.testing.assert_close(xm, model_io.images_to_input(read_val_pngs(mem.valid.dataset.paths[:6]), desc, "cpu"))
    xt, yt = mem.train.one_batch()
    assert xt.shape == (6, 3, *shape) and set(yt.tolist()) <= {0, 1}


def data_mean():
    from classify.archs import IMAGENET_MEAN
    return list(IMAGENET_MEAN)


def data_std():
    from classify.archs import IMAGENET_STD
    return list(IMAGENET_STD)


def test_spec_augment_masks_and_shifts_but_keeps_frequency_rows_in_place():
    x = torch.arange(32, dtype=torch.float32).view(1, 1, 32, 1).expand(4, 1, 32, 50).contiguous()
    torch.manual_seed(0)
    shifted = data.random_time_shift(x, 0.5)
    assert torch.equal(shifted, x)  # rows depend on frequency only: a time shift must not move them
    cfg = data.AugmentConfig(time_shift=0.0, time_masks=1, time_mask_frac=0.2, freq_masks=1, freq_mask_frac=0.25)
    out = data.spec_augment(x, cfg)
    changed = out != x
    assert changed.any() and out.shape == x.shape
    ramp = torch.arange(50, dtype=torch.float32).view(1, 1, 1, 50).expand(2, 1, 4, 50)
    rolled = data.random_time_shift(ramp, 0.5)
    assert torch.equal(rolled.sort(dim=-1).values, ramp)  # a circular shift: same columns, new order


def test_balanced_sampler_and_class_weights(tmp_path):
    assert data.class_weights([0, 1, 1, 1]) == pytest.approx([2.0, 2 / 3])
    images = make_images(tmp_path / "images", n_train=8, n_val=4)
    for spoof_png in sorted((images / "train" / "spoof").glob("*.png"))[1:]:
        for k in range(3):  # 1 bonafide : 9 spoof
            (spoof_png.parent / f"{spoof_png.stem}_copy{k}.png").write_bytes(spoof_png.read_bytes())
    dls, _, _, summary = data.build_dataloaders(images, bs=4, device="cpu", balance="sampler", log=quiet)
    drawn = np.concatenate([dls.train.dataset.labels[dls.train.get_idxs()].numpy() for _ in range(20)])
    assert 0.35 < drawn.mean() < 0.65  # balanced batches, although 13 of the 17 images are spoof
    assert summary.class_weights == [1.0, 1.0]


def test_a_broken_png_is_reported_by_name_and_training_data_goes_on(tmp_path):
    images = make_images(tmp_path / "images", n_train=8, n_val=4)
    bad = images / "train" / "spoof" / "broken.png"
    bad.write_bytes(b"not a png at all")
    messages = []
    dls, *_ = data.build_dataloaders(images, bs=4, device="cpu", log=messages.append)
    assert any("broken.png" in m and "not a PNG" in m for m in messages)
    assert len(dls.train.dataset) == 8


@pytest.mark.parametrize("damage, expected", [
    ("no_images", "images folder"),
    ("no_spec", "spec.json"),
    ("empty_val", "val split is empty"),
    ("one_class_train", "one class only"),
    ("wrong_size", "disagree with spec.json"),
    ("stray_folder", "not a label folder"),
])
def test_bad_images_folder_stops_with_a_clear_message(tmp_path, damage, expected):
    images = make_images(tmp_path / "images", n_train=4, n_val=4)
    if damage == "no_images":
        images = tmp_path / "nowhere"
    elif damage == "no_spec":
        (images / "spec.json").unlink()
    elif damage == "empty_val":
        for png in (images / "val").rglob("*.png"):
            png.unlink()
    elif damage == "one_class_train":
        for png in (images / "train" / "spoof").glob("*.png"):
            png.unlink()
    elif damage == "wrong_size":
        Image.fromarray(np.zeros((40, 50), np.uint8), "L").save(images / "train" / "spoof" / "odd.png")
    elif damage == "stray_folder":
        (images / "train" / "maybe").mkdir()
    with pytest.raises((data.ImagesError, FileNotFoundError)) as err:
        train.train(config(images, tmp_path / "runs"), log=quiet)
    assert expected in str(err.value)
    if damage == "wrong_size":
        assert "odd.png" in str(err.value)
    assert not (tmp_path / "runs").exists()  # nothing written before the data is known to be usable


@pytest.mark.parametrize("setting, message", [(dict(bs=0), "--bs 0 must be >= 1"),
                                              (dict(epochs=0), "no epoch to train")])
def test_impossible_settings_stop_before_reading_data(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        train.train(config(tmp_path / "not-read", tmp_path / "runs", **setting), log=quiet)


def test_unknown_architecture_lists_the_known_ones(tmp_path):
    with pytest.raises(SystemExit) as err:
        train.main(["--images", str(tmp_path), "--arch", "resnet1001", "--out", str(tmp_path / "runs")])
    assert "resnet1001" in str(err.value) and "efficientnet_b4" in str(err.value) and "simple_cnn" in str(err.value)


def test_mixup_and_sampler_runs_finish(tmp_path):
    images = make_images(tmp_path / "images", n_train=8, n_val=4)
    result = train.train(config(images, tmp_path / "runs", mixup=0.4, balance="sampler", early_stop=1), log=quiet)
    assert (result.run_dir / "model.safetensors").is_file() and len(result.history) == 1


def test_cuda_out_of_memory_suggests_a_smaller_batch(monkeypatch):
    class Learn:
        def fit_one_cycle(self, *args, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(SystemExit, match="--bs 32"):
        train.fit(Learn(), train.TrainConfig(arch="simple_cnn", bs=64, pretrained=False))


def test_input_size_keeps_the_aspect_ratio():
    assert data.input_shape((128, 400), 0) == (128, 400)
    assert data.input_shape((128, 400), 64) == (64, 200)


def test_pretrained_path_fine_tunes_with_a_frozen_body_first(tmp_path, monkeypatch):
    import torchvision
    from torchvision.models import _api
    torch.manual_seed(1)
    stand_in = torchvision.models.resnet18().state_dict()  # "ImageNet weights" without the network
    monkeypatch.setattr(_api, "load_state_dict_from_url", lambda url, *a, **k: stand_in)
    images = make_images(tmp_path / "images", n_train=16, n_val=8)
    result = train.train(config(images, tmp_path / "runs", arch="resnet18", pretrained=True, epochs=1,
                                freeze_epochs=1), log=quiet)
    assert len(result.history) == 2  # one frozen epoch, then one of the whole network
    cfg = json.loads((result.run_dir / "config.json").read_text())
    assert cfg["schedule"] == "fine_tune" and cfg["settings"]["pretrained"] is True
    assert json.loads((result.run_dir / "model.json").read_text())["pretrained"] is True
    model, desc = model_io.load_model(result.run_dir)
    body_conv = model.state_dict()["0.0.weight"]  # rebuilt without downloading anything
    assert body_conv.shape == stand_in["conv1.weight"].shape


def test_missing_pretrained_weights_stop_before_any_image_is_decoded(tmp_path, monkeypatch):
    import urllib.error
    from classify import archs
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(data, "decode_images", lambda *a, **k: pytest.fail("images decoded before the check"))
    images = make_images(tmp_path / "images", n_train=4, n_val=4)
    with pytest.raises(archs.PretrainedWeightsUnavailable, match="--no-pretrained"):
        train.train(config(images, tmp_path / "runs", arch="resnet18", pretrained=True), log=quiet)
    assert not (tmp_path / "runs").exists()
