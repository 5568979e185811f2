"""Every metric against hand-computed values and against independent computations (scikit-learn)."""
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from classify import metrics as M


def test_eer_hand_example():
    # sorted: 0.1s 0.2s 0.3b 0.4s 0.8b 0.9b -> frr = far = 1/3 at the 0.3 threshold
    eer, thr = M.compute_eer(np.array([0.9, 0.8, 0.3]), np.array([0.1, 0.4, 0.2]))
    assert eer == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.3)


def test_eer_perfect_and_inverted():
    assert M.compute_eer([5.0, 6.0, 7.0], [1.0, 2.0])[0] == 0.0
    assert M.compute_eer([1.0, 2.0], [5.0, 6.0, 7.0])[0] == 1.0


def test_det_curve_endpoints():
    frr, far, thr = M.compute_det_curve(np.array([3.0, 1.0]), np.array([0.0, 2.0]))
    np.testing.assert_allclose(frr, [0, 0, .5, .5, 1])
    np.testing.assert_allclose(far, [1, .5, .5, 0, 0])
    np.testing.assert_allclose(thr, [-0.001, 0, 1, 2, 3])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_sklearn_roc_within_one_trial(seed):
    rng = np.random.default_rng(seed)
    bona, spoof = rng.normal(1.0, 1.0, 137), rng.normal(-0.5, 1.2, 211)
    eer, _ = M.compute_eer(bona, spoof)
    y = np.r_[np.ones(bona.size), np.zeros(spoof.size)]
    fpr, tpr, _ = skm.roc_curve(y, np.r_[bona, spoof], drop_intermediate=False)
    fnr = 1 - tpr
    i = np.argmin(np.abs(fnr - fpr))
    independent = (fnr[i] + fpr[i]) / 2
    assert abs(eer - independent) <= 1 / min(bona.size, spoof.size)
    assert 0.1 < eer < 0.5


def test_eer_needs_both_classes():
    with pytest.raises(ValueError, match="no spoof"):
        M.compute_eer([1.0, 2.0], [])


def test_min_tdcf_legacy_hand_value():
    # ASV: targets and nontargets separate; official EER threshold = -1 (a nontarget score, counted with >=)
    tar, non, spoof_asv = np.array([1., 2, 3, 4]), np.array([-4., -3, -2, -1]), np.array([-.5, .5, 5, 6])
    pfa, pmiss, pmiss_spoof = M.obtain_asv_error_rates(tar, non, spoof_asv, M.compute_eer(tar, non)[1])
    assert (pfa, pmiss, pmiss_spoof) == (0.25, 0.0, 0.0)
    c = M.TDCF_LEGACY_COST
    c1 = c["Ptar"] * 1 - c["Pnon"] * 10 * 0.25           # 0.91675
    c2 = 10 * 0.05 * 1                                    # 0.5
    # CM det curve: Pmiss = [0, 0, .5, .5, 1], Pfa = [1, .5, .5, 0, 0]
    expected = min(c1 * m + c2 * f for m, f in [(0, 1), (0, .5), (.5, .5), (.5, 0), (1, 0)]) / min(c1, c2)
    got = M.min_tdcf_legacy(np.array([3., 1]), np.array([0., 2]), tar, non, spoof_asv)
    assert got == pytest.approx(expected) == pytest.approx(0.5)
    curve, thr = M.compute_tDCF_legacy(np.array([3., 1]), np.array([0., 2]), pfa, pmiss, pmiss_spoof)
    np.testing.assert_allclose(curve, np.array([c2, c2 / 2, (c1 + c2) / 2, c1 / 2, c1]) / c2)


def test_min_tdcf_perfect_cm_is_zero():
    tar, non, spoof_asv = np.array([1., 2, 3]), np.array([-3., -2]), np.array([0., 2, 3])
    assert M.min_tdcf_legacy([5., 6, 7], [-5., -6], tar, non, spoof_asv) == 0.0


def test_min_dcf_hand_value():
    # c_det = 0.95·Pmiss + 0.5·Pfa over the det curve -> min 0.25 at Pmiss 0, Pfa .5; normalized by 0.5
    dcf, thr = M.compute_min_dcf([3., 1], [0., 2])
    assert dcf == pytest.approx(0.5)
    assert thr == 0.0


