"""Architectures by name: how each is built for training and rebuilt, exactly, from model.json.

Every model takes 3-channel input: the grayscale spectrogram is replicated into 3 identical
channels and normalized with the ImageNet statistics below (see `model_io.images_to_input`),
which is what the pretrained stems expect; the from-scratch models (`simple_cnn`, `lcnn`) get
the same input so that one preprocessing serves every run. The `builder` dict returned by `builder_settings` is stored in
model.json; `build_model(builder)` turns it back into the identical `nn.Module` (random weights)
so that the safetensors state dict loads without unpickling anything.
"""
from __future__ import annotations

import os
import socket
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the statistics torchvision's and timm's ImageNet weights expect
IMAGENET_STD = (0.229, 0.224, 0.225)
N_CLASSES = 2  # bonafide, spoof (spec2img.rows.LABELS order)

# fastai head settings (vision_learner's defaults), stored in model.json so the head is rebuilt identically
HEAD = {"concat_pool": True, "lin_ftrs": None, "ps": 0.5, "first_bn": True, "bn_final": False, "lin_first": False}


@dataclass(frozen=True)
class Arch:
    name: str      # the --arch name
    library: str   # "torchvision" (fastai create_vision_model), "timm" (fastai create_timm_model) or "scratch"
    source: str    # torchvision factory / timm model name / class name here


ARCHS = {a.name: a for a in [
    Arch("resnet18", "torchvision", "resnet18"),
    Arch("resnet34", "torchvision", "resnet34"),
    Arch("resnet50", "torchvision", "resnet50"),
    Arch("resnet101", "torchvision", "resnet101"),
    Arch("efficientnet_b0", "timm", "efficientnet_b0"),
    Arch("efficientnet_b4", "timm", "efficientnet_b4"),
    Arch("efficientnet_lite0", "timm", "efficientnet_lite0"),  # no SE blocks, ReLU6: CPU-sized fine-tuning
    Arch("simple_cnn", "scratch", "SimpleCNN"),
    Arch("lcnn", "scratch", "LCNN"),
]}


class UnknownArchError(ValueError):
    """An --arch name that is not in ARCHS; the message lists the known names."""


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights could not be downloaded or read; the message says where to put them."""


def get_arch(name: str) -> Arch:
    """Return the registry entry for `name`, or raise UnknownArchError listing the known names."""
    if name not in ARCHS:
        raise UnknownArchError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}")
    return ARCHS[name]


class SimpleCNN(nn.Sequential):
    """The reference projects' small CNN: two conv blocks, global average pooling, a 128-unit dense layer."""

    def __init__(self, n_in: int = 3, n_out: int = N_CLASSES):
        super().__init__(
            nn.Conv2d(n_in, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 128), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(128, n_out))


