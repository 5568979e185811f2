"""Detection metrics of the anti-spoofing field, as pure numpy functions.

Conventions (as in the ASVspoof evaluation packages):
  * a *score* is higher for bona fide speech (bona fide = target / positive class of the DET curve);
    ours is the log-odds of bona fide, logits[:, 0] - logits[:, 1];
  * for the classification metrics (accuracy, precision, recall, F1) spoof is the positive class;
  * labels are 0 = bonafide, 1 = spoof (spec2img.rows.LABELS order).
Functions that need both classes raise ValueError saying which class is missing.
"""
from __future__ import annotations

import math

import numpy as np

BONAFIDE, SPOOF = 0, 1

# ASVspoof 2019 legacy t-DCF cost model (evaluate_tDCF_asvspoof19.py, legacy=True; AASIST evaluation.py)
TDCF_LEGACY_COST = {
    "Pspoof": 0.05,                 # prior probability of a spoofing attack
    "Ptar": (1 - 0.05) * 0.99,      # prior probability of a target speaker
    "Pnon": (1 - 0.05) * 0.01,      # prior probability of a nontarget speaker
    "Cmiss_asv": 1.0,               # cost of ASV falsely rejecting a target
    "Cfa_asv": 10.0,                # cost of ASV falsely accepting a nontarget
    "Cmiss_cm": 1.0,                # cost of CM falsely rejecting a bona fide trial
    "Cfa_cm": 10.0,                 # cost of CM falsely accepting a spoof
}

# ASVspoof 5 track 1 DCF parameters (evaluation-package/calculate_modules.py, evaluation plan eq. 3-4)
DCF_P_SPOOF, DCF_C_MISS, DCF_C_FA = 0.05, 1.0, 10.0


def _require_both(bonafide: np.ndarray, spoof: np.ndarray, what: str) -> None:
    missing = [name for name, a in (("bonafide", bonafide), ("spoof", spoof)) if a.size == 0]
    if missing:
        raise ValueError(f"{what} needs both bonafide and spoof clips; this set has no {missing[0]} clips")


def _as_1d(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float64)).ravel()