def test_act_dcf_hand_value():
    thr = -math.log(0.95 / 0.5)
    dcf, t = M.compute_act_dcf([2., -1], [-2., 0])
    assert t == pytest.approx(thr)
    # miss 1/2 (-1 < thr), false acceptance 1/2 (0 >= thr): (0.95·.5 + 0.5·.5) / 0.5
    assert dcf == pytest.approx(1.45)
    assert M.compute_act_dcf([10., 20], [-10., -30])[0] == 0.0


def test_cllr_hand_values():
    assert M.compute_cllr(np.zeros(5), np.zeros(7)) == pytest.approx(1.0)
    assert M.compute_cllr([math.log(3)], [-math.log(3)]) == pytest.approx(math.log2(4 / 3))
    assert M.compute_cllr([40., 50], [-40., -60]) < 1e-12
    assert M.compute_cllr([-800.], [800.]) == pytest.approx(0.5 * (800 + 800) / math.log(2))   # no overflow


def test_log_odds_to_llr_removes_training_prior():
    np.testing.assert_allclose(M.log_odds_to_llr([0.0, 1.0], prior_bonafide=0.8), [-math.log(4), 1 - math.log(4)])
    np.testing.assert_allclose(M.log_odds_to_llr([0.3], 0.5), [0.3])


def test_roc_auc_is_mann_whitney_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    s = np.round(rng.normal(labels * 0.8, 1.0), 1)          # rounding makes ties
    pos, neg = s[labels == 1], s[labels == 0]
    by_pairs = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert M.roc_auc(labels, s) == pytest.approx(by_pairs)
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    with pytest.raises(ValueError, match="no spoof"):
        M.roc_auc([0, 0], [0.1, 0.2])


def test_classification_metrics_against_sklearn():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 500)
    prob = np.clip(rng.normal(0.3 + 0.4 * labels, 0.25), 0, 1)
    pred = M.predict_labels(prob, 0.45)
    np.testing.assert_array_equal(pred, (prob >= 0.45).astype(int))
    c = M.confusion_counts(labels, pred)
    assert [[c["tn"], c["fp"]], [c["fn"], c["tp"]]] == skm.confusion_matrix(labels, pred).tolist()
    assert M.accuracy(c) == pytest.approx(skm.accuracy_score(labels, pred))
    assert M.balanced_accuracy(c) == pytest.approx(skm.balanced_accuracy_score(labels, pred))
    assert M.precision(labels, pred) == pytest.approx(np.mean(labels[pred == 1] == 1))
    assert M.recall(labels, pred) == pytest.approx(np.mean(pred[labels == 1] == 1))
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    assert M.f1(labels, pred) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert 1 - M.specificity(c) == pytest.approx(np.mean(pred[labels == 0] == 1))     # frr
    assert 1 - M.sensitivity(c) == pytest.approx(np.mean(pred[labels == 1] == 0))     # far


def test_classification_metrics_hand_values_and_one_class():
    labels, pred = [0, 0, 0, 1, 1], [0, 1, 0, 1, 0]              # tn 2, fp 1, fn 1, tp 1
    c = M.confusion_counts(labels, pred)
    assert c == {"tn": 2, "fp": 1, "fn": 1, "tp": 1}
    assert M.f1(labels, pred) == pytest.approx(0.5)
    assert M.balanced_accuracy(c) == pytest.approx((1 / 2 + 2 / 3) / 2)
    only_bona = M.confusion_counts([0, 0], [0, 0])
    assert M.accuracy(only_bona) == 1.0
    with pytest.raises(ValueError, match="none"):
        M.balanced_accuracy(only_bona)
    with pytest.raises(ValueError, match="no spoof|none"):
        M.recall([0, 0], [0, 0])
    with pytest.raises(ValueError, match="no clip"):
        M.precision([0, 1], [0, 0])
    with pytest.raises(ValueError, match="none"):
        M.f1([0, 0], [0, 1])


