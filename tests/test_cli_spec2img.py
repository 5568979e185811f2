"""`python -m spec2img`: summary and exit codes, settings guard, shards, and a run killed part-way."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiogen import write_tone

from spec2img.__main__ import main
from spec2img.convert import png_is_valid
from spec2img.manifest import read_rows
from spec2img.fileio import stale_parts

SMALL = ["--duration", "1", "--n-mels", "64", "--workers", "1"]


def make_tree(root: Path, n: int = 6, seconds: float = 0.5) -> Path:
    """ROOT/real/*.wav and ROOT/fake/*.wav, the folders layout."""
    for i in range(n):
        write_tone(root / ("real" if i % 2 else "fake") / f"c{i:02d}.wav", seconds=seconds, freq=200 + 61 * i)
    return root


def test_summary_names_bad_files_and_writes_everything(tmp_path, capsys):
    src = make_tree(tmp_path / "src")
    (src / "fake" / "broken.wav").write_text("not audio at all")
    sf.write(src / "real" / "silence.wav", np.zeros(4000, np.float32), 16000)
    out = tmp_path / "images"
    assert main([str(src), "--out", str(out), *SMALL]) == 0
    text = capsys.readouterr().out
    assert "dataset layout: folders" in text
    assert f"6 converted, 2 skipped (list in {out / 'manifest.csv'})" in text
    assert "skipped fake__broken" in text and "not audio: a text file" in text
    assert "skipped real__silence" in text and "silent" in text
    assert len(list(out.glob("*/*/*.png"))) == 6
    spec = json.loads((out / "spec.json").read_text())
    assert spec["source"]["layout"] == "folders" and spec["n_mels"] == 64
    assert {r["split"] for r in read_rows(out / "manifest.csv")} <= {"train", "val", "test"}
    assert (out / "audit" / "audit.json").is_file() and (out / "audit" / "levels.png").is_file()


def test_exit_codes(tmp_path, capsys):
    bad = tmp_path / "bad"
    (bad / "real").mkdir(parents=True)
    (bad / "real" / "a.wav").write_bytes(b"")
    (bad / "fake").mkdir()
    (bad / "fake" / "b.wav").write_text("text")
    assert main([str(bad), "--out", str(tmp_path / "o1"), *SMALL]) == 1          # nothing converted
    assert "0 converted, 2 skipped" in capsys.readouterr().out
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o2"), *SMALL]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(bad), "--shard", "3/2"])
    assert exit_info.value.code == 2
    assert main([str(bad), "--out", str(tmp_path / "o3"), "--win-length", "1024", *SMALL]) == 2
    assert "win_length" in capsys.readouterr().err


def test_settings_mismatch_and_overwrite(tmp_path, capsys):
    src, out = make_tree(tmp_path / "src", n=4), tmp_path / "images"
    assert main([str(src), "--out", str(out), *SMALL]) == 0
    assert main([str(src), "--out", str(out), *SMALL, "--n-mels", "32"]) == 2
    err = capsys.readouterr().err
    assert "n_mels: 64 in the folder, 32 now" in err and "--overwrite" in err
    assert main([str(src), "--out", str(out), *SMALL, "--n-mels", "32", "--overwrite"]) == 0
    assert json.loads((out / "spec.json").read_text())["n_mels"] == 32
    assert all(png_is_valid(p, (32, 100)) for p in out.glob("*/*/*.png"))


def test_shards_through_the_cli(tmp_path, capsys):
    src, out = make_tree(tmp_path / "src", n=6), tmp_path / "images"
    assert main([str(src), "--out", str(out), *SMALL, "--shard", "2/2"]) == 0
    assert "3 clips of other shards are not converted yet" in capsys.readouterr().out
    assert not (out / "audit").exists()
    assert main([str(src), "--out", str(out), *SMALL, "--shard", "1/2"]) == 0
    assert len(read_rows(out / "manifest.csv")) == 6 and (out / "audit" / "audit.json").is_file()


def test_killed_conversion_resumes_to_the_complete_set(tmp_path):
    # 20-second images make each clip take ~0.1 s, so the run can be killed part-way
    src, out = make_tree(tmp_path / "src", n=16), tmp_path / "images"
    args = [str(src), "--out", str(out), "--duration", "20", "--workers", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "spec2img", *args], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(out.glob("*/*/*.png"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shape = (128, 2000)
    done = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*.png")}
    assert 3 <= len(done) < 16, "the run was not killed part-way; make the clips slower"
    assert all(png_is_valid(p, shape) for p in done)                  # never a half-written .png
    assert main(args) == 0
    final = list(out.glob("*/*/*.png"))
    assert len(final) == 16 and all(png_is_valid(p, shape) for p in final)
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())    # finished images were kept
    assert not stale_parts(out, recursive=True)
    rows = read_rows(out / "manifest.csv")
    assert len(rows) == 16 and all(r["status"] == "ok" for r in rows)


def test_front_end_trimming_and_augmentation_settings(tmp_path, capsys):
    src = make_tree(tmp_path / "src")
    click = np.zeros(32000, np.float32)
    click[16000:16200] = 0.5                                # 12 ms of sound in 2 s of silence
    sf.write(src / "real" / "click.wav", click, 16000)
    out = tmp_path / "images"
    args = [str(src), "--out", str(out), *SMALL, "--frontend", "lfcc", "--trim-silence", "--crop", "center",
            "--augment", "1", "--augment-kinds", "telephone,mp3"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "skipped real__click" in text and "trimming leaves 0.0" in text
    spec = json.loads((out / "spec.json").read_text())
    assert (spec["frontend"], spec["trim_silence"], spec["crop"], spec["image_height"]) == ("lfcc", True, "center", 60)
    assert spec["conversion"]["augment_kinds"] == ["telephone", "mp3"]
    augmented = [r["augmentation"] for r in read_rows(out / "manifest.csv") if r["augmentation"]]
    assert augmented and all(a.startswith(("telephone low_hz=", "mp3 kbps=")) for a in augmented)
    assert main(args[:-1] + ["rawboost"]) == 2              # other kinds: another image set
    assert "augment_kinds: ['telephone', 'mp3'] in the folder" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [
    (["--augment", "1", "--augment-kinds", "mp3,gsm"], "unknown augmentation kind 'gsm'"),
    (["--frontend", "cqt", "--sample-rate", "8000"], "cqt bins above Nyquist"),
    (["--frontend", "lfcc", "--n-lfcc", "40"], "n_lfcc=40 must be between 1 and lfcc_filters=20"),
])
def test_settings_that_cannot_work_stop_before_any_image(tmp_path, capsys, flags, message):
    src = make_tree(tmp_path / "src", n=2)
    assert main([str(src), "--out", str(tmp_path / "images"), *SMALL, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "images").exists()


def test_unknown_front_end_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--frontend", "gammatone"])
    assert exit_info.value.code == 2
    assert "--frontend: invalid choice: 'gammatone'" in capsys.readouterr().err


def test_a_folder_from_before_the_front_end_settings_resumes(tmp_path, capsys):
    src = make_tree(tmp_path / "src", n=4)
    out = tmp_path / "images"
    assert main([str(src), "--out", str(out), *SMALL]) == 0
    spec = json.loads((out / "spec.json").read_text())
    for key in ("frontend", "crop", "trim_silence", "trim_db", "cqt_bins", "n_lfcc"):
        del spec[key]                                       # as an older spec2img wrote it
    del spec["conversion"]["augment_kinds"]
    (out / "spec.json").write_text(json.dumps(spec))
    capsys.readouterr()
    assert main([str(src), "--out", str(out), *SMALL]) == 0
    assert "0 images written, 4 clips already done" in capsys.readouterr().out
