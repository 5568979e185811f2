"""White noise at a random SNR, pitch shift and time stretch: pure functions of (wave, parameters)."""
from __future__ import annotations

import numpy as np

SNR_DB_RANGE = (5.0, 30.0)        # white-noise signal-to-noise ratio, dB
SEMITONE_RANGE = (-2.0, 2.0)      # pitch shift, semitones
STRETCH_RANGE = (0.9, 1.1)        # time-stretch rate (>1 faster/shorter, <1 slower/longer)
VOCODER_WINDOW_S = 0.032          # phase-vocoder window: librosa's default 2048 samples (128 ms at
                                  # 16 kHz) smears onsets and clicks across ~10 image columns


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Return `wave` plus white Gaussian noise whose power is `snr_db` below the wave's mean power."""
    power = float(np.mean(np.square(wave, dtype=np.float64)))
    noise_std = np.sqrt(power / 10 ** (snr_db / 10))
    return (wave + rng.standard_normal(wave.shape) * noise_std).astype(np.float32)


def vocoder_fft(sample_rate: int) -> int:
    """Return the phase-vocoder FFT size: the power of two nearest VOCODER_WINDOW_S seconds."""
    return int(2 ** round(np.log2(VOCODER_WINDOW_S * sample_rate)))


def pitch_shift(wave: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Return `wave` shifted by `semitones` at the same length (phase vocoder + resampling)."""
    import librosa
    return librosa.effects.pitch_shift(np.asarray(wave, np.float32), sr=sample_rate, n_steps=semitones,
                                       n_fft=vocoder_fft(sample_rate)).astype(np.float32)


def time_stretch(wave: np.ndarray, sample_rate: int, rate: float) -> np.ndarray:
    """Return `wave` played `rate` times faster at the same pitch (length divided by `rate`)."""
    import librosa
    return librosa.effects.time_stretch(np.asarray(wave, np.float32), rate=rate,
                                        n_fft=vocoder_fft(sample_rate)).astype(np.float32)
