"""Tiny audio files for tests: a sine tone written with soundfile."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def write_tone(path, seconds: float = 1.0, sr: int = 16000, freq: float = 440.0, channels: int = 1,
               subtype: str = "PCM_16", amplitude: float = 0.3) -> Path:
    """Return `path` after writing a sine tone there (parent folders created, format from the extension).

    Where the format cannot hold `subtype` (e.g. PCM_16 in .ogg or .mp3) its default subtype is used.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").upper()
    fmt = {"OGA": "OGG", "OPUS": "OGG", "AIF": "AIFF"}.get(fmt, fmt)
    if not sf.check_format(fmt, subtype):
        subtype = {".opus": "OPUS", ".mp3": "MPEG_LAYER_III"}.get(path.suffix.lower()) or sf.default_subtype(fmt)
    t = np.arange(int(round(seconds * sr)), dtype=np.float64) / sr
    wave = amplitude * np.sin(2 * np.pi * freq * t)
    data = np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave
    sf.write(str(path), data.astype(np.float32), sr, format=fmt, subtype=subtype)
    return path
