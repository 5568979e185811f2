"""classify.predict: labels of generated bonafide/spoof clips, long-clip windows, the same score as the
conversion + evaluation path, bad-file rows, exit codes, thresholds, and refusal of pickle-only runs."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from audiogen import write_tone
from scipy.signal import butter, sosfilt

from classify import model_io, predict, runfolder
from classify.archs import build_model
from spec2img.config import SpecConfig
from spec2img.features import clip_to_image
from spec2img.rows import ClipRow
from spec2img.fileio import stale_parts

SPEC = SpecConfig(duration=1.0, n_mels=32, hop_length=320)   # 32 x 50 images: trains in seconds on a CPU
SR = SPEC.sample_rate
REPO = Path(__file__).resolve().parents[1]


def bonafide_wave(seconds, seed, sr=SR):
    """Speech-like: a 100-180 Hz harmonic series with a syllable-rate envelope (energy below 1 kHz)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = rng.uniform(100, 180)
    wave = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
    return (0.2 * wave * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(3, 5) * t))).astype(np.float32)


def spoof_wave(seconds, seed, sr=SR):
    """Vocoder-artefact stand-in: noise in the 4-7.5 kHz band."""
    rng = np.random.default_rng(seed)
    sos = butter(6, [4000, 7500], btype="bandpass", fs=sr, output="sos")
    return (0.3 * sosfilt(sos, rng.standard_normal(int(round(seconds * sr))))).astype(np.float32)


def write_wave(path, wave, sr=SR, channels=1):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave, sr)
    return path


