"""The run-folder contract (classify.runfolder): a run is usable only once training marked it complete; a training
killed or failing mid-way leaves a folder that evaluation, prediction and runs/latest ignore, and say so."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import config, make_images, quiet

from classify import runfolder, train
from classify.runfolder import RunFolderError

REPO = Path(__file__).resolve().parents[1]


def _evaluate(run: Path, capsys) -> tuple[int, str]:
    from classify.evaluate import main
    code = main([str(run)])
    return code, capsys.readouterr().err


def _predict(run: Path, clip: Path, capsys) -> tuple[int, str]:
    from classify.predict import main
    code = main(["--run", str(run), str(clip), "--no-progress"])
    return code, capsys.readouterr().err


def test_a_training_that_fails_after_writing_its_model_leaves_an_ignored_incomplete_run(tmp_path, monkeypatch,
                                                                                      capsys):
    from audiogen import write_tone
    images = make_images(tmp_path / "images", n_train=8, n_val=4)
    runs = tmp_path / "runs"
    good = train.train(config(images, runs), log=quiet).run_dir
    assert runfolder.is_complete(good) and (runs / "latest").resolve() == good.resolve()

    def full_disk(*args, **kwargs):   # the last file of the run cannot be written
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(train, "export_learner", full_disk)
    with pytest.raises(OSError, match="No space"):
        train.train(config(images, runs, seed=1), log=quiet)
    broken = next(p for p in runs.iterdir() if p.name not in ("latest", good.name))
    assert (broken / "model.safetensors").is_file() and not runfolder.is_complete(broken)
    assert (runs / "latest").resolve() == good.resolve()         # latest still names the complete run

    with pytest.raises(RunFolderError, match="incomplete") as err:
        runfolder.check_run(broken)
    assert good.name in str(err.value)                           # and it says which run is usable
    code, err = _evaluate(broken, capsys)
    assert code == 2 and "incomplete" in err and "complete.json" in err and "Traceback" not in err
    clip = write_tone(tmp_path / "clip.wav", seconds=0.5)
    code, err = _predict(broken, clip, capsys)
    assert code == 2 and "incomplete" in err and "Traceback" not in err
    code, err = _predict(runs / "latest", clip, capsys)
    assert code == 0, err


@pytest.mark.slow
def test_a_killed_training_process_leaves_a_visibly_incomplete_run(tmp_path, capsys):
    images = make_images(tmp_path / "images", n_train=16, n_val=8)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "classify.train", "--images", str(images), "--arch", "simple_cnn",
                             "--no-pretrained", "--epochs", "500", "--bs", "8", "--workers", "1", "--out", str(runs)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    try:
        deadline = time.monotonic() + 240
        while not list(runs.glob("*/history.csv")):              # kill it once an epoch has been written
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "training wrote no epoch in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    [run] = [p for p in runs.iterdir() if p.is_dir()]
    assert (run / "config.json").is_file() and not (run / "complete.json").exists()
    assert not (runs / "latest").exists()                        # latest never points at an incomplete run
    code, err = _evaluate(run, capsys)
    assert code == 2 and "incomplete" in err and str(run) in err


def test_evaluating_several_runs_skips_the_incomplete_ones_and_says_so(tmp_path, capsys):
    import json
    import shutil

    from test_evaluate import build_run
    run = build_run(tmp_path / "made")
    runs = tmp_path / "runs"
    for k in range(3):
        shutil.copytree(run, runs / f"simple_cnn-s{k}")
    (runs / "simple_cnn-s2" / "complete.json").unlink()          # as a killed training leaves it
    from classify.evaluate import main
    code = main([str(runs / f"simple_cnn-s{k}") for k in range(3)] + ["--top-k", "1"])
    out, err = capsys.readouterr()
    assert code == 0 and "skipped" in err and "simple_cnn-s2" in err and "incomplete" in err
    agg = json.loads((runs / "aggregate-simple_cnn-2seeds.json").read_text())
    assert len(agg["runs"]) == 2 and not (runs / "simple_cnn-s2" / "report.html").exists()
    assert main([str(runs / "simple_cnn-s2")]) == 2
    assert "incomplete" in capsys.readouterr().err
