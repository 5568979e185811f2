"""The one function that turns audio into a spectrogram image (conversion and prediction share it).

`load_clip` decodes what the image needs and applies the clip-level settings (silence trimming,
which part of a long clip is kept); `clip_to_image` renders a wave with the chosen front end.
Normalization and image sizes are documented in spec2img.config.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .audio import AudioError, AudioInfo, load_audio, probe_audio
from .config import LFCC_DELTA2_SCALE, LFCC_DELTA_SCALE, SpecConfig
from .silence import speech_bounds


class SilentClipError(AudioError):
    """The clip's peak is below the silence level, so it has no spectrum to normalize."""


class TrimmedAwayError(AudioError):
    """Silence trimming leaves (almost) nothing of the clip."""


# ----------------------------------------------------------------------------- clip level: which samples


def crop_start(total: int, n_samples: int, crop: str = "first") -> int:
    """Return the first sample of the `n_samples` kept from `total`: 0 for "first", the middle for "center"."""
    if total <= n_samples or crop == "first":
        return 0
    return (total - n_samples) // 2


def fit_duration(wave: np.ndarray, n_samples: int, crop: str = "first") -> np.ndarray:
    """Return exactly `n_samples`: the first (or, crop "center", the middle) ones of a long clip, or a
    short clip repeated end to end."""
    if wave.size == 0:
        raise AudioError("zero-length audio (no samples)")
    if wave.size >= n_samples:
        start = crop_start(wave.size, n_samples, crop)
        return wave[start:start + n_samples]
    reps = -(-n_samples // wave.size)
    return np.tile(wave, reps)[:n_samples]


def check_not_silent(wave: np.ndarray, cfg: SpecConfig) -> None:
    """Raise SilentClipError when the wave's peak is below cfg.silence_dbfs."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak <= 10 ** (cfg.silence_dbfs / 20):
        raise SilentClipError(f"silent (peak below {cfg.silence_dbfs:g} dBFS)")


def speech_span(wave: np.ndarray, cfg: SpecConfig) -> tuple[int, int]:
    """Return (start, end) samples of `wave` that trimming keeps (spec2img.silence, cfg.trim_db); raises
    SilentClipError, or TrimmedAwayError when less than cfg.trim_min_seconds remains."""
    check_not_silent(wave, cfg)
    start, end = speech_bounds(wave, cfg.sample_rate, cfg.trim_db)
    kept = (end - start) / cfg.sample_rate
    if end <= start or kept < cfg.trim_min_seconds:
        raise TrimmedAwayError(f"trimming leaves {kept:.2f} s of sound, less than trim_min_seconds="
                               f"{cfg.trim_min_seconds:g} (silence: {cfg.trim_db:g} dB below the loudest frame)")
    return start, end


def trim_to_speech(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return `wave` without leading and trailing silence; raises as `speech_span`."""
    start, end = speech_span(wave, cfg)
    return wave[start:end]


def select_excerpt(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return the samples an image shows: trimmed when cfg.trim_silence, then at most cfg.n_samples
    cut per cfg.crop (shorter ones are repeat-padded later, by clip_to_image)."""
    if cfg.trim_silence:
        wave = trim_to_speech(wave, cfg)
    if wave.size > cfg.n_samples:
        start = crop_start(wave.size, cfg.n_samples, cfg.crop)
        wave = wave[start:start + cfg.n_samples]
    return wave


def decode_window(info: AudioInfo, cfg: SpecConfig) -> tuple[float | None, float]:
    """Return (seconds to decode or None for all, offset) of a file: only what `select_excerpt` can use,
    so memory stays bounded on long files."""
    needed = cfg.read_seconds if cfg.trim_silence else cfg.duration
    if info.duration <= needed:
        return (None, 0.0) if cfg.trim_silence else (needed, 0.0)
    offset = (info.duration - needed) / 2 if cfg.crop == "center" else 0.0
    return needed, offset


def load_clip(path: Path, cfg: SpecConfig) -> tuple[np.ndarray, AudioInfo]:
    """Return (float32 mono wave at cfg.sample_rate, file info): the excerpt `audio_file_to_image`
    renders (trimmed and cropped per cfg, at most cfg.duration long; conversion reads levels from it).
    Raises AudioError (SilentClipError, TrimmedAwayError)."""
    if cfg.trim_silence or cfg.crop != "first":
        seconds, offset = decode_window(probe_audio(path), cfg)
    else:
        seconds, offset = cfg.duration, 0.0              # the first seconds: no need to know the length
    wave, info = load_audio(path, cfg.sample_rate, max_seconds=seconds, offset=offset)
    return select_excerpt(wave, cfg), info


# ----------------------------------------------------------------------------- front ends (pure numpy)


STFT_BLOCK = 64   # frames transformed at a time: every temporary stays in a core's own cache


def stft_power(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return the power STFT, float32 (n_fft/2+1, frames), of a wave of cfg.n_samples samples.

    Bit for bit librosa.stft(wave, n_fft, hop_length, win_length, window="hann", center=True,
    pad_mode="constant") (zero-padded frames times the float64 window, a float64 FFT stored as complex64),
    squared; computed here STFT_BLOCK frames at a time instead of through the whole complex matrix, which
    makes it ~1.7x faster and keeps two workers from competing for memory bandwidth."""
    from scipy.fft import rfft
    n_fft, hop, frames = cfg.n_fft, cfg.hop_length, cfg.frames
    padded = np.pad(np.asarray(wave, np.float32), n_fft // 2)
    framed = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:frames]   # (frames, n_fft), a view
    window = _stft_window(n_fft, cfg.win_length)
    power = np.empty((n_fft // 2 + 1, len(framed)), np.float32)
    for start in range(0, len(framed), STFT_BLOCK):
        spec = rfft(framed[start:start + STFT_BLOCK] * window, axis=-1).astype(np.complex64)   # (block, bins)
        power[:, start:start + STFT_BLOCK] = (spec.real ** 2 + spec.imag ** 2).T
    return power


@lru_cache(maxsize=8)
def _stft_window(n_fft: int, win_length: int) -> np.ndarray:
    """Return librosa.stft's analysis window: a periodic Hann of win_length, float64, centred in n_fft."""
    import librosa
    return librosa.util.pad_center(librosa.filters.get_window("hann", win_length, fftbins=True), size=n_fft)


@lru_cache(maxsize=8)
def _mel_basis(cfg: SpecConfig) -> np.ndarray:
    import librosa
    return librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                               fmin=cfg.fmin, fmax=cfg.mel_fmax).astype(np.float32)  # (n_mels, n_fft/2+1)


@lru_cache(maxsize=8)
def linear_filterbank(sample_rate: int, n_fft: int, n_filters: int) -> np.ndarray:
    """Return `n_filters` triangular filters, float32 (n_filters, n_fft/2+1), with peaks spaced evenly
    over 0..sample_rate/2 (edges at the neighbouring peaks), as the ASVspoof LFCC front end uses."""
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = np.linspace(0, sample_rate / 2, n_filters + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0, None).astype(np.float32)


def mel_power(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return the power mel spectrogram, float32 (n_mels, frames), of a clip already at cfg.sample_rate."""
    return _mel_basis(cfg) @ stft_power(fit_duration(np.asarray(wave, np.float32), cfg.n_samples, cfg.crop), cfg)


def cqt_power(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return the constant-Q power spectrogram, float32 (cqt_bins, frames), lowest bin first."""
    import librosa
    wave = fit_duration(np.asarray(wave, np.float32), cfg.n_samples, cfg.crop)
    c = librosa.cqt(wave, sr=cfg.sample_rate, hop_length=cfg.hop_length, fmin=cfg.cqt_fmin,
                    n_bins=cfg.cqt_bins, bins_per_octave=cfg.cqt_bins_per_octave)[:, :cfg.frames]
    return (c.real ** 2 + c.imag ** 2).astype(np.float32)


def power_spectrogram(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return the front end's power spectrogram (rows lowest frequency first, cfg.frames columns) for
    mel, linear and cqt."""
    if cfg.frontend == "mel":
        return mel_power(wave, cfg)
    if cfg.frontend == "linear":
        return stft_power(fit_duration(np.asarray(wave, np.float32), cfg.n_samples, cfg.crop), cfg)
    if cfg.frontend == "cqt":
        return cqt_power(wave, cfg)
    raise ValueError(f"frontend {cfg.frontend!r} has no power spectrogram")


def db_below_peak(power: np.ndarray, top_db: float) -> np.ndarray:
    """Return 10·log10(power / max power) floored at -top_db; SilentClipError when there is no energy."""
    top = float(power.max())
    if not top > 0:
        raise SilentClipError("silent (no energy in the spectrogram)")
    return 10.0 * np.log10(np.maximum(power, top * 10 ** (-top_db / 10)) / top)


def lfcc(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return [static; Δ; ΔΔ] linear-frequency cepstral coefficients, float32 (3·n_lfcc, frames), c0 first."""
    import librosa
    from scipy.fft import dct
    power = stft_power(fit_duration(np.asarray(wave, np.float32), cfg.n_samples, cfg.crop), cfg)
    energies = linear_filterbank(cfg.sample_rate, cfg.n_fft, cfg.lfcc_filters) @ power   # (filters, frames)
    log_energy = db_below_peak(energies, cfg.top_db) + cfg.top_db / 2                    # in [-top_db/2, top_db/2]
    static = dct(log_energy, type=2, norm="ortho", axis=0)[:cfg.n_lfcc]
    delta = librosa.feature.delta(static, width=3, axis=-1)
    delta2 = librosa.feature.delta(delta, width=3, axis=-1)
    return np.concatenate([static, delta, delta2]).astype(np.float32)


def lfcc_scales(cfg: SpecConfig) -> tuple[float, float, float]:
    """Return the value mapped to full scale in the static, Δ and ΔΔ blocks of an lfcc image."""
    static = cfg.top_db / 2 * float(np.sqrt(cfg.lfcc_filters))
    return static, static / LFCC_DELTA_SCALE, static / LFCC_DELTA2_SCALE


def cepstra_to_pixels(features: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return uint8 pixels of an lfcc feature matrix: 127.5 + 127.5·clip(value / block scale, -1, 1)."""
    scale = np.repeat(np.array(lfcc_scales(cfg), np.float32), cfg.n_lfcc)[:, None]
    return np.rint(127.5 + 127.5 * np.clip(features / scale, -1, 1)).astype(np.uint8)


def db_to_pixels(db: np.ndarray, top_db: float) -> np.ndarray:
    """Return uint8 pixels of dB values in [-top_db, 0]: 0 at -top_db, 255 at the peak."""
    return np.clip(np.rint((db + top_db) * (255.0 / top_db)), 0, 255).astype(np.uint8)


def clip_to_image(wave: np.ndarray, cfg: SpecConfig) -> np.ndarray:
    """Return the uint8 image cfg.image_shape, low frequencies (or c0) at the bottom, of float32 mono
    audio at cfg.sample_rate; a wave longer than cfg.duration is cropped per cfg.crop, a shorter one
    repeat-padded; normalization as documented in spec2img.config. Raises SilentClipError."""
    wave = np.asarray(wave, dtype=np.float32)
    check_not_silent(wave, cfg)
    if cfg.frontend == "lfcc":
        pixels = cepstra_to_pixels(lfcc(wave, cfg), cfg)
    else:
        pixels = db_to_pixels(db_below_peak(power_spectrogram(wave, cfg), cfg.top_db), cfg.top_db)
    return np.ascontiguousarray(pixels[::-1])


def audio_file_to_image(path: Path, cfg: SpecConfig) -> tuple[np.ndarray, AudioInfo]:
    """Return (image, file info) for one audio file, decoding only what the image needs."""
    wave, info = load_clip(path, cfg)
    return clip_to_image(wave, cfg), info
