"""classify.model_io: save/load without pickle, the one preprocessing, batched logits and scores."""
import json

import numpy as np
import pytest
import torch

from classify import archs, model_io, runfolder
from classify.runfolder import RunFolderError
from spec2img.fileio import stale_parts


def description(arch="simple_cnn", height=32, width=48):
    return {"arch": arch, "classes": ["bonafide", "spoof"], "spoof_index": 1,
            "input": {"height": height, "width": width, "channels": 3},
            "normalize": {"mean": list(archs.IMAGENET_MEAN), "std": list(archs.IMAGENET_STD)},
            "spec": {"image_height": height, "image_width": width}, "pretrained": False,
            "builder": archs.builder_settings(arch)}


@pytest.mark.parametrize("arch", ["simple_cnn", "resnet18"])
def test_saved_model_reloads_to_the_same_logits(tmp_path, arch):
    torch.manual_seed(0)
    model = archs.build_model(archs.builder_settings(arch)).eval()
    model_io.save_model(tmp_path, model, description(arch))
    runfolder.mark_complete(tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["format_version"] == 1
    assert not stale_parts(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 48), dtype=np.uint8)
    loaded, desc = model_io.load_model(tmp_path)
    assert not loaded.training and desc["arch"] == arch
    expected = model_io.predict_logits(model, images, desc, bs=5)
    got = model_io.predict_logits(loaded, images, desc, bs=2)  # batching must not matter
    assert got.shape == (5, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_load_model_never_unpickles(tmp_path, monkeypatch):
    model_io.save_model(tmp_path, archs.build_model(archs.builder_settings("simple_cnn")), description())
    runfolder.mark_complete(tmp_path)
    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load was called")
    monkeypatch.setattr(torch, "load", no_pickle)
    model_io.load_model(tmp_path)


def test_missing_files_name_the_run_folder_and_say_to_train_first(tmp_path):
    with pytest.raises(RunFolderError, match="make train"):
        model_io.load_model(tmp_path / "no-such-run")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(RunFolderError, match="incomplete"):       # no complete.json: training did not finish
        model_io.load_model(run)
    runfolder.mark_complete(run)
    with pytest.raises(RunFolderError, match="model.json"):
        model_io.load_model(run)
    (run / "model.json").write_text(json.dumps({"format_version": 1, **description()}))
    with pytest.raises(RunFolderError, match="model.safetensors") as err:
        model_io.load_model(run)
    assert str(run) in str(err.value)
    (run / "model.safetensors").write_bytes(b"")
    (run / "model.json").write_text(json.dumps({"format_version": 99, **description()}))
    with pytest.raises(RunFolderError, match="format_version 99"):
        model_io.load_model(run)


def test_images_to_input_replicates_gray_and_normalizes():
    images = np.array([[[0, 255], [51, 102]]], np.uint8)  # (1, H=2, W=2)
    desc = description(height=2, width=2)
    x = model_io.images_to_input(images, desc, "cpu")
    assert x.shape == (1, 3, 2, 2) and x.dtype == torch.float32
    for c, (m, s) in enumerate(zip(archs.IMAGENET_MEAN, archs.IMAGENET_STD)):
        np.testing.assert_allclose(x[0, c].numpy(), (images[0] / 255 - m) / s, atol=1e-5)
    same = model_io.images_to_input(torch.from_numpy(images).unsqueeze(1), desc, "cpu")  # (B,1,H,W) tensor
    torch.testing.assert_close(same, x)


def test_images_of_another_spec_are_refused():
    with pytest.raises(ValueError, match="spec.json"):
        model_io.images_to_input(np.zeros((1, 30, 48), np.uint8), description(), "cpu")
    with pytest.raises(TypeError, match="uint8"):
        model_io.images_to_input(np.zeros((1, 32, 48), np.float32), description(), "cpu")


def test_scores_from_logits():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
    np.testing.assert_allclose(model_io.spoof_probability(logits), [1 / (1 + np.e ** 2), 1 / (1 + np.e ** -2), 0.5])
    np.testing.assert_allclose(model_io.bonafide_score(logits), [2.0, -2.0, 0.0])
    big = np.array([[1000.0, -1000.0]])
    assert np.isfinite(model_io.spoof_probability(big)).all()