class MaxFeatureMap(nn.Module):
    """Max-Feature-Map activation: the elementwise max of the first and second half of the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)  # (B, 2C, H, W) -> two (B, C, H, W)
        return torch.where(first >= second, first, second)  # = torch.maximum, with a cheaper backward on the CPU


# LCNN body of the ASVspoof 2019/2021 LFCC-LCNN baseline (Lavrentyeva et al. 2019; asvspoof-challenge/2021
# LA/Baseline-LFCC-LCNN model.py): ("conv", kernel, conv output channels) — each conv is followed by MFM,
# which halves the channels — "pool" (2x2 max pooling) and "bn" (BatchNorm without affine parameters).
LCNN_LAYERS = (("conv", 5, 64), ("pool",),
               ("conv", 1, 64), ("bn",), ("conv", 3, 96), ("pool",), ("bn",),
               ("conv", 1, 96), ("bn",), ("conv", 3, 128), ("pool",),
               ("conv", 1, 128), ("bn",), ("conv", 3, 64), ("bn",),
               ("conv", 1, 64), ("bn",), ("conv", 3, 64), ("pool",))
# builder settings of lcnn: half the baseline's channels (CPU-sized: about as fast as simple_cnn on 128x400)
LCNN_DEFAULTS = {"width": 0.5, "freq_bands": 8, "dropout": 0.7}


class LCNN(nn.Sequential):
    """The LFCC-LCNN baseline's light CNN on the spectrogram image, with time-average pooling instead of its BLSTMs.

    The body is the baseline's (MFM activations, four 2x2 max pools: 128 mel rows -> 8 bands);
    the head averages over time only, so the final linear layer sees every (channel, frequency band)
    feature separately: where in frequency an artefact lies is kept, unlike global average pooling.
    """

    def __init__(self, n_in: int = 3, n_out: int = N_CLASSES, width: float = 0.5, freq_bands: int = 8,
                 dropout: float = 0.7):
        layers, channels = [], n_in
        for kind, *args in LCNN_LAYERS:
            if kind == "conv":
                kernel, conv_out = args[0], 2 * round(args[1] * width / 2)  # even, for MFM
                layers += [nn.Conv2d(channels, conv_out, kernel, padding=kernel // 2), MaxFeatureMap()]
                channels = conv_out // 2
            elif kind == "pool":  # every pool follows a conv's MFM: pool first (the same maxima), MFM on 1/4 of the pixels
                layers.insert(-1, nn.MaxPool2d(2))
            else:
                layers.append(nn.BatchNorm2d(channels, affine=False))
        super().__init__(
            *layers, nn.Dropout(dropout),
            nn.AdaptiveAvgPool2d((freq_bands, 1)),  # (B, C, H/16, W/16) -> (B, C, freq_bands, 1): time average
            nn.Flatten(), nn.Linear(channels * freq_bands, n_out))


SCRATCH_MODELS = {"SimpleCNN": (SimpleCNN, {}), "LCNN": (LCNN, LCNN_DEFAULTS)}  # class, builder settings


# ---------------------------------------------------------------- attribution targets (classify.explain)

class NoConvolutionalStage(ValueError):
    """The model has no convolutional feature map to attribute; the message says which model and why."""


@dataclass(frozen=True)
class AttributionTarget:
    layer: nn.Module   # module whose output feature map (B, C, h, w) is attributed
    method: str        # "grad_cam" (Captum LayerGradCam) or "grad_x_activation" (Captum LayerGradientXActivation)
    where: str         # the layer in words, for the report and the pictures


def _last(model: nn.Module, kind: type) -> nn.Module:
    found = [m for m in model.modules() if isinstance(m, kind)]
    if not found:
        raise NoConvolutionalStage(f"{type(model).__name__} has no {kind.__name__} layer to attribute")
    return found[-1]


def _after_last_conv(model: nn.Sequential, kind: type) -> nn.Module:
    """Return the first `kind` module after the last Conv2d of a Sequential (the last conv block's activation)."""
    layers = list(model)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    after = [m for m in layers[convs[-1] + 1:] if isinstance(m, kind)] if convs else []
    if not after:
        raise NoConvolutionalStage(f"{type(model).__name__} has no {kind.__name__} after a convolution to attribute")
    return after[0]


# The feature map that classify.explain attributes, per from-scratch model, and the gradient method:
#   SimpleCNN: the last conv block's ReLU, before pooling; Grad-CAM (its head pools over the whole map).
#   LCNN: the last Max-Feature-Map; gradient x activation summed over channels. Its head averages over
#     time only and weighs every frequency band separately, so Grad-CAM's averaging of the gradients over
#     the whole map would blur exactly those band weights; gradient x activation is the exact linear
#     decomposition of the logit over (band, time) cells here (CAM).
SCRATCH_ATTRIBUTION = {
    "SimpleCNN": (lambda m: _after_last_conv(m, nn.ReLU), "grad_cam", "ReLU of the last conv block (Grad-CAM)"),
    "LCNN": (lambda m: _last(m, MaxFeatureMap), "grad_x_activation",
             "last Max-Feature-Map (gradient × activation)"),
}


def attribution_target(model: nn.Module, builder: dict) -> AttributionTarget:
    """Return the layer and method classify.explain uses for a model built from `builder` (model.json);
    NoConvolutionalStage when there is none. fastai-built torchvision and timm models are
    Sequential(body, head): the body's output is its last convolutional stage (ResNet layer4,
    EfficientNet conv_head), explained with Grad-CAM."""
    library, source = builder.get("library"), builder.get("source")
    if library == "scratch":
        if source not in SCRATCH_ATTRIBUTION:
            raise NoConvolutionalStage(f"no attribution layer is registered for the from-scratch model {source!r} "
                                       f"(classify.archs.SCRATCH_ATTRIBUTION knows {', '.join(SCRATCH_ATTRIBUTION)})")
        find, method, where = SCRATCH_ATTRIBUTION[source]
        return AttributionTarget(find(model), method, f"{source}: {where}")
    if library in ("torchvision", "timm"):
        if not (isinstance(model, nn.Sequential) and len(model) == 2):
            raise NoConvolutionalStage(f"{source} is not a fastai (body, head) model: no body to attribute")
        body = model[0]
        layer = body[-1] if isinstance(body, nn.Sequential) else body    # torchvision: layer4; timm: TimmBody
        return AttributionTarget(layer, "grad_cam", f"{source}: output of the last body stage (Grad-CAM)")
    raise NoConvolutionalStage(f"model library {library!r} has no attribution layer registered")


def builder_settings(name: str) -> dict:
    """Return the JSON-able recipe (model.json "builder") that rebuilds architecture `name`."""
    arch = get_arch(name)
    builder = {"library": arch.library, "source": arch.source, "n_in": 3, "n_out": N_CLASSES}
    if arch.library == "scratch":
        builder.update(SCRATCH_MODELS[arch.source][1])
    else:
        builder["head"] = dict(HEAD)
    return builder


def torchvision_factory(source: str):
    """Return the torchvision model function named `source` (e.g. torchvision.models.resnet101)."""
    import torchvision.models
    return getattr(torchvision.models, source)


def fastai_arch(arch: Arch):
    """Return what fastai's vision_learner builds `arch` from: the torchvision model function or the timm name."""
    return torchvision_factory(arch.source) if arch.library == "torchvision" else arch.source


def build_model(builder: dict, pretrained: bool = False) -> nn.Module:
    """Return the module described by `builder`; ImageNet weights in its body when `pretrained`."""
    library, source = builder["library"], builder["source"]
    n_in, n_out = builder["n_in"], builder["n_out"]
    if library == "scratch":
        if source not in SCRATCH_MODELS:
            raise UnknownArchError(f"model.json names an unknown from-scratch model {source!r}")
        model_class, defaults = SCRATCH_MODELS[source]
        return model_class(n_in, n_out, **{key: builder[key] for key in defaults})
    from fastai.vision.learner import create_timm_model, create_vision_model
    head = builder.get("head", HEAD)
    with pretrained_weights_errors(source, library, pretrained):
        if library == "torchvision":
            return create_vision_model(torchvision_factory(source), n_out, pretrained=pretrained, n_in=n_in, **head)
        if library == "timm":
            return create_timm_model(source, n_out, pretrained=pretrained, n_in=n_in, **head,
                                     **timm_weights_source(source, pretrained))[0]
    raise UnknownArchError(f"model.json names an unknown model library {library!r}")


def pretrained_kwargs(arch: Arch, pretrained: bool) -> dict:
    """Return the extra vision_learner / create_*_model arguments that say where `arch`'s ImageNet weights come from."""
    return timm_weights_source(arch.source, pretrained) if arch.library == "timm" else {}


def timm_weights_source(source: str, pretrained: bool) -> dict:
    """Return create_timm_model arguments loading timm's ImageNet weights of `source` from the local Hugging Face
    cache when they are there ({} when not pretrained, or when they are to be downloaded).

    Weights neither cached nor downloadable raise PretrainedWeightsUnavailable at once: without
    this, huggingface_hub retries an unreachable hub for about a minute before failing.
    """
    if not pretrained:
        return {}
    cached = hf_cached_weights(source)
    if cached:  # read straight from the cache: no request to the hub at all
        return {"pretrained_cfg_overlay": {"file": cached}}
    offline = hub_unreachable()
    if offline:
        raise weights_unavailable(source, "timm", f"not in the Hugging Face cache, and {offline}")
    return {}


def hf_cached_weights(source: str) -> str | None:
    """Return the path of timm's weights file for `source` in the local Hugging Face hub cache, or None."""
    import timm
    from huggingface_hub import try_to_load_from_cache
    cfg = timm.get_pretrained_cfg(source)
    if cfg is None or not cfg.hf_hub_id:
        return None
    repo, _, revision = cfg.hf_hub_id.partition("@")
    # timm's own order: the safetensors alternative first, then the pickle
    for filename in ([cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]):
        path = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Return None when the Hugging Face endpoint (or the HTTPS proxy in use) accepts a connection within
    `timeout` seconds; else why not, in words (HF_HUB_OFFLINE set, no name resolution, no route...)."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlsplit(constants.ENDPOINT)  # HF_ENDPOINT (a mirror) when set
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(endpoint.hostname or ""):
        endpoint = urlsplit(proxy if "//" in proxy else f"//{proxy}")
    host, port = endpoint.hostname, endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port} cannot be reached ({e or type(e).__name__})"
    return None


