"""The synthetic demo corpus: seeded bytes, every system, valid audio, manifest = files, resumable, refusals."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spec2img import demo
from spec2img.config import SpecConfig
from spec2img.features import clip_to_image
from spec2img.fileio import temporary_path

SMALL = demo.DemoConfig(clips_per_class=8, speakers=2, seed=3)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _manifest(folder: Path) -> list[dict]:
    with open(folder / demo.MANIFEST, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "corpus"
    demo.generate_corpus(folder, SMALL, workers=1, log=lambda m: None)
    return folder


def test_same_seed_gives_same_bytes_with_any_number_of_workers(corpus, tmp_path):
    again = tmp_path / "again"
    demo.generate_corpus(again, SMALL, workers=2, log=lambda m: None)
    assert _files(again) == _files(corpus)
    seed4 = demo.DemoConfig(clips_per_class=8, speakers=2, seed=4)
    bona4, _ = demo.utterance_waves(seed4, demo.plan_corpus(seed4)[0])
    bona3, _ = demo.utterance_waves(SMALL, demo.plan_corpus(SMALL)[0])
    assert bona4.shape != bona3.shape or not np.allclose(bona4, bona3)


def test_manifest_rows_match_the_files_and_cover_every_system(corpus):
    rows = _manifest(corpus)
    assert list(rows[0]) == ["file", "label", "system", "speaker"]
    wavs = {p.relative_to(corpus).as_posix() for p in (corpus / demo.AUDIO_DIR).rglob("*") if p.is_file()}
    assert {r["file"] for r in rows} == wavs and len(rows) == len(wavs) == 16
    assert Counter(r["label"] for r in rows) == {"bonafide": 8, "spoof": 8}
    assert Counter(r["system"] for r in rows if r["label"] == "spoof") == {s: 2 for s in demo.SYSTEMS}
    assert all(r["system"] == "" for r in rows if r["label"] == "bonafide")
    assert {r["speaker"] for r in rows} == {"F01", "M01"}
    bonafide = {Path(r["file"]).stem: r["speaker"] for r in rows if r["label"] == "bonafide"}
    for r in rows:                 # a spoof keeps the speaker of the utterance it was made from
        if r["label"] == "spoof":
            assert bonafide[Path(r["file"]).stem.rsplit("_", 1)[0]] == r["speaker"]
    readme = (corpus / demo.README_FILE).read_text()
    assert readme.startswith("SYNTHETIC") and "--seed 3" in readme
    assert json.loads((corpus / demo.SETTINGS_FILE).read_text())["seed"] == 3


def test_clips_are_valid_16k_mono_2_to_4_s_unclipped_and_level_matched(corpus):
    lengths = {}
    for r in _manifest(corpus):
        info = sf.info(str(corpus / r["file"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 2.0 <= info.duration <= 4.0
        wave, _ = sf.read(str(corpus / r["file"]), dtype="float64")
        assert np.all(np.isfinite(wave)) and np.max(np.abs(wave)) < 0.99
        rms_db = 20 * np.log10(np.sqrt(np.mean(wave ** 2)))
        assert -28.5 <= rms_db <= -23.5, r["file"]
        lengths.setdefault(r["speaker"] + Path(r["file"]).stem.split("_")[1], set()).add(info.frames)
    assert all(len(v) == 1 for v in lengths.values())        # a spoof is exactly as long as its source


def test_every_spoofing_system_changes_the_spectrogram(corpus):
    cfg = SpecConfig()
    rows = _manifest(corpus)
    source = {Path(r["file"]).stem: r["file"] for r in rows if r["label"] == "bonafide"}
    change = {}
    for r in rows:
        if r["label"] != "spoof":
            continue
        bona = clip_to_image(sf.read(str(corpus / source[Path(r["file"]).stem.rsplit("_", 1)[0]]),
                                     dtype="float32")[0], cfg).astype(float)
        spoof = clip_to_image(sf.read(str(corpus / r["file"]), dtype="float32")[0], cfg).astype(float)
        sound = bona > 30                                       # within ~70 dB of the clip's peak
        change.setdefault(r["system"], []).append(np.mean(np.abs(spoof - bona)[sound]) * 80 / 255)
    assert set(change) == set(demo.SYSTEMS)
    for system, db in change.items():                           # mean |Δ| in dB (1 pixel level = 0.31 dB)
        assert np.mean(db) > 2.0, (system, db)


def test_rerun_is_a_no_op_and_interrupted_run_is_completed(tmp_path):
    folder = tmp_path / "corpus"
    cfg = demo.DemoConfig(clips_per_class=4, speakers=1, seed=0)
    demo.generate_corpus(folder, cfg, workers=1, log=lambda m: None)
    before = _files(folder)
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    messages = []
    summary = demo.generate_corpus(folder, cfg, workers=1, log=messages.append)
    assert summary["written"] == 0 and "nothing to do" in messages[-1] and "synthetic" in messages[-1]
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamps

    # as if killed mid-run: two clips and the manifest missing, a half-written temporary file left behind
    (folder / "audio/bonafide/F01_u001.wav").unlink()
    (folder / "audio/codec/F01_u002_codec.wav").unlink()
    (folder / demo.MANIFEST).unlink()
    temporary_path(folder / "audio/lpc/F01_u003_lpc.wav").write_bytes(b"RIFF")
    summary = demo.generate_corpus(folder, cfg, workers=1, log=lambda m: None)
    assert summary["written"] == 2
    assert _files(folder) == before


def test_a_truncated_clip_is_rewritten(tmp_path):
    folder = tmp_path / "corpus"
    cfg = demo.DemoConfig(clips_per_class=4, speakers=1, seed=0)
    demo.generate_corpus(folder, cfg, workers=1, log=lambda m: None)
    clip = folder / "audio/bonafide/F01_u000.wav"
    good = clip.read_bytes()
    clip.write_bytes(good[:1000])
    assert demo.generate_corpus(folder, cfg, workers=1, log=lambda m: None)["written"] == 1
    assert clip.read_bytes() == good


def test_other_settings_or_foreign_folder_are_refused_with_what_to_do(tmp_path):
    folder = tmp_path / "corpus"
    demo.generate_corpus(folder, demo.DemoConfig(clips_per_class=4, speakers=1, seed=0), workers=1,
                         log=lambda m: None)
    seed1 = demo.DemoConfig(clips_per_class=4, speakers=1, seed=1)
    with pytest.raises(demo.DemoError, match="--overwrite"):
        demo.generate_corpus(folder, seed1, workers=1, log=lambda m: None)
    demo.generate_corpus(folder, seed1, workers=1, overwrite=True, log=lambda m: None)
    assert json.loads((folder / demo.SETTINGS_FILE).read_text())["seed"] == 1

    mine = tmp_path / "my_recordings"
    mine.mkdir()
    (mine / "keep.wav").write_bytes(b"precious")
    with pytest.raises(demo.DemoError, match="not empty"):
        demo.generate_corpus(mine, seed1, workers=1, log=lambda m: None)
    assert sorted(p.name for p in mine.iterdir()) == ["keep.wav"]


def test_default_plan_is_balanced_over_speakers_and_systems():
    cfg = demo.DemoConfig()
    clips = demo.corpus_clips(cfg)
    spoofs = [c for c in clips if c.label == "spoof"]
    assert len(clips) == 2 * cfg.clips_per_class == 400
    assert Counter(c.system for c in spoofs) == {s: cfg.clips_per_class // len(demo.SYSTEMS) for s in demo.SYSTEMS}
    assert len({c.speaker for c in clips}) == cfg.speakers
    for speaker in {c.speaker for c in clips}:                  # each speaker is spoofed by every system
        assert {c.system for c in spoofs if c.speaker == speaker} == set(demo.SYSTEMS)
    assert len({c.clip_id for c in clips}) == len(clips)
    seconds = [u.n_samples / cfg.sample_rate for u in demo.plan_corpus(cfg)]
    assert 2.0 <= min(seconds) and max(seconds) <= 4.0


def test_a_worker_killed_on_an_utterance_stops_with_what_to_do_and_the_rerun_finishes(tmp_path, capsys,
                                                                                       monkeypatch):
    """The OOM killer taking a worker used to leave the generator waiting forever."""
    import multiprocessing
    import os
    import signal
    from spec2img.demo import corpus
    folder, parent, real = tmp_path / "corpus", os.getpid(), corpus._make_utterance
    args = [str(folder), "--clips-per-class", "8", "--speakers", "2", "--seed", "3", "--workers", "2"]

    def killed(job):
        if "u003" in job[3][0] and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(job)
    with monkeypatch.context() as m:
        m.setattr(corpus, "pool_context", lambda: multiprocessing.get_context("fork"))
        m.setattr(corpus, "_make_utterance", killed)                # forked workers inherit it
        assert demo.main(args) == 2
    err = capsys.readouterr().err
    assert "a worker process died writing" in err and "u003" in err and "(killed by SIGKILL)" in err
    assert "run the same command again" in err and not (folder / demo.MANIFEST).exists()
    assert demo.main(args) == 0
    assert _files(folder) == _files(_small_corpus(tmp_path / "reference"))


def _small_corpus(folder: Path) -> Path:
    demo.generate_corpus(folder, SMALL, workers=1, log=lambda m: None)
    return folder


def test_command_line_writes_the_corpus_and_rejects_bad_settings(tmp_path, capsys):
    folder = tmp_path / "cli"
    assert demo.main([str(folder), "--clips-per-class", "4", "--speakers", "2", "--workers", "1"]) == 0
    assert len(_manifest(folder)) == 8
    assert "synthetic" in capsys.readouterr().out
    assert demo.main([str(tmp_path / "bad"), "--clips-per-class", "2"]) == 2
    err = capsys.readouterr().err
    assert "--clips-per-class" in err and "synthetic" in err


def test_spec2img_reads_the_corpus_as_a_csv_manifest_with_speakers(corpus):
    datasets = pytest.importorskip("spec2img.datasets")
    assert datasets.detect_layout(corpus) == "csv"
    rows = list(datasets.iter_rows(corpus, "auto", log=lambda m: None))
    assert len(rows) == 16 and all(r.path.is_file() for r in rows)
    assert {r.system for r in rows if r.label == "spoof"} == set(demo.SYSTEMS)
    assert {r.speaker for r in rows} == {"F01", "M01"}
