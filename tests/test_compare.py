"""`python -m classify.compare RUN_A RUN_B`: EER difference with a paired-bootstrap interval and p-value."""
import json
import shutil

import pytest

from test_evaluate import build_run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A well-trained run and a barely trained one, both evaluated on the same images."""
    from classify.evaluate import EvalSettings, evaluate_run
    good = build_run(tmp_path_factory.mktemp("good"))
    weak = build_run(tmp_path_factory.mktemp("weak"), steps=2)
    images = json.loads((good / "config.json").read_text())["images"]
    quiet = EvalSettings(top_k=1, bootstrap=20)
    evaluate_run(good, quiet, log=lambda *a: None)
    evaluate_run(weak, EvalSettings(top_k=1, bootstrap=20, images=images), log=lambda *a: None)
    return good, weak


def test_a_run_against_itself_differs_by_nothing(two_runs, tmp_path, capsys):
    from classify.compare import main
    good, _ = two_runs
    twin = tmp_path / "twin"
    shutil.copytree(good, twin, symlinks=True)
    out = tmp_path / "cmp.json"
    assert main([str(good), str(twin), "--bootstrap", "200", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["difference"] == 0 and result["p_value"] == 1.0 and result["ci95"] == [0.0, 0.0]
    assert result["clips"] == 12 and result["unit"] == "speaker" and result["units"] == 4
    printed = capsys.readouterr().out
    assert "A - B = +0.000 %" in printed and "includes 0" in printed


def test_the_difference_is_eer_a_minus_eer_b(two_runs, capsys):
    from classify.compare import CompareSettings, compare
    good, weak = two_runs
    result = compare(weak, good, CompareSettings(bootstrap=300))
    eer = {r: json.loads((r / "evaluation" / "metrics.json").read_text())["metrics"]["eer"]["value"]
           for r in (good, weak)}
    assert result["a"] == eer[weak] and result["b"] == eer[good]
    assert result["difference"] == pytest.approx(eer[weak] - eer[good])
    lo, hi = result["ci95"]
    assert lo <= result["difference"] <= hi and 0 < result["p_value"] <= 1
    assert result["resamples"] == 300 and result["used"] <= 300


def test_runs_not_evaluated_or_on_other_images_are_refused(two_runs, tmp_path, capsys):
    from classify.compare import main
    good, _ = two_runs
    bare = tmp_path / "bare"
    bare.mkdir()
    assert main([str(good), str(bare)]) == 2
    assert "has no evaluation" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(good, other, symlinks=True)
    scores = (other / "evaluation" / "scores-test.csv")
    lines = scores.read_text().splitlines()
    scores.write_text("\n".join(lines[:-2]) + "\n")                 # B scored two clips fewer
    assert main([str(good), str(other)]) == 2
    err = capsys.readouterr().err
    assert "not evaluated on the same images" in err and "2 clips only in A" in err
    assert main([str(good), str(good), "--split", "val2"]) == 2
    assert "was not evaluated on val2" in capsys.readouterr().err
