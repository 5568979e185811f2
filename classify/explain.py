"""Where in time and frequency a trained model found its evidence: attribution maps of spectrogram images.

Method: classify.archs.attribution_target names, per architecture, the feature map to explain and the
gradient method (Grad-CAM on the last convolutional stage; gradient × activation for LCNN, whose head
keeps frequency bands apart), computed with Captum (captum.attr.LayerGradCam /
LayerGradientXActivation). The explained quantity is the margin of the decided class,
z_decided - z_other (a two-class softmax depends on nothing else), and only positive evidence is kept
(ReLU, as in Grad-CAM): a map shows where the model found evidence for the decision it made. Maps are
upsampled (bilinear) from the feature grid to the image, float32 (N, H, W), rows top first like the
images; what rows and columns mean (Hz, seconds) comes from spec2img.axes for the run's front end.

Band summary: each map becomes shares per image row (row sums over the map's total), rows are grouped
into bands (0-500 Hz, then octaves; coefficient groups for lfcc, whose rows are not frequencies), and
the shares are averaged over the clips of each decided class, next to each band's share of the rows
(what an attribution spread evenly over the image would give). classify.explain_outputs turns maps
into the report's pictures and predict --explain's; classify.explain_plots draws them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spec2img.axes import RowAxis
from spec2img.rows import LABELS

ATTRIBUTION_BS = 16          # images per attribution batch (one forward and one backward pass)
FIRST_BAND_HZ = 500.0        # bands: 0-500 Hz, then octaves 500 Hz-1 kHz, 1-2, 2-4, 4-8 kHz, ...
EVEN_SPREAD = 1.25           # a band "carries" decisions only when its share exceeds 1.25 x its share of rows
SAMPLE_SEED = 0              # seed of the per-band summary's sample of a large split


class ExplainError(Exception):
    """The model cannot be explained (no convolutional stage); the message says which model and why."""


@dataclass
class Attribution:
    maps: np.ndarray         # float32 (N, H, W) >= 0, image size, rows top first
    grid: tuple[int, int]    # (rows, columns) of the attributed feature map, the maps' true resolution
    where: str               # the attributed layer and method, in words


# ---------------------------------------------------------------- attribution (torch, Captum)

def margin_forward(model):
    """Return f(x) = (z_bonafide - z_spoof, z_spoof - z_bonafide): target c explains the margin of class c."""
    import torch

    def forward(x):
        z = model(x).float()
        margin = z[:, 0] - z[:, 1]
        return torch.stack([margin, -margin], dim=1)
    return forward


def attribution_maps(model, description: dict, images: np.ndarray, targets, bs: int = ATTRIBUTION_BS,
                     progress: bool = False) -> Attribution:
    """Return the attribution maps of uint8 images (N, H, W) towards class `targets` (N,) (0 bonafide, 1 spoof),
    on the model's device in float32; ExplainError when the model has no convolutional stage."""
    import torch
    import torch.nn.functional as F
    from captum.attr import LayerAttribution, LayerGradCam, LayerGradientXActivation

    from spec2img.progress import progress as progress_bar

    from .archs import NoConvolutionalStage, attribution_target
    from .model_io import images_to_input
    if not description.get("builder"):
        raise ExplainError("the run's model.json has no \"builder\": the attributed layer cannot be chosen")
    try:
        target = attribution_target(model, description["builder"])
    except NoConvolutionalStage as e:
        raise ExplainError(f"cannot explain {description.get('arch', 'this model')}: {e}") from None
    method = LayerGradCam if target.method == "grad_cam" else LayerGradientXActivation
    explainer = method(margin_forward(model), target.layer)
    device = next(model.parameters()).device
    images = np.asarray(images)
    height, width = images.shape[-2:]
    targets = np.array(np.broadcast_to(np.asarray(targets, dtype=np.int64), (len(images),)))
    model.eval()
    maps, grid = [], (0, 0)
    starts = range(0, len(images), bs)
    for start in progress_bar(starts, desc="explaining", unit="batch", enabled=progress and len(starts) > 1):
        x = images_to_input(images[start:start + bs], description, device)
        with torch.enable_grad():
            attr = explainer.attribute(x, target=torch.as_tensor(targets[start:start + bs], device=device))
        if attr.ndim != 4:
            raise ExplainError(f"cannot explain {description.get('arch', 'this model')}: {target.where} gives a "
                               f"{attr.ndim - 1}-D output, not a (channels, frequency, time) feature map: "
                               f"the architecture has no convolutional stage")
        if target.method == "grad_x_activation":
            attr = attr.sum(dim=1, keepdim=True)                          # (B, 1, h, w)
        grid = tuple(attr.shape[-2:])
        attr = LayerAttribution.interpolate(F.relu(attr.detach().float()), (height, width), "bilinear")
        maps.append(attr[:, 0].cpu().numpy())
    out = np.concatenate(maps) if maps else np.zeros((0, height, width), np.float32)
    return Attribution(out.astype(np.float32), grid, target.where)


