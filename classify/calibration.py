"""Score → LLR calibration fitted on the val split, `calibration.json`, posteriors and reliability curves.

The model's score (log-odds of bona fide) is ranked well but not calibrated: its size depends on the
training prior, the loss and over-confidence. Calibration maps it to a log-likelihood ratio
    LLR = slope · score + offset,     LLR = log p(score | bona fide) / p(score | spoof),
fitted by prior-weighted logistic regression (scikit-learn, each class weighted to half of the total, so
the fitted log-odds are LLRs: the effective prior is ½; almost no regularization), as BOSARIS and the
ASVspoof 5 baselines calibrate. The map is monotone, so EER and minDCF are unchanged; actDCF and Cllr
become meaningful. The posterior probability of spoof at a prior P(spoof) = π is
    P(spoof | x) = sigmoid(log(π / (1 - π)) - LLR).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spec2img.fileio import write_json

from .metrics import BONAFIDE, SPOOF

DEFAULT_PRIOR_SPOOF = 0.5     # P(spoof) predict uses for its posterior unless --prior says otherwise
RELIABILITY_BINS = 10         # most bins of the reliability diagram (equal numbers of clips, by predicted P(spoof))
RELIABILITY_MIN_CLIPS = 10    # fewest clips per bin
LOGREG_C = 1e6                # inverse L2 strength: practically unregularized, but finite for separable data


@dataclass(frozen=True)
class Calibration:
    slope: float                  # LLR = slope · score + offset
    offset: float
    fitted_on: str = "val"        # split the map was fitted on
    n_bonafide: int = 0           # trials it was fitted on
    n_spoof: int = 0
    method: str = ("prior-weighted logistic regression (sklearn LogisticRegression, class_weight balanced, "
                   f"C={LOGREG_C:g}) of the label on the score; each class weighted to ½, so the fitted log-odds "
                   "are LLRs")

    def llr(self, score) -> np.ndarray:
        """Return the calibrated LLR of bona fide for ASVspoof scores (log-odds of bona fide)."""
        return self.slope * np.asarray(score, dtype=np.float64) + self.offset


class CalibrationError(ValueError):
    """Calibration cannot be fitted or read; str() says why."""


def fit_calibration(scores, labels, split: str = "val") -> Calibration:
    """Return the affine score → LLR map fitted on (scores, labels: 0 bona fide, 1 spoof) by weighted logistic
    regression; CalibrationError when a class is missing or a score is not finite."""
    from sklearn.linear_model import LogisticRegression
    x = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(labels).ravel()
    n_b, n_s = int(np.sum(y == BONAFIDE)), int(np.sum(y == SPOOF))
    if n_b == 0 or n_s == 0:
        raise CalibrationError(f"calibration needs bona fide and spoof clips on {split}; it has "
                               f"{n_b} bona fide and {n_s} spoof")
    if not np.all(np.isfinite(x)):
        raise CalibrationError(f"calibration needs finite scores; {split} has {int(np.sum(~np.isfinite(x)))} others")
    model = LogisticRegression(C=LOGREG_C, class_weight="balanced", max_iter=1000)
    model.fit(x, (y == BONAFIDE).astype(int))          # class 1 = bona fide: the decision function is the LLR
    return Calibration(float(model.coef_[0, 0]), float(model.intercept_[0]), split, n_b, n_s)


def training_prior(config: dict) -> tuple[float, str]:
    """Return (effective bona fide prior the model was trained with, why): 0.5 with a class-weighted loss or a
    balanced sampler, else the training split's share of bona fide images."""
    balance = config.get("settings", {}).get("balance")
    if balance in ("weights", "sampler"):
        return 0.5, f"training used --balance {balance}, which makes the effective class prior ½"
    counts = config.get("data", {}).get("counts", {}).get("train", {})
    n_b, n_s = counts.get("bonafide", 0), counts.get("spoof", 0)
    if balance == "none" and n_b and n_s:
        return n_b / (n_b + n_s), f"training used --balance none on {n_b} bona fide and {n_s} spoof images"
    return 0.5, "the run's config.json does not say how classes were balanced; assuming a prior of ½"


