"""Detection metrics of the anti-spoofing field, as pure numpy functions, each beside its formula text.

Conventions (as in the ASVspoof evaluation packages):
  * a *score* is higher for bona fide speech (bona fide = target / positive class of the DET curve);
    ours is the log-odds of bona fide, logits[:, 0] - logits[:, 1];
  * an *LLR* is a calibrated score: log p(x | bona fide) / p(x | spoof);
  * for the classification metrics (accuracy, precision, recall, F1) spoof is the positive class;
  * labels are 0 = bonafide, 1 = spoof (spec2img.rows.LABELS order).
Functions that need both classes raise ValueError saying which class is missing.
The EER, DCF and t-DCF code is ported from the organizers' packages (it agrees with them to 1e-15);
ROC-AUC, precision, recall and F1 come from scikit-learn; minCllr and the ROCCH-EER follow BOSARIS (PAV).
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

FORMULAS = {   # what each reported number is, written once, beside the constants it uses
    "eer": "ASVspoof official EER (eval_metrics.compute_eer): every score a threshold, miss/false-alarm rates from "
           "cumulative counts, mean of FRR and FAR where |FRR - FAR| is smallest",
    "min_tdcf_legacy": "ASVspoof 2019 min t-DCF, legacy formulation (eval_metrics.compute_tDCF_legacy): min over CM "
                       "thresholds of (C1·Pmiss_cm + C2·Pfa_cm)/min(C1,C2), ASV at its EER threshold, Pspoof "
                       f"{TDCF_LEGACY_COST['Pspoof']}, Ptar {TDCF_LEGACY_COST['Ptar']:.4f}, Pnon "
                       f"{TDCF_LEGACY_COST['Pnon']:.4f}, Cmiss_asv 1, Cfa_asv 10, Cmiss_cm 1, Cfa_cm 10",
    "roc_auc": "ROC-AUC, spoof positive (sklearn.metrics.roc_auc_score = Mann-Whitney U / (n_spoof·n_bonafide), "
               "ties count ½)",
    "min_dcf": "ASVspoof 5 minDCF (calculate_modules.compute_mindcf): min over thresholds of "
               "(Cmiss(1-Pspoof)·Pmiss + Cfa·Pspoof·Pfa) / min(Cmiss(1-Pspoof), Cfa·Pspoof), "
               f"Pspoof {DCF_P_SPOOF}, Cmiss {DCF_C_MISS:g}, Cfa {DCF_C_FA:g}",
    "act_dcf": "ASVspoof 5 actDCF (calculate_modules.compute_actDCF): the same normalized DCF at the Bayes threshold "
               f"-log(Cmiss(1-Pspoof)/(Cfa·Pspoof)) = {-math.log(DCF_C_MISS * (1 - DCF_P_SPOOF) / (DCF_C_FA * DCF_P_SPOOF)):.3f}"
               " on the LLR",
    "cllr": "ASVspoof 5 Cllr (calculate_CLLR), bits: "
            "½[mean log2(1+e^-LLR) over bona fide + mean log2(1+e^LLR) over spoof]",
    "min_cllr": "minCllr (BOSARIS min_cllr), bits: Cllr of the optimal monotone score-to-LLR map on these trials "
                "(PAV isotonic regression, tied scores pooled): the Cllr left once calibration is perfect",
    "rocch_eer": "ROCCH-EER (BOSARIS rocch2eer): EER of the ROC convex hull; tied scores count as one threshold",
    "accuracy": "accuracy = (TP + TN) / N",
    "balanced_accuracy": "balanced accuracy = (TPR + TNR) / 2",
    "precision": "precision = TP / (TP + FP), spoof positive (sklearn.metrics.precision_score)",
    "recall": "recall = TP / (TP + FN), spoof positive, share of spoofs detected (sklearn.metrics.recall_score)",
    "f1": "F1 = 2TP / (2TP + FP + FN), spoof positive (sklearn.metrics.f1_score)",
    "frr": "false rejection rate = bona fide called spoof / bona fide",
    "far": "false acceptance rate = spoof called bona fide / spoof",
    "per_attack": "EER (ASVspoof official) of each spoofing system's clips against ALL bona fide clips",
    "per_condition": "EER (ASVspoof official) of bona fide vs spoof clips within each condition",
    "per_family": "EER (ASVspoof official) of each attack family's spoof clips against ALL bona fide clips "
                  "(ASVspoof 2021 DF: vocoder type)",
}


def _require_both(bonafide: np.ndarray, spoof: np.ndarray, what: str) -> None:
    missing = [name for name, a in (("bonafide", bonafide), ("spoof", spoof)) if a.size == 0]
    if missing:
        raise ValueError(f"{what} needs both bonafide and spoof clips; this set has no {missing[0]} clips")


def _as_1d(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float64)).ravel()


# ---------------------------------------------------------------- DET curve, EER, t-DCF (official ports)

def det_from_sorted_labels(is_target_sorted) -> tuple[np.ndarray, np.ndarray]:
    """Return (frr, far) of trials already sorted by score (1 = target / bona fide), one point per trial plus
    the start (eval_metrics.py `compute_det_curve` after its sort; the bootstrap reuses it on resamples)."""
    labels = np.asarray(is_target_sorted, dtype=np.float64)
    n_target = labels.sum()
    n_nontarget = labels.size - n_target
    tar_trial_sums = np.cumsum(labels)
    nontarget_trial_sums = n_nontarget - (np.arange(1, labels.size + 1) - tar_trial_sums)
    frr = np.concatenate((np.atleast_1d(0), tar_trial_sums / n_target))
    far = np.concatenate((np.atleast_1d(1), nontarget_trial_sums / n_nontarget))
    return frr, far


def compute_det_curve(target_scores, nontarget_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (frr, far, thresholds) with every score as a threshold, from cumulative counts
    (ASVspoof 2019/2021/5 eval_metrics.py `compute_det_curve`); frr[i] = P(target <= thresholds[i])."""
    target_scores, nontarget_scores = _as_1d(target_scores), _as_1d(nontarget_scores)
    _require_both(target_scores, nontarget_scores, "a DET curve")
    all_scores = np.concatenate((target_scores, nontarget_scores))
    labels = np.concatenate((np.ones(target_scores.size), np.zeros(nontarget_scores.size)))
    indices = np.argsort(all_scores, kind="mergesort")
    frr, far = det_from_sorted_labels(labels[indices])
    thresholds = np.concatenate((np.atleast_1d(all_scores[indices[0]] - 0.001), all_scores[indices]))
    return frr, far, thresholds


