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
(what an attribution spread evenly over the image would give).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

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


# ---------------------------------------------------------------- the evaluation report's explanations

@dataclass
class SplitExplanation:
    """What classify.evaluate puts in the report and metrics.json about the model's evidence on one split."""
    confident: list = field(default_factory=list)   # report.TopLossClip of the most confident correct clips
    band_plot: Path | None = None                   # the per-band summary plot
    summary: dict = field(default_factory=dict)     # metrics.json "explanations"
    details: list[str] = field(default_factory=list)  # how the maps and the summary were made, for the report


def explain_split(run_dir: Path, model, description: dict, s, clips: list, threshold: float, sample: int,
                  examples: int, log=print) -> SplitExplanation:
    """Explain a scored split (evaluate.SplitScores) towards its decisions at `threshold`: heat maps of the
    top-loss `clips` (their .heatmap is set) and of the `examples` most confident correct clips per class, and
    the per-band summary over a seeded sample of at most `sample` clips; files go to run_dir/explain-<split>/."""
    from spec2img.axes import row_axis
    from spec2img.config import SpecConfig

    from .data import read_png_gray
    from .evaluate import cross_entropy
    from .explain_plots import save_band_summary, save_clip_heatmap
    from .report import TopLossClip
    spec = SpecConfig.from_dict(description["spec"])
    axis = row_axis(spec)
    position = {clip_id: i for i, clip_id in enumerate(s.clip_id)}
    prob, decided = s.spoof_prob, (s.spoof_prob >= threshold).astype(np.int64)
    confident = confident_correct(s.label, prob, threshold, examples)
    shown = [position[c.clip_id] for c in clips] + confident
    picked = stratified_sample(s.label, sample)
    folder = Path(run_dir) / f"explain-{s.split}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):                  # heat maps of an earlier evaluation must not linger
        old.unlink()
    loss = cross_entropy(s.logits, s.label)
    heatmaps, shares, ok, where, grid = {}, [], [], "", (0, 0)
    shown_set, picked_set = set(shown), set(picked.tolist())
    todo = sorted(shown_set | picked_set)
    for start in range(0, len(todo), 256):            # bounded memory: maps of the sample are reduced to row shares
        chunk = todo[start:start + 256]
        attr = attribution_maps(model, description, np.stack([read_png_gray(s.png[i]) for i in chunk]),
                                decided[chunk], progress=True)
        where, grid = attr.where, attr.grid
        chunk_shares, chunk_ok = row_shares(attr.maps)
        for j, i in enumerate(chunk):
            if i in picked_set:
                shares.append(chunk_shares[j])
                ok.append(chunk_ok[j])
            if i in shown_set:
                title = (f"{s.clip_id[i]}: true {LABELS[s.label[i]]}, decided {LABELS[decided[i]]} "
                         f"(spoof prob {prob[i]:.3f}); evidence for {LABELS[decided[i]]}")
                heatmaps[i] = save_clip_heatmap(read_png_gray(s.png[i]), attr.maps[j], axis, spec.duration,
                                                folder / f"{s.clip_id[i]}.png", title)
    for c in clips:
        c.heatmap = heatmaps.get(position[c.clip_id])
    out = SplitExplanation(confident=[
        TopLossClip(s.clip_id[i], LABELS[s.label[i]], s.system[i], float(prob[i]), float(s.score[i]), float(loss[i]),
                    s.png[i], Path(s.audio[i]) if s.audio[i] else None, heatmaps.get(i)) for i in confident])
    cells = (spec.image_shape[0] / max(grid[0], 1), spec.image_shape[1] / max(grid[1], 1))
    out.details = [
        f"method: {where}, towards each clip's decision at the tuned threshold (spoof_prob >= {threshold:.4g}); "
        f"positive evidence only",
        f"map resolution: {grid[0]} frequency x {grid[1]} time cells of about {cells[0]:.0f} x {cells[1]:.0f} image "
        f"pixels, upsampled to the image: detail finer than one cell is not resolved",
        f"per-band summary over {len(picked)} of the {len(s.clip_id)} clips of {s.split}"
        + (f" (seeded sample, half of each class where possible; --explain-sample {sample})"
           if len(picked) < len(s.clip_id) else "")]
    if len(picked):
        summary = band_summary_of_shares(np.stack(shares), np.asarray(ok), decided[picked], axis)
        if summary["empty_maps"]:
            out.details.append(f"{summary['empty_maps']} clip(s) had no positive evidence for their decision "
                               f"and are left out of the summary")
        out.band_plot = save_band_summary(summary, axis, Path(run_dir) / f"band_attribution-{s.split}.png",
                                          f"attribution per band ({s.split}, {len(picked)} clips)")
    else:
        summary = {"reading": "no per-band summary (--explain-sample 0)"}
        (Path(run_dir) / f"band_attribution-{s.split}.png").unlink(missing_ok=True)
    out.summary = {"method": where, "grid": list(grid), "threshold": threshold, "clips": int(len(picked)),
                   "of": len(s.clip_id), **summary}
    log(f"explanations: {summary['reading']}")
    return out


