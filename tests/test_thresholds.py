"""Threshold rules on val against brute force, and thresholds.json round trip."""
import json
import math

import numpy as np
import pytest

from classify import thresholds as T
from spec2img.fileio import stale_parts


def _brute(p, y, t):
    pred = p >= t
    tp, fp = np.sum(pred & (y == 1)), np.sum(pred & (y == 0))
    fn, tn = np.sum(~pred & (y == 1)), np.sum(~pred & (y == 0))
    return {"frr": fp / (fp + tn), "far": fn / (fn + tp), "f1": 2 * tp / max(2 * tp + fp + fn, 1)}


@pytest.fixture
def val():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = 1 / (1 + np.exp(-rng.normal(2.0 * (y - 0.5), 1.3)))
    return p, y


def test_separable_val_gets_threshold_between_classes():
    p, y = np.array([0.1, 0.2, 0.3, 0.7, 0.8]), np.array([0, 0, 0, 1, 1])
    t, info = T.choose_threshold_with_value(p, y, "eer")
    assert 0.3 < t < 0.7 and info["value"] == 0.0
    for rule in ("f1", "balanced_accuracy"):
        assert 0.3 < T.choose_threshold_with_value(p, y, rule)[0] < 0.7


@pytest.mark.parametrize("rule,key,better", [("f1", "f1", max), ("eer", None, None)])
def test_rules_match_brute_force(val, rule, key, better):
    p, y = val
    t, info = T.choose_threshold_with_value(p, y, rule)
    grid = T.candidate_thresholds(p)
    rows = [_brute(p, y, g) for g in grid]
    if rule == "f1":
        assert info["value"] == pytest.approx(max(r["f1"] for r in rows))
        assert _brute(p, y, t)["f1"] == pytest.approx(info["value"])
    else:
        best = min(abs(r["frr"] - r["far"]) for r in rows)
        got = _brute(p, y, t)
        assert abs(got["frr"] - got["far"]) == pytest.approx(best)
        assert info["value"] == pytest.approx((got["frr"] + got["far"]) / 2)


def test_balanced_accuracy_is_maximal(val):
    p, y = val
    t, info = T.choose_threshold_with_value(p, y, "balanced_accuracy")
    best = max(1 - (r["frr"] + r["far"]) / 2 for r in (_brute(p, y, g) for g in T.candidate_thresholds(p)))
    assert info["value"] == pytest.approx(best)


def test_far_rule_is_the_largest_threshold_meeting_the_target(val):
    p, y = val
    t, info = T.choose_threshold_with_value(p, y, "far", target_far=0.05)
    assert _brute(p, y, t)["far"] <= 0.05 and info["far"] <= 0.05
    higher = [g for g in T.candidate_thresholds(p) if g > t]
    assert _brute(p, y, higher[0])["far"] > 0.05
    with pytest.raises(ValueError, match="target-far"):
        T.choose_threshold_with_value(p, y, "far")


def test_one_class_val_and_unknown_rule_are_clear_errors():
    with pytest.raises(ValueError, match="no spoof clips"):
        T.choose_threshold_with_value([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="unknown threshold rule 'auc'"):
        T.choose_threshold_with_value([0.1, 0.9], [0, 1], "auc")


def test_saturated_probabilities_keep_thresholds_inside_0_1():
    cands = T.candidate_thresholds(np.array([0.0, 0.0, 1.0, 1.0]))
    assert cands.min() >= 0 and cands.max() <= 1
    assert math.isfinite(T.prob_to_score_threshold(0.0)) and math.isfinite(T.prob_to_score_threshold(1.0))


def test_score_threshold_gives_the_same_decisions():
    logits_diff = np.linspace(-6, 6, 101)              # logit1 - logit0
    p = 1 / (1 + np.exp(-logits_diff))
    score = -logits_diff                                 # log-odds of bona fide
    t = 0.37
    s_t = T.prob_to_score_threshold(t)
    np.testing.assert_array_equal(p >= t, ~(score >= s_t))


def test_thresholds_json_round_trip(tmp_path):
    path = T.write_thresholds(tmp_path, "eer", 0.25, {"value": 0.1}, note="x")
    data = json.loads(path.read_text())
    assert data["rule"] == "eer" and data["split"] == "val" and data["spoof_prob_threshold"] == 0.25
    assert data["score_threshold"] == pytest.approx(math.log(3))
    assert T.read_thresholds(tmp_path) == data
    assert T.read_thresholds(tmp_path / "none") is None
    assert not stale_parts(tmp_path)
