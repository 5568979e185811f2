"""classify.evaluate end to end on a tiny images folder and a run trained for a few steps on the CPU."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audiogen import write_tone
from spec2img.audio import load_audio
from spec2img.config import SpecConfig, save_spec
from spec2img.cues import cue_cells, file_cues
from spec2img.features import clip_to_image
from spec2img.manifest import COLUMNS
from spec2img.fileio import stale_parts

TINY_SPEC = SpecConfig(sample_rate=8000, duration=0.5, n_mels=16, n_fft=128, win_length=128, hop_length=80)
N_PER_CLASS = {"train": 8, "val": 6, "test": 6}


def _clip_rows(root: Path):
    """Yield (clip_id, wav path, label, split, system, condition): low tones bona fide, high tones spoof."""
    rng = np.random.default_rng(0)
    for split, n in N_PER_CLASS.items():
        for label in ("bonafide", "spoof"):
            for i in range(n):
                freq = (250 + 40 * i) if label == "bonafide" else (2500 + 90 * i)
                clip_id = f"{split}_{label}_{i}"
                path = write_tone(root / "audio" / f"{clip_id}.wav", seconds=0.6 + 0.1 * rng.random(), sr=8000,
                                  freq=freq)
                system = f"A0{1 + i % 2}" if label == "spoof" else ""
                yield clip_id, path, label, split, system, f"C{1 + i % 2}"


def build_images(root: Path) -> Path:
    """Return an images folder (spec.json, manifest.csv, <split>/<label>/<id>.png) made with TINY_SPEC."""
    images = root / "images"
    doc = TINY_SPEC.to_dict()
    doc["source"] = {"root": str(root / "audio"), "layout": "folders"}
    save_spec(TINY_SPEC, images)
    (images / "spec.json").write_text(json.dumps(doc, indent=2))
    rows = []
    for k, (clip_id, path, label, split, system, cond) in enumerate(_clip_rows(root)):
        wave, info = load_audio(path, TINY_SPEC.sample_rate)
        rel = f"{split}/{label}/{clip_id}.png"
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(clip_to_image(wave, TINY_SPEC), mode="L").save(images / rel)
        rows.append({"clip_id": clip_id, "path": str(path), "label": label, "split": split, "system": system,
                     "speaker": f"spk{k % 4}", "condition": cond, "duration": f"{info.duration:.3f}",
                     "sample_rate": str(info.sample_rate), "channels": str(info.channels), "status": "ok",
                     "image": rel, "peak_dbfs": "-10.5", "rms_dbfs": "-13.5", **cue_cells(file_cues(path, info))})
    with open(images / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)
    return images


def build_run(root: Path, steps: int = 40) -> Path:
    """Return a run folder as classify.train leaves it (model.safetensors + model.json via model_io.save_model,
    config.json, history.csv): a simple_cnn fitted for a few full-batch steps on build_images' train split."""
    import torch
    from classify.archs import IMAGENET_MEAN, IMAGENET_STD, build_model, builder_settings
    from classify.model_io import images_to_input, save_model
    images = build_images(root)
    spec = json.loads((images / "spec.json").read_text())
    description = {"arch": "simple_cnn", "classes": ["bonafide", "spoof"], "spoof_index": 1,
                   "input": {"height": TINY_SPEC.n_mels, "width": TINY_SPEC.frames, "channels": 3},
                   "normalize": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}, "spec": spec,
                   "pretrained": False, "builder": builder_settings("simple_cnn")}
    pngs = sorted((images / "train").glob("*/*.png"))
    x = images_to_input(np.stack([np.asarray(Image.open(p)) for p in pngs]), description, "cpu")
    y = torch.tensor([p.parent.name == "spoof" for p in pngs], dtype=torch.long)
    torch.manual_seed(0)
    model = build_model(description["builder"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    run = root / "runs" / "simple_cnn-20250101-000000"
    save_model(run, model.eval(), description)
    (run / "config.json").write_text(json.dumps({"images": str(images.resolve()), "settings": {"balance": "weights"},
                                                 "spec": spec}))
    (run / "history.csv").write_text("epoch,train_loss,valid_loss,accuracy,roc_auc,eer,time\n"
                                     "0,0.7,0.6,0.6,0.7,0.3,1\n1,0.5,0.4,0.8,0.9,0.1,1\n")
    from classify.runfolder import mark_complete
    mark_complete(run)
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("evalrun"))


@pytest.fixture(scope="module")
def evaluated(run):
    from classify.evaluate import EvalSettings, evaluate_run
    return evaluate_run(run, EvalSettings(top_k=4), log=lambda *a: None)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def current(run: Path) -> Path:
    """Return the run's current evaluation set folder (what RUN/evaluation points at)."""
    from classify.runfolder import evaluation_dir
    folder = evaluation_dir(run)
    assert folder is not None and folder.parent.name == "evaluations"
    return folder


def test_every_output_is_written_into_one_published_set(run, evaluated):
    ev = current(run)
    assert (run / "evaluation").is_symlink() and ev == (run / "evaluation").resolve()
    for name in ("scores-test.csv", "scores.csv", "scores-test.txt", "scores-test-2021.txt", "scores-test-asvspoof5.tsv",
                 "scores-val.csv", "scores-val.txt", "scores-val-2021.txt", "scores-val-asvspoof5.tsv",
                 "thresholds.json", "calibration.json", "metrics.json", "report.html", "confusion_matrix-test.png",
                 "top_losses-test.png", "roc-test.png", "det-test.png", "precision_recall-test.png",
                 "score_histogram-test.png", "reliability-test.png", "per_attack_eer-test.png",
                 "per_condition_eer-test.png", "training_curves.png"):
        assert (ev / name).is_file() and (ev / name).stat().st_size > 0, name
    for png in ev.glob("*-test.png"):
        with Image.open(png) as im:
            assert im.size[0] > 100 and im.size[1] > 100, png
    assert not stale_parts(ev) and not stale_parts(run)
    assert not any((run / n).exists() for n in ("metrics.json", "thresholds.json", "report.html"))  # only in the set
    assert (ev / "scores.csv").read_text() == (ev / "scores-test.csv").read_text()
    rows = read_csv(ev / "scores-test.csv")
    assert len(rows) == 2 * N_PER_CLASS["test"]
    assert list(rows[0]) == ["clip_id", "path", "label", "system", "condition", "speaker", "subset", "spoof_prob",
                             "score", "llr", "pred"]
    assert all(Path(r["path"]).is_file() for r in rows)
    assert Path(evaluated["report"]) == run.resolve() / "evaluation" / "report.html"
    assert all((run / p).is_file() for p in evaluated["plots"].values())


def test_score_files_parse_as_the_official_readers_parse_them(run, evaluated):
    from classify import metrics as M
    ev = current(run)
    rows = {r["clip_id"]: r for r in read_csv(ev / "scores-test.csv")}
    # ASVspoof 2019 (evaluate_tDCF_asvspoof19.py): numpy.genfromtxt(dtype=str), columns id, source, key, score
    cm = np.genfromtxt(ev / "scores-test.txt", dtype=str)
    assert cm.shape == (len(rows), 4)
    assert set(cm[:, 2]) == {"bonafide", "spoof"} and set(cm[cm[:, 2] == "bonafide", 1]) == {"-"}
    scores = cm[:, 3].astype(float)
    eer = M.compute_eer(scores[cm[:, 2] == "bonafide"], scores[cm[:, 2] == "spoof"])[0]
    assert eer == evaluated["metrics"]["eer"]["value"]
    # ASVspoof 2021 eval package (pd_tools): read_csv(sep=' ', names=[trial, score], index_col=trial), then joined
    # to the key on the trial and refused unless every trial matches
    key = pd.DataFrame({"trial": list(rows), "label": [rows[c]["label"] for c in rows]}).set_index("trial")
    score21 = pd.read_csv(ev / "scores-test-2021.txt", sep=" ", names=["trial", "score"], index_col="trial",
                          skipinitialspace=True)
    joined = pd.concat([key, score21], axis=1, join="inner")
    assert len(joined) == len(key) == len(score21) and len(score21.columns) == 1
    bona, spoof = joined[joined.label == "bonafide"].score, joined[joined.label == "spoof"].score
    assert M.compute_eer(bona.to_numpy(), spoof.to_numpy())[0] == evaluated["metrics"]["eer"]["value"]
    # ASVspoof 5 package (util.load_tsv): read_csv(sep='\t', header=0), index filename, column cm-score = LLR
    tsv = pd.read_csv(ev / "scores-test-asvspoof5.tsv", sep="\t", header=0).set_index("filename")
    assert list(tsv.columns) == ["cm-score"] and set(tsv.index) == set(rows)
    cal = json.loads((ev / "calibration.json").read_text())
    for clip, llr in tsv["cm-score"].items():
        assert llr == pytest.approx(cal["slope"] * float(rows[clip]["score"]) + cal["offset"], rel=1e-12)
        assert float(rows[clip]["llr"]) == llr


def test_threshold_and_calibration_come_from_val_and_apply_unchanged_to_test(run, evaluated):
    from classify.calibration import fit_calibration
    from classify.thresholds import choose_threshold_with_value
    ev = current(run)
    t = json.loads((ev / "thresholds.json").read_text())
    assert t["split"] == "val" and t["rule"] == "eer"
    val = read_csv(ev / "scores-val.csv")
    assert {r["clip_id"].split("_")[0] for r in val} == {"val"}
    p_val = np.array([float(r["spoof_prob"]) for r in val])
    y_val = np.array([r["label"] == "spoof" for r in val], int)
    assert t["spoof_prob_threshold"] == pytest.approx(choose_threshold_with_value(p_val, y_val, "eer")[0], rel=1e-6)
    cal = json.loads((ev / "calibration.json").read_text())
    refit = fit_calibration([float(r["score"]) for r in val], y_val)
    assert (cal["slope"], cal["offset"]) == pytest.approx((refit.slope, refit.offset))
    assert cal["fitted_on"] == "val" and cal["slope"] > 0
    for r in read_csv(ev / "scores-test.csv"):
        expected = "spoof" if float(r["spoof_prob"]) >= t["spoof_prob_threshold"] else "bonafide"
        assert r["pred"] == expected
        assert (float(r["score"]) >= t["score_threshold"]) == (r["pred"] == "bonafide")


def test_metrics_json_agrees_with_scores_csv(run, evaluated):
    from classify import metrics as M
    ev = current(run)
    m = json.loads((ev / "metrics.json").read_text())
    rows = read_csv(ev / "scores.csv")
    score = np.array([float(r["score"]) for r in rows])
    llr = np.array([float(r["llr"]) for r in rows])
    y = np.array([r["label"] == "spoof" for r in rows], int)
    prob = np.array([float(r["spoof_prob"]) for r in rows])
    assert m["metrics"]["eer"]["value"] == pytest.approx(M.compute_eer(score[y == 0], score[y == 1])[0], abs=1e-6)
    assert "ASVspoof" in m["metrics"]["eer"]["formula"]
    assert m["metrics"]["roc_auc"]["value"] == pytest.approx(M.roc_auc(y, -score), abs=1e-6)
    assert m["metrics"]["cllr"]["value"] == pytest.approx(M.compute_cllr(llr[y == 0], llr[y == 1]))
    assert m["metrics"]["cllr_raw"]["value"] == pytest.approx(M.compute_cllr(score[y == 0], score[y == 1]))  # prior ½
    assert "calibrated" in m["metrics"]["cllr"]["formula"] and "uncalibrated" in m["metrics"]["cllr_raw"]["formula"]
    assert m["metrics"]["min_cllr"]["value"] <= min(m["metrics"]["cllr"]["value"], m["metrics"]["cllr_raw"]["value"])
    for key, thr in (("at_0.5", 0.5), ("at_tuned_threshold", m["threshold"]["spoof_prob_threshold"])):
        c = M.confusion_counts(y, prob >= thr)
        assert m[key]["confusion"] == c
        assert m[key]["accuracy"]["value"] == pytest.approx(M.accuracy(c))
    assert m["metrics"]["min_tdcf_legacy"]["value"] is None
    assert "asvspoof2019" in m["metrics"]["min_tdcf_legacy"]["reason"]
    assert set(m["per_attack"]) == {"A01", "A02"} and set(m["per_condition"]) == {"C1", "C2"}
    assert m["llr"]["prior_bonafide"] == 0.5
    for entry in m["metrics"].values():
        assert entry["formula"]
    ci = m["ci95"]
    assert ci["unit"] == "speaker" and ci["units"] == 4 and ci["used"] > 0
    for name in ("eer", "min_dcf", "roc_auc"):
        lo, hi = ci[name]
        assert lo <= m["metrics"][name]["value"] <= hi
    rel = m["reliability"]
    assert len(rel["raw"]["predicted"]) == len(rel["raw"]["observed"]) and sum(rel["raw"]["count"]) == 12
    assert rel["calibrated"] and sum(rel["calibrated"]["count"]) == 12
    audit = m["shortcuts"]
    assert set(audit["cues"]) == {"leading_silence", "trailing_silence", "duration", "rms_dbfs", "peak_dbfs",
                                  "sample_rate", "channels", "bandwidth"}
    assert audit["cues"]["sample_rate"]["eer"] == pytest.approx(0.5)      # one shared rate tells nothing
    assert audit["model"]["rocch_eer"] == pytest.approx(0.0)


def test_report_embeds_everything(run, evaluated):
    page = (run / "evaluation" / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count("<audio controls") == 4 + 2 * 3              # top losses + 3 confident correct clips per class
    assert page.count("data:audio/wav;base64,") == 4 + 2 * 3
    assert page.count("data:image/png;base64,") >= 4 + 9
    for text in ("eer", "min_dcf", "act_dcf", "cllr", "min_cllr", "roc_auc", "A01", "A02", "95 % interval",
                 "Calibration", "calibrated LLR", "raw score (uncalibrated)", "alt='reliability diagram'",
                 "Shortcut audit", "leading silence", "effective bandwidth", "percentile bootstrap"):
        assert text in page, text


def test_one_class_split_is_reported_not_crashed(run, evaluated, tmp_path):
    from classify.evaluate import EvalSettings, evaluate_run
    cfg = json.loads((run / "config.json").read_text())
    images = tmp_path / "images"
    shutil.copytree(cfg["images"], images)
    shutil.rmtree(images / "test" / "spoof")
    manifest = (images / "manifest.csv").read_text()
    (images / "manifest.csv").write_text(manifest.replace(str(Path(cfg["images"]).parent / "audio"), "/moved/audio"))
    out = tmp_path / "run"
    shutil.copytree(run, out, symlinks=True)
    result = evaluate_run(out, EvalSettings(images=images, top_k=2), log=lambda *a: None)
    assert result["counts"]["test"] == {"bonafide": 6, "spoof": 0}
    for name in ("eer", "roc_auc", "min_dcf", "act_dcf", "cllr", "min_cllr"):
        assert result["metrics"][name]["value"] is None
        assert "no spoof" in result["metrics"][name]["reason"]
    assert result["at_tuned_threshold"]["accuracy"]["value"] is not None
    assert result["at_tuned_threshold"]["recall"]["value"] is None
    assert "reason" in result["ci95"] and result["shortcuts"]["model"] is None
    ev = current(out)
    assert (ev / "report.html").is_file() and not (ev / "roc-test.png").exists()
    assert any("one class" in n for n in result["notes"])
    page = (ev / "report.html").read_text()
    # 2 top-loss cards + the 3 most confident correct bona fide clips (classify.explain); no spoof clip to show
    assert page.count("original audio not playable: /moved/audio/test_bonafide_") == 2 + 3 and "<audio" not in page


def test_a_new_evaluation_replaces_the_set_and_keeps_other_splits(run, evaluated, tmp_path):
    from classify.evaluate import EvalSettings, evaluate_run
    out = tmp_path / "run"
    shutil.copytree(run, out, symlinks=True)
    first = current(out)
    evaluate_run(out, EvalSettings(split="val", top_k=1, bootstrap=10), log=lambda *a: None)
    on_val = current(out)
    assert on_val != first and on_val.name.startswith("val-")
    evaluate_run(out, EvalSettings(top_k=1, bootstrap=10), log=lambda *a: None)
    on_test = current(out)
    assert on_test.name.startswith("test-") and on_test != first
    kept = sorted(p.name for p in (out / "evaluations").iterdir())
    assert kept == sorted([on_val.name, on_test.name])              # the replaced test set is gone, val's stays
    assert json.loads((on_test / "metrics.json").read_text())["split"] == "test"


def _error(argv, capsys):
    from classify.evaluate import main
    assert main(argv) == 2
    return capsys.readouterr().err


def test_missing_weights_message(run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out, symlinks=True)
    (out / "model.safetensors").unlink()
    err = _error([str(out)], capsys)
    assert "has no model.safetensors" in err and "make train" in err


def test_spec_mismatch_message(run, tmp_path, capsys):
    cfg = json.loads((run / "config.json").read_text())
    images = tmp_path / "images"
    shutil.copytree(cfg["images"], images)
    spec = json.loads((images / "spec.json").read_text())
    spec["n_mels"] = 32
    (images / "spec.json").write_text(json.dumps(spec))
    err = _error([str(run), "--images", str(images)], capsys)
    assert "n_mels: 16 for the run, 32 in the images" in err


def test_missing_split_message(run, capsys):
    err = _error([str(run), "--split", "eval"], capsys)
    assert "eval" in err and "splits present" in err and "test" in err


def test_a_subset_the_images_lack_is_a_clear_error(run, capsys):
    err = _error([str(run), "--subset", "progress"], capsys)
    assert "carry no key subset" in err and "--subset all" in err


def test_non_finite_logits_stop_with_the_clips_named(run, tmp_path, monkeypatch):
    import classify.model_io as model_io
    from classify.evaluate import EvalSettings, EvaluationError, evaluate_run
    out = tmp_path / "run"
    shutil.copytree(run, out, symlinks=True)
    before = current(out)
    real, calls = model_io.predict_logits, []

    def broken(model, images, description, device="cpu", bs=64):
        logits = real(model, images, description, device=device, bs=bs)
        calls.append(len(images))
        if len(calls) == 2:                                         # val is scored first, then test
            logits[3, 0], logits[7, 1] = np.nan, np.inf
        return logits
    monkeypatch.setattr(model_io, "predict_logits", broken)
    with pytest.raises(EvaluationError) as e:
        evaluate_run(out, EvalSettings(top_k=1), log=lambda *a: None)
    message = str(e.value)
    assert "2 of 12 clips of test" in message and "NaN or infinite" in message
    names = sorted(p.stem for p in (Path(json.loads((run / "config.json").read_text())["images"]) / "test").rglob("*.png"))
    assert names[3] in message and names[7] in message
    assert current(out) == before                                   # nothing was published


def test_several_runs_are_aggregated(run, evaluated, tmp_path, capsys):
    from classify.evaluate import main
    runs = tmp_path / "runs"
    for k in range(2):
        shutil.copytree(run, runs / f"simple_cnn-s{k}", symlinks=True)
    assert main([str(runs / "simple_cnn-s0"), str(runs / "simple_cnn-s1"), "--top-k", "1", "--bootstrap", "20"]) == 0
    agg = json.loads((runs / "aggregate-simple_cnn-2seeds.json").read_text())
    assert agg["metrics"]["eer"]["n"] == 2 and agg["metrics"]["eer"]["std"] == pytest.approx(0.0, abs=1e-12)
    assert agg["metrics"]["eer"]["mean"] == pytest.approx(evaluated["metrics"]["eer"]["value"])
    assert "tuned/f1" in agg["metrics"] and "0.5/f1" in agg["metrics"] and "cllr" in agg["metrics"]
    out = capsys.readouterr().out
    assert "aggregate over 2 runs" in out and "95 % interval" in out


def test_min_tdcf_uses_the_organizers_asv_file(tmp_path):
    from classify import metrics as M
    from classify.asvscores import find_asv_scores
    from classify.results import tdcf_entry
    root = tmp_path / "LA"
    asv = root / "ASVspoof2019_LA_asv_scores" / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt"
    asv.parent.mkdir(parents=True)
    asv.write_text("LA_0001 target 1\nLA_0001 target 2\nLA_0002 target 3\nLA_0002 target 4\n"
                   "LA_0003 nontarget -4\nLA_0003 nontarget -3\nLA_0004 nontarget -2\nLA_0004 nontarget -1\n"
                   "A07 spoof -0.5\nA08 spoof 0.5\nA09 spoof 5\nA10 spoof 6\n")
    spec = {"source": {"root": str(root), "layout": "asvspoof2019"}}
    assert find_asv_scores(spec, "test") == (asv, "")
    path, why = find_asv_scores(spec, "val")
    assert path is None and "asv.dev.gi.trl.scores.txt" in why
    path, why = find_asv_scores({"source": {"root": str(root), "layout": "inthewild"}}, "test")
    assert path is None and "inthewild" in why
    e = tdcf_entry(np.array([3., 1]), np.array([0., 2]), asv, "")
    assert e["value"] == pytest.approx(0.5) and "legacy" in e["formula"] and e["asv_scores"] == str(asv)
    assert e["value"] == pytest.approx(M.min_tdcf_legacy([3., 1], [0., 2], [1., 2, 3, 4], [-4., -3, -2, -1],
                                                         [-.5, .5, 5, 6]))
    asv.write_text("LA_0001 target\n")
    bad = tdcf_entry(np.array([3., 1]), np.array([0., 2]), asv, "")
    assert bad["value"] is None and "line 1" in bad["reason"]


def test_one_class_val_falls_back_to_half_with_a_note(tmp_path):
    from classify.evaluate import EvalSettings, calibrate, tune_threshold
    from classify.scoring import SplitScores
    val = SplitScores("val", ["a", "b"], np.array([0, 0]), [Path("a.png"), Path("b.png")], [{}, {}],
                      logits=np.array([[2.0, -1.0], [1.0, 0.0]], np.float32))
    notes = []
    t = tune_threshold(val, EvalSettings(), tmp_path, notes, log=lambda *a: None)
    assert t["spoof_prob_threshold"] == 0.5 and "no spoof clips" in t["note"]
    assert json.loads((tmp_path / "thresholds.json").read_text())["spoof_prob_threshold"] == 0.5
    assert notes and "0.5" in notes[0]
    cal, why = calibrate(val, tmp_path, notes, log=lambda *a: None)
    assert cal is None and "0 spoof" in why and not (tmp_path / "calibration.json").exists()
