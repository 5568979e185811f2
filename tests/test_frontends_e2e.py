"""Every front end through the project's own stages on generated audio: spec2img (with trimming, centre
crop and augmentation) -> classify.train -> classify.evaluate (report) -> classify.predict, and
predict's score equal to evaluate's for short clips."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfilt

from classify import predict
from classify.evaluate import EvalSettings, evaluate_run
from classify.runfolder import evaluation_dir
from classify.train import TrainConfig, train
from spec2img.__main__ import main as spec2img_main
from spec2img.augment import KINDS
from spec2img.manifest import read_rows

SR = 16000
TINY = ["--duration", "0.5", "--workers", "1", "--sample-rate", str(SR)]
FRONT_ENDS = {   # front end: extra flags keeping the images small (rows) and exercising the clip settings
    "mel": ["--n-mels", "32"],
    "linear": ["--n-fft", "128", "--win-length", "128"],
    "cqt": ["--cqt-bins", "48", "--cqt-bins-per-octave", "8", "--cqt-fmin", "100", "--trim-silence"],
    "lfcc": ["--trim-silence", "--crop", "center"],
}


def bonafide(seconds, rng):
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 180)
    return 0.2 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))


def spoof(seconds, rng):
    sos = butter(6, [4000, 7500], btype="bandpass", fs=SR, output="sos")
    return 0.3 * sosfilt(sos, rng.standard_normal(int(seconds * SR)))


def make_corpus(root: Path) -> Path:
    """root/manifest.csv (file,label,split) over clips with leading and trailing silence; val and test
    clips are shorter than the image (one prediction window), train clips longer (crops matter)."""
    rng = np.random.default_rng(0)
    lines = ["file,label,split"]
    for split, n, seconds, pause in (("train", 8, (0.6, 0.9), 0.3), ("val", 4, (0.2, 0.3), 0.07),
                                     ("test", 4, (0.2, 0.3), 0.07)):
        for label, make in (("bonafide", bonafide), ("spoof", spoof)):
            for i in range(n):
                sound = make(rng.uniform(*seconds), rng)
                wave = np.concatenate([np.zeros(int(rng.uniform(0.02, pause) * SR)), sound,
                                       np.zeros(int(rng.uniform(0.02, pause) * SR))])
                name = f"{split}_{label}_{i}.wav"
                sf.write(root / name, wave.astype(np.float32), SR)
                lines.append(f"{name},{label},{split}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("frontend", FRONT_ENDS)
def test_front_end_end_to_end(frontend, corpus, tmp_path, capsys):
    images, runs = tmp_path / "images", tmp_path / "runs"
    flags = ["--frontend", frontend, *FRONT_ENDS[frontend]]
    assert spec2img_main([str(corpus), "--out", str(images), *TINY, *flags, "--augment", "1",
                          "--augment-kinds", "rawboost,codec"]) == 0
    spec = json.loads((images / "spec.json").read_text())
    assert spec["frontend"] == frontend and spec["conversion"]["augment_kinds"]
    assert spec["trim_silence"] == ("--trim-silence" in flags)
    pngs = sorted(images.glob("*/*/*.png"))
    from PIL import Image
    assert {Image.open(p).size[::-1] for p in pngs} == {(spec["image_height"], spec["image_width"])}
    assert any("__aug1" in p.name for p in pngs)

    result = train(TrainConfig(images=str(images), out=str(runs), arch="simple_cnn", pretrained=False,
                               epochs=2, bs=8, workers=1, seed=0), log=lambda *a: None)
    metrics = evaluate_run(result.run_dir, EvalSettings(top_k=2), log=lambda *a: None)
    evaluated_set = evaluation_dir(result.run_dir)
    assert (evaluated_set / "report.html").is_file() and metrics["metrics"]["eer"]["value"] is not None

    with open(evaluated_set / "scores-test.csv", newline="") as f:
        evaluated = {Path(r["path"]).name: float(r["score"]) for r in csv.DictReader(f)}
    out = tmp_path / "predicted.csv"
    test_files = sorted(corpus.parent.glob("test_*.wav"))
    assert predict.main(["--run", str(result.run_dir), *map(str, test_files), "--out", str(out),
                         "--no-progress"]) == 0
    with open(out, newline="") as f:
        predicted = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert set(predicted) == set(evaluated)
    for name, score in evaluated.items():      # the same pixels, so the same score as the evaluation path
        assert predicted[name]["windows"] == "1"
        assert float(predicted[name]["score"]) == pytest.approx(score, abs=1e-4), name
    capsys.readouterr()


def test_every_augmentation_kind_converts(tmp_path):
    """Each kind alone through the conversion stage: images written, parameters in the manifest."""
    from spec2img.convert import ConvertOptions, convert_rows
    from spec2img.config import SpecConfig
    from spec2img.rows import ClipRow
    rng = np.random.default_rng(1)
    rows = []
    for i, label in enumerate(("bonafide", "spoof")):
        path = tmp_path / "audio" / f"c{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (bonafide if i == 0 else spoof)(0.6, rng).astype(np.float32), SR)
        rows.append(ClipRow(f"c{i}", path, label, "train"))
    cfg = SpecConfig(duration=0.5, n_mels=32)
    for kind in KINDS:
        out = tmp_path / kind
        summary = convert_rows(rows, out, cfg, ConvertOptions(workers=1, progress=False, augment=1,
                                                              augment_kinds=kind),
                               tmp_path / "audio", "csv", log=lambda *a: None)
        assert summary.augmented == 2 and not summary.skipped, kind
        described = [r["augmentation"] for r in read_rows(out / "manifest.csv") if "__aug" in r["clip_id"]]
        assert len(described) == 2 and all(d.startswith(kind) for d in described), (kind, described)
