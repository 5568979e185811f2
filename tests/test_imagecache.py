"""Out-of-core training: the packed image cache (classify.imagecache) gives the memory path's batches for the same
seed, is chosen when the images exceed the memory budget, is rebuilt when a PNG or spec.json changes, and a killed
build leaves no cache that looks complete."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from fastai.torch_core import set_seed
from PIL import Image
from test_train import config, make_images, quiet

from classify import data, imagecache, train
from spec2img.fileio import stale_parts

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def batches(dl, n=None):
    return [(x.clone(), y.clone()) for x, y in list(dl)[:n]]


@pytest.mark.parametrize("balance", ["weights", "sampler"])
def test_cache_path_gives_the_memory_paths_batches_for_the_same_seed(tmp_path, balance):
    images = make_images(tmp_path / "images", n_train=22, n_val=10)
    paths = {}
    for loader in ("memory", "cache"):
        set_seed(7)
        dls, *_, summary = data.build_dataloaders(images, bs=4, device="cpu", loader=loader, balance=balance,
                                                  log=quiet)
        assert summary.loader == loader
        set_seed(7)                       # same draws for the shuffle and the on-device augmentation
        paths[loader] = (batches(dls.train), batches(dls.valid), dls.train.dataset.paths, dls.valid.dataset.paths)
    (mem_train, mem_valid, mem_tp, mem_vp), (c_train, c_valid, c_tp, c_vp) = paths["memory"], paths["cache"]
    assert c_tp == mem_tp and c_vp == mem_vp
    assert len(c_train) == len(mem_train) == 5 and len(c_valid) == len(mem_valid) == 3
    for (xc, yc), (xm, ym) in zip(c_train + c_valid, mem_train + mem_valid):
        assert xc.dtype == torch.float32 and xc.shape[1:] == (3, 32, 50)
        torch.testing.assert_close(xc, xm, rtol=0, atol=0)          # augmented batches, bit for bit
        assert torch.equal(yc, ym)
    assert (images / "cache").is_dir() and len(list((images / "cache").glob("*.u8"))) == 1


def test_the_cache_is_taken_when_the_images_exceed_the_memory_budget_and_training_runs_from_it(tmp_path):
    images = make_images(tmp_path / "images")
    messages = []
    result = train.train(config(images, tmp_path / "runs", memory_gb=1e-6), log=messages.append)
    cfg = json.loads((result.run_dir / "config.json").read_text())
    assert cfg["data"]["loader"] == "cache" and cfg["settings"]["memory_gb"] == 1e-6
    assert any("exceed the memory budget" in m for m in messages)
    assert result.history[-1]["roc_auc"] > 0.9                       # it learns from the cached batches
    raw, = (images / "cache").glob("*.u8")
    index = json.loads(raw.with_suffix(".json").read_text())
    pixels = np.memmap(raw, np.uint8, "r", shape=(index["images"], *index["shape"]))   # a plain memmap-able file
    row = index["splits"]["val"]["rows"][3]
    png = images / index["splits"]["val"]["paths"][3]
    assert np.array_equal(pixels[row], np.asarray(Image.open(png)))


def test_the_cache_is_rebuilt_when_a_png_or_spec_json_changes(tmp_path):
    images = make_images(tmp_path / "images", n_train=8, n_val=4)
    spec, spec_dict, found = data.scan_images(images, quiet)

    def build():
        cache = imagecache.open_cache(images, found, spec.image_shape, log=quiet)
        return cache.path, cache.path.stat().st_mtime_ns
    first, made = build()
    assert build() == (first, made)                                   # unchanged images: reused, not rewritten
    png = found["train"].paths[0]
    pixels = np.asarray(Image.open(png)).copy()
    pixels[:4] = 255
    Image.fromarray(pixels).save(png)
    second, _ = build()
    assert second != first and not first.exists()                     # a new key; the stale cache is deleted
    row = list(found["train"].paths).index(png)
    cache = imagecache.open_cache(images, found, spec.image_shape, log=quiet)
    read = imagecache.CachedImages.split_of(cache, "train", ["bonafide", "spoof"]).gather(np.array([row]))
    assert np.array_equal(read[0, 0].numpy(), pixels)                 # the new pixels are served
    doc = json.loads((images / "spec.json").read_text())
    doc["note"] = "edited"
    (images / "spec.json").write_text(json.dumps(doc))
    third, _ = build()
    assert third not in (first, second) and [p.name for p in (images / "cache").glob("*.u8")] == [third.name]


def test_a_png_that_fails_to_decode_is_left_out_of_the_cache_by_name(tmp_path):
    images = make_images(tmp_path / "images", n_train=8, n_val=4)
    broken = images / "train" / "spoof" / "spoof_001.png"
    broken.write_bytes(broken.read_bytes()[:60])                       # header intact, data cut
    messages = []
    dls, *_, summary = data.build_dataloaders(images, bs=4, device="cpu", loader="cache", log=messages.append)
    assert broken not in dls.train.dataset.paths and len(dls.train.dataset) == 7
    assert any(str(broken) in m for m in messages)
    assert summary.counts["train"] == {"bonafide": 4, "spoof": 3}


def test_a_read_only_images_folder_falls_back_to_the_datablock_path(tmp_path, monkeypatch):
    images = make_images(tmp_path / "images", n_train=8, n_val=4)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(imagecache, "_build", refuse)
    messages = []
    dls, *_, summary = data.build_dataloaders(images, bs=4, device="cpu", loader="cache", workers=0, log=messages.append)
    assert summary.loader == "datablock"
    assert any("cannot write the image cache" in m and "Permission denied" in m for m in messages)


@pytest.mark.slow
def test_a_killed_cache_build_leaves_no_cache_and_the_next_build_completes_it(tmp_path):
    images = make_images(tmp_path / "images", n_train=40, n_val=8)
    slow_build = ("import sys, time; from classify import data, imagecache; "
                  "imagecache.CHUNK = 4; decode = data.decode_images; "
                  "data.decode_images = lambda *a, **k: (time.sleep(0.4), decode(*a, **k))[1]; "
                  "spec, _, found = data.scan_images(sys.argv[1], print); "
                  "imagecache.open_cache(sys.argv[1], found, spec.image_shape, log=print)")
    proc = subprocess.Popen([sys.executable, "-c", slow_build, str(images)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    cache = images / "cache"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not stale_parts(cache):
        time.sleep(0.05)
    time.sleep(0.5)                                                    # a few chunks into the file
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert stale_parts(cache) and not list(cache.glob("*.u8")) and not list(cache.glob("*.json"))
    spec, _, found = data.scan_images(images, quiet)
    built = imagecache.open_cache(images, found, spec.image_shape, log=quiet)
    assert not stale_parts(cache) and built.path.stat().st_size == 48 * 32 * 50
    assert os.path.getsize(built.path) == len(built.rows["train"]) * 32 * 50 + len(built.rows["val"]) * 32 * 50