def description_for(spec: SpecConfig) -> dict:
    """model.json content exactly as classify.train writes it for a from-scratch simple_cnn."""
    from classify.train import TrainConfig, model_description
    return model_description(TrainConfig(arch="simple_cnn", pretrained=False), spec.to_dict(), spec.image_shape)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder (model.safetensors + model.json, no thresholds.json) whose SimpleCNN separates
    bonafide_wave from spoof_wave clips; trained for 20 steps on 24 one-second images."""
    torch.manual_seed(0)
    waves = [g(SPEC.duration, 100 + i) for i in range(12) for g in (bonafide_wave, spoof_wave)]
    images = np.stack([clip_to_image(w, SPEC) for w in waves])
    labels = torch.tensor([0, 1] * 12)
    description = description_for(SPEC)
    model = build_model(description["builder"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = model_io.images_to_input(images, description, "cpu")
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # a model this small gains nothing from threads, and loses a lot on a busy CPU
    try:
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), labels).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    run = tmp_path_factory.mktemp("runs") / "simple_cnn-test"
    model_io.save_model(run, model.eval(), description)
    runfolder.mark_complete(run)
    return run


def run_predict(capsys, *args):
    """Return (exit status, stdout, stderr) of the command line run in this process."""
    code = predict.main([str(a) for a in args] + ["--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path):
    with open(path, newline="") as f:
        return {Path(r["path"]).name: r for r in csv.DictReader(f)}


# ---------------------------------------------------------------- pure window arithmetic

def test_window_starts_cover_the_clip_and_align_the_last_window_to_the_end():
    assert predict.window_starts(100, 100, 50) == [0]
    assert predict.window_starts(40, 100, 50) == [0]                  # short clip: one (padded) window
    assert predict.window_starts(300, 100, 50) == [0, 50, 100, 150, 200]
    assert predict.window_starts(250, 100, 50) == [0, 50, 100, 150]   # 150 + 100 = 250: the end exactly
    assert predict.window_starts(260, 100, 50) == [0, 50, 100, 150, 160]
    assert predict.window_starts(102, 100, 50, min_step=5) == [0]     # < one column more: not worth a window


def test_combine_windows_averages_logits_and_finds_the_most_spoof_window():
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    combined = predict.combine_windows(logits, [0.0, 0.5, 1.0])
    mean = logits.mean(axis=0)
    assert combined["score"] == pytest.approx(mean[0] - mean[1])
    assert combined["spoof_prob"] == pytest.approx(1 / (1 + np.exp(mean[0] - mean[1])))
    assert combined["max_spoof_prob"] == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert combined["max_spoof_start"] == 0.5 and combined["windows"] == 3


# ---------------------------------------------------------------- scoring with a trained run

def test_generated_bonafide_and_spoof_clips_get_the_right_labels(tiny_run, tmp_path, capsys):
    clips = tmp_path / "clips"
    # other seeds than training, other lengths, rates, channel counts and formats
    write_wave(clips / "b1.wav", bonafide_wave(1.0, 7))
    write_wave(clips / "b2.flac", bonafide_wave(0.6, 8, sr=22050), sr=22050)          # short: repeat-padded
    write_wave(clips / "nested" / "b3.wav", bonafide_wave(1.3, 9, sr=44100), sr=44100, channels=2)
    write_wave(clips / "s1.wav", spoof_wave(1.0, 7))
    write_wave(clips / "s2.flac", spoof_wave(0.7, 8, sr=32000), sr=32000)
    write_wave(clips / "nested" / "s3.wav", spoof_wave(1.2, 9), channels=2)
    (clips / "notes.txt").write_text("not audio: skipped when walking a folder")
    out = tmp_path / "scores.csv"
    code, stdout, err = run_predict(capsys, "--run", tiny_run, clips, "--out", out)
    assert code == 0, err
    rows = read_csv(out)
    assert sorted(rows) == ["b1.wav", "b2.flac", "b3.wav", "s1.wav", "s2.flac", "s3.wav"]
    for name, row in rows.items():
        assert row["status"] == "ok"
        assert row["label"] == ("bonafide" if name.startswith("b") else "spoof"), row
        prob, score = float(row["spoof_prob"]), float(row["score"])
        assert np.log(prob / (1 - prob)) == pytest.approx(-score, abs=1e-3)   # both from the same logits
    assert float(rows["b2.flac"]["duration"]) == pytest.approx(0.6, abs=1e-3)
    assert rows["b2.flac"]["windows"] == "1"
    assert "b3.wav" in stdout and "spoof_prob" in stdout                     # the table on stdout
    assert not stale_parts(tmp_path)                                  # written atomically


def test_long_clip_is_scored_in_overlapping_windows_and_the_spoofed_part_is_found(tiny_run, tmp_path, capsys):
    # 3 s at a 1 s window: starts 0, .5, 1, 1.5, 2 (hop 0.5) or 0, 1, 2 (hop 1); 2.5 s: 0, .5, 1, 1.5
    long = write_wave(tmp_path / "long.wav", bonafide_wave(3.0, 11))
    odd = write_wave(tmp_path / "odd.wav", bonafide_wave(2.5, 12))
    # bonafide speech whose last second is spoofed: the most-spoof window is the one at the end
    mixed = write_wave(tmp_path / "mixed.wav", np.concatenate([bonafide_wave(3.0, 13), spoof_wave(1.0, 13)]))
    out = tmp_path / "long.json"
    code, _, err = run_predict(capsys, "--run", tiny_run, long, odd, mixed, "--out", out)
    assert code == 0, err
    files = {Path(r["path"]).name: r for r in json.loads(out.read_text())["files"]}
    assert files["long.wav"]["windows"] == 5 and files["odd.wav"]["windows"] == 4
    assert files["long.wav"]["duration"] == pytest.approx(3.0)
    assert files["mixed.wav"]["windows"] == 7
    assert files["mixed.wav"]["max_spoof_start"] == pytest.approx(3.0)
    assert files["mixed.wav"]["max_spoof_prob"] > 0.5 > files["long.wav"]["max_spoof_prob"]
    code, _, _ = run_predict(capsys, "--run", tiny_run, long, "--hop", "1", "--out", out)
    assert json.loads(out.read_text())["files"][0]["windows"] == 3


def test_long_files_decoded_in_chunks_score_like_whole_files(tiny_run, tmp_path, monkeypatch):
    path = write_wave(tmp_path / "long.wav", np.concatenate([bonafide_wave(5.0, 21), spoof_wave(2.3, 21)]))
    predictor = predict.load_predictor(tiny_run, "cpu", log=lambda m: None)
    whole = predict.score_files([path], predictor, progress=False)[0]
    monkeypatch.setattr(predict, "WHOLE_FILE_SECONDS", 2.0)
    monkeypatch.setattr(predict, "CHUNK_SECONDS", 1.5)    # 3 windows per decoded piece
    windows = list(predict.iter_file_windows(path, SPEC))
    assert len(windows) == 14 and windows[-1][0] == pytest.approx(6.3)
    assert all(w.size == SPEC.n_samples for _, w in windows)
    chunked = predict.score_files([path], predictor, progress=False)[0]
    assert (chunked.windows, chunked.max_spoof_start) == (whole.windows, whole.max_spoof_start)
    assert chunked.score == pytest.approx(whole.score, abs=1e-5)


def test_predict_gives_the_score_evaluate_gives_the_converted_clip(tiny_run, tmp_path):
    """The evaluation path: spec2img converts each clip to a PNG, classify.evaluate reads the PNGs back
    and scores them. Predict must render the same pixels and give the same score."""
    from classify import scoring
    from classify.data import read_png_gray
    from spec2img.convert import ConvertOptions, convert_rows
    clips = {"b": write_wave(tmp_path / "audio" / "b.wav", bonafide_wave(1.0, 31, sr=22050), sr=22050),
             "s": write_wave(tmp_path / "audio" / "s.flac", spoof_wave(0.8, 31), channels=2)}
    rows = [ClipRow(k, p, "bonafide" if k == "b" else "spoof", "test") for k, p in clips.items()]
    images = tmp_path / "images"
    convert_rows(rows, images, SPEC, ConvertOptions(workers=1, progress=False), tmp_path / "audio", "csv",
                 log=lambda m: None)
    model, description = model_io.load_model(tiny_run)
    split = scoring.list_split(images, "test", scoring.manifest_rows(images))
    split = scoring.score_split(split, model, description, "cpu", 64, log=lambda m: None)
    evaluated = dict(zip(split.clip_id, split.score))
    predictor = predict.load_predictor(tiny_run, "cpu", log=lambda m: None)
    scored = predict.score_files([clips["b"], clips["s"]], predictor, progress=False)
    for row, result in zip(rows, scored):
        png = read_png_gray(images / "test" / row.label / f"{row.clip_id}.png")
        first_window = next(predict.iter_file_windows(row.path, predictor.spec))[1]
        assert np.array_equal(clip_to_image(first_window, predictor.spec), png)
        assert result.windows == 1 and result.label == row.label
        assert result.score == pytest.approx(evaluated[row.clip_id], abs=1e-5)


# ---------------------------------------------------------------- thresholds

def _evaluated_copy(tiny_run, folder, threshold, slope=0.5, offset=-1.0):
    """Return a copy of the run with an evaluation set published as classify.evaluate does."""
    from classify.calibration import Calibration, write_calibration
    from classify.outputset import output_set
    from classify.thresholds import write_thresholds
    folder.mkdir()
    for name in ("model.safetensors", "model.json", "complete.json"):
        (folder / name).write_bytes((tiny_run / name).read_bytes())
    with output_set(folder, "test") as ev:
        write_thresholds(ev, "eer", threshold, {"value": 0.1})
        write_calibration(ev / "calibration.json", Calibration(slope, offset, "val", 10, 10))
    return folder


def test_tuned_threshold_is_used_and_its_absence_is_announced(tiny_run, tmp_path, capsys):
    clip = write_wave(tmp_path / "b.wav", bonafide_wave(1.0, 41))
    code, out, err = run_predict(capsys, "--run", tiny_run, clip, "--format", "json")
    assert code == 0
    result = json.loads(out)                                   # --format without --out: JSON on stdout
    assert "notice: no tuned threshold" in err and "0.5" in err and result["threshold"] == 0.5
    prob = result["files"][0]["spoof_prob"]
    assert result["files"][0]["label"] == "bonafide"
    # a run tuned to a threshold just below this clip's probability labels it spoof
    tuned = _evaluated_copy(tiny_run, tmp_path / "tuned", prob * 0.9)
    code, out, err = run_predict(capsys, "--run", tuned, clip, "--format", "csv")
    assert code == 0 and "notice" not in err and "thresholds.json" in err
    row = next(csv.DictReader(out.splitlines()))
    assert row["label"] == "spoof" and float(row["spoof_prob"]) == pytest.approx(prob, rel=1e-5)


def test_llr_and_posterior_come_from_the_calibration_at_the_prior(tiny_run, tmp_path, capsys):
    import math
    clips = [write_wave(tmp_path / "b.wav", bonafide_wave(1.0, 42)), write_wave(tmp_path / "s.wav", spoof_wave(1.0, 43))]
    run = _evaluated_copy(tiny_run, tmp_path / "calibrated", 0.5, slope=0.5, offset=-1.0)
    code, out, err = run_predict(capsys, "--run", run, *clips, "--format", "csv", "--prior", "0.2")
    assert code == 0 and "notice" not in err
    rows = list(csv.DictReader(out.splitlines()))
    assert list(rows[0])[:6] == ["path", "spoof_prob", "score", "llr", "spoof_posterior", "label"]
    for r in rows:
        llr = 0.5 * float(r["score"]) - 1.0
        assert float(r["llr"]) == pytest.approx(llr, rel=1e-5, abs=1e-6)
        assert float(r["spoof_posterior"]) == pytest.approx(1 / (1 + math.exp(llr - math.log(0.2 / 0.8))), rel=1e-4)
    assert float(rows[0]["llr"]) > 0 > float(rows[1]["llr"])          # bona fide evidence, spoof evidence
    # default prior ½; an unevaluated run falls back to the uncalibrated LLR (training prior ½: the score) and says so
    code, out, err = run_predict(capsys, "--run", tiny_run, clips[0], "--format", "json")
    row = json.loads(out)["files"][0]
    assert "no calibration.json" in err and json.loads(out)["prior_spoof"] == 0.5
    assert row["llr"] == pytest.approx(row["score"]) and row["spoof_posterior"] == pytest.approx(row["spoof_prob"])
    with pytest.raises(SystemExit):
        predict.main(["--run", str(run), str(clips[0]), "--prior", "1.5"])
    assert "--prior 1.5" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input and exit codes

def test_bad_files_get_error_rows_and_the_others_are_scored(tiny_run, tmp_path, capsys):
    good = write_wave(tmp_path / "good.wav", spoof_wave(1.0, 51))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "text.flac"
    text.write_text("this is not audio")
    silent = write_wave(tmp_path / "silent.wav", np.zeros(SR, np.float32))
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(write_tone(tmp_path / "t_src.wav", seconds=1.0).read_bytes()[:30])
    missing = tmp_path / "missing.wav"
    out = tmp_path / "scores.csv"
    code, stdout, err = run_predict(capsys, "--run", tiny_run, good, empty, text, silent, truncated, missing,
                                    "--out", out)
    assert code == 1
    rows = read_csv(out)
    assert rows["good.wav"]["status"] == "ok" and rows["good.wav"]["label"] == "spoof"
    assert rows["empty.wav"]["status"] == "error: empty file (0 bytes)"
    assert rows["missing.wav"]["status"] == "error: file not found"
    assert rows["silent.wav"]["status"].startswith("error: silent")
    assert float(rows["silent.wav"]["duration"]) == pytest.approx(1.0)
    for name in ("text.flac", "truncated.wav"):
        assert rows[name]["status"].startswith("error: ") and rows[name]["spoof_prob"] == ""
    assert "empty.wav" in stdout and "5 of 6" in err

    code, _, _ = run_predict(capsys, "--run", tiny_run, empty, text, "--out", out)
    assert code == 3                                               # every file failed


def test_run_folder_and_input_problems_exit_2_with_a_message(tiny_run, tmp_path, capsys):
    clip = write_wave(tmp_path / "clip.wav", bonafide_wave(1.0, 61))
    code, _, err = run_predict(capsys, "--run", tmp_path / "no_such_run", clip)
    assert code == 2 and "no_such_run" in err and "does not exist" in err
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model.json").write_bytes((tiny_run / "model.json").read_bytes())
    code, _, err = run_predict(capsys, "--run", partial, clip)
    assert code == 2 and "incomplete" in err and "complete.json" in err      # training never finished
    runfolder.mark_complete(partial)
    code, _, err = run_predict(capsys, "--run", partial, clip)
    assert code == 2 and "model.safetensors" in err
    (partial / "model.json").unlink()
    (partial / "model.safetensors").write_bytes((tiny_run / "model.safetensors").read_bytes())
    code, _, err = run_predict(capsys, "--run", partial, clip)
    assert code == 2 and "model.json" in err
    empty_folder = tmp_path / "nothing_here"
    empty_folder.mkdir()
    (empty_folder / "readme.txt").write_text("no audio")
    code, _, err = run_predict(capsys, "--run", tiny_run, empty_folder)
    assert code == 2 and "no audio files" in err
    with pytest.raises(SystemExit) as usage:
        predict.main(["--run", str(tiny_run), str(clip), "--hop", "0"])
    assert usage.value.code == 2


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as done:
        predict.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "Exit status" in text and "3  every file failed" in text and "--trust-pickle" in text


def test_command_line_exit_status_from_a_real_process(tiny_run, tmp_path):
    good = write_wave(tmp_path / "good.wav", bonafide_wave(1.0, 71))
    bad = tmp_path / "bad.wav"
    bad.write_text("garbage")
    done = subprocess.run([sys.executable, "-m", "classify.predict", "--run", str(tiny_run), str(good), str(bad),
                           "--format", "csv"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    rows = {Path(r["path"]).name: r for r in csv.DictReader(done.stdout.splitlines())}
    assert rows["good.wav"]["label"] == "bonafide" and rows["bad.wav"]["status"].startswith("error:")


# ---------------------------------------------------------------- pickle-only runs

class _Mkdir:
    """Unpickling this creates a folder: it stands for any code a tampered export.pkl would run."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_pickle_only_run_is_refused_before_anything_is_unpickled(tiny_run, tmp_path, capsys):
    run = tmp_path / "pickle_run"
    run.mkdir()
    marker = tmp_path / "code_ran"
    torch.save(_Mkdir(marker), run / "export.pkl")
    (run / "model.json").write_bytes((tiny_run / "model.json").read_bytes())
    runfolder.mark_complete(run)
    clip = write_wave(tmp_path / "clip.wav", bonafide_wave(1.0, 81))
    code, out, err = run_predict(capsys, "--run", run, clip)
    assert code == 2 and not marker.exists()
    assert "export.pkl" in err and "--trust-pickle" in err and "executes" in err
    # with --trust-pickle the file is unpickled (its code runs: the warning was right) and, holding no
    # Learner, is reported as unusable
    code, out, err = run_predict(capsys, "--run", run, clip, "--trust-pickle")
    assert marker.exists() and code == 2 and "WARNING" in err and "Learner" in err


