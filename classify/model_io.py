"""A trained model as files (model.safetensors + model.json) and the one image → logits path.

Nothing here unpickles: the module is rebuilt from model.json's "builder" recipe (classify.archs)
and the weights come from safetensors. `images_to_input` is the single preprocessing used by
training batches, evaluation and prediction alike: uint8 → [0, 1] → (optional resize to the
model's input size) → grayscale replicated into 3 channels → normalized by model.json's mean/std.
Scores: spoof probability = softmax(logits)[:, 1]; ASVspoof score (higher = more bonafide)
= logits[:, 0] - logits[:, 1], the log-odds of bonafide.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from classify.archs import build_model
from classify.devices import autocast, autocast_dtype, float32_final_layer
from classify.runfolder import MODEL_JSON, MODEL_WEIGHTS, TRAIN_HINT, RunFolderError, check_run
from spec2img.fileio import atomic_path, write_json

FORMAT_VERSION = 1
SPOOF_INDEX = 1  # spec2img.rows.LABELS = ("bonafide", "spoof")


def save_model(run_dir, model: nn.Module, description: dict) -> Path:
    """Write run_dir/model.safetensors and run_dir/model.json atomically; return the weights path."""
    from safetensors.torch import save_file
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # detached, contiguous (channels_last → standard), unshared CPU copies: what safetensors requires
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    weights = run_dir / MODEL_WEIGHTS
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_json(run_dir / MODEL_JSON, {"format_version": FORMAT_VERSION, **description})
    return weights


def read_description(run_dir) -> dict:
    """Return run_dir/model.json as a dict; RunFolderError when it is missing, unreadable or of another version."""
    path = Path(run_dir) / MODEL_JSON
    try:
        description = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunFolderError(f"{run_dir} has no {MODEL_JSON}: it holds no trained model ({TRAIN_HINT})") from None
    except (OSError, ValueError) as error:
        raise RunFolderError(f"cannot read {path}: {error}") from None
    if not isinstance(description, dict) or description.get("format_version") != FORMAT_VERSION:
        version = description.get("format_version") if isinstance(description, dict) else None
        raise RunFolderError(f"{path} has format_version {version!r}; this code reads version {FORMAT_VERSION}")
    return description


def load_model(run_dir, device="cpu") -> tuple[nn.Module, dict]:
    """Return (module in eval mode on `device`, model.json dict) from a complete run folder (runfolder.check_run),
    without unpickling."""
    from safetensors.torch import load_file
    run_dir = Path(run_dir)
    check_run(run_dir)
    description = read_description(run_dir)
    model = build_model(description["builder"], pretrained=False)
    model.load_state_dict(load_file(str(run_dir / MODEL_WEIGHTS)), strict=True)
    model = model.to(torch.device(device), memory_format=torch.channels_last)  # faster convs on CPU and GPU
    return model.eval(), description


def unit_float(images_uint8, size: tuple[int, int] | None = None, device=None) -> torch.Tensor:
    """Return float (B,1,H,W) in [0, 1] from uint8 (B,H,W) or (B,1,H,W), resized to `size`=(h, w) if given."""
    if isinstance(images_uint8, np.ndarray) and not images_uint8.flags.writeable:
        images_uint8 = images_uint8.copy()  # e.g. np.asarray(PIL image); torch wants writable memory
    x = torch.as_tensor(images_uint8)
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 spectrogram images, got {x.dtype}")
    if x.ndim == 3:
        x = x.unsqueeze(1)  # (batch, 1, n_mels, frames)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected images shaped (B,H,W) or (B,1,H,W), got {tuple(x.shape)}")
    x = x.to(device if device is not None else x.device, non_blocking=True).float().div_(255)
    return resize_images(x, size)


def resize_images(x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Return float x (B,C,H,W) resized to `size`=(h, w) (bilinear, antialiased), or x when size is None or equal."""
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def normalize_channels(x01: torch.Tensor, mean, std) -> torch.Tensor:
    """Return (B,3,H,W) = (x - mean[c]) / std[c] for each channel c of the replicated grayscale x01 (B,1,H,W)."""
    mean_t, std_t = channel_stats(tuple(mean), tuple(std), x01.device, x01.dtype)
    return (x01 - mean_t) / std_t


@lru_cache(maxsize=16)
def channel_stats(mean: tuple, std: tuple, device: torch.device, dtype: torch.dtype):
    """Return (mean, std) as (1,C,1,1) tensors on `device`, made once: a fresh host→GPU copy every batch
    would make the CPU wait for the GPU (pageable memory copies synchronize)."""
    def make(v):
        return torch.tensor(v, dtype=dtype).view(1, -1, 1, 1).to(device)
    return make(mean), make(std)


def input_size(description: dict) -> tuple[int, int]:
    """Return the model's (height, width) input size from model.json."""
    return (int(description["input"]["height"]), int(description["input"]["width"]))


def check_image_size(shape, description: dict):
    """Raise ValueError unless images of (…, H, W) `shape` match the spec the model was trained on."""
    spec = description.get("spec", {})
    expected = (spec.get("image_height"), spec.get("image_width"))
    if None not in expected and tuple(shape[-2:]) != tuple(expected):
        raise ValueError(f"images are {tuple(shape[-2:])} (height, width) but the model was trained on "
                         f"{expected} spectrograms: convert the audio with the run's spec.json")


def images_to_input(images_uint8, description: dict, device) -> torch.Tensor:
    """Return the normalized float (B,3,H,W) channels_last model input on `device` for uint8 (B,[1,]H,W) images."""
    check_image_size(np.shape(images_uint8), description)
    x = unit_float(images_uint8, input_size(description), device)
    x = normalize_channels(x, description["normalize"]["mean"], description["normalize"]["std"])
    return x.contiguous(memory_format=torch.channels_last)


def predict_logits(model: nn.Module, images_uint8, description: dict, device=None, bs: int = 64,
                   precision: str = "auto") -> np.ndarray:
    """Return float32 logits (N, 2) for N uint8 images, in batches of `bs`, without gradients.

    `precision` (classify.devices): "auto" is bf16 or fp16 autocast on CUDA, float32 on the CPU; the
    final Linear always runs in float32, so the scores keep float32's resolution."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = []
    with torch.inference_mode(), autocast(device, autocast_dtype(device, precision)), float32_final_layer(model):
        for start in range(0, len(images_uint8), bs):
            x = images_to_input(images_uint8[start:start + bs], description, device)
            out.append(model(x).float())
    if not out:
        return np.zeros((0, 2), np.float32)
    return torch.cat(out).cpu().numpy().astype(np.float32)


def spoof_probability(logits: np.ndarray) -> np.ndarray:
    """Return softmax(logits)[:, 1], the probability of spoof, as float64 (N,)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, SPOOF_INDEX] / e.sum(axis=1)


def bonafide_score(logits: np.ndarray) -> np.ndarray:
    """Return logits[:, 0] - logits[:, 1], the log-odds of bonafide (ASVspoof convention: higher = bonafide)."""
    z = np.asarray(logits, dtype=np.float64)
    return z[:, 0] - z[:, SPOOF_INDEX]
