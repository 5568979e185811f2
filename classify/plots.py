"""The evaluation's pictures (matplotlib, Agg backend); each function saves one PNG and returns its path.

Scores follow the ASVspoof convention (higher = more bona fide); labels are 0 bonafide, 1 spoof.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spec2img.fileio import atomic_path  # noqa: E402
from spec2img.rows import LABELS  # noqa: E402

from .metrics import BONAFIDE, SPOOF, compute_det_curve  # noqa: E402

DET_TICKS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)   # as in ASVspoof papers' DET plots
DPI = 110


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_confusion_matrix(labels, pred, path: Path, title: str) -> Path:
    """Save scikit-learn's confusion-matrix plot of `pred` (decided at the tuned threshold) against `labels`."""
    from sklearn.metrics import ConfusionMatrixDisplay
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ConfusionMatrixDisplay.from_predictions(np.asarray(labels), np.asarray(pred), labels=[BONAFIDE, SPOOF],
                                            display_labels=list(LABELS), cmap="Blues", colorbar=False, ax=ax)
    ax.set(title=title, xlabel="predicted", ylabel="actual")
    return _save(fig, path)


def plot_reliability(curves: dict[str, dict | None], path: Path, title: str) -> Path:
    """Save the reliability diagram: observed spoof rate against predicted P(spoof) per bin, one line per curve
    (classify.calibration.reliability_curve; at equal class priors), with the diagonal of perfect calibration."""
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1, label="perfectly calibrated")
    for (name, curve), style in zip(curves.items(), ("s-", "o-", "^-")):
        if curve:
            ax.plot(curve["predicted"], curve["observed"], style, ms=4, lw=1.4, label=name)
    ax.set(xlabel="predicted P(spoof) at equal priors = sigmoid(-LLR)", ylabel="observed spoof rate (classes weighted "
           "equally)", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_top_losses(images: list[np.ndarray], captions: list[str], path: Path, title: str) -> Path:
    """Save a grid of spectrogram images (low frequencies at the bottom), each with its caption."""
    n = max(len(images), 1)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.4 * rows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cap in zip(axes.ravel(), images, captions):
        ax.imshow(img, cmap="magma", aspect="auto", vmin=0, vmax=255)
        ax.set_title(cap, fontsize=7)
    if not images:
        axes[0, 0].text(0.5, 0.5, "no clips", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_roc(labels, spoof_scores, auc: float | None, path: Path, title: str) -> Path:
    """Save the ROC curve (spoof positive: true positive rate vs false positive rate) with its AUC."""
    from sklearn.metrics import roc_curve
    fpr, tpr, _ = roc_curve(np.asarray(labels) == SPOOF, spoof_scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, lw=1.5, label=f"AUC = {auc:.4f}" if auc is not None else "ROC")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8, label="chance")
    ax.set(xlabel="false positive rate (bona fide called spoof)", ylabel="true positive rate (spoof detected)",
           title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_det(bonafide_scores, spoof_scores, eer: float | None, path: Path, title: str) -> Path:
    """Save the DET curve on normal-deviate axes (x: spoof false acceptance, y: bona fide miss), EER marked."""
    from scipy.stats import norm
    frr, far, _ = compute_det_curve(bonafide_scores, spoof_scores)
    wide = (eer or 0) > 0.2                  # a weak detector's curve lies mostly beyond 40 %: widen the axes
    ticks = [t for t in DET_TICKS if not (wide and t == 0.005)] + ([0.6, 0.8, 0.9, 0.95] if wide else [])
    lo, hi = 0.0005, (0.98 if wide else 0.5)
    x, y = norm.ppf(np.clip(far, lo, hi)), norm.ppf(np.clip(frr, lo, hi))
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.plot(x, y, lw=1.5, label="DET")
    ax.plot(norm.ppf([lo, hi]), norm.ppf([lo, hi]), ":", color="grey", lw=0.8)
    if eer is not None:
        e = norm.ppf(np.clip(eer, lo, hi))
        ax.plot([e], [e], "o", mfc="none", mec="red", ms=8, mew=1.5, label=f"EER = {100 * eer:.2f} %")
    pos = norm.ppf(ticks)
    labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(pos, labels)
    ax.set_yticks(pos, labels)
    ax.set(xlim=norm.ppf([lo, hi]), ylim=norm.ppf([lo, hi]), title=title,
           xlabel="false acceptance rate of spoofs (%)", ylabel="miss rate of bona fide (%)")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_precision_recall(labels, spoof_scores, path: Path, title: str) -> Path:
    """Save the precision-recall curve (spoof positive) with the average precision."""
    from sklearn.metrics import average_precision_score, precision_recall_curve
    y = np.asarray(labels) == SPOOF
    prec, rec, _ = precision_recall_curve(y, spoof_scores)
    ap = average_precision_score(y, spoof_scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(rec, prec, lw=1.5, label=f"average precision = {ap:.4f}")
    ax.axhline(y.mean(), ls="--", color="grey", lw=0.8, label=f"share of spoof = {y.mean():.3f}")
    ax.set(xlabel="recall (spoof detected)", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_score_histograms(scores, labels, score_threshold: float, path: Path, title: str,
                          threshold_label: str = "tuned threshold") -> Path:
    """Save histograms of the score per class, with the decision threshold drawn as a vertical line."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    finite = scores[np.isfinite(scores)]
    bins = np.histogram_bin_edges(finite if finite.size else [0.0, 1.0], bins=40)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for cls, color in ((BONAFIDE, "tab:blue"), (SPOOF, "tab:red")):
        s = scores[labels == cls]
        if s.size:
            ax.hist(s, bins=bins, alpha=0.55, color=color, label=f"{LABELS[cls]} (n={s.size})")
    ax.axvline(score_threshold, color="black", ls="--", lw=1.2, label=f"{threshold_label} = {score_threshold:.3f}")
    ax.set(xlabel="score = log-odds of bona fide (higher = more bona fide)", ylabel="clips", title=title)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def plot_training_curves(run_dir: Path, path: Path) -> Path | None:
    """Return the run's own curves.png, else `path` redrawn from history.csv; None when it has neither."""
    from .runfolder import CURVES, HISTORY
    run_dir = Path(run_dir)
    if (run_dir / CURVES).is_file():
        return run_dir / CURVES
    if not (run_dir / HISTORY).is_file():
        return None
    import pandas as pd
    h = pd.read_csv(run_dir / HISTORY)
    h = h.apply(pd.to_numeric, errors="coerce")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for col in ("train_loss", "valid_loss"):
        if col in h:
            ax1.plot(h["epoch"], h[col], marker="o", label=col)
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend(loc="upper right")
    for col in ("accuracy", "roc_auc", "eer"):
        if col in h:
            ax2.plot(h["epoch"], h[col], marker="o", label=col)
    ax2.set(xlabel="epoch", title="validation metrics")
    ax2.legend(loc="lower right")
    return _save(fig, path)


def plot_group_eer(groups: dict, path: Path, title: str, xlabel: str) -> Path:
    """Save a bar chart of the EER (%) of each group (attack system or condition); groups without one marked n/a."""
    names = list(groups)
    values = [groups[n].get("eer") for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(names) + 1.5), 3.6))
    heights = [100 * v if v is not None else 0 for v in values]
    bars = ax.bar(range(len(names)), heights, color="tab:purple")
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{100 * v:.1f}" if v is not None else "n/a",
                ha="center", va="bottom", fontsize=7)
    many = len(names) > 6
    ax.set_xticks(range(len(names)), names, rotation=60 if many else 0, ha="right" if many else "center")
    ax.set(xlabel=xlabel, ylabel="EER (%)", title=title)
    ax.set_ylim(0, max(heights + [1.0]) * 1.15)
    return _save(fig, path)


PLOT_TITLES = {"confusion_matrix": "confusion matrix at the tuned threshold", "top_losses": "top losses",
               "roc": "ROC", "det": "DET", "precision_recall": "precision-recall", "score_histogram": "score histogram",
               "reliability": "reliability diagram", "training_curves": "training curves",
               "per_attack_eer": "EER per attack", "per_condition_eer": "EER per condition",
               "per_family_eer": "EER per attack family"}


def draw_evaluation(folder: Path, run_dir: Path, split: str, labels, spoof_prob, score, tuned: float, result: dict,
                    top_images: list[np.ndarray], top_captions: list[str], notes: list[str]) -> dict[str, Path]:
    """Draw every plot of an evaluated split into `folder` (an output set); return {PLOT_TITLES key: path}.
    A plot that needs both classes is left out, with a note, when the split has one."""
    from .runfolder import plot_png
    from .thresholds import prob_to_score_threshold
    folder, y, score = Path(folder), np.asarray(labels), np.asarray(score, dtype=np.float64)

    def png(name: str) -> Path:
        return folder / plot_png(name, split)
    out = {"confusion_matrix": plot_confusion_matrix(y, (np.asarray(spoof_prob) >= tuned).astype(int),
                                                     png("confusion_matrix"),
                                                     f"{split}: spoof_prob >= {tuned:.4g} (tuned on val)"),
           "top_losses": plot_top_losses(top_images, top_captions, png("top_losses"),
                                         f"{split}: the {len(top_images)} clips with the largest loss")}
    counts = result["counts"][split]
    if counts["bonafide"] and counts["spoof"]:
        m = result["metrics"]
        out["roc"] = plot_roc(y, -score, m["roc_auc"]["value"], png("roc"), f"ROC ({split})")
        out["det"] = plot_det(score[y == BONAFIDE], score[y == SPOOF], m["eer"]["value"], png("det"),
                              f"DET ({split})")
        out["precision_recall"] = plot_precision_recall(y, -score, png("precision_recall"),
                                                        f"precision-recall ({split})")
        rel = result["reliability"]
        out["reliability"] = plot_reliability(
            {"raw score (uncalibrated)": rel["raw"], "calibrated on val": rel["calibrated"]},
            png("reliability"), f"reliability ({split})")
    else:
        notes.append(f"the {split} split has one class only ({counts}): no ROC, DET, precision-recall or "
                     f"reliability plot")
    out["score_histogram"] = plot_score_histograms(score, y, prob_to_score_threshold(tuned),
                                                   png("score_histogram"), f"scores ({split})")
    out["training_curves"] = plot_training_curves(run_dir, folder / plot_png("training_curves"))
    for key, table, what in (("per_attack_eer", "per_attack", "attack system"),
                             ("per_condition_eer", "per_condition", "condition"),
                             ("per_family_eer", "per_family", "attack family")):
        if result[table]:
            out[key] = plot_group_eer(result[table], png(key),
                                      f"{PLOT_TITLES[key]} ({split})", what)
    return {k: v for k, v in out.items() if v is not None}