def compute_det_curve(target_scores, nontarget_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (frr, far, thresholds) with every score as a threshold, from cumulative counts
    (ASVspoof 2019/2021/5 eval_metrics.py `compute_det_curve`); frr[i] = P(target <= thresholds[i])."""
    target_scores, nontarget_scores = _as_1d(target_scores), _as_1d(nontarget_scores)
    _require_both(target_scores, nontarget_scores, "a DET curve")
    n_scores = target_scores.size + nontarget_scores.size
    all_scores = np.concatenate((target_scores, nontarget_scores))
    labels = np.concatenate((np.ones(target_scores.size), np.zeros(nontarget_scores.size)))
    indices = np.argsort(all_scores, kind="mergesort")
    labels = labels[indices]
    tar_trial_sums = np.cumsum(labels)
    nontarget_trial_sums = nontarget_scores.size - (np.arange(1, n_scores + 1) - tar_trial_sums)
    frr = np.concatenate((np.atleast_1d(0), tar_trial_sums / target_scores.size))
    far = np.concatenate((np.atleast_1d(1), nontarget_trial_sums / nontarget_scores.size))
    thresholds = np.concatenate((np.atleast_1d(all_scores[indices[0]] - 0.001), all_scores[indices]))
    return frr, far, thresholds


def compute_eer(bonafide_scores, spoof_scores) -> tuple[float, float]:
    """Return (EER, threshold): mean of frr and far where |frr - far| is smallest (ASVspoof `compute_eer`)."""
    frr, far, thresholds = compute_det_curve(bonafide_scores, spoof_scores)
    min_index = int(np.argmin(np.abs(frr - far)))
    return float(np.mean((frr[min_index], far[min_index]))), float(thresholds[min_index])


def obtain_asv_error_rates(tar_asv, non_asv, spoof_asv, asv_threshold: float) -> tuple[float, float, float]:
    """Return (Pfa_asv, Pmiss_asv, Pmiss_spoof_asv) of the ASV at `asv_threshold` (ASVspoof 2019 eval_metrics)."""
    tar_asv, non_asv, spoof_asv = _as_1d(tar_asv), _as_1d(non_asv), _as_1d(spoof_asv)
    if tar_asv.size == 0 or non_asv.size == 0 or spoof_asv.size == 0:
        raise ValueError("ASV scores need target, nontarget and spoof trials")
    pfa_asv = float(np.sum(non_asv >= asv_threshold) / non_asv.size)
    pmiss_asv = float(np.sum(tar_asv < asv_threshold) / tar_asv.size)
    pmiss_spoof_asv = float(np.sum(spoof_asv < asv_threshold) / spoof_asv.size)
    return pfa_asv, pmiss_asv, pmiss_spoof_asv


def compute_tDCF_legacy(bonafide_score_cm, spoof_score_cm, pfa_asv: float, pmiss_asv: float,
                        pmiss_spoof_asv: float, cost_model: dict = TDCF_LEGACY_COST
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Return (normalized t-DCF curve, CM thresholds): (C1·Pmiss_cm + C2·Pfa_cm) / min(C1, C2) with
    C1 = Ptar(Cmiss_cm - Cmiss_asv·Pmiss_asv) - Pnon·Cfa_asv·Pfa_asv, C2 = Cfa_cm·Pspoof(1 - Pmiss_spoof_asv)
    (ASVspoof 2019 evaluation plan; eval_metrics.py `compute_tDCF_legacy`)."""
    c = cost_model
    if abs(c["Ptar"] + c["Pnon"] + c["Pspoof"] - 1) > 1e-10:
        raise ValueError("t-DCF priors Ptar + Pnon + Pspoof must sum to one")
    bona, spoof = _as_1d(bonafide_score_cm), _as_1d(spoof_score_cm)
    if not np.all(np.isfinite(np.concatenate((bona, spoof)))):
        raise ValueError("CM scores contain nan or inf")
    pmiss_cm, pfa_cm, thresholds = compute_det_curve(bona, spoof)
    c1 = c["Ptar"] * (c["Cmiss_cm"] - c["Cmiss_asv"] * pmiss_asv) - c["Pnon"] * c["Cfa_asv"] * pfa_asv
    c2 = c["Cfa_cm"] * c["Pspoof"] * (1 - pmiss_spoof_asv)
    if c1 < 0 or c2 < 0:
        raise ValueError(f"t-DCF weights are negative (C1={c1:g}, C2={c2:g}): check the ASV error rates")
    if min(c1, c2) == 0:
        raise ValueError("t-DCF is undefined: the ASV rejects every spoof (C2 = 0) or C1 = 0")
    return (c1 * pmiss_cm + c2 * pfa_cm) / min(c1, c2), thresholds


def min_tdcf_legacy(bonafide_score_cm, spoof_score_cm, tar_asv, non_asv, spoof_asv,
                    cost_model: dict = TDCF_LEGACY_COST) -> float:
    """Return the minimum normalized legacy t-DCF with the ASV fixed at its own EER threshold
    (ASVspoof 2019 `evaluate_tDCF_asvspoof19`, legacy=True)."""
    asv_threshold = compute_eer(tar_asv, non_asv)[1]
    rates = obtain_asv_error_rates(tar_asv, non_asv, spoof_asv, asv_threshold)
    curve, _ = compute_tDCF_legacy(bonafide_score_cm, spoof_score_cm, *rates, cost_model=cost_model)
    return float(np.min(curve))


def compute_min_dcf(bonafide_scores, spoof_scores, p_spoof: float = DCF_P_SPOOF, c_miss: float = DCF_C_MISS,
                    c_fa: float = DCF_C_FA) -> tuple[float, float]:
    """Return (minDCF, threshold): min over DET thresholds of (Cmiss(1-Pspoof)·Pmiss + Cfa·Pspoof·Pfa)
    / min(Cmiss(1-Pspoof), Cfa·Pspoof) (ASVspoof 5 `compute_mindcf`)."""
    frr, far, thresholds = compute_det_curve(bonafide_scores, spoof_scores)
    c_det = c_miss * frr * (1 - p_spoof) + c_fa * far * p_spoof
    i = int(np.argmin(c_det))        # first minimum, as the official strict-`<` loop keeps
    return float(c_det[i] / min(c_miss * (1 - p_spoof), c_fa * p_spoof)), float(thresholds[i])


def bayes_threshold(p_spoof: float = DCF_P_SPOOF, c_miss: float = DCF_C_MISS, c_fa: float = DCF_C_FA) -> float:
    """Return the Bayes decision threshold -log(beta), beta = Cmiss(1-Pspoof)/(Cfa·Pspoof), for LLR scores."""
    return -math.log(c_miss * (1 - p_spoof) / (c_fa * p_spoof))


def compute_act_dcf(bonafide_llrs, spoof_llrs, p_spoof: float = DCF_P_SPOOF, c_miss: float = DCF_C_MISS,
                    c_fa: float = DCF_C_FA) -> tuple[float, float]:
    """Return (actDCF, threshold): normalized DCF of LLR scores at the Bayes threshold, bona fide when
    llr >= threshold (ASVspoof 5 `compute_actDCF`)."""
    bona, spoof = _as_1d(bonafide_llrs), _as_1d(spoof_llrs)
    _require_both(bona, spoof, "actDCF")
    threshold = bayes_threshold(p_spoof, c_miss, c_fa)
    rate_miss = np.sum(bona < threshold) / bona.size
    rate_fa = np.sum(spoof >= threshold) / spoof.size
    act_dcf = c_miss * (1 - p_spoof) * rate_miss + c_fa * p_spoof * rate_fa
    return float(act_dcf / min(c_fa * p_spoof, c_miss * (1 - p_spoof))), threshold


def compute_cllr(bonafide_llrs, spoof_llrs) -> float:
    """Return Cllr = ½[mean log2(1 + e^-llr_bona) + mean log2(1 + e^llr_spoof)] in bits (ASVspoof 5
    `calculate_CLLR`; Brümmer & du Preez 2006); 1.0 for an uninformative all-zero LLR."""
    bona, spoof = _as_1d(bonafide_llrs), _as_1d(spoof_llrs)
    _require_both(bona, spoof, "Cllr")
    # logaddexp(0, -x) = log(1 + e^-x) without overflow for large |x|
    return float(0.5 * (np.mean(np.logaddexp(0, -bona)) + np.mean(np.logaddexp(0, spoof))) / np.log(2))


def log_odds_to_llr(log_odds_bonafide, prior_bonafide: float) -> np.ndarray:
    """Return LLR = posterior log-odds of bona fide - log(prior_bonafide / (1 - prior_bonafide)) (Bayes' rule)."""
    if not 0 < prior_bonafide < 1:
        raise ValueError(f"prior_bonafide must be in (0, 1), got {prior_bonafide}")
    return _as_1d(log_odds_bonafide) - math.log(prior_bonafide / (1 - prior_bonafide))


def roc_auc(labels, spoof_scores) -> float:
    """Return ROC-AUC with spoof positive: P(spoof score > bonafide score) + ½P(tie) (Mann-Whitney U / n1·n0)."""
    from scipy.stats import rankdata
    labels, s = np.asarray(labels).ravel(), _as_1d(spoof_scores)
    pos, neg = int(np.sum(labels == SPOOF)), int(np.sum(labels == BONAFIDE))
    _require_both(s[labels == BONAFIDE], s[labels == SPOOF], "ROC-AUC")
    ranks = rankdata(s)                                  # average ranks for ties
    return float((ranks[labels == SPOOF].sum() - pos * (pos + 1) / 2) / (pos * neg))


def confusion_counts(labels, pred) -> dict:
    """Return {"tn","fp","fn","tp"} counts with spoof positive (fp = bonafide called spoof)."""
    labels, pred = np.asarray(labels).ravel(), np.asarray(pred).ravel()
    return {"tn": int(np.sum((labels == BONAFIDE) & (pred == BONAFIDE))),
            "fp": int(np.sum((labels == BONAFIDE) & (pred == SPOOF))),
            "fn": int(np.sum((labels == SPOOF) & (pred == BONAFIDE))),
            "tp": int(np.sum((labels == SPOOF) & (pred == SPOOF)))}


def predict_labels(spoof_prob, threshold: float) -> np.ndarray:
    """Return 1 (spoof) where spoof_prob >= threshold, else 0 (bonafide)."""
    return (_as_1d(spoof_prob) >= threshold).astype(np.int64)


def accuracy(c: dict) -> float:
    """Return (tp + tn) / N."""
    n = c["tp"] + c["tn"] + c["fp"] + c["fn"]
    if n == 0:
        raise ValueError("accuracy of an empty set")
    return (c["tp"] + c["tn"]) / n


def recall(c: dict) -> float:
    """Return tp / (tp + fn): share of spoof clips detected (true positive rate)."""
    if c["tp"] + c["fn"] == 0:
        raise ValueError("recall needs spoof clips; this set has none")
    return c["tp"] / (c["tp"] + c["fn"])


def specificity(c: dict) -> float:
    """Return tn / (tn + fp): share of bona fide clips accepted (true negative rate)."""
    if c["tn"] + c["fp"] == 0:
        raise ValueError("specificity needs bonafide clips; this set has none")
    return c["tn"] / (c["tn"] + c["fp"])


def balanced_accuracy(c: dict) -> float:
    """Return (recall + specificity) / 2."""
    return (recall(c) + specificity(c)) / 2


def precision(c: dict) -> float:
    """Return tp / (tp + fp): share of clips called spoof that are spoof."""
    if c["tp"] + c["fp"] == 0:
        raise ValueError("precision is undefined: no clip was predicted spoof")
    return c["tp"] / (c["tp"] + c["fp"])


def f1_score(c: dict) -> float:
    """Return 2tp / (2tp + fp + fn), the harmonic mean of precision and recall."""
    if c["tp"] + c["fn"] == 0:
        raise ValueError("F1 needs spoof clips; this set has none")
    return 2 * c["tp"] / (2 * c["tp"] + c["fp"] + c["fn"])


def error_rates(c: dict) -> tuple[float, float]:
    """Return (false rejection rate = fp/(tn+fp), false acceptance rate = fn/(fn+tp)) at a threshold."""
    return 1 - specificity(c), 1 - recall(c)


def per_group_eer(scores, labels, groups, bonafide_from_all: bool) -> dict:
    """Return {group: {"eer", "n_spoof", "n_bonafide"} or {"eer": None, "reason"}}; spoof clips of each group
    against all bona fide clips (bonafide_from_all, per attack) or the group's own bona fide clips (per condition)."""
    scores, labels, groups = _as_1d(scores), np.asarray(labels).ravel(), np.asarray(groups, dtype=object).ravel()
    spoof_groups = sorted({g for g in groups[labels == SPOOF] if g})
    all_groups = spoof_groups if bonafide_from_all else sorted({g for g in groups if g})
    out = {}
    for g in all_groups:
        in_g = groups == g
        bona = scores[(labels == BONAFIDE) & (np.True_ if bonafide_from_all else in_g)]
        spoof = scores[(labels == SPOOF) & in_g]
        entry = {"n_spoof": int(spoof.size), "n_bonafide": int(bona.size)}
        try:
            entry["eer"] = compute_eer(bona, spoof)[0]
        except ValueError as e:
            entry.update(eer=None, reason=str(e))
        out[g] = entry
    return out


def per_attack_eer(scores, labels, systems) -> dict:
    """Return {system: {"eer", ...}}: each spoofing system's clips against ALL bona fide clips (AASIST breakdown)."""
    return per_group_eer(scores, labels, systems, bonafide_from_all=True)


def per_condition_eer(scores, labels, conditions) -> dict:
    """Return {condition: {"eer", ...}}: bona fide vs spoof within each condition (ASVspoof 2021 per-codec EER)."""
    return per_group_eer(scores, labels, conditions, bonafide_from_all=False)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def aggregate_runs(metric_dicts: list[dict]) -> dict:
    """Return {name: {"mean", "std" (sample, ddof=1), "n", "values"}} over runs of each numeric metric;
    entries may be numbers or {"value": ...}; null values are left out of the mean and counted in "n_missing"."""
    names = []
    for d in metric_dicts:
        names += [k for k in d if k not in names]
    out = {}
    for name in names:
        raw = [d.get(name) for d in metric_dicts]
        vals = [r.get("value") if isinstance(r, dict) else r for r in raw]
        if any(v is not None and not _is_number(v) for v in vals):
            continue                                   # not a numeric metric (a name, a nested table)
        nums = [float(v) for v in vals if v is not None]
        entry = {"mean": float(np.mean(nums)) if nums else None,
                 "std": float(np.std(nums, ddof=1)) if len(nums) > 1 else None,
                 "n": len(nums), "n_missing": len(vals) - len(nums), "values": vals}
        out[name] = entry
    return out
