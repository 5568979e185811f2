"""Signal helpers shared by the synthetic talker and the vocoders: framing and cached filter designs."""
from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np
from scipy import signal


def frame_signal(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Return (1 + len//hop, frame) frames centred on multiples of `hop` (zero-padded at both ends)."""
    padded = np.pad(wave, (frame // 2, frame // 2 + hop))
    return librosa.util.frame(padded, frame_length=frame, hop_length=hop, axis=0)[:1 + wave.size // hop]


@lru_cache(maxsize=256)
def butter(order: int, cutoff: tuple[float, ...] | float, btype: str, sr: int) -> np.ndarray:
    """Return a cached Butterworth design as second-order sections."""
    return signal.butter(order, cutoff, btype=btype, fs=sr, output="sos")
