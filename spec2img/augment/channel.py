"""Channel effects: telephone band-limiting and a random low-pass (Butterworth, zero phase)."""
from __future__ import annotations

import numpy as np

TELEPHONE_LOW_HZ = (200.0, 400.0)      # lower band edge drawn here (ITU-T G.712 passband starts at 300 Hz)
TELEPHONE_HIGH_HZ = (3000.0, 3700.0)   # upper band edge drawn here (G.712: 3400 Hz)
LOWPASS_HZ = (2000.0, 0.9)             # cutoff drawn from 2 kHz to 0.9 x Nyquist
FILTER_ORDER = 5                       # Butterworth order; applied forwards and backwards (zero phase, 10 in effect)


def butterworth(wave: np.ndarray, sample_rate: int, low_hz: float | None, high_hz: float | None) -> np.ndarray:
    """Return `wave` band-pass (both edges), high-pass or low-pass filtered, zero phase; an edge at or
    above Nyquist is dropped."""
    from scipy import signal
    nyquist = sample_rate / 2
    high_hz = high_hz if high_hz is not None and high_hz < nyquist else None
    if low_hz and high_hz:
        sos = signal.butter(FILTER_ORDER, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    elif high_hz:
        sos = signal.butter(FILTER_ORDER, high_hz, btype="lowpass", fs=sample_rate, output="sos")
    elif low_hz:
        sos = signal.butter(FILTER_ORDER, low_hz, btype="highpass", fs=sample_rate, output="sos")
    else:
        return np.asarray(wave, np.float32)
    return signal.sosfiltfilt(sos, np.asarray(wave, np.float64)).astype(np.float32)


def telephone_band(wave: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Return `wave` limited to the telephone band low_hz..high_hz (the sample rate is kept)."""
    return butterworth(wave, sample_rate, low_hz, high_hz)


def low_pass(wave: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """Return `wave` low-pass filtered at `cutoff_hz`."""
    return butterworth(wave, sample_rate, None, cutoff_hz)
