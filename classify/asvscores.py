"""The organizers' ASV scores for the legacy min t-DCF: finding the ASVspoof 2019 file, reading it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .scoring import EvaluationError


def find_asv_scores(images_spec: dict, split: str) -> tuple[Path | None, str]:
    """Return (the organizers' ASVspoof 2019 ASV score file for `split`, "") or (None, why it is not used)."""
    source = images_spec.get("source", {})
    if source.get("layout") != "asvspoof2019":
        return None, (f"min t-DCF needs the organizers' ASV scores (ASVspoof2019_LA_asv_scores/); the dataset "
                      f"layout is {source.get('layout') or 'unknown'}, not asvspoof2019 "
                      f"(pass --asv-scores FILE to use one)")
    part = {"test": "eval", "val": "dev"}.get(split)
    if part is None:
        return None, f"no ASVspoof 2019 ASV score file matches the {split} split (dev = val, eval = test)"
    root = Path(source.get("root", ""))
    pattern = f"ASVspoof2019_*_asv_scores/ASVspoof2019.*.asv.{part}.gi.trl.scores.txt"
    for folder in (root, root.parent, root.parent.parent):
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if found:
            return found[0], ""
    return None, f"no {pattern} under {root} or its parents: the ASV score files are not there"


def read_asv_scores(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (target, nontarget, spoof) ASV scores from an organizers' file of `<source> <key> <score>` lines."""
    groups = {"target": [], "nontarget": [], "spoof": []}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                key, score = parts[-2], float(parts[-1])
                groups[key].append(score)
            except (IndexError, KeyError, ValueError):
                raise EvaluationError(f"{path} line {n}: expected `<source> <target|nontarget|spoof> <score>`, "
                                      f"got {line.strip()!r}") from None
    return tuple(np.asarray(groups[k]) for k in ("target", "nontarget", "spoof"))
