"""classify.archs: the registry, rebuilding from model.json's recipe, and the missing-weights message."""
import json
import urllib.error

import pytest
import torch

from classify import archs


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(archs.UnknownArchError) as err:
        archs.get_arch("resnet152")
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_b0", "efficientnet_b4", "simple_cnn",
                 "lcnn"):
        assert name in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet101", "efficientnet_b4"])
def test_big_architectures_run_forward_and_backward_without_pretrained_weights(name):
    torch.manual_seed(0)
    model = archs.build_model(archs.builder_settings(name), pretrained=False).train()
    x = torch.randn(2, 3, 32, 64)  # (batch, channels, n_mels, frames)
    out = model(x)
    assert out.shape == (2, 2)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_simple_cnn_is_the_reference_projects_small_cnn():
    model = archs.build_model(archs.builder_settings("simple_cnn"))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (3, 3)), (64, (3, 3))]
    assert [(l.in_features, l.out_features) for l in linears] == [(64, 128), (128, 2)]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 2
    assert model(torch.randn(3, 3, 32, 50)).shape == (3, 2)


def test_lcnn_is_the_asvspoof_lfcc_lcnn_baseline_body_at_half_width():
    def conv_widths(model):
        return [(c.kernel_size[0], c.out_channels) for c in model.modules() if isinstance(c, torch.nn.Conv2d)]
    baseline = [(5, 64), (1, 64), (3, 96), (1, 96), (3, 128), (1, 128), (3, 64), (1, 64), (3, 64)]
    assert conv_widths(archs.LCNN(width=1.0)) == baseline
    model = archs.build_model(archs.builder_settings("lcnn"))
    assert conv_widths(model) == [(k, c // 2) for k, c in baseline]
    assert sum(isinstance(m, archs.MaxFeatureMap) for m in model.modules()) == 9
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 4
    assert all(not m.affine for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.7 for m in model.modules())
    # time-average pooling only: 128 mel rows / 16 = 8 bands, each band's 16 channels reach the linear layer
    assert model[-1].in_features == 16 * 8 and model[-1].out_features == 2


def test_max_feature_map_is_the_max_of_the_two_channel_halves():
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0], [4.0, 0.0, -1.0, -5.0]]).reshape(2, 4, 1, 1)
    expected = torch.tensor([[1.0, 3.0], [4.0, 0.0]]).reshape(2, 2, 1, 1)
    assert torch.equal(archs.MaxFeatureMap()(x), expected)


def test_lcnn_trains_and_rebuilds_exactly_from_its_model_json_recipe():
    torch.manual_seed(0)
    model = archs.build_model(archs.builder_settings("lcnn")).train()
    x = torch.randn(4, 3, 64, 48)  # (batch, channels, n_mels, frames), smaller than 128x400 on purpose
    out = model(x)
    assert out.shape == (4, 2)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 0, 1])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    builder = json.loads(json.dumps(archs.builder_settings("lcnn")))  # what model.json stores
    assert builder["source"] == "LCNN" and builder["width"] == 0.5
    torch.manual_seed(1)  # different random weights, replaced by the state dict
    rebuilt = archs.build_model(builder, pretrained=False)
    rebuilt.load_state_dict(model.state_dict())  # strict: same names and shapes, BatchNorm running stats included
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
        assert model(torch.randn(1, 3, 128, 400)).shape == (1, 2)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_rebuilt_model_matches_what_vision_learner_trains(name):
    from fastai.data.core import DataLoaders
    from fastai.vision.learner import vision_learner
    from classify.data import ImageTensors, TensorBatchDL
    empty = ImageTensors(torch.zeros(0, 1, 32, 50, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), [])
    dls = DataLoaders(TensorBatchDL(empty, bs=2), TensorBatchDL(empty, bs=2), device="cpu")
    arch = archs.get_arch(name)
    factory = archs.torchvision_factory(arch.source) if arch.library == "torchvision" else arch.source
    trained = vision_learner(dls, factory, normalize=False, n_out=2, pretrained=False,
                             loss_func=torch.nn.CrossEntropyLoss(), **archs.HEAD).model
    rebuilt = archs.build_model(archs.builder_settings(name))
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes(trained) == shapes(rebuilt)


def test_missing_torchvision_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(archs.PretrainedWeightsUnavailable) as err:
        archs.build_model(archs.builder_settings("resnet18"), pretrained=True)
    message = str(err.value)
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in message
    assert "resnet18-" in message and "--no-pretrained" in message


def test_missing_timm_weights_say_where_to_put_them(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(archs.PretrainedWeightsUnavailable) as err:
        archs.build_model(archs.builder_settings("efficientnet_b0"), pretrained=True)
    message = str(err.value)
    assert str(tmp_path / "hf-cache") in message and "timm/efficientnet_b0" in message
    assert "--no-pretrained" in message
