"""Score -> LLR calibration (classify.calibration), bootstrap intervals (classify.bootstrap) and the shortcut audit
(classify.shortcuts) on synthetic scores whose true answers are known."""
import math

import numpy as np
import pytest

from classify import metrics as M
from classify.bootstrap import SortedTrials, confidence_intervals, paired_difference, resampling_units, replicate_weights
from classify.calibration import (CalibrationError, fit_calibration, posterior_spoof, read_calibration,
                                  reliability_curve, uncalibrated, write_calibration)
from classify.shortcuts import cue_eer, shortcut_audit


def gaussian_trials(n_bona, n_spoof, seed=0, d=2.0):
    """Bona fide ~ N(d/2, 1), spoof ~ N(-d/2, 1): the true LLR of x is d·x."""
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(d / 2, 1, n_bona), rng.normal(-d / 2, 1, n_spoof)]
    return x, np.r_[np.zeros(n_bona, int), np.ones(n_spoof, int)]


# ---------------------------------------------------------------- calibration

def test_calibration_recovers_the_true_llr_of_an_overconfident_score():
    x, y = gaussian_trials(4000, 12000)             # 1 : 3, as class-imbalanced as ASVspoof-style data
    score = 5 * x + 3                                # over-confident and shifted; true LLR = 2x = 0.4·score - 1.2
    cal = fit_calibration(score, y)
    assert cal.slope == pytest.approx(0.4, rel=0.05) and cal.offset == pytest.approx(-1.2, abs=0.1)
    llr = cal.llr(score)
    assert M.compute_cllr(llr[y == 0], llr[y == 1]) < 0.6 < M.compute_cllr(score[y == 0], score[y == 1])
    assert M.compute_eer(llr[y == 0], llr[y == 1])[0] == M.compute_eer(score[y == 0], score[y == 1])[0]  # monotone
    pav = M.compute_min_cllr(score[y == 0], score[y == 1])
    assert pav <= M.compute_cllr(llr[y == 0], llr[y == 1]) <= pav + 0.02     # close to the best monotone map


def test_calibration_needs_both_classes_and_finite_scores():
    with pytest.raises(CalibrationError, match="0 spoof"):
        fit_calibration([1.0, 2.0], [0, 0])
    with pytest.raises(CalibrationError, match="finite"):
        fit_calibration([1.0, np.nan, 3.0], [0, 1, 1])


def test_posterior_at_a_prior():
    assert posterior_spoof(0.0, 0.3) == pytest.approx(0.3)                   # no evidence: the prior
    assert posterior_spoof(math.log(9), 0.5) == pytest.approx(0.1)           # 9:1 for bona fide
    assert posterior_spoof(-math.log(9), 0.05) == pytest.approx(9 * 0.05 / (9 * 0.05 + 0.95))
    with pytest.raises(ValueError, match="between 0 and 1"):
        posterior_spoof(0.0, 1.0)
    raw = uncalibrated(0.8)                                                   # trained on 80 % bona fide
    assert raw.llr(0.0) == pytest.approx(-math.log(4))


def test_calibration_file_round_trip_and_bad_file(tmp_path):
    cal = fit_calibration(*gaussian_trials(50, 60))
    path = write_calibration(tmp_path / "calibration.json", cal)
    back = read_calibration(path)
    assert (back.slope, back.offset, back.n_bonafide, back.n_spoof) == (cal.slope, cal.offset, 50, 60)
    assert read_calibration(tmp_path / "none.json") is None
    path.write_text('{"slope": "x"}')
    with pytest.raises(CalibrationError, match="not a usable calibration"):
        read_calibration(path)


def test_reliability_curve_lies_on_the_diagonal_for_true_llrs_whatever_the_class_ratio():
    for n_bona, n_spoof in ((20000, 20000), (5000, 45000)):
        x, y = gaussian_trials(n_bona, n_spoof, seed=3)
        curve = reliability_curve(2 * x, y)                                   # the true LLRs
        busy = np.asarray(curve["count"]) > 500
        np.testing.assert_allclose(np.asarray(curve["observed"])[busy], np.asarray(curve["predicted"])[busy], atol=0.05)
    over = reliability_curve(10 * x, y)                                       # over-confident: S-shaped
    assert over["observed"][0] > over["predicted"][0] and over["observed"][-1] < over["predicted"][-1]


# ---------------------------------------------------------------- bootstrap

def test_weighted_metrics_equal_the_official_ones_on_the_resampled_trials():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.normal(1 - 2 * y, 1.5), 1)                                # rounded: many ties
    units = resampling_units([f"s{i % 23}" for i in range(400)])
    trials = SortedTrials(s, y)
    for w in replicate_weights(units, 5, seed=1):
        idx = np.repeat(np.arange(400), w)
        yy, ss = y[idx], s[idx]
        got = trials.metrics(w)
        assert got["eer"] == M.compute_eer(ss[yy == 0], ss[yy == 1])[0]
        assert got["min_dcf"] == pytest.approx(M.compute_min_dcf(ss[yy == 0], ss[yy == 1])[0], abs=1e-12)
        assert got["roc_auc"] == pytest.approx(M.roc_auc(yy, -ss), abs=1e-12)


