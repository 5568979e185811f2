"""RawBoost's three data-boosting algorithms, ported to numpy with an explicit random generator.

Tak, Kamble, Patino, Todisco, Evans, "RawBoost: A Raw Data Boosting and Augmentation Method
applied to Automatic Speaker Verification Anti-Spoofing", ICASSP 2022. Ported from the authors'
reference implementation, TakHemlata/RawBoost-antispoofing `RawBoost.py` (MIT License,
Copyright (c) 2021 Hemlata Tak): the same filters, draws, gains and normalizations, and the
defaults of its `main.py`. Differences: every draw comes from the `rng` argument (the reference
uses numpy's global state), so a variant is reproducible from its seed; the notch-filter band
edges are clamped below the Nyquist frequency of any sample rate (the reference's 8 kHz maximum
centre frequency assumes 16 kHz audio).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NotchBank:
    """Settings of a random cascade of FIR band-stop filters (genNotchCoeffs)."""
    n_bands: int = 5          # notch filters in the cascade (more = stronger distortion)
    min_f: float = 20.0       # Hz, lowest centre frequency
    max_f: float = 8000.0     # Hz, highest centre frequency (clamped below Nyquist)
    min_bw: float = 100.0     # Hz, narrowest stop band
    max_bw: float = 1000.0    # Hz, widest stop band
    min_coeff: int = 10       # fewest FIR taps per filter (made odd)
    max_coeff: int = 100      # most FIR taps per filter
    min_g: float = 0.0        # dB, lowest gain after peak normalization
    max_g: float = 0.0        # dB, highest gain


LNL_BANK = NotchBank()                      # algorithm 1 (main.py defaults)
LNL_ORDER = 5                               # N_f: powers x, x², ..., x⁵ (non-linear components)
LNL_BIAS_DB = (5.0, 20.0)                   # minBiasLinNonLin, maxBiasLinNonLin: extra attenuation of x^i, i > 1
ISD_MAX_PERCENT = 10.0                      # P: at most this % of the samples get impulsive noise
ISD_GAIN = 2.0                              # g_sd
SSI_BANK = NotchBank()                      # algorithm 3 colours white noise with the same filter settings
SSI_SNR_DB = (10.0, 40.0)                   # SNRmin, SNRmax


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Return low + (high - low)·u, u uniform in [0, 1): numpy's legacy uniform, which the reference relies on
    for the non-linear gains (low -5 dB, high -20 dB); Generator.uniform refuses low > high."""
    return float(low + (high - low) * rng.random())


def normalize_peak(x: np.ndarray, always: bool) -> np.ndarray:
    """Return x scaled to peak 1 when `always`, or when its peak exceeds 1 (normWav)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return x / peak if peak > 0 and (always or peak > 1) else x


def notch_coefficients(bank: NotchBank, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Return the FIR coefficients of `bank.n_bands` random band-stop filters in cascade, peak gain
    normalized to a random `min_g`..`max_g` dB (genNotchCoeffs)."""
    from scipy import signal
    nyquist = sample_rate / 2
    b = np.ones(1)
    for _ in range(bank.n_bands):
        fc = _uniform(rng, bank.min_f, min(bank.max_f, nyquist))
        bw = _uniform(rng, bank.min_bw, bank.max_bw)
        taps = int(_uniform(rng, bank.min_coeff, bank.max_coeff))
        taps += taps % 2 == 0                                  # odd length: a type I band-stop is possible
        f1, f2 = max(fc - bw / 2, 1e-3), min(fc + bw / 2, nyquist - 1e-3)
        b = np.convolve(signal.firwin(taps, [f1, f2], window="hamming", fs=sample_rate), b)
    gain_db = _uniform(rng, bank.min_g, bank.max_g)
    _, response = signal.freqz(b, 1, fs=sample_rate)
    return 10 ** (gain_db / 20) * b / np.max(np.abs(response))


def filter_fir(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return x filtered by FIR `b`, shifted back by (len(b) + 1) // 2 samples (filterFIR; for the odd-length
    linear-phase filters used here that is one sample more than the group delay, as in the reference)."""
    from scipy import signal
    n = b.shape[0] + 1
    y = signal.lfilter(b, 1, np.pad(x, (0, n)))
    return y[n // 2:n // 2 + x.shape[0]]


def lnl_convolutive_noise(x: np.ndarray, sample_rate: int, rng: np.random.Generator,
                          order: int = LNL_ORDER, bank: NotchBank = LNL_BANK,
                          bias_db: tuple[float, float] = LNL_BIAS_DB) -> np.ndarray:
    """Algorithm 1, linear and non-linear convolutive noise: sum over i = 1..order of x^i through its own
    random notch cascade (components i > 1 attenuated by a further random bias), mean removed."""
    x = np.asarray(x, dtype=np.float64)
    y = np.zeros_like(x)
    for i in range(order):
        settings = bank if i == 0 else NotchBank(**{**bank.__dict__, "min_g": bank.min_g - bias_db[0],
                                                    "max_g": bank.max_g - bias_db[1]})
        y = y + filter_fir(np.power(x, i + 1), notch_coefficients(settings, sample_rate, rng))
    return normalize_peak(y - np.mean(y), always=False).astype(np.float32)


def isd_additive_noise(x: np.ndarray, percent: float, rng: np.random.Generator,
                       gain: float = ISD_GAIN) -> np.ndarray:
    """Algorithm 2, impulsive signal-dependent noise: `percent` % of the samples, picked at random, get
    gain·x·(product of two uniform(-1, 1)) added (RawBoost draws percent uniformly in 0..ISD_MAX_PERCENT)."""
    x = np.asarray(x, dtype=np.float64)
    y = x.copy()
    n = int(x.shape[0] * percent / 100)
    picked = rng.permutation(x.shape[0])[:n]
    factor = (2 * rng.random(n) - 1) * (2 * rng.random(n) - 1)
    y[picked] = x[picked] + gain * x[picked] * factor
    return normalize_peak(y, always=False).astype(np.float32)


def ssi_additive_noise(x: np.ndarray, sample_rate: int, snr_db: float, rng: np.random.Generator,
                       bank: NotchBank = SSI_BANK) -> np.ndarray:
    """Algorithm 3, stationary signal-independent noise: white noise coloured by a random notch cascade,
    added at `snr_db` (RawBoost draws it uniformly in SSI_SNR_DB)."""
    x = np.asarray(x, dtype=np.float64)
    noise = rng.normal(0, 1, x.shape[0])
    noise = normalize_peak(filter_fir(noise, notch_coefficients(bank, sample_rate, rng)), always=True)
    norm = np.linalg.norm(noise, 2)
    if norm > 0:
        noise = noise / norm * np.linalg.norm(x, 2) / 10.0 ** (0.05 * snr_db)
    return (x + noise).astype(np.float32)
