"""benchmarks.quality: groups, protocols (A -> B, leave one out, one-class groups), recipes, the table's
arithmetic, and the whole benchmark end to end on a tiny demo corpus (resumed without retraining)."""
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from audiogen import write_tone

from benchmarks import protocols as P
from benchmarks import quality as Q
from classify.runfolder import evaluation_dir
from spec2img.rows import ClipRow


def tree(root: Path, spec: dict[str, tuple[int, int]]) -> tuple[Path, list[ClipRow]]:
    """root/<group>/clip*.wav with (bonafide, spoof) counts per group, and root/manifest.csv (with a 'source'
    column equal to the group); return (manifest, rows as the CSV adapter yields them)."""
    from spec2img.datasets import iter_rows
    lines = ["file,label,source"]
    for group, (n_bona, n_spoof) in spec.items():
        for i in range(n_bona + n_spoof):
            label = "bonafide" if i < n_bona else "spoof"
            write_tone(root / group / f"clip{i}.wav", seconds=0.3, freq=200 + 50 * i)
            lines.append(f"{group}/clip{i}.wav,{label},{group}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv", list(iter_rows(root / "manifest.csv", "auto", log=lambda *_: None))


@pytest.fixture
def collection(tmp_path):
    return tree(tmp_path, {"studio": (6, 10), "vocoder": (4, 8), "real": (5, 0)})


def test_groups_from_a_path_component_a_column_or_a_row_field(collection):
    manifest, rows = collection
    by_path = P.group_values(manifest, rows, "path:1")
    assert by_path == P.group_values(manifest, rows, "source")
    assert sorted(set(by_path)) == ["real", "studio", "vocoder"]
    assert set(P.group_values(manifest, rows, "system")) == {P.NO_GROUP}
    with pytest.raises(P.ProtocolError, match="'corpus' is not a column"):
        P.group_values(manifest, rows, "corpus")
    with pytest.raises(P.ProtocolError, match="path:N needs N >= 1"):
        P.group_values(manifest, rows, "path:0")


def test_a_to_b_borrows_the_class_the_test_groups_lack(collection):
    manifest, rows = collection
    groups = P.group_values(manifest, rows, "path:1")
    forward, reverse = P.cross_protocols(rows, groups, ["studio", "real"], ["vocoder"])[0]
    assert forward.name == "studio+real -> vocoder" and reverse.name == "vocoder -> studio+real"
    test = [r for r in forward.rows if r.split == "test"]
    assert {Path(r.path).parent.name for r in test} == {"vocoder"}          # both classes there: no borrowing
    assert not forward.note and {r.split for r in forward.rows} == {"train", "val", "test"}
    # the test groups hold bona fide only ("real"): spoof test clips come from the training groups,
    # and none of them is trained on
    only_real = P.cross_group(rows, groups, ["studio", "vocoder"], ["real"])
    borrowed = [r for r in only_real.rows if r.split == "test" and r.label == "spoof"]
    assert borrowed and "spoof test clips borrowed" in only_real.note
    trained = {r.path for r in only_real.rows if r.split in ("train", "val")}
    assert not trained & {r.path for r in borrowed}
    assert len(only_real.rows) == len(rows)


def test_leave_one_out_skips_a_fold_that_cannot_be_trained(tmp_path):
    manifest, rows = tree(tmp_path, {"bona": (6, 0), "a": (0, 4), "b": (0, 4)})
    groups = P.group_values(manifest, rows, "path:1")
    protocols, skipped = P.cross_protocols(rows, groups)
    assert [p.name for p in protocols] == ["others -> a", "others -> b"]
    assert len(skipped) == 1 and "hold no bonafide clip" in skipped[0]
    with pytest.raises(P.ProtocolError, match="group 'c' not found; the groups are: a, b, bona"):
        P.cross_protocols(rows, groups, ["c"])


def test_in_domain_is_the_split_spec2img_makes(collection):
    from spec2img.splits import assign_splits
    _, rows = collection
    assert [r.split for r in P.in_domain(rows).rows] == [r.split for r in assign_splits(rows)]


def test_recipes_from_the_axes_and_extra_recipes():
    s = Q.QualitySettings("d", frontends="mel,cqt", trims="off,on", augments="none,rawboost:2", archs="lcnn",
                          recipes=["lite0: --frontend linear | --arch efficientnet_lite0 --weights w.pth"])
    recipes = Q.build_recipes(s)
    assert [r.name for r in recipes] == ["mel", "cqt", "mel+trim", "mel+aug(rawboostx2)", "lite0"]
    assert recipes[3].spec_args == ("--frontend", "mel", "--augment", "2", "--augment-kinds", "rawboost")
    assert recipes[4].train_args == ("--arch", "efficientnet_lite0", "--weights", "w.pth")
    assert len(Q.build_recipes(Q.QualitySettings("d", frontends="mel,cqt", trims="off,on", augments="none",
                                                 design="factorial"))) == 4
    with pytest.raises(ValueError, match="KINDS:K"):
        Q.build_recipes(Q.QualitySettings("d", augments="none,rawboost"))
    with pytest.raises(ValueError, match="unique"):
        Q.build_recipes(Q.QualitySettings("d", frontends="mel", trims="off", augments="none", recipes=["mel: |"]))


def test_summary_means_folds_per_seed_then_seeds():
    recipe = Q.Recipe("r", ("--frontend", "mel"))
    cross = [P.Protocol("a -> b", "cross", ()), P.Protocol("b -> a", "cross", ())]
    home = P.Protocol("in-domain", "in-domain", ())
    eers = {("a -> b", 0): 0.4, ("b -> a", 0): 0.2, ("a -> b", 1): 0.5, ("b -> a", 1): 0.5,
            ("in-domain", 0): 0.1, ("in-domain", 1): 0.2}
    results = {Q.Job(recipe, p, seed).key(): {"eer": eers[(p.name, seed)], "roc_auc": 0.8, "seed": seed,
                                              "error": ""} for p in (*cross, home) for seed in (0, 1)}
    detail, (row,) = Q.summarize([recipe], [*cross, home], [0, 1], results)
    assert row["cross_eer_mean"] == pytest.approx(0.4)                   # seeds: 0.3 and 0.5
    assert row["cross_eer_std"] == pytest.approx(np.std([0.3, 0.5], ddof=1))
    assert row["in_domain_eer_mean"] == pytest.approx(0.15) and row["cross_seeds"] == 2
    assert detail[0]["eer_mean"] == pytest.approx(0.45) and detail[0]["runs"] == 2
    del results[Q.Job(recipe, cross[1], 1).key()]                        # seed 1 lacks a fold: not averaged
    _, (row,) = Q.summarize([recipe], [*cross, home], [0, 1], results)
    assert row["cross_eer_mean"] == pytest.approx(0.3) and row["cross_seeds"] == 1


def test_a_result_is_reused_only_under_the_same_shared_settings():
    recipe, protocol = Q.Recipe("r", ("--frontend", "mel")), P.Protocol("a -> b", "cross", ())
    base = Q.QualitySettings("d")
    key = Q.Job(recipe, protocol, 0, Q.common_settings(base)).key()
    assert Q.Job(recipe, protocol, 0, Q.common_settings(Q.QualitySettings("d"))).key() == key
    for change in ({"spec_args": "--duration 2"}, {"train_args": "--pretrained"}, {"epochs": 3}, {"bs": 8},
                   {"split_seed": 1}):            # a rerun with other shared flags in the same folder retrains
        assert Q.Job(recipe, protocol, 0, Q.common_settings(replace(base, **change))).key() != key, change


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_benchmark_end_to_end_on_the_demo_corpus(tmp_path, capsys):
    from spec2img import demo
    assert demo.main([str(tmp_path / "demo"), "--clips-per-class", "16", "--workers", "1"]) == 0
    args = [str(tmp_path / "demo" / "manifest.csv"), "--group", "path:2", "--train-groups", "bonafide,griffinlim,lpc",
            "--test-groups", "codec,sinusoidal", "--no-both-directions", "--frontends", "mel", "--trims", "off",
            "--augments", "none", "--recipes", "lfcc+trim/simple: --frontend lfcc --trim-silence | --arch simple_cnn",
            "--seeds", "0,1", "--epochs", "1", "--bs", "8", "--workers", "1",
            "--spec-args=--duration 1 --n-mels 32", "--train-args=--no-pretrained --workers 1",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    assert Q.main(args) == 0
    out = capsys.readouterr().out
    assert "2 recipes x 2 protocols x 2 seeds = 8 runs (0 already done" in out
    assert "bonafide+griffinlim+lpc -> codec+sinusoidal" in out and "borrowed from the training groups" in out
    table = out[out.index("recipe "):]
    assert "cross EER %" in table and "in-domain EER %" in table and "lfcc+trim/simple" in table
    with open(tmp_path / "out" / "quality.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["recipe"], r["protocol"]) for r in rows} >= {
        ("mel", "in-domain"), ("lfcc+trim/simple", "bonafide+griffinlim+lpc -> codec+sinusoidal"),
        ("mel", "cross (mean over protocols)")}
    for r in rows:
        assert r["runs"] == "2" and 0 <= float(r["eer_mean"]) <= 1, r
    assert (tmp_path / "out" / "quality.png").stat().st_size > 1000
    results = [json.loads(line) for line in (tmp_path / "work" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 8 and all((evaluation_dir(Path(e["run"])) / "report.html").is_file() for e in results)
    lfcc = next(e for e in results if e["recipe"].startswith("lfcc"))
    assert json.loads(Path(lfcc["run"], "model.json").read_text())["arch"] == "simple_cnn"   # train flags passed
    assert json.loads(Path(lfcc["run"], "model.json").read_text())["spec"]["frontend"] == "lfcc"
    before = (tmp_path / "out" / "quality.csv").read_text()
    assert Q.main(args) == 0                                                # resumed: nothing retrained
    again = capsys.readouterr().out
    assert "(8 already done" in again and "[1/8]" not in again
    assert (tmp_path / "out" / "quality.csv").read_text() == before


def test_bad_group_settings_stop_with_a_message(collection, tmp_path, capsys):
    manifest, _ = collection
    assert Q.main([str(manifest), "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")]) == 2
    assert "name the groups" in capsys.readouterr().err
    assert Q.main([str(manifest), "--group", "path:1", "--train-groups", "nowhere", "--work", str(tmp_path / "w")]) == 2
    assert "group 'nowhere' not found; the groups are: real, studio, vocoder" in capsys.readouterr().err
