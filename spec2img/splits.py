"""Give rows without dataset splits a train/val/test split: stratified by label and system, grouped by speaker.

Rules, in order:
- every row has a split (the dataset defines them): kept as they are;
- some rows have one and others not: LayoutError (the metadata is inconsistent);
- none has one: speakers known (any row with a speaker) -> whole speaker groups are assigned, largest first,
  each to the split whose per-label and per-(label, system) counts fall furthest below ratio * total;
  no speakers -> within each label, the clips are ordered stratum by stratum (strata in seeded order, clips
  shuffled within), and each next clip goes to the split furthest below its share so far, so every label
  and every (label, system) stratum gets its ratio to within about one clip.
  Afterwards each split with a non-zero ratio receives at least one clip of every label when that is
  possible without emptying another split of that label (tiny strata, few speakers).
Everything is deterministic under `seed` and independent of the input order.
"""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Iterable, Sequence

from .rows import SPLITS, ClipRow, LayoutError


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Return (train, val, test) ratios as floats; ValueError unless three non-negative numbers summing to 1."""
    message = f"split ratios must be three non-negative numbers (train, val, test) summing to 1, got {ratios!r}"
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(message)
    return values


def assign_splits(rows: Iterable[ClipRow], ratios: Sequence[float] = (0.7, 0.15, 0.15),
                  seed: int = 0) -> list[ClipRow]:
    """Return the rows (same order) each with a split: the dataset's own, or a seeded stratified grouped draw."""
    ratios = check_ratios(ratios)
    rows = list(rows)
    n_split = sum(1 for r in rows if r.split)
    if n_split == len(rows):
        bad = next((r for r in rows if r.split not in SPLITS), None)
        if bad is not None:
            raise LayoutError(f"{bad.path}: clip {bad.clip_id} has split {bad.split!r}; use one of {', '.join(SPLITS)}")
        return rows
    if n_split:
        example = next(r for r in rows if not r.split)
        raise LayoutError(f"{n_split} of {len(rows)} clips have a split and {len(rows) - n_split} have none "
                          f"(for example {example.path}); give every clip a split, or none so that splits "
                          f"are assigned by ratio")
    rng = random.Random(seed)
    if any(r.speaker for r in rows):
        split_idx = _assign_speaker_groups(rows, ratios, rng)
    else:
        split_idx = _assign_clips(rows, ratios, rng)
    _fill_missing_labels(rows, split_idx, ratios)
    return [replace(r, split=SPLITS[k]) for r, k in zip(rows, split_idx)]


def _open_splits(ratios: tuple[float, float, float]) -> list[int]:
    return [k for k in range(3) if ratios[k] > 0]


def _assign_clips(rows: list[ClipRow], ratios: tuple[float, float, float], rng: random.Random) -> list[int]:
    """Return a split index per row, each label's clips dealt stratum by stratum by largest running deficit."""
    by_stratum: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_stratum[(r.label, r.system)].append(i)
    split_idx = [0] * len(rows)
    open_splits = _open_splits(ratios)
    for label in sorted({lab for lab, _ in by_stratum}):
        strata = sorted(s for s in by_stratum if s[0] == label)
        rng.shuffle(strata)
        counts, dealt = [0, 0, 0], 0
        for stratum in strata:
            members = sorted(by_stratum[stratum], key=lambda i: rows[i].clip_id)
            rng.shuffle(members)
            for i in members:
                dealt += 1
                k = max(open_splits, key=lambda k: (ratios[k] * dealt - counts[k], -k))
                counts[k] += 1
                split_idx[i] = k
    return split_idx


def _assign_speaker_groups(rows: list[ClipRow], ratios: tuple[float, float, float],
                           rng: random.Random) -> list[int]:
    """Return a split index per row; rows of one speaker (or an unspeakered clip alone) share a split."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[f"speaker:{r.speaker}" if r.speaker else f"clip:{r.clip_id}"].append(i)
    composition = {}   # group -> Counter over balance keys: (label,) and (label, system)
    totals: Counter = Counter()
    for key, members in groups.items():
        c = Counter()
        for i in members:
            c[(rows[i].label,)] += 1
            c[(rows[i].label, rows[i].system)] += 1
        composition[key] = c
        totals.update(c)
    order = sorted(groups)
    rng.shuffle(order)
    order.sort(key=lambda key: -len(groups[key]))          # largest first; seeded order among equal sizes
    counts = [Counter() for _ in range(3)]
    open_splits = _open_splits(ratios)
    split_idx = [0] * len(rows)
    for key in order:
        c = composition[key]

        def added_cost(k: int) -> float:
            # growth of sum over balance keys of (count - target)^2 / total when the group joins split k
            return sum(g * (2 * (counts[k][b] - ratios[k] * totals[b]) + g) / totals[b] for b, g in sorted(c.items()))

        k = min(open_splits, key=lambda k: (added_cost(k), k))
        counts[k].update(c)
        for i in groups[key]:
            split_idx[i] = k
    return split_idx


def _fill_missing_labels(rows: list[ClipRow], split_idx: list[int], ratios: tuple[float, float, float]) -> None:
    """Move the smallest possible unit (speaker group or clip) so each open split has every label, if possible."""
    label_count = [Counter() for _ in range(3)]
    for r, k in zip(rows, split_idx):
        label_count[k][r.label] += 1
    missing = [(lab, k) for lab in sorted({r.label for r in rows}) for k in _open_splits(ratios)
               if label_count[k][lab] == 0]
    if not missing:
        return
    units: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        units[f"speaker:{r.speaker}" if r.speaker else f"clip:{r.clip_id}"].append(i)
    stratum_count = Counter((k, r.label, r.system) for r, k in zip(rows, split_idx))
    for label, k in missing:
        if label_count[k][label]:
            continue
        best = None
        for key, members in units.items():
            j = split_idx[members[0]]
            unit_labels = Counter(rows[i].label for i in members)
            if j == k or not unit_labels[label]:
                continue
            if any(label_count[j][lab] <= n for lab, n in unit_labels.items()):
                continue          # moving it would leave split j without one of its labels
            biggest_stratum = max(stratum_count[(j, rows[i].label, rows[i].system)] for i in members)
            rank = (len(members), -label_count[j][label], -biggest_stratum, key)
            if best is None or rank < best[0]:
                best = (rank, key, j)
        if best is None:
            continue              # not possible without emptying another split of this label
        _, key, j = best
        for i in units[key]:
            label_count[j][rows[i].label] -= 1
            label_count[k][rows[i].label] += 1
            stratum_count[(j, rows[i].label, rows[i].system)] -= 1
            stratum_count[(k, rows[i].label, rows[i].system)] += 1
            split_idx[i] = k
