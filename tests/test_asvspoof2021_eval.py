"""ASVspoof 2021 protocol end to end on generated key trees: conversion keeps each trial's key subset, the
evaluation reports the official `eval` subset by default with the other subsets labelled, conditions follow the
official grouping (LA: codec C1-C7 pooled over transmission; DF: compression condition and vocoder family),
and the 2021 score file joins the key exactly as the organizers' eval package joins it."""
import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audiogen import write_tone
from spec2img.convert import ConvertOptions, convert
from test_evaluate import TINY_SPEC, build_run

SUBSETS = ("eval", "progress", "hidden_track")
LA_NAMES = ["spk", "trial", "codec", "trans", "attack", "label", "trim", "subset"]          # eval-package config.py
DF_NAMES = ["speaker", "trial", "compr", "source", "attack", "label", "trim", "subset", "vocoder", "task", "team",
            "gender-pair", "language"]


def _audio(path: Path, label: str, k: int) -> None:
    """Bona fide: low tones, spoof: high tones (what the test run learned), 16 kHz flac like the real data."""
    freq = 260 + 30 * (k % 7) if label == "bonafide" else 2600 + 80 * (k % 7)
    write_tone(path, seconds=0.6, sr=16000, freq=freq)


def make_la(root: Path) -> list[dict]:
    """Write keys/LA/CM/trial_metadata.txt and the flac files; return the trials."""
    trials, k = [], 0
    subsets = itertools.cycle(SUBSETS)
    for codec, trans, label in itertools.product(("none", "alaw", "pstn", "opus"), ("ita_tx", "sin_tx"),
                                                 ("bonafide", "spoof", "spoof")):
        for _ in range(2):
            k += 1
            attack = "bonafide" if label == "bonafide" else ("A07", "A13", "A19")[k % 3]
            trials.append({"spk": f"LA_{k % 5:04d}", "trial": f"LA_E_{1000000 + k}", "codec": codec, "trans": trans,
                           "attack": attack, "label": label, "trim": "notrim", "subset": next(subsets)})
            _audio(root / "ASVspoof2021_LA_eval" / "flac" / f"LA_E_{1000000 + k}.flac", label, k)
    key = root / "keys" / "LA" / "CM" / "trial_metadata.txt"
    key.parent.mkdir(parents=True)
    key.write_text("".join(" ".join(t[c] for c in LA_NAMES) + "\n" for t in trials))
    return trials


def make_df(root: Path) -> list[dict]:
    """Write keys/DF/CM/trial_metadata.txt and the flac files (in two parts); return the trials."""
    trials, k = [], 0
    subsets = itertools.cycle(SUBSETS)
    families = itertools.cycle(("traditional_vocoder", "neural_vocoder_autoregressive", "waveform_concatenation"))
    for compr, label in itertools.product(("nocodec", "low_mp3", "high_ogg"), ("bonafide", "spoof", "spoof")):
        for _ in range(3):
            k += 1
            trials.append({"speaker": f"LA_{k % 4:04d}", "trial": f"DF_E_{2000000 + k}", "compr": compr,
                           "source": "vcc2020", "attack": "bonafide" if label == "bonafide" else "A09",
                           "label": label, "trim": "notrim", "subset": next(subsets),
                           "vocoder": "bonafide" if label == "bonafide" else next(families),
                           "task": "-", "team": "-", "gender-pair": "-", "language": "-"})
            part = f"ASVspoof2021_DF_eval_part0{k % 2}"
            _audio(root / part / "ASVspoof2021_DF_eval" / "flac" / f"DF_E_{2000000 + k}.flac", label, k)
    key = root / "keys" / "DF" / "CM" / "trial_metadata.txt"
    key.parent.mkdir(parents=True)
    key.write_text("".join(" ".join(t[c] for c in DF_NAMES) + "\n" for t in trials))
    return trials


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("run2021"))


def _evaluate(run, root, subset="eval"):
    from classify.evaluate import EvalSettings, evaluate_run
    images = root / "images"
    if not images.exists():
        convert(root, images, TINY_SPEC, ConvertOptions(workers=1, progress=False), log=lambda *a: None)
    return evaluate_run(run, EvalSettings(images=images, subset=subset, top_k=1, bootstrap=50), log=lambda *a: None)


