"""The audio -> image function: physics of the picture, crop / pad rules, silence, every input format."""
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from audiogen import write_tone

from spec2img import SpecConfig, audio_file_to_image, clip_to_image
from spec2img.audio import AudioError
from spec2img.features import SilentClipError, fit_duration, load_clip, stft_power

CFG = SpecConfig()
SR = CFG.sample_rate


def tone(freq, seconds=4.0, sr=SR, amplitude=0.3):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def loudest_row(image):
    """Row (0 = top) with the most energy, averaged over time."""
    return int(np.argmax(image.astype(np.float64).mean(axis=1)))


def test_image_shape_and_dtype():
    image = clip_to_image(tone(440), CFG)
    assert image.shape == CFG.image_shape == (128, 400)
    assert image.dtype == np.uint8
    assert image.max() == 255                    # the clip's own peak maps to white


def test_high_tone_is_nearer_the_top_than_low_tone():
    low, mid, high = (loudest_row(clip_to_image(tone(f), CFG)) for f in (200, 1000, 5000))
    assert high < mid < low                      # low frequencies at the bottom (large row index)
    assert low > CFG.n_mels * 0.7 and high < CFG.n_mels * 0.3


@pytest.mark.parametrize("settings", [{}, {"n_fft": 1024, "win_length": 1024, "hop_length": 256},
                                      {"n_fft": 400, "win_length": 300, "hop_length": 100, "duration": 0.5},
                                      {"n_fft": 511, "win_length": 511, "hop_length": 160, "duration": 1.0}])
def test_the_power_stft_is_librosas_bit_for_bit(settings):
    """stft_power works block by block for speed; images made before that (and librosa's definition) still hold."""
    import librosa
    cfg = SpecConfig(**settings)
    wave = np.random.default_rng(5).standard_normal(cfg.n_samples).astype(np.float32) * np.float32(0.2)
    reference = librosa.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                             window="hann", center=True, pad_mode="constant")[:, :cfg.frames]
    power = stft_power(wave, cfg)
    assert power.dtype == np.float32 and power.shape == (cfg.n_fft // 2 + 1, cfg.frames)
    assert np.array_equal(power, (reference.real ** 2 + reference.imag ** 2).astype(np.float32))


def test_gain_does_not_change_the_image():
    quiet, loud = clip_to_image(tone(700, amplitude=0.01), CFG), clip_to_image(tone(700, amplitude=0.9), CFG)
    assert np.abs(quiet.astype(int) - loud.astype(int)).max() <= 1


def test_short_clip_is_repeat_padded():
    wave = np.random.default_rng(0).standard_normal(SR).astype(np.float32)     # 1 s of noise
    padded = fit_duration(wave, CFG.n_samples)
    assert padded.size == CFG.n_samples
    np.testing.assert_array_equal(padded[:SR], wave)
    np.testing.assert_array_equal(padded[SR:2 * SR], wave)
    image = clip_to_image(wave, CFG).astype(int)
    frames_per_second = SR // CFG.hop_length
    # the picture repeats every second (away from the edges of the first and last frames)
    assert np.abs(image[:, 5:95] - image[:, 5 + frames_per_second:95 + frames_per_second]).max() <= 1


def test_long_file_keeps_its_first_seconds(tmp_path):
    long = np.concatenate([tone(500, 4.0), tone(3000, 2.0)])                  # 500 Hz, then 3 kHz
    sf.write(tmp_path / "long.wav", long, SR, subtype="FLOAT")
    sf.write(tmp_path / "head.wav", long[:CFG.n_samples], SR, subtype="FLOAT")
    image, info = audio_file_to_image(tmp_path / "long.wav", CFG)
    head, _ = audio_file_to_image(tmp_path / "head.wav", CFG)
    assert info.duration == pytest.approx(6.0)
    np.testing.assert_array_equal(image, head)
    assert loudest_row(image) == loudest_row(clip_to_image(tone(500), CFG))


def test_silence_is_refused():
    with pytest.raises(SilentClipError, match="silent"):
        clip_to_image(np.zeros(SR, np.float32), CFG)
    assert issubclass(SilentClipError, AudioError)


FORMATS = [("wav", "PCM_U8"), ("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "PCM_32"), ("wav", "FLOAT"),
           ("flac", "PCM_16"), ("mp3", "MPEG_LAYER_III"), ("ogg", "VORBIS")]


@pytest.mark.parametrize("ext,subtype", FORMATS, ids=[f"{e}-{s}" for e, s in FORMATS])
def test_every_format_gives_the_same_picture(tmp_path, ext, subtype):
    reference = clip_to_image(tone(1000, 2.0), CFG)
    path = write_tone(tmp_path / f"clip.{ext}", seconds=2.0, sr=SR, freq=1000, subtype=subtype)
    image, info = audio_file_to_image(path, CFG)
    assert image.shape == CFG.image_shape and image.dtype == np.uint8
    assert info.sample_rate == SR and info.channels == 1
    assert abs(loudest_row(image) - loudest_row(reference)) <= 1


@pytest.mark.parametrize("sr", [8000, 22050, 44100])
def test_other_sample_rates_are_resampled(tmp_path, sr):
    path = write_tone(tmp_path / f"clip{sr}.wav", seconds=1.0, sr=sr, freq=1500)
    image, info = audio_file_to_image(path, CFG)
    assert info.sample_rate == sr
    assert image.shape == CFG.image_shape
    assert abs(loudest_row(image) - loudest_row(clip_to_image(tone(1500, 1.0), CFG))) <= 1


def test_stereo_is_mixed_to_mono(tmp_path):
    mono = write_tone(tmp_path / "mono.wav", seconds=1.0, freq=800, subtype="FLOAT")
    stereo = write_tone(tmp_path / "stereo.wav", seconds=1.0, freq=800, channels=2, subtype="FLOAT")
    a, _ = audio_file_to_image(mono, CFG)
    b, info = audio_file_to_image(stereo, CFG)
    assert info.channels == 2
    np.testing.assert_array_equal(a, b)


def test_ten_minute_file_decodes_only_what_the_image_needs(tmp_path):
    path = write_tone(tmp_path / "ten_minutes.wav", seconds=600.0, sr=SR, freq=440)  # 19 MB of PCM_16
    tracemalloc.start()
    try:
        wave, info = load_clip(path, CFG)
        image = clip_to_image(wave, CFG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.duration == pytest.approx(600.0)
    assert wave.size == CFG.n_samples and image.shape == CFG.image_shape
    whole_file_float32 = 600 * SR * 4
    assert peak < whole_file_float32 / 8        # a few MB, not the 38 MB the whole file would take
