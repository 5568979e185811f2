"""classify.explain: attribution maps for every architecture, bands in Hz and their summary, the clear message for
a model without a convolutional stage, the report's explanations, and predict --explain's pictures."""
import csv
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from classify import explain, explain_outputs
from classify.archs import ARCHS, IMAGENET_MEAN, IMAGENET_STD, build_model, builder_settings
from classify.runfolder import evaluation_dir
from spec2img.axes import row_axis
from spec2img.config import SpecConfig
from test_predict import bonafide_wave, spoof_wave, tiny_run, write_wave  # noqa: F401 (tiny_run: a fixture)

H, W = 64, 100      # image size of the generated tests: small enough to train in seconds on a CPU


def description(arch: str, height: int = H, width: int = W) -> dict:
    """model.json content for `arch` on (height, width) images, as classify.train writes it."""
    return {"arch": arch, "input": {"height": height, "width": width, "channels": 3},
            "normalize": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "spec": {"image_height": height, "image_width": width}, "builder": builder_settings(arch)}


# ---------------------------------------------------------------- bands and their summary (pure numpy)

def test_mel_bands_are_half_a_kilohertz_then_octaves_and_cover_every_row_once():
    axis = row_axis(SpecConfig())
    bands = explain.frequency_bands(axis)
    assert [b.name for b in bands] == ["4–8 kHz", "2–4 kHz", "1–2 kHz", "500 Hz–1 kHz", "0–500 Hz"]
    assert np.array_equal(np.sum([b.rows for b in bands], axis=0), np.ones(128))   # a partition of the rows
    for b in bands:                                                   # each band holds the rows of its Hz range
        lo, hi = {"4–8 kHz": (4000, 8000), "2–4 kHz": (2000, 4000), "1–2 kHz": (1000, 2000),
                  "500 Hz–1 kHz": (500, 1000), "0–500 Hz": (0, 500)}[b.name]
        assert np.all((axis.hz[b.rows] >= lo) & (axis.hz[b.rows] <= hi))


def test_the_top_band_stops_at_the_top_edge_and_a_sliver_is_merged():
    assert explain.frequency_bands(row_axis(SpecConfig(sample_rate=22050)))[0].name == "8–11 kHz"
    names = [b.name for b in explain.frequency_bands(row_axis(SpecConfig(fmax=8500)))]
    assert names[0] == "4–8.5 kHz"                                    # not a 8-8.5 kHz band of three rows


def test_lfcc_bands_are_coefficient_groups_of_each_block():
    axis = row_axis(SimpleNamespace(frontend="lfcc", n_lfcc=20))
    bands = explain.frequency_bands(axis)
    assert [b.name for b in bands][:2] == ["ΔΔ c15–c19", "ΔΔ c10–c14"] and bands[-1].name == "c0–c4"
    assert np.array_equal(np.sum([b.rows for b in bands], axis=0), np.ones(60))
    assert np.flatnonzero(bands[-1].rows).tolist() == [55, 56, 57, 58, 59]        # c0..c4: the bottom rows


def test_band_summary_and_reading_name_the_band_that_holds_the_evidence():
    axis = row_axis(SpecConfig())
    in_band = (axis.hz >= 2000) & (axis.hz < 4000)
    focused = np.zeros((3, 128, 10), np.float32)
    focused[:, in_band, :] = 1.0
    even = np.ones((2, 128, 10), np.float32)
    empty = np.zeros((1, 128, 10), np.float32)
    maps = np.concatenate([focused, even, empty])
    summary = explain.band_summary(maps, np.array([1, 1, 1, 0, 0, 0]), axis)
    names = [b["name"] for b in summary["bands"]]
    spoof = dict(zip(names, summary["by_decision"]["spoof"]["band_share"]))
    bona = dict(zip(names, summary["by_decision"]["bonafide"]["band_share"]))
    rows = {b["name"]: b["row_share"] for b in summary["bands"]}
    assert spoof["2–4 kHz"] == pytest.approx(1.0) and summary["by_decision"]["spoof"]["n"] == 3
    assert bona == pytest.approx(rows)                                # even maps: each band's share of rows
    assert summary["by_decision"]["bonafide"]["n"] == 2 and summary["empty_maps"] == 1
    assert summary["reading"].startswith("Spoof decisions rest mostly on 2–4 kHz (100 % of the attribution")
    assert "bona fide decisions draw on all bands about evenly" in summary["reading"]