@pytest.mark.slow
def test_la_eval_subset_codecs_pooled_over_transmission_and_the_2021_score_file(run, tmp_path):
    trials = make_la(tmp_path)
    result = _evaluate(run, tmp_path)
    ev = run / "evaluation"
    eval_trials = [t for t in trials if t["subset"] == "eval"]
    assert result["subset"]["name"] == "eval" and result["subset"]["selected"] == len(eval_trials)
    assert result["subset"]["trials"] == len(trials) and result["subset"]["available"] == [*sorted(SUBSETS), "all"]
    assert result["counts"]["test"] == {"bonafide": sum(t["label"] == "bonafide" for t in eval_trials),
                                        "spoof": sum(t["label"] == "spoof" for t in eval_trials)}
    assert result["counts"]["all trials"]["spoof"] == sum(t["label"] == "spoof" for t in trials)
    # official LA grouping: one row per codec (C-tag), pooling both transmissions
    expected = Counter(t["codec"] for t in eval_trials)
    tags = {"none": "LA-C1-none", "alaw": "LA-C2-alaw", "pstn": "LA-C3-pstn", "opus": "LA-C7-opus"}
    assert set(result["per_condition"]) == set(tags.values())
    for codec, tag in tags.items():
        got = result["per_condition"][tag]
        assert got["n_spoof"] + got["n_bonafide"] == expected[codec]
    assert set(result["per_attack"]) == {t["attack"] for t in eval_trials if t["label"] == "spoof"}
    assert not result["per_family"]
    # every subset labelled, with its own counts
    table = result["subsets"]
    assert list(table) == ["eval", "hidden_track", "progress", "all"]
    for name in SUBSETS:
        assert sum(table[name]["counts"].values()) == sum(t["subset"] == name for t in trials)
    assert sum(table["all"]["counts"].values()) == len(trials)
    # the eval package: read_csv(sep=' ', names=[trial, score], index_col=trial); concat with the key; same length
    key = pd.read_csv(tmp_path / "keys" / "LA" / "CM" / "trial_metadata.txt", sep=" ", names=LA_NAMES,
                      index_col="trial", skipinitialspace=True)
    score = pd.read_csv(ev / "scores-test-2021.txt", sep=" ", names=["trial", "score"], index_col="trial",
                        skipinitialspace=True)
    joined = pd.concat([key, score[["score"]]], axis=1, join="inner")
    assert len(key) == len(score) == len(joined)
    on_eval = joined.query('subset == "eval"')
    from classify import metrics as M
    eer = M.compute_eer(on_eval.query('label == "bonafide"').score.to_numpy(),
                        on_eval.query('label == "spoof"').score.to_numpy())[0]
    assert eer == result["metrics"]["eer"]["value"]
    page = (ev / "report.html").read_text()
    assert "Key subsets" in page and "eval (reported above)" in page and "hidden_track" in page


@pytest.mark.slow
def test_df_compression_conditions_vocoder_families_and_other_subsets(run, tmp_path):
    trials = make_df(tmp_path)
    result = _evaluate(run, tmp_path)
    eval_trials = [t for t in trials if t["subset"] == "eval"]
    n_bona = sum(t["label"] == "bonafide" for t in eval_trials)
    assert set(result["per_condition"]) == {"DF-C1-nocodec", "DF-C2-low_mp3", "DF-C7-high_ogg"}
    families = Counter(t["vocoder"] for t in eval_trials if t["label"] == "spoof")
    assert {k: v["n_spoof"] for k, v in result["per_family"].items()} == dict(families)
    assert all(v["n_bonafide"] == n_bona for v in result["per_family"].values())   # against all bona fide
    progress = _evaluate(run, tmp_path, subset="progress")
    assert progress["subset"]["name"] == "progress"
    assert progress["subset"]["selected"] == sum(t["subset"] == "progress" for t in trials)
    everything = _evaluate(run, tmp_path, subset="all")
    assert everything["subset"]["selected"] == len(trials) and "all trials" not in everything["counts"]
    with pytest.raises(Exception, match="subsets in test are eval, hidden_track, progress"):
        _evaluate(run, tmp_path, subset="hidden")
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert metrics["subset"]["name"] == "all"
    assert np.isfinite(metrics["metrics"]["eer"]["value"])
