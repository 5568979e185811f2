"""Front ends (mel, linear, cqt, lfcc), silence trimming and crops: physics of the picture, shapes, bad settings."""
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from audiogen import write_tone

from spec2img import SpecConfig, audio_file_to_image, clip_to_image
from spec2img.config import complete_spec
from spec2img.features import TrimmedAwayError, load_clip, select_excerpt
from spec2img.silence import silence_durations, speech_bounds

SR = 16000
SPECTRA = ("mel", "linear", "cqt")


def tone(freq, seconds=2.0, sr=SR, amplitude=0.3):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def loudest_row(image):
    return int(np.argmax(image.astype(np.float64).mean(axis=1)))


def cfg_for(frontend, **kw):
    return SpecConfig(frontend=frontend, duration=2.0, **kw)


@pytest.mark.parametrize("frontend", SPECTRA)
def test_higher_tone_lands_in_a_higher_row(frontend):
    cfg = cfg_for(frontend)
    rows = [loudest_row(clip_to_image(tone(f), cfg)) for f in (150, 600, 2500, 6000)]
    assert rows == sorted(rows, reverse=True) and len(set(rows)) == 4   # row 0 is the top: highest frequency
    assert rows[0] > cfg.height * 0.5 and rows[-1] < cfg.height * 0.5


@pytest.mark.parametrize("frontend,height", [("mel", 128), ("linear", 257), ("cqt", 128), ("lfcc", 60)])
def test_image_size_per_front_end(frontend, height):
    cfg = cfg_for(frontend)
    image = clip_to_image(tone(440), cfg)
    assert image.shape == cfg.image_shape == (height, 200) and image.dtype == np.uint8
    assert cfg.to_dict()["image_height"] == height


def test_linear_rows_are_stft_bins():
    cfg = cfg_for("linear")
    for freq in (1000, 5000, 7500):                       # 7.5 kHz: the high band is kept at full resolution
        bin_index = round(freq / (SR / cfg.n_fft))
        assert loudest_row(clip_to_image(tone(freq), cfg)) == cfg.height - 1 - bin_index


def test_cqt_rows_are_log_spaced():
    cfg = cfg_for("cqt")
    for freq in (110, 440, 1760):                          # octaves apart: rows bins_per_octave apart
        expected = cfg.cqt_bins_per_octave * np.log2(freq / cfg.cqt_fmin)
        assert abs((cfg.height - 1 - loudest_row(clip_to_image(tone(freq), cfg))) - expected) <= 1


@pytest.mark.parametrize("frontend", SPECTRA + ("lfcc",))
def test_gain_does_not_change_the_image(frontend):
    cfg = cfg_for(frontend)
    wave = tone(700) + tone(2300, amplitude=0.1)
    quiet, loud = clip_to_image(wave * 0.02, cfg), clip_to_image(wave * 2.5, cfg)
    assert np.abs(quiet.astype(int) - loud.astype(int)).max() <= 1


def lfcc_blocks(image, cfg):
    """Return (static, delta, delta2) blocks, c0 first, of an lfcc image (bottom rows = static c0)."""
    rows = image[::-1].astype(int)
    n = cfg.n_lfcc
    return rows[:n], rows[n:2 * n], rows[2 * n:]


def test_lfcc_steady_tone_has_flat_deltas_and_two_tones_differ():
    cfg = cfg_for("lfcc")
    steady = clip_to_image(tone(1000), cfg)
    static, delta, delta2 = lfcc_blocks(steady, cfg)
    inner = slice(5, -5)                                   # away from the zero-padded first and last frames
    assert np.abs(delta[:, inner] - 128).max() <= 1 and np.abs(delta2[:, inner] - 128).max() <= 1
    assert np.ptp(static[:, inner], axis=1).max() <= 1     # steady sound: constant cepstra over time
    assert np.abs(static[:, 100] - 128).max() > 20         # ... but not empty
    other, _, _ = lfcc_blocks(clip_to_image(tone(3000), cfg), cfg)
    assert np.abs(other[:, 100] - static[:, 100]).max() > 10


def test_lfcc_onset_shows_in_the_delta_of_c0():
    cfg = cfg_for("lfcc")
    wave = np.concatenate([0.001 * tone(1000, 1.0), tone(1000, 1.0)])   # 60 dB louder after 1 s
    _, delta, _ = lfcc_blocks(clip_to_image(wave, cfg), cfg)
    onset = cfg.frames // 2
    assert np.argmax(delta[0]) in range(onset - 2, onset + 3) and delta[0].max() > 200
    assert np.abs(delta[0, 10:onset - 10] - 128).max() <= 1


@pytest.mark.parametrize("settings,needle", [
    ({"frontend": "gammatone"}, "frontend='gammatone' is not one of mel, linear, cqt, lfcc"),
    ({"frontend": "cqt", "cqt_fmin": 60.0}, "cqt bins above Nyquist"),
    ({"frontend": "cqt", "sample_rate": 8000}, "lower cqt_bins to 113 or cqt_fmin to 15.8"),
    ({"frontend": "lfcc", "n_lfcc": 30}, "n_lfcc=30 must be between 1 and lfcc_filters=20"),
    ({"crop": "middle"}, "crop='middle' is not one of first, center"),
    ({"trim_db": 0}, "trim_db=0 must be positive"),
])
def test_settings_that_cannot_work_are_named(settings, needle):
    with pytest.raises(ValueError, match="invalid spectrogram settings") as error:
        SpecConfig(**settings).validate()
    assert needle in str(error.value)


