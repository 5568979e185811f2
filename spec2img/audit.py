"""Audit of an images folder: counts, formats, durations and levels per label, as audit.json and plots.

`spec2img-audit IMAGES` writes IMAGES/audit/{audit.json, counts.png, formats.png,
durations.png, levels.png} from IMAGES/manifest.csv (the conversion writes it too). Look here for
shortcuts a detector could learn instead of spoofing cues: a label that comes with its own sample
rate, channel count, duration or loudness.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fileio import EXIT_WRITE_FAILED, OutputWriteError, atomic_path, output_error, write_json
from .manifest import AUG_MARK, MANIFEST_FILE, STATUS_OK, read_rows
from .rows import LABELS, SPLITS

AUDIT_DIR = "audit"
AUDIT_FILE = "audit.json"
COLORS = {"bonafide": "tab:blue", "spoof": "tab:red"}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _rank(name: str, vocabulary: tuple[str, ...]) -> tuple:
    return (vocabulary.index(name), "") if name in vocabulary else (len(vocabulary), name)


def reason_group(status: str) -> str:
    """Return the kind of skip reason, without the file-specific detail in parentheses or after a colon
    ("truncated: header says 3.00 s, decoded 0.25 s" -> "truncated")."""
    reason = status.removeprefix("skipped:").strip()
    return reason.split(" (")[0].split(":")[0].strip() or "unknown"


def summarize(values: list[float]) -> dict:
    """Return count, min, mean, median, max of `values` (None entries when empty)."""
    if not values:
        return {"count": 0, "min": None, "mean": None, "median": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {"count": int(a.size), "min": round(float(a.min()), 4), "mean": round(float(a.mean()), 4),
            "median": round(float(np.median(a)), 4), "max": round(float(a.max()), 4)}


def audit_rows(rows: list[dict], clip_seconds: float | None = None) -> dict:
    """Return the audit dict of manifest rows (pure: no I/O)."""
    originals = [r for r in rows if AUG_MARK not in r["clip_id"]]
    ok = [r for r in originals if r["status"] == STATUS_OK]
    skipped = [r for r in originals if r["status"] != STATUS_OK]
    variants = [r for r in rows if AUG_MARK in r["clip_id"] and r["status"] == STATUS_OK]
    labels = sorted({r["label"] for r in rows}, key=lambda x: _rank(x, LABELS))
    splits = sorted({r["split"] for r in rows}, key=lambda x: _rank(x, SPLITS))

    def per_split(items):
        return {s: {lab: sum(1 for r in items if r["split"] == s and r["label"] == lab) for lab in labels}
                for s in splits}

    per_label = {lab: [r for r in ok if r["label"] == lab] for lab in labels}
    durations = {lab: [d for d in (_number(r["duration"]) for r in rs) if d is not None]
                 for lab, rs in per_label.items()}
    report = {
        "clips": len(originals),
        "converted": len(ok),
        "augmented_images": len(variants),
        "counts": per_split(ok),                    # converted clips per split and label
        "images": per_split(ok + variants),         # PNGs per split and label, variants included
        "systems": {s: dict(sorted(Counter(r["system"] or "-" for r in ok if r["split"] == s).items()))
                    for s in splits},
        "sample_rates": {lab: {str(k): v for k, v in sorted(Counter(
            int(float(r["sample_rate"])) for r in rs if _number(r["sample_rate"])).items())}
            for lab, rs in per_label.items()},
        "channels": {lab: {str(k): v for k, v in sorted(Counter(
            int(float(r["channels"])) for r in rs if _number(r["channels"])).items())}
            for lab, rs in per_label.items()},
        "duration_seconds": {lab: summarize(d) for lab, d in durations.items()},
        "peak_dbfs": {lab: summarize([v for v in (_number(r["peak_dbfs"]) for r in rs) if v is not None])
                      for lab, rs in per_label.items()},
        "rms_dbfs": {lab: summarize([v for v in (_number(r["rms_dbfs"]) for r in rs) if v is not None])
                     for lab, rs in per_label.items()},
        "skipped": {
            "count": len(skipped),
            "reasons": dict(Counter(reason_group(r["status"]) for r in skipped).most_common()),
            "first": [{"clip_id": r["clip_id"], "path": r["path"],
                       "reason": r["status"].removeprefix("skipped:").strip()} for r in skipped[:20]],
        },
    }
    if clip_seconds:
        report["clip_seconds"] = clip_seconds
        report["padded_clips"] = {lab: sum(1 for d in ds if d < clip_seconds) for lab, ds in durations.items()}
        report["cropped_clips"] = {lab: sum(1 for d in ds if d > clip_seconds) for lab, ds in durations.items()}
    return report


# ----------------------------------------------------------------------------- plots


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_counts(report: dict, path: Path) -> None:
    """Bar chart of converted clips (solid) and augmented images (hatched) per split and label."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    splits = list(report["counts"])
    labels = sorted({lab for s in report["counts"].values() for lab in s}, key=lambda x: _rank(x, LABELS))
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(splits))
    for i, lab in enumerate(labels):
        clips = np.array([report["counts"][s].get(lab, 0) for s in splits])
        extra = np.array([report["images"][s].get(lab, 0) for s in splits]) - clips
        bars = ax.bar(x + i * width, clips, width, label=lab, color=COLORS.get(lab))
        ax.bar_label(bars)
        if extra.any():
            ax.bar(x + i * width, extra, width, bottom=clips, color=COLORS.get(lab), alpha=0.35,
                   hatch="//", label=f"{lab} augmented")
    ax.set_xticks(x + width * (len(labels) - 1) / 2, splits)
    ax.set_ylabel("clips")
    ax.set_title(f"{report['converted']} clips converted, {report['skipped']['count']} skipped")
    ax.legend()
    _save(fig, path)


