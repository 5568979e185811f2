"""classify.archs: the registry, rebuilding from model.json's recipe, and the missing-weights message."""
import json
import time
import urllib.error

import pytest
import torch

from classify import archs


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(archs.UnknownArchError) as err:
        archs.get_arch("resnet152")
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_b0", "efficientnet_b4",
                 "efficientnet_lite0", "simple_cnn", "lcnn"):
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


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "efficientnet_lite0"])
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
    assert "--no-pretrained" in message and "--weights" in message


def hub_out_of_reach(monkeypatch, cache):
    """Point huggingface_hub at an empty cache and an endpoint that cannot resolve, without HF_HUB_OFFLINE or a
    proxy; return the list that records every download timm attempts."""
    import timm.models._hub
    from huggingface_hub import constants
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # .invalid never resolves (RFC 2606)
    for proxy in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    downloads = []

    def download(*args, **kwargs):
        downloads.append(args or kwargs)
        raise OSError("no network (test)")
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", download)
    return downloads


def test_timm_weights_fail_at_once_offline_with_where_to_put_them(tmp_path, monkeypatch):
    downloads = hub_out_of_reach(monkeypatch, tmp_path / "hf-cache")
    start = time.monotonic()
    with pytest.raises(archs.PretrainedWeightsUnavailable) as err:
        archs.build_model(archs.builder_settings("efficientnet_lite0"), pretrained=True)
    assert time.monotonic() - start < 15  # huggingface_hub alone retries for about a minute
    assert downloads == []  # no request, so no retry
    message = str(err.value)
    assert "hub.invalid:443 cannot be reached" in message and "timm/efficientnet_lite0" in message
    assert str(tmp_path / "hf-cache") in message and "--weights FILE" in message and "--no-pretrained" in message


def test_timm_weights_copied_into_the_hub_cache_load_without_the_network(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file
    downloads = hub_out_of_reach(monkeypatch, tmp_path / "hf-cache")
    torch.manual_seed(3)
    imagenet = timm.create_model("efficientnet_lite0").state_dict()  # stands in for the hub's file
    # the hub cache's layout: models--<org>--<name>/refs/main names the snapshot holding the files
    repo = tmp_path / "hf-cache" / "models--timm--efficientnet_lite0.ra_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in imagenet.items()}, str(snapshot / "model.safetensors"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    model = archs.build_model(archs.builder_settings("efficientnet_lite0"), pretrained=True)
    assert downloads == []
    body = model[0].model.state_dict()
    assert torch.equal(body["conv_stem.weight"], imagenet["conv_stem.weight"])
    assert torch.equal(body["blocks.6.0.bn3.running_var"], imagenet["blocks.6.0.bn3.running_var"])
