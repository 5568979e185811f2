"""Conversion stage: PNG tree, manifest, spec.json, resume, bad files, settings guard, shards, augmentation."""
import csv
import json
import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiogen import write_tone
from PIL import Image

from spec2img import SpecConfig, convert
from spec2img.convert import (ConvertOptions, OutputFolderError, convert_rows, png_is_valid, shard_of)
from spec2img.manifest import COLUMNS, CONTRACT_COLUMNS, read_rows
from spec2img.rows import ClipRow
from spec2img.fileio import stale_parts, temporary_path

CFG = SpecConfig(duration=1.0, n_mels=64)          # small images keep the tests fast
ONE = ConvertOptions(workers=1, progress=False)


def make_rows(root: Path, n=6, splits=("train", "val", "test")) -> list[ClipRow]:
    """n good clips alternating labels, with given splits, as an adapter would yield them."""
    rows = []
    for i in range(n):
        label = ("bonafide", "spoof")[i % 2]
        path = write_tone(root / "audio" / f"clip{i}.wav", seconds=0.5 + 0.1 * i, freq=300 + 150 * i)
        rows.append(ClipRow(f"clip{i}", path, label, splits[i % len(splits)], "" if i % 2 == 0 else "A07",
                            f"spk{i % 3}"))
    return rows


def run(rows, out, opts=ONE, cfg=CFG, source=None):
    return convert_rows(rows, out, cfg, opts, source or out.parent / "audio", "csv", log=lambda *_: None)


def pngs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.png"))
            if "audit" not in p.parts}


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*.png")}


def manifest(out: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for r in read_rows(out / "manifest.csv")}