def eer_index(frr: np.ndarray, far: np.ndarray) -> tuple[float, int]:
    """Return (EER, index) on a DET curve: mean of frr and far where |frr - far| is smallest (first such point)."""
    i = int(np.argmin(np.abs(frr - far)))
    return float(np.mean((frr[i], far[i]))), i


def compute_eer(bonafide_scores, spoof_scores) -> tuple[float, float]:
    """Return (EER, threshold): mean of frr and far where |frr - far| is smallest (ASVspoof `compute_eer`)."""
    frr, far, thresholds = compute_det_curve(bonafide_scores, spoof_scores)
    eer, i = eer_index(frr, far)
    return eer, float(thresholds[i])


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


# ---------------------------------------------------------------- DCF and Cllr (ASVspoof 5)

def min_dcf_index(frr: np.ndarray, far: np.ndarray, p_spoof: float = DCF_P_SPOOF, c_miss: float = DCF_C_MISS,
                  c_fa: float = DCF_C_FA) -> tuple[float, int]:
    """Return (normalized minDCF, index of the first minimum) on a DET curve."""
    c_det = c_miss * frr * (1 - p_spoof) + c_fa * far * p_spoof
    i = int(np.argmin(c_det))        # first minimum, as the official strict-`<` loop keeps
    return float(c_det[i] / min(c_miss * (1 - p_spoof), c_fa * p_spoof)), i