def check_explainable(model, description: dict) -> str:
    """Return the attributed layer in words after explaining one blank image; ExplainError when impossible."""
    from .model_io import input_size
    height, width = (int(description["spec"]["image_height"]), int(description["spec"]["image_width"])) \
        if "image_height" in description.get("spec", {}) else input_size(description)
    return attribution_maps(model, description, np.zeros((1, height, width), np.uint8), [1]).where


# ---------------------------------------------------------------- bands and their summary (numpy)

@dataclass(frozen=True)
class Band:
    name: str                # "4–8 kHz", or "Δ c0–c4" for lfcc
    rows: np.ndarray         # bool (H,): the image rows (top first) in the band


def band_name(lo: float, hi: float) -> str:
    """Return '0–500 Hz', '500 Hz–1 kHz' or '4–8 kHz'."""
    def khz(f):
        return f"{f / 1000:.3g}"
    if hi < 1000:
        return f"{lo:.0f}–{hi:.0f} Hz"
    if lo < 1000:
        return f"{lo:.0f} Hz–{khz(hi)} kHz"
    return f"{khz(lo)}–{khz(hi)} kHz"


def frequency_bands(axis: RowAxis) -> list[Band]:
    """Return the bands of an image's rows: 0-500 Hz and octaves above (the last one up to the top edge, merged
    into the one below when it would be under a quarter octave wide); coefficient groups for lfcc."""
    if axis.hz is None:
        return coefficient_bands(axis)
    top = float(axis.hz_top)
    edges = [0.0, FIRST_BAND_HZ]
    while edges[-1] < top:
        edges.append(2 * edges[-1])
    edges[-1] = top
    if len(edges) > 2 and top < 1.25 * edges[-2]:
        del edges[-2]
    bands = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = k == len(edges) - 2
        rows = (axis.hz >= lo) & ((axis.hz <= hi) if last else (axis.hz < hi))
        if rows.any():
            bands.append(Band(band_name(lo, hi), rows))
    return bands[::-1]                                                   # top (highest) band first, like the image


def coefficient_bands(axis: RowAxis) -> list[Band]:
    """Return groups of about a quarter of each block's coefficients (e.g. 'Δ c0–c4'), top of the image first."""
    height = len(axis.names)
    bands = []
    for block, first, stop in axis.blocks:                               # rows first..stop-1; c0 is the bottom row
        n = stop - first
        size = max(1, math.ceil(n / 4))
        prefix = "" if block == "static" else f"{block} "
        for lo in range(0, n, size):
            hi = min(n, lo + size) - 1
            rows = np.zeros(height, bool)
            rows[stop - 1 - hi:stop - lo] = True
            bands.append(Band(f"{prefix}c{lo}–c{hi}" if hi > lo else f"{prefix}c{lo}", rows))
    order = np.argsort([np.flatnonzero(b.rows)[0] for b in bands], kind="stable")
    return [bands[i] for i in order]


