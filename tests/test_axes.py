"""spec2img.axes: what each image row means (Hz for spectral front ends, coefficients for lfcc), top row first."""
from types import SimpleNamespace

import numpy as np
import pytest

from spec2img.axes import column_times, row_axis, row_frequencies
from spec2img.config import SpecConfig
from spec2img.features import clip_to_image

SR = 16000


def tone(freq, seconds=1.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_mel_rows_run_from_the_highest_band_at_the_top_to_the_lowest_at_the_bottom():
    cfg = SpecConfig()
    hz = row_frequencies(cfg)
    assert hz.shape == (cfg.n_mels,)
    assert np.all(np.diff(hz) < 0)                                     # top row first: decreasing
    assert cfg.fmin < hz[-1] < 60 and 7500 < hz[0] < cfg.mel_fmax      # centres inside fmin..fmax
    assert row_axis(cfg).hz_top == pytest.approx(cfg.mel_fmax)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0, 5000.0])
def test_a_tone_is_brightest_in_the_row_whose_frequency_is_the_tone(freq):
    cfg = SpecConfig(duration=1.0)
    image = clip_to_image(tone(freq), cfg)
    brightest = int(np.argmax(image.astype(np.float64).mean(axis=1)))
    hz = row_frequencies(cfg)
    # within one FFT bin (low mel bands are narrower than a bin) or 6 % (the width of a high mel band)
    assert abs(hz[brightest] - freq) <= max(SR / cfg.n_fft, 0.06 * freq)


def test_linear_and_cqt_rows_are_their_bin_frequencies_top_first():
    linear = SimpleNamespace(frontend="linear", sample_rate=SR, n_fft=512)
    hz = row_frequencies(linear)
    assert hz.shape == (257,) and hz[0] == SR / 2 and hz[-1] == 0 and np.allclose(-np.diff(hz), SR / 512)
    cqt = SimpleNamespace(frontend="cqt", sample_rate=SR, cqt_bins=96, cqt_bins_per_octave=12, cqt_fmin=32.7)
    hz = row_frequencies(cqt)
    assert hz.shape == (96,) and hz[-1] == pytest.approx(32.7)
    assert hz[0] / hz[12] == pytest.approx(2.0)                        # 12 bins per octave


def test_lfcc_rows_are_coefficients_in_three_blocks_not_frequencies():
    cfg = SimpleNamespace(frontend="lfcc", n_lfcc=20)
    axis = row_axis(cfg)
    assert axis.hz is None and "not frequencies" in axis.label
    assert len(axis.names) == 60
    assert axis.names[-1] == "c0" and axis.names[0] == "ΔΔ c19" and axis.names[39] == "Δ c0"
    assert [b[0] for b in axis.blocks] == ["static", "Δ", "ΔΔ"]
    assert axis.blocks[0][1:] == (40, 60) and axis.blocks[2][1:] == (0, 20)   # static at the bottom
    with pytest.raises(ValueError, match="not frequencies"):
        row_frequencies(cfg)


def test_an_unknown_front_end_is_a_clear_error():
    with pytest.raises(ValueError, match="no row axis is defined for front end 'gammatone'"):
        row_axis(SimpleNamespace(frontend="gammatone"))


def test_columns_are_hop_spaced_seconds():
    cfg = SpecConfig(duration=2.0, hop_length=160)
    t = column_times(cfg)
    assert t.shape == (cfg.frames,) and t[0] == 0 and t[1] == pytest.approx(0.01)