def plot_formats(report: dict, path: Path) -> None:
    """Bar charts of original sample rates and channel counts per label."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "sample_rates", "original sample rate (Hz)"),
                           (axes[1], "channels", "channels")):
        values = sorted({int(k) for lab in report[key].values() for k in lab})
        labels = list(report[key])
        width = 0.8 / max(1, len(labels))
        x = np.arange(len(values))
        for i, lab in enumerate(labels):
            bars = ax.bar(x + i * width, [report[key][lab].get(str(v), 0) for v in values], width,
                          label=lab, color=COLORS.get(lab))
            ax.bar_label(bars, fontsize=8)
        ax.set_xticks(x + width * (len(labels) - 1) / 2, [str(v) for v in values])
        ax.set_title(title)
        ax.set_ylabel("clips")
        ax.legend()
    _save(fig, path)


def _histograms(path: Path, series: dict, xlabel: str, title: str, marker: float | None = None,
                second: dict | None = None, names=("", "")) -> None:
    from matplotlib.figure import Figure
    labels = list(series) or ["(none)"]
    fig = Figure(figsize=(7, 2.6 * len(labels)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(labels), 1, sharex=True))
    every = [v for vs in series.values() for v in vs] + [v for vs in (second or {}).values() for v in vs]
    bins = np.histogram_bin_edges(every, bins=40) if every else 10
    for ax, lab in zip(axes, labels):
        ax.hist(series.get(lab, []), bins=bins, color=COLORS.get(lab, "gray"), alpha=0.8,
                label=f"{lab} {names[0]}".strip())
        if second is not None:
            ax.hist(second.get(lab, []), bins=bins, histtype="step", color="black", label=f"{lab} {names[1]}")
        if marker is not None:
            ax.axvline(marker, color="black", linestyle="--", linewidth=1, label=f"image length {marker:g} s")
        ax.set_ylabel("clips")
        ax.legend(fontsize=8)
    axes[0].set_title(title)
    axes[-1].set_xlabel(xlabel)
    _save(fig, path)


def write_audit(images: Path) -> Path:
    """Write images/audit/ (audit.json and four PNG plots) from images/manifest.csv; return the folder."""
    images = Path(images)
    manifest = images / MANIFEST_FILE
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: convert a dataset into {images} first "
                                f"(`spec2img SRC --out {images}`)")
    rows = read_rows(manifest)
    clip_seconds = None
    spec = images / "spec.json"
    if spec.is_file():
        try:
            clip_seconds = json.loads(spec.read_text()).get("duration")
        except (OSError, ValueError, AttributeError):   # the audit does without the marker
            clip_seconds = None
    report = audit_rows(rows, clip_seconds)
    folder = images / AUDIT_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(error, folder) from None
    ok = [r for r in rows if r["status"] == STATUS_OK and AUG_MARK not in r["clip_id"]]
    labels = list(report["duration_seconds"])

    def values(column):
        return {lab: [v for v in (_number(r[column]) for r in ok if r["label"] == lab) if v is not None]
                for lab in labels}

    plot_counts(report, folder / "counts.png")
    plot_formats(report, folder / "formats.png")
    _histograms(folder / "durations.png", values("duration"), "duration of the file (s)",
                "duration per label", marker=clip_seconds)
    _histograms(folder / "levels.png", values("peak_dbfs"), "level of the rendered excerpt (dBFS)",
                "amplitude per label: peak (filled) and RMS (outline)", second=values("rms_dbfs"),
                names=("peak", "RMS"))
    report["plots"] = ["counts.png", "formats.png", "durations.png", "levels.png"]
    write_json(folder / AUDIT_FILE, report)
    return folder


@dataclass(frozen=True)
class AuditPaths:
    images: Path          # images folder holding manifest.csv (written by spec2img)


def build_parser():
    """Return the command line: the images folder (spec2img.cli)."""
    from .cli import build_parser as build_cli
    return build_cli("spec2img-audit", __doc__.splitlines()[0], [AuditPaths])


def main(argv: list[str] | None = None) -> int:
    from .cli import parse_settings
    paths, = parse_settings(build_parser(), argv, AuditPaths)
    try:
        folder = write_audit(paths.images)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OutputWriteError as error:
        print(f"error: {error}\n  {error.advice}, then run the audit again", file=sys.stderr)
        return EXIT_WRITE_FAILED
    report = json.loads((folder / AUDIT_FILE).read_text())
    print(f"{report['converted']} clips converted ({report['augmented_images']} augmented images), "
          f"{report['skipped']['count']} skipped")
    for split, per_label in report["counts"].items():
        print(f"  {split:5s} " + "  ".join(f"{lab} {n}" for lab, n in per_label.items()))
    print(f"audit written to {folder}/ ({AUDIT_FILE}, {', '.join(report['plots'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
