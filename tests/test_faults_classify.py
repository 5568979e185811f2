"""Fault injection, model side: classify.train, classify.evaluate and classify.predict killed (SIGINT,
SIGKILL) when a given file appears, on a full or read-only disk, and misused. Each test checks the exit
status, the message, that no traceback reaches the user, that nothing half-written is left, and that a
rerun completes. One tiny run (LCNN, 32 x 50 images, a few epochs on the CPU) serves the evaluate and
predict tests."""
import csv
import json
import signal
import sys
from pathlib import Path

import pytest
from audiogen import write_tone
from faultkit import (SMALL_SPEC, Command, SmallDisk, assert_no_traceback, can_mount_tmpfs, count_files,
                      module_command, python_env, run)

from classify import evaluate, predict, runfolder, train
from spec2img.fileio import EXIT_WRITE_FAILED, stale_parts

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc: Linux"),
              pytest.mark.slow]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Audio (1 s tones, 12 per class), its images, and a trained LCNN run folder."""
    from spec2img.__main__ import main as spec2img_main
    root = tmp_path_factory.mktemp("workspace")
    for i in range(12):
        write_tone(root / "audio" / "bonafide" / f"b{i:02d}.wav", seconds=1.0, freq=150 + 15 * i)
        write_tone(root / "audio" / "spoof" / f"s{i:02d}.wav", seconds=1.0, freq=4000 + 60 * i)
    images = root / "images"
    assert spec2img_main([str(root / "audio"), "--out", str(images), "--workers", "1", *SMALL_SPEC]) == 0
    result = train.train(train.TrainConfig(images=str(images), out=str(root / "runs"), arch="lcnn", epochs=1,
                                           bs=4, pretrained=False, workers=1), log=lambda _: None)
    return root, images, result.run_dir


def train_command(images, out, epochs=3):
    return module_command("classify.train", "--images", images, "--arch", "lcnn", "--no-pretrained",
                          "--epochs", epochs, "--bs", 4, "--workers", 1, "--out", out)


@pytest.fixture
def small_disk(tmp_path):
    disk = SmallDisk(tmp_path / "disk", 16 * 2**20, real=can_mount_tmpfs(tmp_path / "probe"))
    yield disk
    disk.close()


def run_folders(runs):
    return sorted(p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()) if runs.is_dir() else []


# ---------------------------------------------------------------- training

def test_training_interrupted_killed_and_out_of_space_then_a_rerun_completes(workspace, small_disk, tmp_path):
    _, images, _ = workspace
    runs = small_disk.path / "runs"

    def first_epoch_done(before=0):
        return lambda: count_files(runs, "history.csv") > before

    # Ctrl-C after the first epoch: status 130, a message, no traceback on the terminal
    cmd = Command(train_command(images, runs, epochs=2), tmp_path, small_disk.env(), "sigint")
    cmd.wait_until(first_epoch_done(), what="the first epoch")
    cmd.send(signal.SIGINT)
    assert cmd.finish() == 130
    assert "interrupted: this run folder stays unfinished" in cmd.stderr
    assert_no_traceback(cmd.stderr)
    assert not (runs / "latest").exists()

    # kill -9 after the first epoch: runs/latest still points to no unfinished run
    cmd = Command(train_command(images, runs, epochs=2), tmp_path, small_disk.env(), "sigkill")
    cmd.wait_until(first_epoch_done(before=1), what="the first epoch")
    cmd.send(signal.SIGKILL)
    assert cmd.finish() == -signal.SIGKILL
    assert not (runs / "latest").exists()

    # a full disk: status 4, the file and the cause named, no temporary left
    small_disk.fill(free=small_disk.footprint([30_000] * 4))   # room for the log, config and history only
    full = run(train_command(images, runs, epochs=1), small_disk.env())
    assert full.returncode == EXIT_WRITE_FAILED, (small_disk.kind, full.stderr[-2000:])
    assert_no_traceback(full.stderr)
    assert f"error: training stopped: cannot write {runs}/" in full.stderr
    assert "No space left on device" in full.stderr and "then train again" in full.stderr
    assert not any(stale_parts(folder) for folder in run_folders(runs))
    assert not (runs / "latest").exists()

    # space freed: the same command completes and runs/latest points to the finished run
    small_disk.free_space()
    done = run(train_command(images, runs, epochs=1), small_disk.env())
    assert done.returncode == 0, done.stderr
    latest = (runs / "latest").resolve()
    for name in ("model.safetensors", "model.json", "config.json", "history.csv", "export.pkl", "curves.png",
                 runfolder.COMPLETE):
        assert (latest / name).is_file(), name
    assert latest == run_folders(runs)[-1]
    assert [runfolder.is_complete(folder) for folder in run_folders(runs)] == [False, False, False, True]


def test_training_misuse_is_a_message(workspace, tmp_path):
    _, images, _ = workspace
    bad = tmp_path / "images"
    bad.mkdir()
    (bad / "spec.json").write_text("{\"sample_rate\": 16000,")            # cut short
    done = run(train_command(bad, tmp_path / "runs"), python_env())
    assert done.returncode == 1 and f"error: {bad / 'spec.json'} is not valid JSON" in done.stderr
    assert_no_traceback(done.stderr)
    assert not (tmp_path / "runs").exists()
    blocker = tmp_path / "runs.txt"
    blocker.write_text("")
    for settings, message in (({"workers": -1}, "--workers -1 must be >= 0"),
                              ({"out": str(blocker)}, f"--out {blocker} is a file")):
        with pytest.raises(ValueError, match=message):           # main prints it as "error: ..." and exits 1
            train.TrainConfig(images=str(images), arch="lcnn", pretrained=False, **settings).validate()


# ---------------------------------------------------------------- evaluation

def copy_run(run_dir, folder):
    import shutil
    target = folder / run_dir.name
    shutil.copytree(run_dir, target)
    return target


def test_evaluation_interrupted_killed_and_out_of_space_then_a_rerun_completes(workspace, small_disk, tmp_path):
    _, images, trained = workspace
    run_dir = copy_run(trained, small_disk.path)
    before = {p for p in run_dir.rglob("*")}
    wrote_something = lambda: any(p not in before for p in run_dir.rglob("*"))   # noqa: E731
    command = module_command("classify.evaluate", run_dir, "--images", images)

    cmd = Command(command, tmp_path, small_disk.env(), "sigint")
    cmd.wait_until(wrote_something, what="the first output file")
    cmd.send(signal.SIGINT)
    code = cmd.finish()
    if code != 0:                               # it may have finished between the file and the signal
        assert code == 130 and "interrupted" in cmd.stderr
    assert_no_traceback(cmd.stderr)

    cmd = Command(command, tmp_path, small_disk.env(), "sigkill")
    cmd.wait_until(lambda: count_files(run_dir, "*.part") == 0 and wrote_something(), what="an output")
    cmd.send(signal.SIGKILL)
    cmd.finish()

    small_disk.fill(free=small_disk.footprint([4000] * 6))
    full = run(command, small_disk.env())
    assert full.returncode == EXIT_WRITE_FAILED, (small_disk.kind, full.stderr[-2000:])
    assert_no_traceback(full.stderr)
    assert f"evaluation stopped: cannot write {run_dir}" in full.stderr and "No space left on device" in full.stderr
    assert not stale_parts(run_dir, recursive=True)

    small_disk.free_space()
    done = run(command, small_disk.env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert_no_traceback(done.stderr)
    report = next(run_dir.rglob("report.html"))
    metrics = json.loads(next(run_dir.rglob("metrics.json")).read_text())
    assert report.stat().st_size > 1000 and metrics["metrics"]["eer"]["value"] is not None


@pytest.mark.parametrize("argv, message", [
    (["--bs", "0"], "--bs 0 must be >= 1"),
    (["--bs", "-1"], "--bs -1 must be >= 1"),
    (["--top-k", "-2"], "--top-k -2 must be >= 0"),
    (["--audio-seconds", "-1"], "--audio-seconds -1.0 must be > 0"),
    (["--device", "nosuch"], "--device 'nosuch' is not a torch device"),
])
def test_evaluate_misuse_stops_with_status_2(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as stopped:
        evaluate.main([str(tmp_path), *argv])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


# ---------------------------------------------------------------- prediction

def test_prediction_out_of_space_or_read_only_is_a_message_and_a_rerun_completes(workspace, small_disk, tmp_path,
                                                                                  capsys):
    root, _, trained = workspace
    out = small_disk.path / "scores.csv"
    command = module_command("classify.predict", "--run", trained, root / "audio", "--out", out, "--no-progress")
    small_disk.fill(free=0)
    full = run(command, small_disk.env())
    assert full.returncode == EXIT_WRITE_FAILED and f"cannot write {out}" in full.stderr
    assert "No space left on device" in full.stderr
    assert_no_traceback(full.stderr)
    assert not out.exists() and not stale_parts(small_disk.path)
    small_disk.free_space()
    if small_disk.real:                  # a read-only mount is refused before any file is scored
        small_disk.set_read_only(True)
        assert predict.main(command[3:]) == EXIT_WRITE_FAILED
        err = capsys.readouterr().err
        assert f"cannot write {small_disk.path}: Read-only file system" in err and "file(s)" not in err
        small_disk.set_read_only(False)
    done = run(command, small_disk.env())
    assert done.returncode == 0, done.stderr
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == 24


def test_prediction_interrupted_stops_with_status_130(workspace, tmp_path):
    root, _, trained = workspace
    cmd = Command(module_command("classify.predict", "--run", trained, root / "audio", root / "audio",
                                 root / "audio", "--out", tmp_path / "scores.csv"), tmp_path, python_env(), "sigint")
    cmd.wait_until(lambda: "file(s)" in cmd.stderr, what="scoring to start")
    cmd.send(signal.SIGINT)
    code = cmd.finish()
    assert code in (130, 0)                     # 0: it finished before the signal arrived
    if code == 130:
        assert "interrupted" in cmd.stderr
    assert_no_traceback(cmd.stderr)


def test_a_killed_prediction_keeps_the_rows_it_had_scored_and_the_same_command_finishes(workspace, tmp_path):
    root, _, trained = workspace
    audio = tmp_path / "many"
    for i in range(30):
        write_tone(audio / f"clip{i:02d}.wav", seconds=2.0, freq=200 + 40 * i)
    out = tmp_path / "scores.csv"
    argv = ("classify.predict", "--run", trained, audio, "--out", out, "--bs", 1, "--no-progress")

    def part_rows() -> list[dict]:
        parts = list(tmp_path.glob("scores.csv.*.part"))
        if not parts:
            return []
        with open(parts[0], newline="") as f:
            return list(csv.DictReader(f))
    cmd = Command(module_command(*argv), tmp_path, python_env(), "sigkill")
    cmd.wait_until(lambda: len(part_rows()) >= 2, timeout=300, what="two scored rows in the part file")
    cmd.send(signal.SIGKILL)
    assert cmd.finish() == -signal.SIGKILL          # killed mid-way, not after the last file
    kept = [r for r in part_rows() if r["status"] == "ok" and r["spoof_prob"]]   # a torn last line aside
    assert not out.exists() and 2 <= len(kept) < 30
    done = run(module_command(*argv), python_env())
    assert done.returncode == 0, done.stderr
    assert f"{len(kept)} already scored" in done.stderr      # kept, not scored again
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["path"]).name for r in rows] == [f"clip{i:02d}.wav" for i in range(30)]
    assert not list(tmp_path.glob("scores.csv.*.part"))
    by_path = {r["path"]: r["spoof_prob"] for r in rows}
    assert all(by_path[r["path"]] == r["spoof_prob"] for r in kept if r["status"] == "ok")


def test_predict_misuse_stops_with_status_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        predict.main(["--run", str(tmp_path), str(tmp_path), "--device", "gpu0"])
    assert stopped.value.code == 2 and "--device 'gpu0' is not a torch device" in capsys.readouterr().err


def test_predict_gives_a_truncated_file_an_error_row_with_the_decoded_duration(workspace, tmp_path, capsys):
    root, _, trained = workspace
    for ext in ("wav", "flac", "mp3"):
        path = write_tone(tmp_path / f"cut_{ext}.{ext}", seconds=6.0, freq=300)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    write_tone(tmp_path / "whole.wav", seconds=2.0, freq=300)
    out = tmp_path / "scores.csv"
    assert predict.main(["--run", str(trained), str(tmp_path), "--out", str(out), "--no-progress"]) == 1
    with open(out, newline="") as f:
        rows = {r["path"].rsplit("/", 1)[1]: r for r in csv.DictReader(f)}
    assert rows["whole.wav"]["status"] == "ok"
    for ext in ("wav", "flac", "mp3"):
        row = rows[f"cut_{ext}.{ext}"]
        assert row["status"].startswith("error: truncated: header says 6.00 s, decoded "), row
        assert 2.5 < float(row["duration"]) < 3.1 and row["spoof_prob"] == ""
