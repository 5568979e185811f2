"""Assembling an evaluation's numbers (the content of metrics.json) from scored splits.

Every number is an entry {"value", "formula"} (value None with a "reason" when it cannot be computed),
the formulas being classify.metrics.FORMULAS. ASVspoof 2021 trials keep their key subset: the metrics,
tables, intervals and audit cover one subset (`eval` by default, as published results do), and a table
gives the pooled EER and minDCF of every subset, labelled.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import metrics as M
from .asvscores import read_asv_scores
from .bootstrap import confidence_intervals
from .calibration import Calibration, reliability_curve, training_prior
from .scoring import EvaluationError, SplitScores
from .shortcuts import shortcut_audit

ALL_SUBSETS = "all"


def entry(formula: str, fn, *args) -> dict:
    """Return {"value", "formula"} of fn(*args), or value None with the reason when fn raises ValueError."""
    try:
        value = fn(*args)
        value = value[0] if isinstance(value, tuple) else value
        return {"value": float(value), "formula": formula}
    except ValueError as e:
        return {"value": None, "formula": formula, "reason": str(e)}


def threshold_metrics(labels: np.ndarray, spoof_prob: np.ndarray, threshold: float) -> dict:
    """Return accuracy, balanced accuracy, precision, recall, F1, FRR, FAR and the confusion counts at `threshold`."""
    pred = M.predict_labels(spoof_prob, threshold)
    c = M.confusion_counts(labels, pred)
    out = {"threshold": {"value": float(threshold), "formula": "spoof when spoof_prob >= threshold"}}
    for name, fn, args in (("accuracy", M.accuracy, (c,)), ("balanced_accuracy", M.balanced_accuracy, (c,)),
                           ("precision", M.precision, (labels, pred)), ("recall", M.recall, (labels, pred)),
                           ("f1", M.f1, (labels, pred)), ("frr", lambda c: 1 - M.specificity(c), (c,)),
                           ("far", lambda c: 1 - M.sensitivity(c), (c,))):
        out[name] = entry(M.FORMULAS[name], fn, *args)
    out["confusion"] = c
    return out


def tdcf_entry(bona: np.ndarray, spoof: np.ndarray, asv_path: Path | None, reason: str) -> dict:
    """Return the min t-DCF entry, or value None with why it is not reported."""
    formula = M.FORMULAS["min_tdcf_legacy"]
    if asv_path is None:
        return {"value": None, "formula": formula, "reason": reason}
    try:
        tar, non, spf = read_asv_scores(asv_path)
    except (OSError, EvaluationError) as e:
        return {"value": None, "formula": formula, "reason": f"ASV scores unusable: {e}"}
    e = entry(formula, M.min_tdcf_legacy, bona, spoof, tar, non, spf)
    e["asv_scores"] = str(asv_path)
    return e


def score_metrics(s: SplitScores, raw_llr: np.ndarray, llr: np.ndarray | None, calibration_why: str,
                  asv: tuple[Path | None, str] | None) -> dict:
    """Return the threshold-free metrics of a scored split: EER, ROC-AUC, minDCF, actDCF and Cllr on the calibrated
    LLRs and on the raw ones (labelled), minCllr, and the legacy min t-DCF when `asv` is given."""
    score, y = s.score, s.label
    bona, spoof = score[y == M.BONAFIDE], score[y == M.SPOOF]
    raw_b, raw_s = raw_llr[y == M.BONAFIDE], raw_llr[y == M.SPOOF]
    calibrated = " on calibrated LLRs (calibration.json, fitted on val)"
    raw = " on raw scores: LLR = score - training prior log-odds, uncalibrated"
    out = {"eer": entry(M.FORMULAS["eer"], M.compute_eer, bona, spoof),
           "roc_auc": entry(M.FORMULAS["roc_auc"], M.roc_auc, y, -score),
           "min_dcf": entry(M.FORMULAS["min_dcf"], M.compute_min_dcf, bona, spoof)}
    if llr is None:
        for name in ("act_dcf", "cllr"):
            out[name] = {"value": None, "formula": M.FORMULAS[name] + calibrated, "reason": calibration_why}
    else:
        llr_b, llr_s = llr[y == M.BONAFIDE], llr[y == M.SPOOF]
        out["act_dcf"] = entry(M.FORMULAS["act_dcf"] + calibrated, M.compute_act_dcf, llr_b, llr_s)
        out["cllr"] = entry(M.FORMULAS["cllr"] + calibrated, M.compute_cllr, llr_b, llr_s)
    out["act_dcf_raw"] = entry(M.FORMULAS["act_dcf"] + raw, M.compute_act_dcf, raw_b, raw_s)
    out["cllr_raw"] = entry(M.FORMULAS["cllr"] + raw, M.compute_cllr, raw_b, raw_s)
    out["min_cllr"] = entry(M.FORMULAS["min_cllr"], M.compute_min_cllr, bona, spoof)
    if asv is not None:
        out["min_tdcf_legacy"] = tdcf_entry(bona, spoof, *asv)
    return out


def select_subset(s: SplitScores, wanted: str) -> tuple[SplitScores, dict]:
    """Return (the trials of key subset `wanted`, a description); `all` keeps every trial. Images without
    subsets (every dataset but ASVspoof 2021) are kept whole; EvaluationError for a subset the key lacks."""
    present = sorted({x for x in s.subset if x})
    described = {"name": wanted, "available": present + [ALL_SUBSETS] if present else [],
                 "trials": len(s.clip_id)}
    if not present:
        if wanted not in ("eval", ALL_SUBSETS):
            raise EvaluationError(f"--subset {wanted}: the clips of {s.split} carry no key subset (only ASVspoof 2021 "
                                  f"keys have them); use --subset all")
        return s, {**described, "name": ALL_SUBSETS, "selected": len(s.clip_id)}
    if wanted == ALL_SUBSETS:
        return s, {**described, "selected": len(s.clip_id)}
    if wanted not in present:
        raise EvaluationError(f"--subset {wanted}: the key's subsets in {s.split} are {', '.join(present)} "
                              f"(or {ALL_SUBSETS})")
    chosen = s.take(np.asarray([x == wanted for x in s.subset]))
    return chosen, {**described, "selected": len(chosen.clip_id)}


def subset_table(s: SplitScores) -> dict:
    """Return {subset: {"counts", "eer", "min_dcf"}} for every key subset present and all trials pooled."""
    names = sorted({x for x in s.subset if x})
    if not names:
        return {}
    out = {}
    for name in names + [ALL_SUBSETS]:
        part = s if name == ALL_SUBSETS else s.take(np.asarray([x == name for x in s.subset]))
        bona, spoof = part.score[part.label == M.BONAFIDE], part.score[part.label == M.SPOOF]
        out[name] = {"counts": part.counts(), "eer": entry(M.FORMULAS["eer"], M.compute_eer, bona, spoof)["value"],
                     "min_dcf": entry(M.FORMULAS["min_dcf"], M.compute_min_dcf, bona, spoof)["value"]}
    return out


def build_result(run, cfg, val: SplitScores, test: SplitScores, chosen: SplitScores, subset: dict,
                 thresholds: dict, calibration: Calibration | None, calibration_why: str,
                 asv: tuple[Path | None, str]) -> dict:
    """Return the metrics.json content (without plots and notes): metrics of the chosen trials of the evaluated
    split, with intervals, breakdowns, subsets and the shortcut audit, and the val metrics."""
    tuned = thresholds["spoof_prob_threshold"]
    prior, prior_why = training_prior(run.config)

    def llrs(s: SplitScores) -> tuple[np.ndarray, np.ndarray | None]:
        return M.log_odds_to_llr(s.score, prior), (calibration.llr(s.score) if calibration else None)

    raw, llr = llrs(chosen)
    val_raw, val_llr = llrs(val)
    score, y = chosen.score, chosen.label
    result = {
        "run": str(run.run_dir.resolve()), "arch": run.description.get("arch"), "split": cfg.split,
        "subset": subset, "images": str(run.images.resolve()), "val_images": str(run.val_images.resolve()),
        "counts": {cfg.split: chosen.counts(), "val": val.counts()},
        "score": "log-odds of bona fide = logit_bonafide - logit_spoof (higher = more bona fide); "
                 "spoof_prob = softmax(logits)[spoof]",
        "llr": {"prior_bonafide": prior, "why": prior_why,
                "formula": "raw LLR = score - log(prior/(1-prior)) (Bayes' rule); calibrated LLR = slope·score + "
                           "offset (calibration.json)"},
        "calibration": ({"slope": calibration.slope, "offset": calibration.offset, "fitted_on": calibration.fitted_on,
                         "method": calibration.method} if calibration else {"reason": calibration_why}),
        "threshold": thresholds,
        "metrics": score_metrics(chosen, raw, llr, calibration_why, asv),
        "ci95": confidence_intervals(score, y, chosen.speaker, cfg.bootstrap, cfg.seed),
        "at_tuned_threshold": threshold_metrics(y, chosen.spoof_prob, tuned),
        "at_0.5": threshold_metrics(y, chosen.spoof_prob, 0.5),
        "val": score_metrics(val, val_raw, val_llr, calibration_why, None),
        "per_attack_formula": M.FORMULAS["per_attack"],
        "per_attack": M.per_attack_eer(score, y, chosen.system),
        "per_condition_formula": M.FORMULAS["per_condition"],
        "per_condition": M.per_condition_eer(score, y, chosen.condition),
        "per_family_formula": M.FORMULAS["per_family"],
        "per_family": M.per_group_eer(score, y, chosen.column("family"), bonafide_from_all=True),
        "subsets": subset_table(test),
        "shortcuts": shortcut_audit(chosen.rows, y, score, cfg.shortcut_strong_eer, cfg.shortcut_margin),
        "reliability": {"raw": reliability_curve(raw, y),
                        "calibrated": reliability_curve(llr, y) if llr is not None else None},
        "skipped_images": test.skipped + ([] if val is test else val.skipped),
    }
    if result["counts"][cfg.split] != test.counts():
        result["counts"]["all trials"] = test.counts()
    return result


def flat_metrics(result: dict) -> dict:
    """Return {name: value} of every number worth averaging over runs (tuned/ and 0.5/ prefixes for decisions)."""
    flat = {k: v.get("value") for k, v in result["metrics"].items()}
    for prefix, key in (("tuned", "at_tuned_threshold"), ("0.5", "at_0.5")):
        flat.update({f"{prefix}/{k}": v.get("value") for k, v in result[key].items()
                     if isinstance(v, dict) and "value" in v})
    flat.update({f"eer/{k}": v.get("eer") for k, v in result["per_attack"].items()})
    return flat


def aggregate(results: list[dict]) -> dict:
    """Return the multi-run summary: the runs and the mean and sample std of every metric over them."""
    return {"runs": [r["run"] for r in results], "split": results[0]["split"],
            "subset": results[0].get("subset", {}).get("name"),
            "std": "sample standard deviation (ddof = 1) over runs",
            "metrics": M.aggregate_runs([flat_metrics(r) for r in results])}