# ---------------------------------------------------------------- predict --explain: one picture per file

def picture_names(files: list[Path]) -> list[str]:
    """Return a distinct PNG name per file: its path below the files' common folder, folders joined by '__'
    ('clips/a/b.wav' with 'clips/c.wav' -> 'a__b.wav.png', 'c.wav.png'); repeats get '-2', '-3'."""
    import os
    paths = [Path(os.path.abspath(p)) for p in files]
    common = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path("/")
    names, used = [], set()
    for path in paths:
        base = "__".join(path.relative_to(common).parts) or "audio"
        name, n = f"{base}.png", 1
        while name in used:
            n += 1
            name = f"{base}-{n}.png"
        used.add(name)
        names.append(name)
    return names


def window_image(path: Path, spec, start: float, hop_fraction: float) -> np.ndarray:
    """Return the image of the window of `path` starting at `start` seconds, exactly as classify.predict scored it."""
    from spec2img.features import clip_to_image

    from .predict import iter_file_windows
    for window_start, segment in iter_file_windows(Path(path), spec, hop_fraction):
        if window_start == start:
            return clip_to_image(segment, spec)
    raise ValueError(f"no window of {path} starts at {start} s")


def explain_files(files: list[Path], rows: list, windows: dict, predictor, out_dir: Path, hop_fraction: float,
                  progress: bool = True) -> int:
    """Write one picture per scored file into `out_dir` (predict --explain) and put its path in the row's
    `explanation`; files that could not be scored get none. Return the number of pictures written."""
    from spec2img.axes import row_axis
    from spec2img.progress import progress as progress_bar

    from .explain_plots import save_file_explanation
    from .model_io import spoof_probability
    spec, out_dir = predictor.spec, Path(out_dir)
    axis = row_axis(spec)
    names = picture_names(files)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = 0
    for index in progress_bar(range(len(files)), desc="explaining", unit="file", enabled=progress and len(files) > 1):
        row = rows[index]
        if row.status != "ok" or not windows.get(index):
            continue
        try:
            starts, logits = zip(*sorted(windows[index], key=lambda w: w[0]))
            probs = spoof_probability(np.stack(logits))
            k = int(np.argmax(probs))                     # the most-spoof window (max_spoof_start) is shown
            decided = int(probs[k] >= predictor.threshold)
            image = window_image(files[index], spec, starts[k], hop_fraction)
            attr = attribution_maps(predictor.model, predictor.description, image[None], [decided])
            title = (f"{Path(files[index]).name}: {row.label}, spoof prob {row.spoof_prob:.3f} "
                     f"({row.windows} window{'s' if row.windows > 1 else ''})\nshown: window at {starts[k]:.2f} s, "
                     f"spoof prob {probs[k]:.3f}; heat map: evidence for {LABELS[decided]} ({attr.where})")
            path = save_file_explanation(image, attr.maps[0], axis, spec.duration, out_dir / names[index], title,
                                         starts, probs, starts[k], predictor.threshold, row.duration or spec.duration)
            row.explanation = str(path)
            drawn += 1
        except Exception as error:   # the scores stand; the row says why its picture is missing
            row.explanation = f"error: {type(error).__name__}: {str(error).strip()[:200]}"
    return drawn
