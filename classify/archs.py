"""Architectures by name: how each is built for training and rebuilt, exactly, from model.json.

Every model takes 3-channel input: the grayscale spectrogram is replicated into 3 identical
channels and normalized with the ImageNet statistics below (see `model_io.images_to_input`),
which is what the pretrained stems expect; `simple_cnn` gets the same input so that one
preprocessing serves every run. The `builder` dict returned by `builder_settings` is stored in
model.json; `build_model(builder)` turns it back into the identical `nn.Module` (random weights)
so that the safetensors state dict loads without unpickling anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

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
    Arch("simple_cnn", "scratch", "SimpleCNN"),
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


def builder_settings(name: str) -> dict:
    """Return the JSON-able recipe (model.json "builder") that rebuilds architecture `name`."""
    arch = get_arch(name)
    builder = {"library": arch.library, "source": arch.source, "n_in": 3, "n_out": N_CLASSES}
    if arch.library != "scratch":
        builder["head"] = dict(HEAD)
    return builder


def torchvision_factory(source: str):
    """Return the torchvision model function named `source` (e.g. torchvision.models.resnet101)."""
    import torchvision.models
    return getattr(torchvision.models, source)


def build_model(builder: dict, pretrained: bool = False) -> nn.Module:
    """Return the module described by `builder`; ImageNet weights in its body when `pretrained`."""
    library, source = builder["library"], builder["source"]
    n_in, n_out = builder["n_in"], builder["n_out"]
    if library == "scratch":
        if source != "SimpleCNN":
            raise UnknownArchError(f"model.json names an unknown from-scratch model {source!r}")
        return SimpleCNN(n_in, n_out)
    from fastai.vision.learner import create_timm_model, create_vision_model
    head = builder.get("head", HEAD)
    with pretrained_weights_errors(source, library, pretrained):
        if library == "torchvision":
            return create_vision_model(torchvision_factory(source), n_out, pretrained=pretrained, n_in=n_in, **head)
        if library == "timm":
            return create_timm_model(source, n_out, pretrained=pretrained, n_in=n_in, **head)[0]
    raise UnknownArchError(f"model.json names an unknown model library {library!r}")


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
            f"`python -c \"import timm; timm.create_model('{source}', pretrained=True)\"`, copy the cache over "
            f"and set HF_HUB_OFFLINE=1)")


class pretrained_weights_errors:
    """Context manager turning a failed weights download/read into PretrainedWeightsUnavailable."""

    def __init__(self, source: str, library: str, pretrained: bool):
        self.source, self.library, self.pretrained = source, library, pretrained

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.pretrained or exc is None or not isinstance(exc, (OSError, RuntimeError)):
            return False
        raise PretrainedWeightsUnavailable(
            f"could not load the ImageNet weights of {self.source} ({type(exc).__name__}: {exc}).\n"
            f"  {weights_location(self.source, self.library)};\n"
            f"  or train from random weights with --no-pretrained.") from exc
