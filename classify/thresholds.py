"""Choosing the decision threshold on the validation split, and `thresholds.json` in the run folder.

The decision is: spoof when spoof_prob >= spoof_prob_threshold. Equivalently, on the ASVspoof score
(log-odds of bona fide), bona fide when score >= score_threshold = log((1 - t) / t).
Candidate thresholds lie halfway between neighbouring distinct validation probabilities (plus one below
all and one above all when possible), so a test clip scoring exactly like a validation clip is not decided
by a tie.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from spec2img.fileio import write_json

from .metrics import BONAFIDE, SPOOF
from .runfolder import THRESHOLDS_FILE

RULES = ("eer", "f1", "balanced_accuracy", "far")
RULE_METRIC = {   # what each rule optimizes, as written into thresholds.json
    "eer": "EER on val at the threshold where false rejection and false acceptance rates are closest",
    "f1": "maximum F1 on val (spoof positive)",
    "balanced_accuracy": "maximum balanced accuracy on val",
    "far": "largest threshold whose false acceptance rate (spoof accepted as bona fide) on val <= target",
}


def candidate_thresholds(spoof_prob: np.ndarray) -> np.ndarray:
    """Return increasing thresholds in [0, 1]: midpoints of distinct values, one below all, one above all (if < 1)."""
    u = np.unique(np.asarray(spoof_prob, dtype=np.float64))
    mids = (u[:-1] + u[1:]) / 2
    ends = [u[0] / 2] + ([(u[-1] + 1) / 2] if u[-1] < 1 else [])
    return np.unique(np.concatenate((mids, ends)))


def rates_at(spoof_prob: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict:
    """Return per-threshold arrays frr (bona fide called spoof), far (spoof called bona fide), tp, fp, fn, tn."""
    p = np.asarray(spoof_prob, dtype=np.float64)
    labels = np.asarray(labels)
    bona, spoof = np.sort(p[labels == BONAFIDE]), np.sort(p[labels == SPOOF])
    fn = np.searchsorted(spoof, thresholds, side="left")          # spoof with p < t -> accepted
    tn = np.searchsorted(bona, thresholds, side="left")           # bona fide with p < t -> accepted
    tp, fp = spoof.size - fn, bona.size - tn
    return {"frr": fp / max(bona.size, 1), "far": fn / max(spoof.size, 1), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _rule_values(rule: str, r: dict, target_far: float | None) -> np.ndarray:
    if rule == "eer":
        return -np.abs(r["frr"] - r["far"])
    if rule == "f1":
        return 2 * r["tp"] / np.maximum(2 * r["tp"] + r["fp"] + r["fn"], 1)
    if rule == "balanced_accuracy":
        return 1 - (r["frr"] + r["far"]) / 2
    return np.where(r["far"] <= target_far, np.arange(r["far"].size), -1.0)   # far: the largest allowed


def choose_threshold_with_value(val_spoof_prob, val_labels, rule: str = "eer",
                                target_far: float | None = None) -> tuple[float, dict]:
    """Return (spoof_prob threshold, {"value", "metric", "frr", "far"} of the rule on val)."""
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {', '.join(RULES)}")
    if rule == "far" and (target_far is None or not 0 <= target_far <= 1):
        raise ValueError("rule 'far' needs --target-far between 0 and 1 (e.g. 0.01)")
    p, labels = np.asarray(val_spoof_prob, dtype=np.float64).ravel(), np.asarray(val_labels).ravel()
    for name, cls in (("bonafide", BONAFIDE), ("spoof", SPOOF)):
        if not np.any(labels == cls):
            raise ValueError(f"cannot tune a threshold on val: it has no {name} clips")
    cands = candidate_thresholds(p)
    r = rates_at(p, labels, cands)
    i = int(np.argmax(_rule_values(rule, r, target_far)))   # first best = lowest threshold among ties
    frr, far = float(r["frr"][i]), float(r["far"][i])
    value = {"eer": (frr + far) / 2, "far": far, "balanced_accuracy": 1 - (frr + far) / 2,
             "f1": float(_rule_values("f1", r, None)[i])}[rule]
    return float(cands[i]), {"value": float(value), "metric": RULE_METRIC[rule], "frr": frr, "far": far}


def prob_to_score_threshold(t: float) -> float:
    """Return the score (log-odds of bona fide) threshold log((1 - t) / t) equivalent to spoof_prob >= t."""
    t = min(max(t, 1e-12), 1 - 1e-12)   # keep it finite for the all-spoof / all-bona-fide ends
    return math.log((1 - t) / t)


def write_thresholds(folder: Path, rule: str, spoof_prob_threshold: float, val_info: dict,
                     target_far: float | None = None, note: str | None = None) -> Path:
    """Write folder/thresholds.json atomically (brief schema + the rule's value on val) and return its path;
    `folder` is an evaluation output set (classify.outputset)."""
    data = {"rule": rule, "spoof_prob_threshold": float(spoof_prob_threshold),
            "score_threshold": prob_to_score_threshold(spoof_prob_threshold), "split": "val",
            "decision": "spoof when spoof_prob >= spoof_prob_threshold (bona fide when score >= score_threshold)",
            "target_far": target_far, "val": val_info}
    if note:
        data["note"] = note
    return write_json(Path(folder) / THRESHOLDS_FILE, data)


def read_thresholds(folder: Path) -> dict | None:
    """Return the thresholds.json of an evaluation set folder (runfolder.evaluation_dir) as a dict, None without."""
    path = Path(folder) / THRESHOLDS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