def test_stratified_sample_takes_half_of_each_class_and_fills_up_from_the_larger():
    labels = np.array([0] * 10 + [1] * 100)
    picked = explain.stratified_sample(labels, 40)
    assert len(picked) == 40 and np.sum(labels[picked] == 0) == 10 and np.sum(labels[picked] == 1) == 30
    assert np.array_equal(picked, explain.stratified_sample(labels, 40))          # seeded: the same every time
    balanced = explain.stratified_sample(np.array([0, 1] * 50), 20)
    assert np.sum(balanced % 2 == 0) == 10
    assert np.array_equal(explain.stratified_sample(labels[:30], 40), np.arange(30))
    assert explain.stratified_sample(labels, 0).size == 0


def test_confident_correct_clips_are_the_surest_right_decisions_of_each_class():
    labels = np.array([0, 0, 0, 1, 1, 1])
    prob = np.array([0.01, 0.3, 0.9, 0.99, 0.6, 0.2])                 # clip 2 and 5 are wrong at 0.5
    assert explain.confident_correct(labels, prob, 0.5, 2) == [0, 1, 3, 4]


# ---------------------------------------------------------------- every architecture

@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_gives_maps_of_the_image_size(arch):
    torch.manual_seed(0)
    model = build_model(builder_settings(arch)).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, H, W), dtype=np.uint8)
    attr = explain.attribution_maps(model, description(arch), images, [0, 1, 1], bs=2)
    assert attr.maps.shape == (3, H, W) and attr.maps.dtype == np.float32
    assert np.all(np.isfinite(attr.maps)) and attr.maps.min() >= 0 and attr.maps.max() > 0
    assert 1 <= attr.grid[0] <= H and 1 <= attr.grid[1] <= W and attr.where


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("arch", ["resnet18", "lcnn"])
def test_maps_on_the_gpu_equal_the_cpu_maps(arch):
    torch.manual_seed(0)
    model = build_model(builder_settings(arch)).eval()
    images = np.random.default_rng(0).integers(0, 256, (2, H, W), dtype=np.uint8)
    cpu = explain.attribution_maps(model, description(arch), images, [1, 0]).maps
    gpu = explain.attribution_maps(model.to("cuda"), description(arch), images, [1, 0]).maps
    assert np.allclose(gpu, cpu, rtol=1e-3, atol=1e-4 * cpu.max())


class PooledMLP(nn.Module):
    """A body without any convolution: it flattens the image into one feature vector."""

    def forward(self, x):
        return x.flatten(1)[:, None, :16]                              # (B, 1, 16): tokens, not a feature map


def test_a_model_without_a_convolutional_stage_is_a_clear_message():
    images = np.zeros((1, H, W), np.uint8)
    head = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    mlp = nn.Sequential(PooledMLP(), head)
    desc = {**description("resnet18"), "arch": "mlp_mixer"}
    with pytest.raises(explain.ExplainError, match="mlp_mixer.*has no convolutional stage"):
        explain.attribution_maps(mlp, desc, images, [1])
    unknown = {**description("simple_cnn"), "builder": {"library": "scratch", "source": "TinyTransformer"}}
    with pytest.raises(explain.ExplainError, match="no attribution layer is registered.*TinyTransformer"):
        explain.check_explainable(head, unknown)
    with pytest.raises(explain.ExplainError, match="not a fastai"):
        explain.attribution_maps(nn.Linear(16, 2), desc, images, [1])


# ---------------------------------------------------------------- planted evidence

MEL64 = row_axis(SpecConfig(n_mels=H))                     # the Hz of the rows of the generated images