def compute_min_dcf(bonafide_scores, spoof_scores, p_spoof: float = DCF_P_SPOOF, c_miss: float = DCF_C_MISS,
                    c_fa: float = DCF_C_FA) -> tuple[float, float]:
    """Return (minDCF, threshold): min over DET thresholds of (Cmiss(1-Pspoof)·Pmiss + Cfa·Pspoof·Pfa)
    / min(Cmiss(1-Pspoof), Cfa·Pspoof) (ASVspoof 5 `compute_mindcf`)."""
    frr, far, thresholds = compute_det_curve(bonafide_scores, spoof_scores)
    dcf, i = min_dcf_index(frr, far, p_spoof, c_miss, c_fa)
    return dcf, float(thresholds[i])


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


# ---------------------------------------------------------------- PAV: minCllr and the ROC convex hull

def pav_posteriors(bonafide_scores, spoof_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (distinct scores ascending, their PAV bona fide posterior, bona fide count, spoof count): the
    optimal monotone score-to-posterior map on these trials (isotonic regression, tied scores pooled)."""
    from sklearn.isotonic import isotonic_regression
    bona, spoof = _as_1d(bonafide_scores), _as_1d(spoof_scores)
    _require_both(bona, spoof, "PAV calibration")
    values, inverse = np.unique(np.concatenate((bona, spoof)), return_inverse=True)
    n_bona = np.bincount(inverse[:bona.size], minlength=values.size).astype(np.float64)
    n_all = np.bincount(inverse, minlength=values.size).astype(np.float64)
    posterior = isotonic_regression(n_bona / n_all, sample_weight=n_all, increasing=True)
    return values, np.clip(posterior, 0.0, 1.0), n_bona, n_all - n_bona


def pav_llrs(bonafide_scores, spoof_scores) -> tuple[np.ndarray, np.ndarray]:
    """Return (bona fide LLRs, spoof LLRs) of the PAV map: logit(posterior) - log(n_bona / n_spoof), ±inf at the
    ends where a pooled block holds one class only (BOSARIS opt_loglr)."""
    bona, spoof = _as_1d(bonafide_scores), _as_1d(spoof_scores)
    values, posterior, _, _ = pav_posteriors(bona, spoof)
    with np.errstate(divide="ignore"):
        llr_of_value = np.log(posterior) - np.log1p(-posterior) - math.log(bona.size / spoof.size)
    return llr_of_value[np.searchsorted(values, bona)], llr_of_value[np.searchsorted(values, spoof)]


def compute_min_cllr(bonafide_scores, spoof_scores) -> float:
    """Return minCllr in bits: Cllr after the best monotone (PAV) calibration on the same trials (BOSARIS)."""
    return compute_cllr(*pav_llrs(bonafide_scores, spoof_scores))


def rocch(bonafide_scores, spoof_scores) -> tuple[np.ndarray, np.ndarray]:
    """Return (pmiss, pfa) at the vertices of the ROC convex hull, pfa falling from 1 to 0 (BOSARIS `rocch`):
    one vertex between every two PAV blocks."""
    _, posterior, n_bona, n_spoof = pav_posteriors(bonafide_scores, spoof_scores)
    block = np.concatenate(([0], np.cumsum(np.diff(posterior) != 0)))       # PAV block of each distinct score
    bona_in = np.bincount(block, weights=n_bona)
    spoof_in = np.bincount(block, weights=n_spoof)
    pmiss = np.concatenate(([0.0], np.cumsum(bona_in))) / n_bona.sum()
    pfa = 1.0 - np.concatenate(([0.0], np.cumsum(spoof_in))) / n_spoof.sum()
    return pmiss, pfa


def compute_rocch_eer(bonafide_scores, spoof_scores) -> float:
    """Return the EER of the ROC convex hull (BOSARIS `rocch2eer`): 0.5 for an uninformative (e.g. constant) score."""
    pmiss, pfa = rocch(bonafide_scores, spoof_scores)
    eer = 0.0
    for (x1, x2), (y1, y2) in zip(zip(pfa[:-1], pfa[1:]), zip(pmiss[:-1], pmiss[1:])):
        if x1 == x2 or y1 == y2:          # a hull segment along an axis meets the diagonal at 0
            continue
        # the segment's line a·x + b·y = 1 meets pmiss = pfa at 1 / (a + b)
        det = x1 * y2 - x2 * y1
        eer = max(eer, det / ((y2 - y1) + (x1 - x2)))
    return float(eer)


# ---------------------------------------------------------------- ranking and decisions (scikit-learn)

def roc_auc(labels, spoof_scores) -> float:
    """Return ROC-AUC with spoof positive: P(spoof score > bonafide score) + ½P(tie) (sklearn roc_auc_score)."""
    from sklearn.metrics import roc_auc_score
    labels, s = np.asarray(labels).ravel(), _as_1d(spoof_scores)
    _require_both(s[labels == BONAFIDE], s[labels == SPOOF], "ROC-AUC")
    return float(roc_auc_score(labels == SPOOF, s))


def predict_labels(spoof_prob, threshold: float) -> np.ndarray:
    """Return 1 (spoof) where spoof_prob >= threshold, else 0 (bonafide)."""
    return (_as_1d(spoof_prob) >= threshold).astype(np.int64)


def confusion_counts(labels, pred) -> dict:
    """Return {"tn","fp","fn","tp"} counts with spoof positive (fp = bonafide called spoof)."""
    from sklearn.metrics import confusion_matrix
    tn, fp, fn, tp = confusion_matrix(np.asarray(labels).ravel(), np.asarray(pred).ravel(),
                                      labels=[BONAFIDE, SPOOF]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def accuracy(c: dict) -> float:
    """Return (tp + tn) / N."""
    n = c["tp"] + c["tn"] + c["fp"] + c["fn"]
    if n == 0:
        raise ValueError("accuracy of an empty set")
    return (c["tp"] + c["tn"]) / n


def specificity(c: dict) -> float:
    """Return tn / (tn + fp): share of bona fide clips accepted (true negative rate)."""
    if c["tn"] + c["fp"] == 0:
        raise ValueError("specificity needs bonafide clips; this set has none")
    return c["tn"] / (c["tn"] + c["fp"])


def sensitivity(c: dict) -> float:
    """Return tp / (tp + fn): share of spoof clips detected (true positive rate)."""
    if c["tp"] + c["fn"] == 0:
        raise ValueError("the detection rate needs spoof clips; this set has none")
    return c["tp"] / (c["tp"] + c["fn"])


def balanced_accuracy(c: dict) -> float:
    """Return (sensitivity + specificity) / 2."""
    return (sensitivity(c) + specificity(c)) / 2


def _sklearn_rate(fn, labels, pred, undefined: str) -> float:
    labels, pred = np.asarray(labels).ravel(), np.asarray(pred).ravel()
    value = fn(labels, pred, pos_label=SPOOF, labels=[BONAFIDE, SPOOF], zero_division=np.nan)
    if not np.isfinite(value):
        raise ValueError(undefined)
    return float(value)


def precision(labels, pred) -> float:
    """Return tp / (tp + fp): share of clips called spoof that are spoof (sklearn precision_score)."""
    from sklearn.metrics import precision_score
    return _sklearn_rate(precision_score, labels, pred, "precision is undefined: no clip was predicted spoof")


def recall(labels, pred) -> float:
    """Return tp / (tp + fn): share of spoof clips detected (sklearn recall_score)."""
    from sklearn.metrics import recall_score
    return _sklearn_rate(recall_score, labels, pred, "recall needs spoof clips; this set has none")


def f1(labels, pred) -> float:
    """Return 2tp / (2tp + fp + fn), the harmonic mean of precision and recall (sklearn f1_score)."""
    from sklearn.metrics import f1_score
    if not np.any(np.asarray(labels) == SPOOF):
        raise ValueError("F1 needs spoof clips; this set has none")
    return _sklearn_rate(f1_score, labels, pred, "F1 is undefined on this set")


# ---------------------------------------------------------------- breakdowns and several runs

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