def row_shares(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (each map's share of its total per row, float64 (N, H); mask of maps with any positive evidence)."""
    maps = np.asarray(maps, dtype=np.float64)
    rows = maps.sum(axis=2)                                              # (N, H)
    total = rows.sum(axis=1)
    ok = total > 0
    shares = np.zeros_like(rows)
    shares[ok] = rows[ok] / total[ok, None]
    return shares, ok


def band_summary(maps: np.ndarray, decided: np.ndarray, axis: RowAxis) -> dict:
    """Return the per-band summary (band_summary_of_shares) of attribution maps (N, H, W)."""
    shares, ok = row_shares(maps)
    return band_summary_of_shares(shares, ok, decided, axis)


def band_summary_of_shares(shares: np.ndarray, ok: np.ndarray, decided: np.ndarray, axis: RowAxis) -> dict:
    """Return the per-band summary: bands with their share of rows, and per decided class the number of clips,
    the mean share of attribution per band and per row; maps without positive evidence (~ok) are counted apart."""
    bands = frequency_bands(axis)
    decided = np.asarray(decided)
    summary = {"axis": axis.label,
               "bands": [{"name": b.name, "row_share": float(b.rows.mean())} for b in bands],
               "by_decision": {}, "empty_maps": int((~ok).sum())}
    for cls, name in enumerate(LABELS):
        pick = ok & (decided == cls)
        if pick.any():
            per_band = np.stack([shares[pick][:, b.rows].sum(axis=1) for b in bands], axis=1)   # (n, bands)
            summary["by_decision"][name] = {"n": int(pick.sum()), "band_share": per_band.mean(axis=0).tolist(),
                                            "row_share": shares[pick].mean(axis=0).tolist()}
    summary["reading"] = band_reading(summary)
    return summary


def band_reading(summary: dict) -> str:
    """Return one sentence on the band that carries each decided class's evidence (or that it is spread evenly)."""
    names = [b["name"] for b in summary["bands"]]
    rows = np.array([b["row_share"] for b in summary["bands"]])
    parts = []
    for cls, who in (("spoof", "spoof decisions"), ("bonafide", "bona fide decisions")):
        entry = summary["by_decision"].get(cls)
        if not entry:
            continue
        share = np.array(entry["band_share"])
        k = int(np.argmax(share))
        numbers = f"{100 * share[k]:.0f} % of the attribution on {100 * rows[k]:.0f} % of the image rows"
        if share[k] < EVEN_SPREAD * rows[k]:
            parts.append(f"{who} draw on all bands about evenly (largest: {names[k]}, {numbers})")
        else:
            verb = "rest mostly on" if share[k] >= 0.5 else "rest most heavily on"
            parts.append(f"{who} {verb} {names[k]} ({numbers})")
    if not parts:
        return "no clip had positive evidence for its decision"
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def stratified_sample(labels: np.ndarray, cap: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Return sorted indices of at most `cap` clips, half of each class when both have enough (the other class
    fills up what one lacks); every clip when there are no more than `cap`."""
    labels = np.asarray(labels)
    if cap <= 0:
        return np.zeros(0, np.int64)
    if len(labels) <= cap:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(labels == c) for c in range(len(LABELS))]
    quota = [min(len(p), cap // 2) for p in pools]
    spare = cap - sum(quota)
    for c, p in enumerate(pools):
        extra = min(spare, len(p) - quota[c])
        quota[c] += extra
        spare -= extra
    picked = [rng.choice(p, size=q, replace=False) for p, q in zip(pools, quota) if q]
    return np.sort(np.concatenate(picked))


def confident_correct(labels: np.ndarray, spoof_prob: np.ndarray, threshold: float, k: int) -> list[int]:
    """Return up to k indices per class of correctly decided clips, most confident first (bona fide, then spoof)."""
    labels, spoof_prob = np.asarray(labels), np.asarray(spoof_prob)
    decided = (spoof_prob >= threshold).astype(int)
    out = []
    for cls, confidence in ((0, -spoof_prob), (1, spoof_prob)):
        good = np.flatnonzero((labels == cls) & (decided == cls))
        out += good[np.argsort(-confidence[good], kind="stable")][:k].tolist()
    return out