def test_other_front_ends_ignore_mel_settings():
    SpecConfig(frontend="lfcc", n_mels=4).validate()      # n_mels is a mel setting only
    assert complete_spec({"n_mels": 64})["frontend"] == "mel"   # an older spec.json means mel, untrimmed


# ----------------------------------------------------------------------------- silence and crops


def padded(sound, lead=1.0, tail=1.5, floor=0.0):
    rng = np.random.default_rng(0)
    quiet = lambda s: (floor * rng.standard_normal(int(s * SR))).astype(np.float32)   # noqa: E731
    return np.concatenate([quiet(lead), sound, quiet(tail)])


def test_speech_bounds_find_the_sound():
    wave = padded(tone(500, 1.0), floor=1e-4)              # -70 dB hiss around the tone
    start, end = speech_bounds(wave, SR, 40)
    assert abs(start - SR) <= 0.03 * SR and abs(end - 2 * SR) <= 0.03 * SR
    lead, tail = silence_durations(wave, SR, 40)
    assert lead == pytest.approx(1.0, abs=0.03) and tail == pytest.approx(1.5, abs=0.03)
    assert speech_bounds(np.zeros(SR, np.float32), SR, 40) == (0, 0)
    assert speech_bounds(tone(300, 1.0), SR, 40) == (0, SR)        # no silence at all


def test_trimming_removes_leading_silence_from_the_picture():
    cfg = SpecConfig(duration=2.0)
    wave = padded(tone(800, 1.0))
    untrimmed = clip_to_image(select_excerpt(wave, cfg), cfg)
    assert untrimmed[:, 5:95].max() == 0                   # the first second is silence: black
    trimmed_cfg = SpecConfig(duration=2.0, trim_silence=True)
    trimmed = clip_to_image(select_excerpt(wave, trimmed_cfg), trimmed_cfg)
    reference = clip_to_image(tone(800, 1.0), trimmed_cfg)  # the tone alone, repeat-padded the same way
    assert trimmed[:, 5:95].max(axis=0).min() > 200       # sound in every column
    assert np.abs(trimmed.astype(int) - reference.astype(int))[:, 3:-3].mean() < 3


def test_a_clip_that_trimming_leaves_almost_empty_is_refused():
    cfg = SpecConfig(trim_silence=True)
    click = np.zeros(3 * SR, np.float32)
    click[SR:SR + 400] = 0.5                               # 25 ms of sound in 3 s of silence
    with pytest.raises(TrimmedAwayError, match=r"trimming leaves 0\.0\d s of sound, less than trim_min_seconds=0\.2"):
        select_excerpt(click, cfg)
    assert select_excerpt(click, SpecConfig(trim_silence=True, trim_min_seconds=0)).size < 0.1 * SR


def test_center_crop_keeps_the_middle(tmp_path):
    wave = np.concatenate([tone(500, 2.0), tone(3000, 4.0), tone(500, 2.0)])   # 8 s: 3 kHz in the middle
    sf.write(tmp_path / "long.wav", wave, SR, subtype="FLOAT")
    first = SpecConfig(duration=4.0)
    center = SpecConfig(duration=4.0, crop="center")
    img_first, _ = audio_file_to_image(tmp_path / "long.wav", first)
    img_center, _ = audio_file_to_image(tmp_path / "long.wav", center)
    assert loudest_row(img_center) == loudest_row(clip_to_image(tone(3000, 4.0), center))
    assert loudest_row(img_first[:, :150]) == loudest_row(clip_to_image(tone(500, 4.0), first))
    in_memory = clip_to_image(wave, center)               # clip_to_image crops a long wave the same way
    assert np.abs(in_memory.astype(int) - img_center.astype(int)).max() <= 2


def test_trimmed_file_decodes_a_bounded_excerpt(tmp_path):
    path = write_tone(tmp_path / "ten_minutes.wav", seconds=600.0, sr=SR, freq=440)
    cfg = SpecConfig(trim_silence=True, read_seconds=20.0)
    tracemalloc.start()
    try:
        wave, info = load_clip(path, cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.duration == pytest.approx(600.0) and wave.size == cfg.n_samples
    assert peak < 600 * SR * 4 / 4                         # about read_seconds' worth, not the 38 MB file


def test_trim_and_center_on_a_file(tmp_path):
    sound = np.concatenate([tone(500, 1.0), tone(3000, 1.0), tone(500, 1.0)])
    sf.write(tmp_path / "clip.wav", padded(sound, lead=3.0, tail=0.5), SR, subtype="FLOAT")
    cfg = SpecConfig(duration=1.0, trim_silence=True, crop="center")
    wave, _ = load_clip(tmp_path / "clip.wav", cfg)
    assert wave.size == SR
    assert loudest_row(clip_to_image(wave, cfg)) == loudest_row(clip_to_image(tone(3000, 1.0), cfg))


def test_predict_windows_a_trimmed_file_in_file_time(tmp_path):
    from classify.predict import iter_file_windows
    sf.write(tmp_path / "clip.wav", padded(tone(800, 3.0), lead=1.0, tail=1.0), SR, subtype="FLOAT")
    cfg = SpecConfig(duration=2.0, trim_silence=True)
    windows = list(iter_file_windows(tmp_path / "clip.wav", cfg))
    assert windows[0][0] == pytest.approx(1.0, abs=0.03)            # starts where the sound starts
    assert windows[-1][0] + cfg.duration == pytest.approx(4.0, abs=0.03)   # ends where it ends
    assert all(w.size == cfg.n_samples and np.abs(w[:800]).max() > 0.1 for _, w in windows)   # sound within 50 ms