def test_speakers_are_resampled_whole():
    speakers = ["a", "a", "b", "", "b", "c"]
    units = resampling_units(speakers)
    assert units.kind == "speaker" and units.count == 4                       # a, b, c and the unnamed clip
    first_clip = [speakers.index(s) for s in ("a", "b", "c")] + [3]
    for w in replicate_weights(units, 20, seed=2):
        assert w[0] == w[1] and w[2] == w[4]
        assert sum(w[i] for i in first_clip) == units.count                  # as many units drawn as there are
    assert resampling_units(["", ""]).kind == "clip"


def test_intervals_hold_the_estimate_and_shrink_with_more_trials():
    small = confidence_intervals(*gaussian_trials(60, 60, seed=4), [""] * 120, resamples=400)
    large = confidence_intervals(*gaussian_trials(2000, 2000, seed=4), [""] * 4000, resamples=400)
    x, y = gaussian_trials(60, 60, seed=4)
    eer = M.compute_eer(x[y == 0], x[y == 1])[0]
    assert small["eer"][0] <= eer <= small["eer"][1] and small["unit"] == "clip" and small["used"] == 400
    assert (large["eer"][1] - large["eer"][0]) < 0.5 * (small["eer"][1] - small["eer"][0])
    assert confidence_intervals(x, y, [""] * 120, resamples=0)["reason"].startswith("bootstrap switched off")


def test_speaker_effects_widen_the_interval():
    rng = np.random.default_rng(5)
    speakers = np.repeat(np.arange(20), 30)
    offset = rng.normal(0, 1.5, 20)[speakers]                                  # every speaker shifts all its clips
    y = rng.integers(0, 2, speakers.size)
    s = 1 - 2 * y + offset + rng.normal(0, 0.5, speakers.size)
    by_clip = confidence_intervals(s, y, [""] * speakers.size, resamples=400)
    by_speaker = confidence_intervals(s, y, [f"spk{k}" for k in speakers], resamples=400)
    assert by_speaker["unit"] == "speaker" and by_speaker["units"] == 20
    assert np.diff(by_speaker["eer"])[0] > 1.3 * np.diff(by_clip["eer"])[0]


def test_paired_difference_of_equal_and_of_different_systems():
    x, y = gaussian_trials(300, 300, seed=6)
    same = paired_difference(x, x.copy(), y, [""] * 600, resamples=200)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0] and same["p_value"] == 1.0
    noisy = x + np.random.default_rng(7).normal(0, 2, x.size)                 # a much worse system
    worse = paired_difference(noisy, x, y, [""] * 600, resamples=500)
    assert worse["difference"] > 0.05 and worse["ci95"][0] > 0 and worse["p_value"] < 0.01
    slightly = paired_difference(x + np.random.default_rng(8).normal(0, 0.05, x.size), x, y, [""] * 600, resamples=500)
    assert slightly["ci95"][0] <= 0 <= slightly["ci95"][1] and slightly["p_value"] > 0.05


# ---------------------------------------------------------------- shortcut audit

def test_cue_eer_is_tie_aware_and_uses_the_better_direction():
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert cue_eer([16000] * 6, labels) == (pytest.approx(0.5), "larger = bona fide")     # constant: chance
    assert cue_eer([0.1, 0.2, 0.1, 0.9, 0.8, 0.7], labels) == (0.0, "smaller = bona fide")
    # bona fide 8k, 8k, 16k; spoof all 16k: the hull from (1, 0) to (0, 1/3) meets the diagonal at 1/4
    assert cue_eer([8000, 8000, 16000, 16000, 16000, 16000], labels) == (pytest.approx(0.25), "smaller = bona fide")


def test_audit_flags_strong_and_close_cues_and_explains_missing_ones():
    rng = np.random.default_rng(9)
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    model = np.where(y == 0, 1.0, -1.0) + rng.normal(0, 1.2, 200)            # a mediocre model (~20 % EER)
    rows = [{"leading_silence": f"{0.05 + 0.4 * yi + rng.normal(0, 0.02):.3f}",    # spoofs start late: 0 % EER
             "duration": f"{3 + rng.normal(0, 1) + 0.8 * yi:.3f}",               # weaker, near the model
             "sample_rate": "16000", "channels": "1", "peak_dbfs": "-1", "rms_dbfs": "-20"} for yi in y]
    audit = shortcut_audit(rows, y, model, strong_eer=0.2, margin=0.1)
    cues = audit["cues"]
    assert cues["leading_silence"]["eer"] == 0.0 and "strong" in cues["leading_silence"]["warning"]
    assert cues["leading_silence"]["direction"] == "smaller = bona fide"
    assert cues["sample_rate"]["eer"] == pytest.approx(0.5) and cues["sample_rate"]["warning"] is None
    assert cues["bandwidth"]["eer"] is None and "convert again" in cues["bandwidth"]["reason"]
    assert len(audit["warnings"]) == sum(c.get("warning") is not None for c in cues.values()) >= 1
    model_eer = audit["model"]["rocch_eer"]
    dur = cues["duration"]
    assert (dur["warning"] is not None) == (dur["eer"] <= 0.2 or dur["eer"] <= model_eer + 0.1)