def uncalibrated(prior_bonafide: float) -> Calibration:
    """Return the map used when no calibration was fitted: LLR = score - log(prior / (1 - prior)) with the
    training prior (Bayes' rule; right only if the model's probabilities are calibrated)."""
    return Calibration(1.0, -math.log(prior_bonafide / (1 - prior_bonafide)), "none (uncalibrated)", 0, 0,
                       "Bayes' rule with the training prior, no fitted calibration")


def prior_log_odds(prior_spoof: float) -> float:
    """Return log(π / (1 - π)) of P(spoof) = π; ValueError outside (0, 1)."""
    if not 0 < prior_spoof < 1:
        raise ValueError(f"the prior P(spoof) must be strictly between 0 and 1, got {prior_spoof}")
    return math.log(prior_spoof / (1 - prior_spoof))


def posterior_spoof(llr, prior_spoof: float = DEFAULT_PRIOR_SPOOF) -> np.ndarray:
    """Return P(spoof | x) = sigmoid(logit π - LLR) for LLRs of bona fide at the prior P(spoof) = π."""
    from scipy.special import expit
    return expit(prior_log_odds(prior_spoof) - np.asarray(llr, dtype=np.float64))


def write_calibration(path: Path, calibration: Calibration) -> Path:
    """Write the calibration (and how to use it) as JSON, atomically; return the path."""
    doc = {**asdict(calibration),
           "llr": "LLR = slope · score + offset; score = log-odds of bona fide (logit_bonafide - logit_spoof)",
           "posterior": "P(spoof | x) = 1 / (1 + exp(LLR - log(prior_spoof / (1 - prior_spoof))))"}
    return write_json(Path(path), doc)


def read_calibration(path: Path) -> Calibration | None:
    """Return the calibration stored at `path`, None when there is none; CalibrationError when it is unusable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        cal = Calibration(float(doc["slope"]), float(doc["offset"]), str(doc.get("fitted_on", "val")),
                          int(doc.get("n_bonafide", 0)), int(doc.get("n_spoof", 0)))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CalibrationError(f"{path} is not a usable calibration file ({e})") from None
    if not (math.isfinite(cal.slope) and math.isfinite(cal.offset)):
        raise CalibrationError(f"{path}: slope and offset must be finite numbers")
    return cal


def reliability_curve(llr, labels, bins: int = RELIABILITY_BINS) -> dict:
    """Return the reliability diagram's points at equal class priors: clips sorted by predicted P(spoof) =
    sigmoid(-LLR) and cut into up to `bins` bins of equal size (at least RELIABILITY_MIN_CLIPS each, so small
    sets give fewer, steadier points); per bin the mean prediction and the observed spoof rate with each class
    weighted by 1 / its count (the class proportions of the evaluated split do not matter), and the clips."""
    from scipy.special import expit
    llr, y = np.asarray(llr, dtype=np.float64).ravel(), np.asarray(labels).ravel()
    n_b, n_s = max(int(np.sum(y == BONAFIDE)), 1), max(int(np.sum(y == SPOOF)), 1)
    predicted = expit(-llr)
    weight = np.where(y == SPOOF, 0.5 / n_s, 0.5 / n_b)
    n_bins = max(1, min(bins, llr.size // RELIABILITY_MIN_CLIPS))
    out = {"predicted": [], "observed": [], "count": []}
    for part in np.array_split(np.argsort(predicted, kind="stable"), n_bins):
        w = weight[part]
        out["predicted"].append(float(np.sum(w * predicted[part]) / np.sum(w)))
        out["observed"].append(float(np.sum(w * (y[part] == SPOOF)) / np.sum(w)))
        out["count"].append(int(part.size))
    return out