def _pav_by_hand(labels_in_score_order, weights):
    """Pool adjacent violators, the textbook loop: non-decreasing weighted means."""
    blocks = []                                      # [mean, weight, count]
    for y, w in zip(labels_in_score_order, weights):
        blocks.append([y, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([[m] * n for m, _, n in blocks])


def test_min_cllr_hand_value_and_against_a_textbook_pav():
    # sorted 0s 1b 2s 3b: PAV posteriors 0, ½, ½, 1 -> LLRs -inf, 0, 0, +inf -> Cllr ½(½ + ½)
    assert M.compute_min_cllr([3., 1], [0., 2]) == pytest.approx(0.5)
    assert M.compute_min_cllr([5., 6], [1., 2]) == 0.0
    assert M.compute_min_cllr([1., 1], [1., 1, 1]) == pytest.approx(1.0)      # no information: 1 bit
    rng = np.random.default_rng(7)
    bona, spoof = rng.normal(1, 1, 60), rng.normal(-1, 1.5, 90)               # no ties
    scores = np.r_[bona, spoof]
    y = np.r_[np.ones(60), np.zeros(90)]
    order = np.argsort(scores)
    post = np.empty_like(scores)
    post[order] = _pav_by_hand(y[order], np.ones(y.size))
    with np.errstate(divide="ignore"):
        llr = np.log(post) - np.log1p(-post) - np.log(60 / 90)
    expected = M.compute_cllr(llr[:60], llr[60:])
    assert M.compute_min_cllr(bona, spoof) == pytest.approx(expected, rel=1e-12)
    for transform in (lambda x: x, lambda x: 3 * x - 1, np.tanh):            # no monotone map beats PAV
        assert M.compute_min_cllr(bona, spoof) <= M.compute_cllr(transform(bona), transform(spoof)) + 1e-12


def test_rocch_eer_hand_values():
    assert M.compute_rocch_eer([3., 1], [0., 2]) == pytest.approx(0.25)      # hull through (½,0) and (0,½)
    assert M.compute_rocch_eer([7., 7, 7], [7., 7]) == pytest.approx(0.5)     # a constant score: chance
    assert M.compute_rocch_eer([5., 6], [1., 2]) == 0.0
    assert M.compute_rocch_eer([1., 2], [5., 6]) == pytest.approx(0.5)       # PAV cannot use a reversed score
    pmiss, pfa = M.rocch([3., 1], [0., 2])
    np.testing.assert_allclose(pmiss, [0, 0, .5, 1])
    np.testing.assert_allclose(pfa, [1, .5, 0, 0])
    rng = np.random.default_rng(8)
    bona, spoof = rng.normal(1, 1, 200), rng.normal(-1, 1, 300)
    assert M.compute_rocch_eer(bona, spoof) <= M.compute_eer(bona, spoof)[0] + 1e-12
    assert M.compute_rocch_eer(bona, spoof) == pytest.approx(M.compute_eer(bona, spoof)[0], abs=0.02)


def test_per_attack_eer_uses_all_bonafide():
    scores = np.array([5., 4, 3, -1, -2, 4.5, 3.5])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    systems = np.array(["", "", "", "A01", "A01", "A02", "A02"], dtype=object)
    out = M.per_attack_eer(scores, labels, systems)
    assert set(out) == {"A01", "A02"}
    assert out["A01"] == {"n_spoof": 2, "n_bonafide": 3, "eer": 0.0}
    assert out["A02"]["eer"] == pytest.approx(M.compute_eer([5., 4, 3], [4.5, 3.5])[0])
    assert out["A02"]["eer"] > 0


def test_per_condition_eer_within_condition_and_one_class_reason():
    scores = np.array([5., -5, 1, 2, 3])
    labels = np.array([0, 1, 0, 1, 0])
    cond = np.array(["C1", "C1", "C2", "C2", "C3"], dtype=object)
    out = M.per_condition_eer(scores, labels, cond)
    assert out["C1"]["eer"] == 0.0 and out["C2"]["eer"] == 1.0
    assert out["C3"]["eer"] is None and "no spoof" in out["C3"]["reason"]


def test_aggregate_runs_mean_and_sample_std():
    runs = [{"eer": {"value": 0.1}, "auc": 0.9, "name": "a"},
            {"eer": {"value": 0.2}, "auc": 0.8, "name": "b"},
            {"eer": {"value": 0.3}, "auc": None, "name": "c"}]
    agg = M.aggregate_runs(runs)
    assert agg["eer"]["mean"] == pytest.approx(0.2) and agg["eer"]["std"] == pytest.approx(0.1)
    assert agg["auc"]["n"] == 2 and agg["auc"]["n_missing"] == 1
    assert agg["auc"]["std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert "name" not in agg
