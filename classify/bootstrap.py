"""95 % bootstrap intervals for EER, minDCF and ROC-AUC, and the paired bootstrap comparison of two systems.

Resampling unit: the speaker when speakers are known (trials of one speaker are correlated, so resampling
clips would make the interval too narrow), else the clip; clips without a speaker are units of their own.
Each replicate draws as many units as there are, with replacement; a clip's weight is how often its unit
was drawn. The trials are sorted once; a replicate repeats each sorted trial by its weight, which is the
resampled set in sorted order, so its DET curve (hence the official EER and minDCF) and its Mann-Whitney
AUC cost O(n) and equal those of the official code run on the resampled scores. Intervals are percentile
intervals (2.5th and 97.5th percentiles); replicates missing a class are left out (and counted).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import metrics as M

DEFAULT_RESAMPLES = 1000      # bootstrap replicates per interval
CONFIDENCE = 0.95
CI_METRICS = ("eer", "min_dcf", "roc_auc")
FEW_UNITS = 10                # fewer resampling units than this: few distinct resamples, a coarse interval


@dataclass(frozen=True)
class Units:
    index: np.ndarray        # (n_clips,) resampling unit of each clip
    count: int               # number of units
    kind: str                # "speaker" or "clip"


def resampling_units(speakers) -> Units:
    """Return the resampling units: one per speaker when any clip names one (clips without one: their own
    unit), else one per clip."""
    speakers = np.asarray(["" if s is None else str(s) for s in speakers], dtype=object)
    if not any(speakers):
        return Units(np.arange(speakers.size), int(speakers.size), "clip")
    keys = np.where(speakers != "", speakers, [f"\0clip{i}" for i in range(speakers.size)])
    _, index = np.unique(keys.astype(str), return_inverse=True)
    return Units(index.ravel(), int(index.max()) + 1, "speaker")


def replicate_weights(units: Units, resamples: int, seed: int = 0):
    """Yield `resamples` arrays of per-clip integer weights (how often each clip's unit was drawn)."""
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        drawn = np.bincount(rng.integers(0, units.count, units.count), minlength=units.count)
        yield drawn[units.index]


class SortedTrials:
    """One system's trials sorted once by score (ties: bona fide first, as the official mergesort on
    concat(bona fide, spoof) orders them), ready for weighted metrics."""

    def __init__(self, scores, labels):
        scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel()
        # official order: stable sort of concat(bona fide, spoof)
        idx = np.concatenate((np.flatnonzero(labels == M.BONAFIDE), np.flatnonzero(labels == M.SPOOF)))
        self.order = idx[np.argsort(scores[idx], kind="mergesort")]        # clip indices, ascending score
        self.is_bona = labels[self.order] == M.BONAFIDE
        sorted_scores = scores[self.order]
        self.tie_group = np.concatenate(([0], np.cumsum(np.diff(sorted_scores) != 0)))

    def metrics(self, weights) -> dict | None:
        """Return {"eer", "min_dcf", "roc_auc"} of the trials repeated by `weights` (per clip, original order),
        None when a class is absent."""
        w = np.asarray(weights)[self.order]
        wb = np.where(self.is_bona, w, 0)
        ws = w - wb
        n_b, n_s = wb.sum(), ws.sum()
        if n_b == 0 or n_s == 0:
            return None
        frr, far = M.det_from_sorted_labels(np.repeat(self.is_bona, w))
        groups = self.tie_group[-1] + 1
        bona_in = np.bincount(self.tie_group, weights=wb, minlength=groups)
        spoof_in = np.bincount(self.tie_group, weights=ws, minlength=groups)
        bona_above = n_b - np.cumsum(bona_in)                                # bona fide with a strictly higher score
        auc = float(np.sum(spoof_in * (bona_above + 0.5 * bona_in)) / (n_b * n_s))
        return {"eer": M.eer_index(frr, far)[0], "min_dcf": M.min_dcf_index(frr, far)[0], "roc_auc": auc}


def percentile_interval(values, confidence: float = CONFIDENCE) -> list[float] | None:
    """Return [low, high] percentiles holding `confidence` of the values, None when there are none."""
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return None
    tail = 100 * (1 - confidence) / 2
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def confidence_intervals(scores, labels, speakers, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Return {metric: [low, high]} 95 % bootstrap intervals of EER, minDCF and ROC-AUC, with the resampling
    unit, the replicates used and the method; {"reason": ...} when they cannot be computed."""
    labels = np.asarray(labels).ravel()
    if resamples <= 0:
        return {"reason": "bootstrap switched off (--bootstrap 0)"}
    if not (np.any(labels == M.BONAFIDE) and np.any(labels == M.SPOOF)):
        return {"reason": "the intervals need bona fide and spoof clips"}
    units = resampling_units(speakers)
    trials = SortedTrials(scores, labels)
    reps = [trials.metrics(w) for w in replicate_weights(units, resamples, seed)]
    used = [r for r in reps if r is not None]
    out = {name: percentile_interval([r[name] for r in used]) for name in CI_METRICS}
    out.update(unit=units.kind, units=units.count, resamples=resamples, used=len(used), seed=seed,
               confidence=CONFIDENCE,
               method=f"percentile bootstrap, {resamples} replicates resampling {units.count} {units.kind}s "
                      f"with replacement; EER and minDCF by the official formulas on each replicate")
    if units.count < FEW_UNITS:
        out["note"] = (f"only {units.count} {units.kind}s to resample: the intervals are coarse and may be too "
                       f"narrow; more {units.kind}s in the evaluated split would make them trustworthy")
    return out


def paired_difference(scores_a, scores_b, labels, speakers, metric: str = "eer",
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Return metric(A) - metric(B) on the same trials with its 95 % paired-bootstrap interval and two-sided
    p-value: both systems are scored on the same resampled trials; p = (1 + #{|d* - d| >= |d|}) / (1 + B),
    the share of centred replicates at least as far from 0 as the observed difference."""
    labels = np.asarray(labels).ravel()
    a, b = SortedTrials(scores_a, labels), SortedTrials(scores_b, labels)
    ones = np.ones(labels.size, dtype=np.int64)
    ma, mb = a.metrics(ones), b.metrics(ones)
    if ma is None or mb is None:
        raise ValueError("the comparison needs bona fide and spoof clips")
    observed = ma[metric] - mb[metric]
    units = resampling_units(speakers)
    diffs = []
    for w in replicate_weights(units, resamples, seed):
        ra, rb = a.metrics(w), b.metrics(w)
        if ra is not None and rb is not None:
            diffs.append(ra[metric] - rb[metric])
    diffs = np.asarray(diffs)
    extreme = int(np.sum(np.abs(diffs - observed) >= abs(observed) - 1e-15))
    return {"metric": metric, "a": ma[metric], "b": mb[metric], "difference": observed,
            "ci95": percentile_interval(diffs), "p_value": (1 + extreme) / (1 + diffs.size),
            "unit": units.kind, "units": units.count, "resamples": resamples, "used": int(diffs.size), "seed": seed}