def planted_images(n: int, seed: int, kind: str, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (uint8 images (n, H, W), labels): noise with speech-like harmonics at the bottom for every clip;
    spoof clips (odd indices) also carry a striped pattern in rows (kind "band") or columns ("time") first..stop-1."""
    rng = np.random.default_rng(seed)
    images, labels = [], np.arange(n) % 2
    for label in labels:
        image = rng.normal(90, 25, (H, W))
        f0 = rng.integers(3, 6)
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * np.arange(W) / rng.uniform(15, 30) + rng.uniform(0, 6))
        for k in range(1, 6):
            image[H - 2 - k * f0:H - k * f0] += 90 * envelope                # harmonics, low rows = bottom
        if label == 1:
            if kind == "band":      # stripes along time (a frame-rate artefact) in some frequency rows
                image[first:stop] += 70 * (np.sin(2 * np.pi * np.arange(W) / 4 + rng.uniform(0, 6)) > 0)
            else:                   # stripes across frequency (a burst) during some columns
                image[:, first:stop] += 70 * (np.sin(2 * np.pi * np.arange(H) / 4)[:, None] > 0)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(images), labels


def train_tiny(arch: str, images: np.ndarray, labels: np.ndarray, steps: int = 40) -> nn.Module:
    """Return `arch` (random init, seed 0) fitted with Adam on the images, in eval mode."""
    from classify.model_io import images_to_input
    x, y = images_to_input(images, description(arch), "cpu"), torch.as_tensor(labels)
    torch.manual_seed(0)
    model = build_model(builder_settings(arch))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # a model this small gains nothing from threads, and loses a lot on a busy CPU
    try:
        model.train()
        for _ in range(steps):
            batch = torch.randperm(len(x))[:32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def peak_hit_rate(maps: np.ndarray, kind: str, first: int, stop: int) -> float:
    """Return the share of maps whose largest value lies in rows (band) or columns (time) first..stop-1."""
    rows, cols = np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])
    where = rows if kind == "band" else cols
    return float(np.mean((where >= first) & (where < stop)))


_ROWS_2_4_KHZ = np.flatnonzero(next(b for b in explain.frequency_bands(MEL64) if b.name == "2–4 kHz").rows)
SPOOF_BAND = (int(_ROWS_2_4_KHZ[0]), int(_ROWS_2_4_KHZ[-1]) + 1)   # rows 14..28 of the 64-row mel image
PLANTED = [("simple_cnn", "band", *SPOOF_BAND),             # a band given in Hz: the 2-4 kHz rows
           ("lcnn", "band", 32, 48),                        # LCNN's maps have 16-pixel cells: one whole cell
           ("lcnn", "time", 48, 64)]
MIN_HIT_RATE = 0.8                                          # of the spoof clips, the peak inside the planted region


@pytest.mark.slow
@pytest.mark.parametrize("arch,kind,first,stop", PLANTED)
def test_the_attribution_peak_falls_inside_the_planted_evidence(arch, kind, first, stop):
    images, labels = planted_images(64, 1, kind, first, stop)
    model = train_tiny(arch, images, labels)
    test_images, test_labels = planted_images(40, 7, kind, first, stop)
    from classify.model_io import predict_logits
    decided = predict_logits(model, test_images, description(arch)).argmax(axis=1)
    assert np.mean(decided == test_labels) >= 0.95                         # the model did learn the evidence
    spoof = test_images[test_labels == 1]
    maps = explain.attribution_maps(model, description(arch), spoof, 1).maps
    assert peak_hit_rate(maps, kind, first, stop) >= MIN_HIT_RATE
    # the same check fails for attributions that know nothing: random maps of the same shape
    random_maps = np.random.default_rng(0).random(maps.shape).astype(np.float32)
    assert peak_hit_rate(random_maps, kind, first, stop) < MIN_HIT_RATE / 2
    if kind == "band":            # and it fails for maps drawn upside down (low frequencies at the top)
        assert peak_hit_rate(maps[:, ::-1], kind, first, stop) < MIN_HIT_RATE / 2
    if arch == "simple_cnn":      # and the per-band summary names the band, in Hz
        summary = explain.band_summary(maps, np.ones(len(maps), int), MEL64)
        assert summary["reading"].startswith("Spoof decisions rest mostly on 2–4 kHz")
        assert not explain.band_summary(random_maps, np.ones(len(maps), int), MEL64)["reading"].startswith(
            "Spoof decisions rest mostly on 2–4 kHz")


# ---------------------------------------------------------------- the evaluation report

@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(run folder, metrics.json content) of test_evaluate's tiny simple_cnn run evaluated on its test split."""
    from classify.evaluate import EvalSettings, evaluate_run
    from test_evaluate import build_run
    run = build_run(tmp_path_factory.mktemp("explained"))
    return run, evaluate_run(run, EvalSettings(top_k=3, explain_examples=2, bootstrap=0), log=lambda *a: None)


def test_the_report_shows_heat_maps_and_the_per_band_summary(evaluated):
    run, result = evaluated
    out = evaluation_dir(run)                                              # the evaluation's output set
    page = (out / "report.html").read_text()
    assert "Where the model finds its evidence" in page
    assert page.count("alt='attribution heat map of") == 3 + 2 * 2        # top losses + 2 confident per class
    assert "alt='attribution per frequency band'" in page
    reading = result["explanations"]["reading"]
    assert reading in page.replace("&#x27;", "'") and "decisions" in reading
    maps = sorted(p.name for p in out.glob("heatmap-test-*.png"))
    shown = set(re.findall(r"alt='attribution heat map of ([^']+)'", page))
    assert {m[len("heatmap-test-"):-len(".png")] for m in maps} == shown    # one file per clip shown
    assert (out / "band_attribution-test.png").is_file()
    saved = json.loads((out / "metrics.json").read_text())["explanations"]
    assert saved["clips"] == saved["of"] == 12 and saved["grid"] == [8, 25]   # simple_cnn on 16 x 50 images: /2
    assert "ReLU of the last conv block" in saved["method"]
    assert [b["name"] for b in saved["bands"]] == ["2–4 kHz", "1–2 kHz", "500 Hz–1 kHz", "0–500 Hz"]


def test_the_tones_of_the_tiny_corpus_are_where_the_spoof_evidence_lies(evaluated):
    """test_evaluate's spoof clips are 2.5-3 kHz tones and its bona fide clips 250-500 Hz tones."""
    _, result = evaluated
    summary = result["explanations"]
    names = [b["name"] for b in summary["bands"]]
    spoof = summary["by_decision"]["spoof"]["band_share"]
    assert names[int(np.argmax(spoof))] == "2–4 kHz"
    assert summary["reading"].startswith("Spoof decisions rest") and "on 2–4 kHz" in summary["reading"]


def test_explanations_can_be_switched_off(evaluated, tmp_path):
    import shutil
    from classify.evaluate import EvalSettings, evaluate_run, parse_args
    run = shutil.copytree(evaluated[0], tmp_path / "run", symlinks=True)
    result = evaluate_run(run, EvalSettings(top_k=2, explain=False, bootstrap=0), log=lambda *a: None)
    assert "explanations" not in result
    assert "heat map" not in (evaluation_dir(run) / "report.html").read_text()
    assert not list(evaluation_dir(run).glob("heatmap-*")) and not list(evaluation_dir(run).glob("band_*"))
    assert parse_args([str(run), "--no-explain"])[1].explain is False
    assert parse_args([str(run), "--explain-sample", "50"])[1].explain_sample == 50


# ---------------------------------------------------------------- predict --explain

def test_predict_explain_writes_one_picture_per_scored_file(tiny_run, tmp_path, capsys):
    from PIL import Image
    from classify import predict
    clips = tmp_path / "clips"
    write_wave(clips / "b.wav", bonafide_wave(1.0, 7))
    write_wave(clips / "s.wav", spoof_wave(1.0, 7))
    write_wave(clips / "other" / "s.wav", spoof_wave(0.8, 8))                 # same name in another folder
    partly = np.concatenate([bonafide_wave(2.0, 9), spoof_wave(2.0, 9)])       # 4 one-second windows and more
    write_wave(clips / "partly.wav", partly)
    (clips / "broken.wav").write_bytes(b"RIFF not really")
    out, pictures = tmp_path / "scores.csv", tmp_path / "pictures"
    code = predict.main(["--run", str(tiny_run), str(clips), "--out", str(out), "--explain", str(pictures),
                         "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1, err                                                      # the broken file failed
    with open(out, newline="") as f:
        rows = {str(Path(r["path"]).relative_to(clips)): r for r in csv.DictReader(f)}
    assert rows["broken.wav"]["status"].startswith("error:") and rows["broken.wav"]["explanation"] == ""
    drawn = {name: Path(r["explanation"]) for name, r in rows.items() if name != "broken.wav"}
    assert len(set(drawn.values())) == 4 and all(p.parent == pictures and p.is_file() for p in drawn.values())
    assert sorted(p.name for p in pictures.iterdir()) == sorted(p.name for p in drawn.values())   # nothing else
    assert f"wrote 4 picture(s) to {pictures}" in err
    assert drawn["other/s.wav"].name == "other__s.wav.png" and drawn["s.wav"].name == "s.wav.png"
    one = Image.open(drawn["b.wav"]).size
    several = Image.open(drawn["partly.wav"]).size
    assert several[1] > 1.4 * one[1]                       # a long file also gets the per-window probability panel
    assert rows["partly.wav"]["label"] and float(rows["partly.wav"]["max_spoof_start"]) >= 1.5   # spoof half


def test_predict_explain_refuses_a_file_as_the_folder(tiny_run, tmp_path, capsys):
    from classify import predict
    clip = write_wave(tmp_path / "b.wav", bonafide_wave(1.0, 7))
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit):
        predict.main(["--run", str(tiny_run), str(clip), "--explain", str(tmp_path / "taken")])
    assert "is a file: give a folder" in capsys.readouterr().err


def test_picture_names_are_distinct_and_readable():
    names = explain_outputs.picture_names([Path("/data/a/s.wav"), Path("/data/b/s.wav"), Path("/data/x.flac"),
                                   Path("/data/a/s.wav")])
    assert names == ["a__s.wav.png", "b__s.wav.png", "x.flac.png", "a__s.wav-2.png"]
    assert explain_outputs.picture_names([Path("/data/a/s.wav")]) == ["s.wav.png"]


def test_an_unexplainable_architecture_is_a_note_in_the_report_and_a_usage_error_in_predict(
        evaluated, tiny_run, tmp_path, monkeypatch, capsys):
    import shutil
    from classify import archs, predict
    from classify.evaluate import EvalSettings, evaluate_run
    monkeypatch.delitem(archs.SCRATCH_ATTRIBUTION, "SimpleCNN")       # as if simple_cnn had no conv stage
    run = shutil.copytree(evaluated[0], tmp_path / "run", symlinks=True)
    result = evaluate_run(run, EvalSettings(top_k=2, bootstrap=0), log=lambda *a: None)
    note = next(n for n in result["notes"] if n.startswith("no heat maps or per-band summary"))
    assert "cannot explain simple_cnn" in note and "SimpleCNN" in note
    page = (evaluation_dir(run) / "report.html").read_text()
    assert "explanations" not in result and "Where the model finds its evidence" not in page
    clip = write_wave(tmp_path / "b.wav", bonafide_wave(1.0, 7))
    code = predict.main(["--run", str(tiny_run), str(clip), "--explain", str(tmp_path / "pictures"), "--no-progress"])
    assert code == predict.EXIT_USAGE
    assert "error: --explain: cannot explain simple_cnn" in capsys.readouterr().err
    assert not (tmp_path / "pictures").exists()
