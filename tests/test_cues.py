"""Shortcut cues measured at conversion time (spec2img.cues): silences, bandwidth, and their manifest columns."""
import csv

import numpy as np
import pytest
import soundfile as sf
import soxr

from spec2img import SpecConfig
from spec2img.convert import ConvertOptions, convert_rows
from spec2img.cues import effective_bandwidth, file_cues, wave_cues
from spec2img.audio import probe_audio
from spec2img.manifest import COLUMNS, read_rows
from spec2img.rows import ClipRow

CFG = SpecConfig(duration=1.0, n_mels=32)
ONE = ConvertOptions(workers=1, progress=False)


def noise(seconds: float, sr: int, seed: int = 0, amplitude: float = 0.1) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def padded(wave: np.ndarray, sr: int, lead: float, trail: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead * sr), np.float32), wave, np.zeros(int(trail * sr), np.float32)])


def test_silences_are_measured_to_the_frame():
    sr = 16000
    cues = wave_cues(*(2 * [padded(noise(1.0, sr), sr, 0.50, 0.30)]), sr)
    assert cues["leading_silence"] == pytest.approx(0.50, abs=0.02)
    assert cues["trailing_silence"] == pytest.approx(0.30, abs=0.03)
    steady = noise(1.0, sr)
    assert wave_cues(steady, steady, sr)["leading_silence"] == 0.0    # relative level: noise alone is not silence


def test_bandwidth_finds_the_band_limit_at_the_files_own_rate():
    full = noise(2.0, 16000)
    assert effective_bandwidth(full, 16000) == pytest.approx(8000, abs=100)
    from_8k = soxr.resample(soxr.resample(full, 16000, 8000), 8000, 16000)        # telephone audio upsampled
    assert effective_bandwidth(from_8k, 16000) == pytest.approx(4000, abs=150)
    wide = noise(2.0, 44100, seed=1)
    assert effective_bandwidth(wide, 44100) > 20000                  # measured before any resampling to 16 kHz
    assert np.isnan(effective_bandwidth(np.zeros(1000), 16000))


def test_long_files_are_read_at_both_ends(tmp_path):
    sr = 8000
    wave = padded(noise(70.0, sr), sr, 1.0, 2.0)                   # longer than twice CUE_READ_SECONDS
    path = tmp_path / "long.flac"
    sf.write(path, wave, sr)
    cues = file_cues(path, probe_audio(path))
    assert cues["leading_silence"] == pytest.approx(1.0, abs=0.03)
    assert cues["trailing_silence"] == pytest.approx(2.0, abs=0.03)


def _rows(root):
    sr = 16000
    clips = {"bona": (padded(noise(0.8, sr, 1), sr, 0.05, 0.05), sr, "bonafide"),
             "spoof": (padded(noise(0.8, sr, 2), sr, 0.40, 0.20), sr, "spoof"),
             "wide": (np.stack([noise(1.0, 32000, 3)] * 2, axis=1), 32000, "spoof")}
    rows = []
    for name, (wave, rate, label) in clips.items():
        path = root / "audio" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave, rate)
        rows.append(ClipRow(name, path, label, "test", subset="eval", family="vocoder" if label == "spoof" else ""))
    return rows


def test_conversion_writes_the_cues_into_the_manifest(tmp_path):
    out = tmp_path / "images"
    convert_rows(_rows(tmp_path), out, CFG, ONE, tmp_path / "audio", "csv", log=lambda *_: None)
    m = {r["clip_id"]: r for r in read_rows(out / "manifest.csv")}
    assert float(m["spoof"]["leading_silence"]) == pytest.approx(0.40, abs=0.02)
    assert float(m["spoof"]["trailing_silence"]) == pytest.approx(0.20, abs=0.03)
    assert float(m["bona"]["leading_silence"]) < 0.1
    assert float(m["wide"]["bandwidth"]) > 15000 and m["wide"]["sample_rate"] == "32000" and m["wide"]["channels"] == "2"
    assert (m["spoof"]["subset"], m["spoof"]["family"], m["bona"]["family"]) == ("eval", "vocoder", "")


def test_a_manifest_from_before_the_cues_is_completed_without_rewriting_images(tmp_path):
    rows, out = _rows(tmp_path), tmp_path / "images"
    convert_rows(rows, out, CFG, ONE, tmp_path / "audio", "csv", log=lambda *_: None)
    old_columns = [c for c in COLUMNS if c not in ("leading_silence", "trailing_silence", "bandwidth")]
    for path in [out / "manifest.csv", *(out / "manifest.parts").glob("*.csv")]:
        old = read_rows(path)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, old_columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(old)
    times = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    summary = convert_rows(rows, out, CFG, ONE, tmp_path / "audio", "csv", log=lambda *_: None)
    assert summary.written == 0 and {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == times
    assert all(r["leading_silence"] and r["bandwidth"] for r in read_rows(out / "manifest.csv"))