def test_trusted_fastai_export_scores_like_the_safetensors_run(tiny_run, tmp_path, capsys):
    from fastai.data.core import Datasets
    from fastai.data.transforms import ItemGetter
    from fastai.learner import Learner
    model, _ = model_io.load_model(tiny_run)
    items = [(torch.zeros(3, *SPEC.image_shape), 0)] * 4
    dls = Datasets(items, tfms=[[ItemGetter(0)], [ItemGetter(1)]], splits=([0, 1], [2, 3])).dataloaders(bs=2)
    run = tmp_path / "exported"
    run.mkdir()
    Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), path=run).export("export.pkl")
    (run / "model.json").write_bytes((tiny_run / "model.json").read_bytes())
    runfolder.mark_complete(run)
    clips = [write_wave(tmp_path / "b.wav", bonafide_wave(1.5, 91)), write_wave(tmp_path / "s.wav", spoof_wave(1.0, 91))]
    code, out, err = run_predict(capsys, "--run", tiny_run, *clips, "--format", "json")
    assert code == 0
    safe = json.loads(out)["files"]
    code, out, err = run_predict(capsys, "--run", run, *clips, "--format", "json", "--trust-pickle")
    assert code == 0 and "WARNING" in err and "pickle" in err
    trusted = json.loads(out)["files"]
    for a, b in zip(safe, trusted):
        assert (a["label"], a["windows"]) == (b["label"], b["windows"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