def weights_location(source: str, library: str) -> str:
    """Return a sentence saying where the ImageNet weights of `source` are looked for on this machine."""
    if library == "torchvision":
        from torchvision.models import get_model_weights
        url = get_model_weights(torchvision_factory(source)).DEFAULT.url
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        return (f"torchvision looks for {os.path.basename(url)} in {folder} "
                f"(set by TORCH_HOME; download it from {url})")
    import timm
    from huggingface_hub import constants
    repo = timm.get_pretrained_cfg(source).hf_hub_id
    return (f"timm looks for the Hugging Face repo {repo} in the hub cache {constants.HF_HUB_CACHE} "
            f"(set by HF_HOME / HF_HUB_CACHE; fill it once on a machine with network, e.g. "
            f"`python -c \"import timm; timm.create_model('{source}', pretrained=True)\"`, and copy the cache over: "
            f"cached weights are read without contacting the hub)")


class pretrained_weights_errors:
    """Context manager turning a failed weights download/read into PretrainedWeightsUnavailable."""

    def __init__(self, source: str, library: str, pretrained: bool):
        self.source, self.library, self.pretrained = source, library, pretrained

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.pretrained or exc is None or not isinstance(exc, (OSError, RuntimeError)) \
                or isinstance(exc, PretrainedWeightsUnavailable):
            return False
        raise weights_unavailable(self.source, self.library, f"{type(exc).__name__}: {exc}") from exc


def weights_unavailable(source: str, library: str, reason: str) -> PretrainedWeightsUnavailable:
    """Return the error saying that `source`'s ImageNet weights could not be had, why, and the three ways on."""
    return PretrainedWeightsUnavailable(
        f"could not load the ImageNet weights of {source} ({reason}).\n"
        f"  {weights_location(source, library)};\n"
        f"  or give them as a local file with --weights FILE (safetensors or a PyTorch state dict);\n"
        f"  or train from random weights with --no-pretrained.")
