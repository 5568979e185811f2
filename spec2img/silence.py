"""Where the speech is: leading and trailing silence of a clip, measured one way for the whole project.

Conversion's `--trim-silence` and the shortcut audit (silence length per clip) both call
`speech_bounds`, so "silence" means the same thing everywhere: frames of TRIM_FRAME_S seconds,
hop TRIM_HOP_S, whose RMS is more than `top_db` below the clip's loudest frame
(librosa.effects.trim). The level is relative, so it does not depend on recording gain; a clip
of steady noise or hum has no silence at any level.
"""
from __future__ import annotations

import numpy as np

TRIM_FRAME_S = 0.025   # RMS frame, seconds (25 ms: the usual speech analysis frame)
TRIM_HOP_S = 0.010     # hop between frames, seconds: the resolution of the bounds
SILENCE_TOP_DB = 40.0  # default level: frames more than 40 dB below the loudest frame are silence


def _frames(sample_rate: int) -> tuple[int, int]:
    return max(1, int(round(TRIM_FRAME_S * sample_rate))), max(1, int(round(TRIM_HOP_S * sample_rate)))


def speech_bounds(wave: np.ndarray, sample_rate: int, top_db: float = SILENCE_TOP_DB) -> tuple[int, int]:
    """Return (start, end) sample indices of the non-silent part of mono `wave`: from the first to
    the end of the last frame whose RMS is within `top_db` of the loudest frame; (0, 0) when the
    wave is empty or all zeros."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size == 0 or not np.any(wave):
        return 0, 0
    import librosa
    frame, hop = _frames(sample_rate)
    _, (start, end) = librosa.effects.trim(wave, top_db=top_db, frame_length=frame, hop_length=hop)
    return int(start), int(end)


def silence_durations(wave: np.ndarray, sample_rate: int, top_db: float = SILENCE_TOP_DB) -> tuple[float, float]:
    """Return (leading, trailing) silence in seconds, by `speech_bounds`; an all-zero wave is all leading."""
    start, end = speech_bounds(wave, sample_rate, top_db)
    n = int(np.asarray(wave).size)
    if end <= start:
        return n / sample_rate, 0.0
    return start / sample_rate, (n - end) / sample_rate


def trim_silence(wave: np.ndarray, sample_rate: int, top_db: float) -> np.ndarray:
    """Return `wave` without its leading and trailing silence (a view; empty when all silent)."""
    start, end = speech_bounds(wave, sample_rate, top_db)
    return np.asarray(wave)[start:end]
