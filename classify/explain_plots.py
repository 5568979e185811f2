"""Pictures of attribution maps (matplotlib, Agg): a spectrogram with its heat map, the spoof probability of
every window of a long file, and the per-band summary. Each `save_*` writes one PNG atomically and returns it.

Axes: time in seconds, rows labelled from spec2img.axes (Hz for mel / linear / cqt, coefficient blocks for lfcc).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spec2img.axes import RowAxis, hz_name
from spec2img.rows import LABELS

from .plots import _save, plt

HEAT_CMAP = "jet"            # heat-map colours; drawn more opaque where the attribution is larger
HEAT_ALPHA = 0.7             # opacity of the strongest attribution (0 attribution is fully transparent)
TICK_HZ = (50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000)
CLASS_COLOURS = {"bonafide": "tab:blue", "spoof": "tab:red"}


def row_ticks(axis: RowAxis) -> tuple[list[float], list[str]]:
    """Return (row positions, labels) for the frequency axis: round Hz values, or one tick per lfcc block."""
    if axis.hz is None:
        return [(first + stop - 1) / 2 for _, first, stop in axis.blocks], [name for name, _, _ in axis.blocks]
    rows = np.arange(len(axis.hz))
    low_first_hz, low_first_rows = axis.hz[::-1], rows[::-1]
    positions, labels = [], []
    for f in (f for f in TICK_HZ[::-1] if axis.hz.min() <= f <= axis.hz.max()):   # from the top down
        row = float(np.interp(f, low_first_hz, low_first_rows))
        if not positions or row - positions[-1] >= len(rows) / 16:              # no labels on top of each other
            positions.append(row)
            labels.append(hz_name(f))
    return positions, labels


def draw_heatmap(ax, image: np.ndarray, attribution: np.ndarray, axis: RowAxis, start: float, duration: float):
    """Draw the grayscale spectrogram with the attribution (scaled to its maximum) over it; return the colour map."""
    height = image.shape[0]
    extent = (start, start + duration, height - 0.5, -0.5)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, aspect="auto", extent=extent, interpolation="nearest")
    top = float(attribution.max())
    level = attribution / top if top > 0 else np.zeros_like(attribution)
    rgba = plt.get_cmap(HEAT_CMAP)(level)
    rgba[..., 3] = HEAT_ALPHA * level
    ax.imshow(rgba, aspect="auto", extent=extent, interpolation="bilinear")
    positions, labels = row_ticks(axis)
    ax.set_yticks(positions, labels, fontsize=7)
    for _, first, _ in axis.blocks:                                      # lines between lfcc's stacked blocks
        if first > 0:
            ax.axhline(first - 0.5, color="white", lw=0.6)
    ax.set_ylabel(axis.label if axis.hz is None else "frequency", fontsize=8)
    ax.set_xlabel("time (s)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    return plt.cm.ScalarMappable(cmap=HEAT_CMAP, norm=plt.Normalize(0, 1))


def save_clip_heatmap(image: np.ndarray, attribution: np.ndarray, axis: RowAxis, duration: float, path: Path,
                      title: str) -> Path:
    """Save one clip's spectrogram with its heat map (report cards)."""
    fig, ax = plt.subplots(figsize=(5.2, 2.6), layout="constrained")
    mappable = draw_heatmap(ax, image, attribution, axis, 0.0, duration)
    fig.colorbar(mappable, ax=ax, pad=0.01, fraction=0.04).set_label("evidence (of max)", fontsize=7)
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


def save_file_explanation(image: np.ndarray, attribution: np.ndarray, axis: RowAxis, window_seconds: float,
                          path: Path, title: str, window_starts, window_probs, shown_start: float,
                          threshold: float, file_seconds: float) -> Path:
    """Save predict's picture of one file: the shown window's spectrogram with its heat map and, for a file of
    several windows, the spoof probability of every window along the file (shown window shaded)."""
    several = len(window_starts) > 1
    fig, axes = plt.subplots(2 if several else 1, 1, figsize=(7.5, 5.0 if several else 2.9), squeeze=False,
                             layout="constrained", height_ratios=[3, 2] if several else [1])
    ax = axes[0, 0]
    mappable = draw_heatmap(ax, image, attribution, axis, shown_start, window_seconds)
    fig.colorbar(mappable, ax=ax, pad=0.01, fraction=0.04).set_label("evidence (of max)", fontsize=7)
    ax.set_title(title, fontsize=8)
    if several:
        ax2 = axes[1, 0]
        starts = np.asarray(window_starts, dtype=np.float64)
        probs = np.asarray(window_probs, dtype=np.float64)
        centres = starts + window_seconds / 2
        ax2.plot(centres, probs, marker="o", ms=3, lw=1.2, color="tab:red", label="spoof probability of the window")
        ax2.axhline(threshold, color="black", ls="--", lw=0.9, label=f"threshold {threshold:.3g}")
        ax2.axvspan(shown_start, shown_start + window_seconds, color="tab:orange", alpha=0.2,
                    label="window shown above")
        ax2.set(xlim=(0, max(file_seconds, window_seconds)), ylim=(-0.02, 1.02))
        ax2.set_xlabel(f"time in the file (s); each point is a {window_seconds:g} s window at its centre", fontsize=8)
        ax2.set_ylabel("P(spoof)", fontsize=8)
        ax2.tick_params(labelsize=7)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7, loc="best")
    return _save(fig, path)


def save_band_summary(summary: dict, axis: RowAxis, path: Path, title: str) -> Path:
    """Save the per-band summary: share of attribution per band for each decided class against the band's share
    of rows (left), and the mean share per image row relative to an even spread (right)."""
    bands = summary["bands"]
    names = [b["name"] for b in bands]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 0.32 * len(names) + 2.6), layout="constrained",
                                   width_ratios=[3, 2])
    y = np.arange(len(names))
    classes = [c for c in LABELS if c in summary["by_decision"]]
    height = 0.8 / max(len(classes), 1)
    for k, cls in enumerate(classes):
        entry = summary["by_decision"][cls]
        ax1.barh(y - 0.4 + height * (k + 0.5), 100 * np.asarray(entry["band_share"]), height=height,
                 color=CLASS_COLOURS[cls],
                 label=f"{'bona fide' if cls == 'bonafide' else cls} decisions (n={entry['n']})")
    ax1.scatter([100 * b["row_share"] for b in bands], y, marker="|", s=220, color="black",
                label="share of image rows (even spread)", zorder=3)
    ax1.set_yticks(y, names, fontsize=8)
    ax1.invert_yaxis()                                                   # highest band at the top, as in the images
    ax1.set_xlabel("share of the attribution (%)", fontsize=8)
    ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.14), ncol=2, frameon=False)
    ax1.grid(axis="x", alpha=0.3)
    rows = np.arange(len(axis.names))
    for cls in classes:
        density = np.asarray(summary["by_decision"][cls]["row_share"]) * len(rows)   # 1 = even spread
        ax2.plot(density, rows, color=CLASS_COLOURS[cls], lw=1.2)
    ax2.axvline(1.0, color="black", ls=":", lw=0.8)
    positions, labels = row_ticks(axis)
    ax2.set_yticks(positions, labels, fontsize=7)
    ax2.set_ylim(len(rows) - 0.5, -0.5)
    ax2.set_xlabel("attribution per row / even spread", fontsize=8)
    ax2.set_ylabel(axis.label, fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
