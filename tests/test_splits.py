"""Split assignment: kept dataset splits, seeded stratified proportions, speaker grouping, tiny strata."""
import random
from collections import Counter
from pathlib import Path

import pytest

from spec2img.rows import LABELS, SPLITS, ClipRow, LayoutError
from spec2img.splits import assign_splits, check_ratios


def split_summary(rows) -> dict[str, dict[str, int]]:
    """Return {split: {label: count}} for every split and label."""
    counts = Counter((r.split, r.label) for r in rows)
    return {s: {lab: counts[(s, lab)] for lab in LABELS} for s in SPLITS}


def make_rows(n_bonafide=200, n_spoof=800, systems=("A01", "A02", "A03", "A04"), speakers=0):
    """Return rows: bonafide without system, spoof spread over systems; speakers round-robin if > 0."""
    rows = []
    for i in range(n_bonafide + n_spoof):
        spoof = i >= n_bonafide
        rows.append(ClipRow(f"clip{i:05d}", Path(f"/data/clip{i:05d}.wav"), "spoof" if spoof else "bonafide",
                            system=systems[i % len(systems)] if spoof else "",
                            speaker=f"spk{(i * 7) % speakers:03d}" if speakers else ""))
    return rows


def assignment(rows):
    return {r.clip_id: r.split for r in rows}


def test_dataset_splits_are_kept():
    rows = [ClipRow("a", Path("a.wav"), "bonafide", "test"), ClipRow("b", Path("b.wav"), "spoof", "train")]
    assert assign_splits(rows, seed=3) == rows


def test_some_rows_with_split_is_an_error():
    rows = [ClipRow("a", Path("/d/a.wav"), "bonafide", "train"), ClipRow("b", Path("/d/b.wav"), "spoof")]
    with pytest.raises(LayoutError, match="1 of 2 clips have a split.*/d/b.wav"):
        assign_splits(rows)


@pytest.mark.parametrize("ratios", [(0.7, 0.2, 0.2), (0.5, 0.5), (1.2, -0.1, -0.1), ("a", "b", "c"),
                                    (float("nan"), 0.5, 0.5)])
def test_bad_ratios_are_rejected(ratios):
    with pytest.raises(ValueError, match="three non-negative numbers .* summing to 1"):
        assign_splits(make_rows(10, 10), ratios=ratios)


def test_ratios_accept_any_three_numbers_summing_to_one():
    assert check_ratios([0.8, 0.1, 0.1]) == (0.8, 0.1, 0.1)
    assert check_ratios(("0.6", 0.2, 0.2)) == (0.6, 0.2, 0.2)


def test_deterministic_under_seed_and_input_order():
    rows = make_rows()
    first = assign_splits(rows, seed=0)
    assert [r.clip_id for r in first] == [r.clip_id for r in rows]            # order kept
    assert assignment(first) == assignment(assign_splits(rows, seed=0))
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert assignment(first) == assignment(assign_splits(shuffled, seed=0))
    assert assignment(first) != assignment(assign_splits(rows, seed=1))


def test_proportions_per_label_and_system():
    rows = assign_splits(make_rows(), ratios=(0.7, 0.15, 0.15), seed=5)
    counts = Counter((r.split, r.label, r.system) for r in rows)
    strata = Counter((r.label, r.system) for r in rows)
    for (label, system), total in strata.items():
        for split, ratio in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            assert abs(counts[(split, label, system)] - ratio * total) <= 2, (split, label, system)
    summary = split_summary(rows)
    assert summary["train"] == {"bonafide": 140, "spoof": 560}
    assert summary["val"] == {"bonafide": 30, "spoof": 120} and summary["test"] == {"bonafide": 30, "spoof": 120}


def test_speakers_never_cross_splits_and_proportions_hold():
    rows = make_rows(300, 1200, speakers=40)
    out = assign_splits(rows, seed=2)
    splits_of_speaker = {}
    for r in out:
        splits_of_speaker.setdefault(r.speaker, set()).add(r.split)
    assert all(len(s) == 1 for s in splits_of_speaker.values())
    summary = split_summary(out)
    for label, total in (("bonafide", 300), ("spoof", 1200)):
        for split, ratio in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            assert abs(summary[split][label] / total - ratio) < 0.05, (split, label, summary)


def test_unequal_speaker_groups_are_balanced():
    rows = []
    for s in range(20):                     # speaker s has 5 + 3*s clips: 5 .. 62
        for j in range(5 + 3 * s):
            label = "bonafide" if j % 4 == 0 else "spoof"
            rows.append(ClipRow(f"s{s}_{j}", Path(f"/d/s{s}_{j}.wav"), label, speaker=f"s{s}"))
    out = assign_splits(rows, seed=0)
    total = len(rows)
    share = Counter(r.split for r in out)
    assert abs(share["train"] / total - 0.7) < 0.06 and min(share["val"], share["test"]) / total > 0.09
    assert len({(r.speaker, r.split) for r in out}) == 20


def test_tiny_dataset_gets_every_label_into_every_split():
    out = assign_splits(make_rows(3, 3, systems=("A01", "A02", "A03")), seed=0)
    assert Counter((r.split, r.label) for r in out) == {(s, lab): 1 for s in ("train", "val", "test")
                                                       for lab in ("bonafide", "spoof")}


def test_tiny_speaker_groups_fill_splits_when_possible():
    rows = [ClipRow(f"c{i}", Path(f"/d/c{i}.wav"), "bonafide" if i < 6 else "spoof", speaker=f"p{i % 6}")
            for i in range(12)]                 # 6 speakers, each with one bonafide and one spoof clip
    out = assign_splits(rows, seed=4)
    assert Counter((r.split, r.label) for r in out) >= Counter(
        {(s, lab): 1 for s in ("train", "val", "test") for lab in ("bonafide", "spoof")})
    assert len({(r.speaker, r.split) for r in out}) == 6


def test_zero_ratio_split_stays_empty():
    out = assign_splits(make_rows(10, 30), ratios=(0.8, 0.2, 0.0), seed=0)
    summary = split_summary(out)
    assert summary["test"] == {"bonafide": 0, "spoof": 0}
    assert summary["train"] == {"bonafide": 8, "spoof": 24} and summary["val"] == {"bonafide": 2, "spoof": 6}
