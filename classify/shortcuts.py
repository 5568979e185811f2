"""The shortcut audit: how well does one trivial number per file separate bona fide from spoof by itself?

Each cue was measured at conversion time and sits in the manifest (spec2img.cues; duration, sample rate,
channels and levels come from the same rows): nothing is decoded here. A cue is scored as a one-number
detector by its ROCCH-EER (BOSARIS: the EER of the ROC convex hull, so tied values such as a shared sample
rate count as one threshold and a constant cue scores 50 %), in the better of its two directions. The
model's ROCCH-EER on the same clips stands beside them. A cue is flagged when it reaches a strong EER by
itself, or comes within a margin of the model: then the model may have learned the cue, not the speech.
"""
from __future__ import annotations

import numpy as np

from . import metrics as M

CUES = (  # (manifest column, what it is, unit)
    ("leading_silence", "leading silence", "s"),
    ("trailing_silence", "trailing silence", "s"),
    ("duration", "duration", "s"),
    ("rms_dbfs", "RMS level", "dBFS"),
    ("peak_dbfs", "peak level", "dBFS"),
    ("sample_rate", "original sample rate", "Hz"),
    ("channels", "channels", ""),
    ("bandwidth", "effective bandwidth", "Hz"),
)
FORMULA = ("ROCCH-EER (BOSARIS rocch2eer) of each cue used alone as the score, in the better of its two directions, "
           "on the evaluated clips; the model's ROCCH-EER on the same clips for comparison")


def _values(rows: list[dict], column: str) -> np.ndarray:
    out = np.full(len(rows), np.nan)
    for i, r in enumerate(rows):
        try:
            out[i] = float(r.get(column) or "nan")
        except ValueError:
            pass
    return out


def cue_eer(values, labels) -> tuple[float, str]:
    """Return (ROCCH-EER of the cue as a detector in its better direction, which direction means bona fide)."""
    values, labels = np.asarray(values, dtype=np.float64), np.asarray(labels)
    bona, spoof = values[labels == M.BONAFIDE], values[labels == M.SPOOF]
    higher = M.compute_rocch_eer(bona, spoof)            # larger value = more bona fide
    lower = M.compute_rocch_eer(-bona, -spoof)
    return (higher, "larger = bona fide") if higher <= lower else (lower, "smaller = bona fide")


def shortcut_audit(rows: list[dict], labels, model_scores, strong_eer: float, margin: float) -> dict:
    """Return the audit: the model's EER and each cue's one-number EER with its warning, from the evaluated
    clips' manifest rows, labels (0 bona fide, 1 spoof) and the model's scores (higher = more bona fide)."""
    labels, scores = np.asarray(labels).ravel(), np.asarray(model_scores, dtype=np.float64).ravel()
    both = np.any(labels == M.BONAFIDE) and np.any(labels == M.SPOOF)
    out = {"formula": FORMULA, "strong_eer": strong_eer, "margin": margin, "cues": {}, "warnings": []}
    if not both:
        out.update(model=None, reason="the audit needs bona fide and spoof clips")
        return out
    model = M.compute_rocch_eer(scores[labels == M.BONAFIDE], scores[labels == M.SPOOF])
    out["model"] = {"rocch_eer": model}
    for column, what, unit in CUES:
        values = _values(rows, column)
        known = np.isfinite(values)
        entry = {"what": what, "unit": unit, "n": int(known.sum()), "missing": int((~known).sum())}
        y = labels[known]
        if not (np.any(y == M.BONAFIDE) and np.any(y == M.SPOOF)):
            entry.update(eer=None, reason=f"not in the manifest for {'any' if not known.any() else 'both classes of'} "
                                          f"these clips: the images were converted before spec2img measured it "
                                          f"(convert again into the same folder to add it; valid images are kept)")
            out["cues"][column] = entry
            continue
        eer, direction = cue_eer(values[known], y)
        v = values[known]
        entry.update(eer=eer, direction=direction, bonafide_median=float(np.median(v[y == M.BONAFIDE])),
                     spoof_median=float(np.median(v[y == M.SPOOF])), warning=None)
        if eer <= strong_eer:
            entry["warning"] = (f"{what} alone separates the classes with {100 * eer:.1f} % EER "
                                f"(at most {100 * strong_eer:g} % counts as strong)")
        elif eer <= model + margin and eer < 0.5 - margin:
            entry["warning"] = (f"{what} alone reaches {100 * eer:.1f} % EER, within {100 * margin:g} points of the "
                                f"model's {100 * model:.1f} %")
        if entry["warning"]:
            out["warnings"].append(entry["warning"])
        out["cues"][column] = entry
    return out


def summary_line(audit: dict) -> str:
    """Return one line naming the flagged cues, or saying none is."""
    if audit.get("model") is None:
        return f"shortcut audit not run: {audit.get('reason', '')}"
    flagged = [c["what"] for c in audit["cues"].values() if c.get("warning")]
    best = min((c for c in audit["cues"].values() if c.get("eer") is not None), key=lambda c: c["eer"], default=None)
    tail = "" if best is None else f"; best cue: {best['what']} at {100 * best['eer']:.1f} % EER"
    if flagged:
        return f"WARNING: shortcut cues that separate the classes: {', '.join(flagged)}{tail}"
    return f"no shortcut cue comes close to the model ({100 * audit['model']['rocch_eer']:.1f} % ROCCH-EER){tail}"
