"""The one function that turns audio into a spectrogram image (conversion and prediction share it)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .audio import AudioError, AudioInfo, load_audio
from .config import SpecConfig


class SilentClipError(AudioError):
    """The clip's peak is below the silence level, so it has no spectrum to normalize."""


def fit_duration(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Return exactly `n_samples`: the first ones of a long clip, or a short clip repeated end to end."""
    if wave.size == 0:
        raise AudioError("zero-length audio (no samples)")
    if wave.size >= n_samples:
        return wave[:n_samples]
    reps = -(-n_samples // wave.size)
    return np.tile(wave, reps)[:n_samples]


@lru_cache(maxsize=8)
def _mel_basis(cfg: SpecConfig) -> np.ndarray:
    import librosa
    return librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                               fmin=cfg.fmin, fmax=cfg.mel_fmax).astype(np.float32)  # (n_mels, n_fft/2+1)


def mel_power(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return the power mel spectrogram, float32 (n_mels, frames), of a clip already at cfg.sample_rate."""
    import librosa
    wave = fit_duration(np.asarray(wave, dtype=np.float32), cfg.n_samples)
    spec = librosa.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                        window="hann", center=True, pad_mode="constant")[:, :cfg.frames]
    power = spec.real ** 2 + spec.imag ** 2                     # (n_fft/2+1, frames)
    return _mel_basis(cfg) @ power.astype(np.float32)


def clip_to_image(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return the uint8 image (n_mels, frames), low frequencies at the bottom, of float32 mono audio
    at cfg.sample_rate; normalization as documented in spec2img.config. Raises SilentClipError."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak <= 10 ** (cfg.silence_dbfs / 20):
        raise SilentClipError(f"silent (peak below {cfg.silence_dbfs:g} dBFS)")
    mel = mel_power(wave, cfg)
    top = float(mel.max())
    if not top > 0:
        raise SilentClipError("silent (no energy in the mel bands)")
    db = 10.0 * np.log10(np.maximum(mel, top * 10 ** (-cfg.top_db / 10)) / top)   # in [-top_db, 0]
    pixels = np.rint((db + cfg.top_db) * (255.0 / cfg.top_db))
    return np.ascontiguousarray(np.clip(pixels, 0, 255).astype(np.uint8)[::-1])


def load_clip(path: Path, cfg: SpecConfig) -> tuple[np.ndarray, AudioInfo]:
    """Return (float32 mono wave at cfg.sample_rate, file info), decoding only the first cfg.duration
    seconds: the audio that `audio_file_to_image` renders (conversion reads levels from it too)."""
    return load_audio(path, cfg.sample_rate, max_seconds=cfg.duration)


def audio_file_to_image(path: Path, cfg: SpecConfig) -> tuple[np.ndarray, AudioInfo]:
    """Return (image, file info) for one audio file, decoding only the first cfg.duration seconds."""
    wave, info = load_clip(path, cfg)
    return clip_to_image(wave, cfg), info
