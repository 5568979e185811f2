"""One-number properties of an audio file that can betray its class without any speech content.

Measured once, at conversion time, on the file as stored (its own sample rate, before any resampling),
and written into the manifest; the evaluation's shortcut audit (classify.shortcuts) asks how well each
one alone separates bona fide from spoof, and never decodes audio itself.
  leading_silence   seconds before the first frame within SILENCE_TOP_DB of the loudest (spec2img.silence)
  trailing_silence  seconds after the last such frame
  bandwidth         effective bandwidth, Hz: the highest frequency whose long-term power spectrum is within
                    BANDWIDTH_FLOOR_DB of the spectrum's peak (a file upsampled from 8 kHz stops near 4 kHz)
Duration, sample rate, channels and levels are in the manifest already (spec2img.manifest).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .audio import AudioInfo, load_audio
from .silence import SILENCE_TOP_DB, silence_durations

CUE_READ_SECONDS = 30.0    # files up to twice this are decoded whole; longer ones: this much of the start and end
BANDWIDTH_SECONDS = 10.0   # seconds from the start used for the long-term spectrum
BANDWIDTH_FLOOR_DB = 60.0  # a frequency carries meaningful energy within this many dB of the spectral peak
BANDWIDTH_FRAME_S = 0.032  # Welch segment length, seconds (rounded up to a power of two samples)
CUE_COLUMNS = ("leading_silence", "trailing_silence", "bandwidth")


def long_term_spectrum(wave: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (frequencies Hz, mean power per bin) by Welch's method: Hann frames of about BANDWIDTH_FRAME_S
    (a power of two samples), half overlapping, periodograms averaged; the scale is arbitrary."""
    import scipy.fft
    from numpy.lib.stride_tricks import sliding_window_view
    size = min(wave.size, 2 ** int(math.ceil(math.log2(BANDWIDTH_FRAME_S * sample_rate))))
    frames = sliding_window_view(wave, size)[::max(1, size // 2)]          # (frames, size), a view
    spectra = scipy.fft.rfft(frames * np.hanning(size).astype(wave.dtype), axis=1)
    return np.fft.rfftfreq(size, 1 / sample_rate), np.mean(spectra.real ** 2 + spectra.imag ** 2, axis=0)


def effective_bandwidth(wave: np.ndarray, sample_rate: int, floor_db: float = BANDWIDTH_FLOOR_DB) -> float:
    """Return the highest frequency (Hz) whose long-term power spectrum is within `floor_db` of its maximum;
    nan for a wave too short or without energy."""
    wave = np.asarray(wave, dtype=np.float32).ravel()
    if wave.size < 16 or not np.any(wave):
        return math.nan
    freqs, power = long_term_spectrum(wave, sample_rate)
    peak = power.max()
    if not peak > 0:
        return math.nan
    meaningful = np.flatnonzero(power >= peak * 10 ** (-floor_db / 10))
    return float(freqs[meaningful[-1]])


def wave_cues(head: np.ndarray, tail: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Return the cues of a mono wave at its own rate, from its first part `head` (leading silence, bandwidth)
    and its last part `tail` (trailing silence); pass the same wave twice when it is whole."""
    leading, trailing = silence_durations(head, sample_rate, SILENCE_TOP_DB)
    if tail is not head:
        trailing = silence_durations(tail, sample_rate, SILENCE_TOP_DB)[1]
    bandwidth = effective_bandwidth(head[:int(BANDWIDTH_SECONDS * sample_rate)], sample_rate)
    return {"leading_silence": leading, "trailing_silence": trailing, "bandwidth": bandwidth}


def file_cues(path: Path, info: AudioInfo) -> dict[str, float]:
    """Return the cues of an audio file decoded at its own sample rate (memory bounded: long files are read
    at their start and end only). Raises spec2img.audio.AudioError."""
    rate = info.sample_rate
    if info.duration <= 2 * CUE_READ_SECONDS:
        wave, _ = load_audio(path, rate)
        return wave_cues(wave, wave, rate)
    head, _ = load_audio(path, rate, max_seconds=CUE_READ_SECONDS)
    tail, _ = load_audio(path, rate, max_seconds=CUE_READ_SECONDS, offset=info.duration - CUE_READ_SECONDS)
    return wave_cues(head, tail, rate)


def cue_cells(cues: dict[str, float] | None) -> dict[str, str]:
    """Return the cues as manifest cells (seconds to the millisecond, Hz whole), "" where unknown."""
    cues = cues or {}

    def cell(name: str, fmt: str) -> str:
        value = cues.get(name)
        return "" if value is None or not math.isfinite(value) else format(value, fmt)
    return {"leading_silence": cell("leading_silence", ".3f"), "trailing_silence": cell("trailing_silence", ".3f"),
            "bandwidth": cell("bandwidth", ".0f")}
