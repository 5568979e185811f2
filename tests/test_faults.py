"""Fault injection, conversion side: spec2img and the demo generator killed (SIGKILL, SIGINT) at chosen
moments, a full and a read-only disk, truncated audio, and misuse. Each test checks what the user sees
(exit status, message, no traceback), that nothing is lost or half-written, and that a rerun completes.
Signals are sent when a given number of images has appeared (no timing guesses); see tests/faultkit.py
for the small disk (a real tmpfs where it can be mounted, else an emulation at Python's file layer)."""
import csv
import signal
import sys
import time

import numpy as np
import pytest
from audiogen import write_tone
from faultkit import (SMALL_SPEC, Command, SmallDisk, assert_no_traceback, can_mount_tmpfs, children_of,
                      count_files, module_command, python_env, run, wait_gone)

from spec2img.__main__ import main as spec2img_main
from spec2img.fileio import EXIT_WRITE_FAILED, stale_parts

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc: Linux")
N_CLIPS = 40                    # per run: enough that a kill lands mid-way, small enough to convert in seconds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folders-layout dataset of 1 s tones (bonafide low, spoof high) and its uninterrupted conversion."""
    root = tmp_path_factory.mktemp("corpus")
    for i in range(N_CLIPS // 2):
        write_tone(root / "data" / "bonafide" / f"b{i:02d}.wav", seconds=1.0, freq=200 + 10 * i)
        write_tone(root / "data" / "spoof" / f"s{i:02d}.wav", seconds=1.0, freq=3000 + 50 * i)
    reference = root / "reference"
    done = run(convert_command(root / "data", reference, workers=1), python_env())
    assert done.returncode == 0, done.stderr
    return root / "data", reference


def convert_command(data, out, workers=2, *extra):
    return module_command("spec2img", data, "--out", out, "--workers", workers, *SMALL_SPEC, *extra)


def png_bytes(images):
    return {p.relative_to(images).as_posix(): p.read_bytes() for p in sorted(images.rglob("*.png"))
            if "audit" not in p.parts}


def assert_same_set(images, reference):
    """The images and manifest equal those of an uninterrupted conversion, byte for byte."""
    assert png_bytes(images) == png_bytes(reference)
    assert (images / "manifest.csv").read_text() == (reference / "manifest.csv").read_text()
    assert not stale_parts(images, recursive=True)


def every_png_decodes(images):
    from PIL import Image
    for path in images.rglob("*.png"):
        with Image.open(path) as image:
            image.load()
            assert image.size == (50, 32), path


@pytest.fixture
def small_disk(tmp_path, request):
    """A 16 MB disk: a real tmpfs when it can be mounted here, else the emulation (param "emulated" forces it)."""
    real = getattr(request, "param", "best") != "emulated" and can_mount_tmpfs(tmp_path / "probe")
    if getattr(request, "param", "") == "best" and not real:
        pytest.skip("no tmpfs can be mounted here: the emulated case covers it")
    disk = SmallDisk(tmp_path / "disk", 16 * 2**20, real)
    yield disk
    disk.close()


# ---------------------------------------------------------------- kill -9 and Ctrl-C

@pytest.mark.slow
def test_kill_9_ends_the_workers_at_once_and_a_rerun_completes_the_same_set(corpus, tmp_path):
    data, reference = corpus
    images = tmp_path / "images"
    cmd = Command(convert_command(data, images), tmp_path, python_env(), "convert")
    cmd.wait_until(lambda: count_files(images, "*.png") >= 3, what="3 images written")
    workers = children_of(cmd.pid)
    assert len(workers) == 2
    cmd.send(signal.SIGKILL)
    assert cmd.finish() == -signal.SIGKILL
    assert wait_gone(workers, timeout=2.0) == []          # the kernel ended them with their parent
    written = count_files(images, "*.png")
    time.sleep(1.0)
    assert count_files(images, "*.png") == written        # nobody writes on
    assert_no_traceback(cmd.stderr)
    every_png_decodes(images)

    again = run(convert_command(data, images), python_env())
    assert again.returncode == 0, again.stderr
    assert f"{N_CLIPS} converted, 0 skipped" in again.stdout
    assert_same_set(images, reference)


@pytest.mark.slow
def test_ctrl_c_stops_with_status_130_and_no_temporary_file(corpus, tmp_path):
    data, reference = corpus
    images = tmp_path / "images"
    cmd = Command(convert_command(data, images), tmp_path, python_env(), "convert")
    cmd.wait_until(lambda: count_files(images, "*.png") >= 3, what="3 images written")
    workers = children_of(cmd.pid)
    cmd.send(signal.SIGINT)
    assert cmd.finish() == 130
    assert "interrupted: finished images are kept; run the same command again to resume" in cmd.stderr
    assert_no_traceback(cmd.stderr, cmd.stdout)
    assert wait_gone(workers) == []
    assert not stale_parts(images, recursive=True)
    every_png_decodes(images)
    again = run(convert_command(data, images), python_env())
    assert again.returncode == 0 and "clips already done" in again.stdout
    assert_same_set(images, reference)


@pytest.mark.slow
def test_the_demo_generators_workers_end_with_it(tmp_path):
    folder = tmp_path / "demo"
    cmd = Command(module_command("spec2img.demo", folder, "--clips-per-class", 24, "--speakers", 4,
                                 "--workers", 2), tmp_path, python_env(), "demo")
    cmd.wait_until(lambda: count_files(folder, "*.wav") >= 2, what="2 clips written")
    workers = children_of(cmd.pid)
    assert workers
    cmd.send(signal.SIGKILL)
    cmd.finish()
    assert wait_gone(workers, timeout=2.0) == []
    assert_no_traceback(cmd.stderr)
    again = run(module_command("spec2img.demo", folder, "--clips-per-class", 24, "--speakers", 4,
                               "--workers", 2), python_env())
    assert again.returncode == 0 and "synthetic demo corpus ready: 48 clips" in again.stdout


# ---------------------------------------------------------------- full and read-only disks

@pytest.mark.slow
@pytest.mark.parametrize("small_disk", ["best", "emulated"], indirect=True)
def test_a_full_disk_stops_with_a_summary_and_a_rerun_after_freeing_space_completes(corpus, small_disk):
    data, reference = corpus
    images = small_disk.path / "images"
    sizes = [p.stat().st_size for p in sorted(reference.rglob("*.png")) if "audit" not in p.parts]
    # room for spec.json, the lock, the manifest part and about half the images
    small_disk.fill(free=small_disk.footprint(sizes[:len(sizes) // 2] + [4096] * 3))
    stopped = run(convert_command(data, images), small_disk.env())
    assert stopped.returncode == EXIT_WRITE_FAILED, (small_disk.kind, stopped.stdout, stopped.stderr)
    assert_no_traceback(stopped.stdout, stopped.stderr)
    assert f"stopped after" in stopped.stdout and f"of {N_CLIPS} clips" in stopped.stdout
    assert f"error: writing into {images} failed: cannot write {images}/" in stopped.stderr
    assert "No space left on device" in stopped.stderr
    assert "free space on that disk (or write elsewhere), then run the same command again" in stopped.stderr
    assert not stale_parts(images, recursive=True)       # no temporary file left behind
    every_png_decodes(images)
    kept = count_files(images, "*.png")
    assert 0 < kept < N_CLIPS

    small_disk.free_space()
    again = run(convert_command(data, images), small_disk.env())
    assert again.returncode == 0, again.stderr
    assert f"{N_CLIPS - kept} images written, {kept} clips already done" in again.stdout
    assert_same_set(images, reference)


@pytest.mark.slow
def test_a_read_only_output_stops_at_once_and_works_once_writable(corpus, small_disk):
    data, reference = corpus
    images = small_disk.path / "images"
    small_disk.set_read_only(True)
    refused = run(convert_command(data, images), small_disk.env())
    assert refused.returncode == EXIT_WRITE_FAILED
    assert_no_traceback(refused.stdout, refused.stderr)
    assert "error: nothing was converted: cannot write" in refused.stderr
    assert "Read-only file system" in refused.stderr and "remount it writable, or write elsewhere" in refused.stderr
    small_disk.set_read_only(False)
    again = run(convert_command(data, images), small_disk.env())
    assert again.returncode == 0, again.stderr
    assert_same_set(images, reference)


# ---------------------------------------------------------------- truncated audio in conversion

def test_truncated_wav_flac_mp3_are_skipped_with_both_lengths_and_the_decoded_duration(tmp_path, capsys):
    src = tmp_path / "src"
    for label in ("bonafide", "spoof"):
        for i in range(3):
            write_tone(src / label / f"ok{i}.wav", seconds=1.0, freq=300 + 2000 * (label == "spoof") + 50 * i)
    cut = {}
    for ext in ("wav", "flac", "mp3"):
        path = write_tone(src / "spoof" / f"cut_{ext}.{ext}", seconds=3.0, freq=1000)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 3])
        cut[f"spoof__cut_{ext}"] = ext
    out = tmp_path / "images"
    assert spec2img_main([str(src), "--out", str(out), "--workers", "1", *SMALL_SPEC]) == 0
    text = capsys.readouterr().out
    assert f"6 converted, 3 skipped" in text
    with open(out / "manifest.csv", newline="") as f:
        rows = {r["clip_id"]: r for r in csv.DictReader(f)}
    for clip_id in cut:
        row = rows[clip_id]
        assert row["status"].startswith("skipped: truncated: header says 3.00 s, decoded "), row
        decoded = float(row["status"].rsplit("decoded ", 1)[1].split(" s")[0])
        assert float(row["duration"]) == pytest.approx(decoded, abs=0.006)     # the decoded duration
        assert 0.5 < decoded < 1.2 and row["image"] == ""
        assert f"skipped {clip_id} " in text


# ---------------------------------------------------------------- misuse: a message and an exit status

@pytest.mark.parametrize("args, message", [
    (["--hop-length", "0"], "hop_length=0 must be positive"),
    (["--top-db", "inf"], "top_db=inf must be a finite number"),
    (["--duration", "nan"], "duration=nan must be a finite number"),
    (["--workers", "-1"], "--workers must be >= 0"),
])
def test_nonsense_settings_stop_with_status_2_and_a_message(tmp_path, capsys, args, message):
    src = tmp_path / "src"
    write_tone(src / "bonafide" / "a.wav", seconds=1.0)
    assert spec2img_main([str(src), "--out", str(tmp_path / "images"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "images").exists()


def test_out_pointing_at_a_file_is_refused_with_status_2(tmp_path, capsys):
    src = tmp_path / "src"
    write_tone(src / "bonafide" / "a.wav", seconds=1.0)
    write_tone(src / "spoof" / "b.wav", seconds=1.0, freq=3000)
    target = tmp_path / "images.zip"
    target.write_bytes(b"not a folder")
    assert spec2img_main([str(src), "--out", str(target), *SMALL_SPEC]) == 2
    assert f"--out {target} is a file, not a folder" in capsys.readouterr().err
    assert target.read_bytes() == b"not a folder"


def test_unreadable_and_non_audio_files_are_reported_by_their_cause(tmp_path, capsys, monkeypatch):
    src = tmp_path / "src"
    for i in range(2):
        write_tone(src / "bonafide" / f"a{i}.wav", seconds=1.0)
        write_tone(src / "spoof" / f"b{i}.wav", seconds=1.0, freq=3000)
    (src / "spoof" / "notes.flac").write_text("speaker 12, session 3: recorded outdoors\n")
    locked = write_tone(src / "spoof" / "locked.flac", seconds=1.0, freq=3000)
    real_open = open

    def refuse_locked(file, *args, **kwargs):   # a file this user may not read (root reads any, so emulated)
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse_locked)
    out = tmp_path / "images"
    assert spec2img_main([str(src), "--out", str(out), "--workers", "1", *SMALL_SPEC]) == 0
    text = capsys.readouterr().out
    assert "skipped spoof__notes " in text and "not audio: a text file (starts with 'speaker 12" in text
    assert "zero-length" not in text
    assert "skipped spoof__locked " in text and "permission denied" in text and "System error" not in text


def test_a_disk_full_message_names_the_file_and_leaves_no_temporary(tmp_path):
    """The one writer's failure path, in process: the temporary is removed, the error names the final file."""
    import errno
    from spec2img import fileio
    target = tmp_path / "out" / "scores.csv"
    with pytest.raises(fileio.OutputWriteError) as caught:
        with fileio.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value) == f"cannot write {target}: No space left on device"
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert list((tmp_path / "out").iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(fileio.OutputWriteError, match=f"cannot write {blocker}"):
        fileio.write_atomic(blocker / "a.json", "{}")
    with pytest.raises(fileio.OutputWriteError, match="is a file, not a folder"):
        fileio.check_writable_folder(blocker / "runs")