def test_converts_a_small_dataset(tmp_path):
    rows = make_rows(tmp_path)
    out = tmp_path / "images"
    summary = run(rows, out)
    assert summary.converted == 6 and not summary.skipped and summary.written == 6
    for row in rows:
        png = out / row.split / row.label / f"{row.clip_id}.png"
        with Image.open(png) as image:
            assert image.mode == "L" and image.size == (CFG.frames, CFG.n_mels)
    with open(out / "manifest.csv", newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header[:len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS and tuple(header) == COLUMNS
    m = manifest(out)
    assert set(m) == {r.clip_id for r in rows}
    r3 = m["clip3"]
    assert (r3["label"], r3["split"], r3["system"], r3["speaker"], r3["status"]) == ("spoof", "train", "A07", "spk0", "ok")
    assert r3["image"] == "train/spoof/clip3.png" and Path(r3["path"]) == rows[3].path.absolute()
    assert float(r3["duration"]) == pytest.approx(0.8) and r3["sample_rate"] == "16000" and r3["channels"] == "1"
    assert float(r3["peak_dbfs"]) == pytest.approx(20 * np.log10(0.3), abs=0.2)
    spec = json.loads((out / "spec.json").read_text())
    assert SpecConfig.from_dict(spec) == CFG
    assert spec["source"] == {"root": str((tmp_path / "audio").resolve()), "layout": "csv"}
    assert not stale_parts(out, recursive=True)


def test_rerun_changes_nothing(tmp_path):
    rows, out = make_rows(tmp_path), tmp_path / "images"
    run(rows, out)
    before, spec_time, table = mtimes(out), (out / "spec.json").stat().st_mtime_ns, manifest(out)
    summary = run(rows, out)
    assert summary.written == 0 and summary.reused == 6 and summary.converted == 6
    assert mtimes(out) == before
    assert (out / "spec.json").stat().st_mtime_ns == spec_time
    assert manifest(out) == table


def test_corrupt_png_and_stale_temp_files_are_redone(tmp_path):
    rows, out = make_rows(tmp_path), tmp_path / "images"
    run(rows, out)
    good = pngs(out)
    broken = out / "train" / "bonafide" / "clip0.png"
    broken.write_bytes(good["train/bonafide/clip0.png"][:200])          # truncated PNG
    stale = temporary_path(out / "val" / "spoof" / "clip1.png")
    stale.write_bytes(b"half an image")
    assert not png_is_valid(broken, CFG.image_shape)
    before = mtimes(out)
    summary = run(rows, out)
    assert summary.written == 1
    assert pngs(out) == good
    assert not stale.exists()
    after = mtimes(out)
    assert [k for k in after if after[k] != before[k]] == ["train/bonafide/clip0.png"]


def test_bad_files_are_skipped_with_reasons_and_the_rest_converted(tmp_path):
    rows = make_rows(tmp_path, n=4)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.wav").write_bytes(b"")
    (bad / "text.wav").write_text("this is not audio\n" * 50)
    flac = write_tone(bad / "whole.flac", seconds=2.0)
    (bad / "truncated.flac").write_bytes(flac.read_bytes()[:300])
    nan = np.full(8000, np.nan, np.float32)
    sf.write(bad / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(bad / "silent.wav", np.zeros(8000, np.float32), 16000, subtype="PCM_16")
    names = ["empty", "text", "truncated", "nan", "silent"]
    paths = {n: next(bad.glob(f"{n}.*")) for n in names}
    rows += [ClipRow(n, paths[n], "spoof", "train") for n in names]
    summary = run(rows, tmp_path / "images")
    assert summary.converted == 4
    reasons = {clip_id: reason for clip_id, _, reason in summary.skipped}
    assert set(reasons) == set(names)
    assert "empty" in reasons["empty"]
    assert reasons["text"].startswith("not audio: a text file")
    assert "NaN" in reasons["nan"]
    assert reasons["silent"].startswith("silent")
    assert reasons["truncated"].startswith("truncated: header says 2.00 s, decoded 0.")
    m = manifest(tmp_path / "images")
    for n in names:
        assert m[n]["status"] == f"skipped: {reasons[n]}" and m[n]["image"] == ""
        assert not list((tmp_path / "images").rglob(f"{n}.png"))


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    rows, out = make_rows(tmp_path), tmp_path / "images"
    run(rows, out)
    other = SpecConfig(duration=1.0, n_mels=32)
    with pytest.raises(OutputFolderError, match=r"n_mels: 64 in the folder, 32 now") as error:
        run(rows, out, cfg=other)
    assert "--overwrite" in str(error.value)
    with pytest.raises(OutputFolderError, match="source root"):
        run(rows, out, source=tmp_path / "elsewhere")
    with pytest.raises(OutputFolderError, match="augment"):
        run(rows, out, opts=ConvertOptions(workers=1, progress=False, augment=1))
    moved = [ClipRow(r.clip_id, r.path, r.label, "test", r.system, r.speaker) for r in rows]
    with pytest.raises(OutputFolderError, match="splits"):
        run(moved, out)
    (out / "train" / "bonafide" / "extra.png").write_bytes(b"made with the old settings")
    run(rows, out, cfg=other, opts=ConvertOptions(workers=1, progress=False, overwrite=True))
    assert not (out / "train" / "bonafide" / "extra.png").exists()
    assert {Image.open(p).size for p in (out / "train").rglob("*.png")} == {(other.frames, 32)}
    assert json.loads((out / "spec.json").read_text())["n_mels"] == 32


def test_folder_with_images_but_no_spec_is_refused(tmp_path):
    out = tmp_path / "images"
    (out / "train").mkdir(parents=True)
    with pytest.raises(OutputFolderError, match="spec.json"):
        run(make_rows(tmp_path), out)


def test_shards_together_equal_one_run(tmp_path):
    rows = make_rows(tmp_path, n=7)
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    run(rows, whole)
    first = run(rows, sharded, opts=ConvertOptions(workers=1, progress=False, shard=(1, 2)))
    assert first.total == 4 and first.missing == 3
    second = run(rows, sharded, opts=ConvertOptions(workers=1, progress=False, shard=(2, 2)))
    assert second.total == 3 and second.missing == 0
    assert pngs(sharded) == pngs(whole)
    assert manifest(sharded) == manifest(whole)
    assert sorted(p.name for p in (sharded / "manifest.parts").glob("*.csv*")) == ["shard-1-of-2.csv", "shard-2-of-2.csv"]
    ids = [[r.clip_id for r in shard_of(rows, k, 3)] for k in (1, 2, 3)]
    assert sorted(sum(ids, [])) == sorted(r.clip_id for r in rows) and [len(i) for i in ids] == [3, 2, 2]


@pytest.mark.parametrize("start", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])  # spawn: macOS, or torch loaded
def test_pool_of_workers_gives_the_same_images(tmp_path, monkeypatch, start):
    rows = make_rows(tmp_path, n=8)
    run(rows, tmp_path / "one")
    monkeypatch.setattr(convert, "pool_context", lambda *torch_free: multiprocessing.get_context(start))
    run(rows, tmp_path / "two", opts=ConvertOptions(workers=2, progress=False))
    assert pngs(tmp_path / "one") == pngs(tmp_path / "two")


def test_a_clip_its_worker_dies_on_is_skipped_by_name_and_the_rerun_converts_it(tmp_path, monkeypatch):
    """A decoder that crashes the process (or the OOM killer) costs that clip only, and the run still ends."""
    rows, out = make_rows(tmp_path, n=8), tmp_path / "images"
    parent, real = os.getpid(), convert.convert_clip

    def crashing(task):
        if task[0].clip_id == "clip3" and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(task)
    with monkeypatch.context() as m:
        m.setattr(convert, "pool_context", lambda *torch_free: multiprocessing.get_context("fork"))
        m.setattr(convert, "convert_clip", crashing)                 # forked workers inherit it
        summary = run(rows, out, opts=ConvertOptions(workers=2, progress=False))
    reason = "the process converting this clip died (killed by SIGKILL)"
    assert summary.converted == 7 and summary.skipped == [("clip3", str(rows[3].path), reason)]
    assert manifest(out)["clip3"]["status"] == f"skipped: {reason}"
    summary = run(rows, out, opts=ConvertOptions(workers=2, progress=False))
    assert summary.converted == 8 and summary.written == 1 and not summary.skipped
    assert pngs(out) == pngs(run(rows, tmp_path / "one", opts=ONE) and tmp_path / "one")


def test_augmented_variants_only_in_train_and_reproducible(tmp_path):
    rows = make_rows(tmp_path, n=6)
    opts = ConvertOptions(workers=1, progress=False, augment=2, seed=3)
    summary = run(rows, tmp_path / "a", opts=opts)
    run(rows, tmp_path / "b", opts=opts)
    images = pngs(tmp_path / "a")
    assert images == pngs(tmp_path / "b")
    variants = sorted(k for k in images if "__aug" in k)
    train = [r for r in rows if r.split == "train"]
    assert variants == sorted(f"train/{r.label}/{r.clip_id}__aug{k}.png" for r in train for k in (1, 2))
    assert summary.augmented == 2 * len(train)
    for r in train:
        assert images[f"train/{r.label}/{r.clip_id}__aug1.png"] != images[f"train/{r.label}/{r.clip_id}.png"]
    m = manifest(tmp_path / "a")
    row = m[f"{train[0].clip_id}__aug1"]
    assert row["path"] == m[train[0].clip_id]["path"] and row["status"] == "ok" and row["augmentation"]
    assert len(m) == len(rows) + len(variants)


def test_interrupted_manifest_part_is_reused(tmp_path):
    """A run killed after some rows: its .part rows let the next run skip those clips."""
    rows, out = make_rows(tmp_path), tmp_path / "images"
    run(rows, out)
    part = out / "manifest.parts" / "shard-1-of-1.csv"
    text = part.read_text().splitlines(keepends=True)
    os.replace(part, part.with_name(part.name + ".part"))
    part.with_name(part.name + ".part").write_text("".join(text[:4]) + text[4][:20])   # cut mid-line
    (out / "manifest.csv").unlink()
    summary = run(rows, out)
    assert summary.written == 0 and summary.converted == 6
    assert len(manifest(out)) == 6


def test_a_second_run_of_the_same_shard_is_refused(tmp_path):
    rows, out = make_rows(tmp_path), tmp_path / "images"
    run(rows, out)
    with convert.shard_lock(out, 1, 1):
        with pytest.raises(OutputFolderError, match=r"shard 1/1 .* being converted by another run \(pid"):
            run(rows, out)
        run(rows, out, opts=ConvertOptions(workers=1, progress=False, shard=(1, 2)))   # another shard is fine
    assert run(rows, out).converted == 6                                              # released
