"""The spoofing systems of the demo corpus: vocoder-style resyntheses of a bonafide utterance (Griffin-Lim from a
mel spectrogram, LPC-10-style source-filter, a low-bit-rate transform codec, a harmonic-plus-noise vocoder).

librosa provides the STFT, the mel filter bank, Griffin-Lim, LPC (Burg) and pre-/de-emphasis; what is home-made
says why where it stands."""
from __future__ import annotations

import math
from functools import lru_cache

import librosa
import numpy as np
from scipy import signal

from .dsp import butter, frame_signal

SYSTEMS = ("griffinlim", "lpc", "codec", "sinusoidal")   # spoofing systems, in manifest order
HOP = 160                        # analysis hop of the vocoders (10 ms at 16 kHz)


# ----------------------------------------------------------------------------- analysis

def lpc_analysis(wave: np.ndarray, order: int, frame: int = 400, hop: int = HOP,
                 preemphasis: float = 0.97) -> tuple[np.ndarray, np.ndarray]:
    """Return (A polynomials (frames, order+1) with A[:,0]=1, residual RMS per frame) of the pre-emphasized
    signal: Burg's method (librosa.lpc) on Hann-windowed frames centred on multiples of `hop`."""
    pre = librosa.effects.preemphasis(wave, coef=preemphasis, zi=0.0)
    win = np.hanning(frame)
    x = frame_signal(pre, frame, hop) * win                                   # (frames, frame)
    a = librosa.lpc(x, order=order, axis=-1)
    residual = np.zeros((x.shape[0], frame + order))                         # A(z) applied to each frame
    for k in range(order + 1):
        residual[:, k:k + frame] += a[:, k:k + 1] * x
    return a, np.sqrt(np.sum(residual ** 2, axis=1) / np.sum(win ** 2))


def warm_up() -> None:
    """Load librosa.lpc's compiled code (numba: seconds) once, so that forked workers inherit it."""
    librosa.lpc(np.hanning(64)[None, :], order=2, axis=-1)


def estimate_pitch(wave: np.ndarray, sr: int, hop: int = HOP, fmin: float = 60.0,
                   fmax: float = 400.0) -> tuple[np.ndarray, np.ndarray]:
    """Return (F0 Hz, voiced bool) per hop-spaced frame: normalized autocorrelation of the 1 kHz low band."""
    # home-made: librosa.yin makes no voicing decision, and librosa.pyin's HMM takes about a second per clip
    frame = 2 * int(sr / fmin) + 2
    low = signal.sosfiltfilt(butter(4, 1000.0, "lowpass", sr), wave)
    win = np.hanning(frame)
    x = frame_signal(low, frame, hop)
    x = (x - x.mean(axis=1, keepdims=True)) * win
    spec = np.fft.rfft(x, 2 * frame)
    ac = np.fft.irfft(spec.real ** 2 + spec.imag ** 2)[:, :frame]
    wspec = np.fft.rfft(win, 2 * frame)
    wac = np.fft.irfft(wspec.real ** 2 + wspec.imag ** 2)[:frame]
    nac = ac / (ac[:, :1] + 1e-12) / (wac / wac[0])
    lo, hi = int(sr / fmax), int(sr / fmin)
    lag = np.argmax(nac[:, lo:hi], axis=1) + lo
    rows = np.arange(lag.size)
    peak = nac[rows, lag]
    y0, y1, y2 = nac[rows, lag - 1], peak, nac[rows, np.minimum(lag + 1, frame - 1)]
    shift = 0.5 * (y0 - y2) / np.where(np.abs(y0 - 2 * y1 + y2) > 1e-9, y0 - 2 * y1 + y2, 1e-9)
    f0 = sr / (lag + np.clip(shift, -1, 1))
    energy = np.mean(frame_signal(wave, frame, hop) ** 2, axis=1)
    voiced = (peak > 0.5) & (energy > energy.max() * 10 ** (-35 / 10))
    voiced = signal.medfilt(voiced.astype(float), 5) > 0.5
    f0 = np.where(voiced, signal.medfilt(f0, 5), 0.0)
    return f0, voiced


def _fill_unvoiced(f0: np.ndarray, voiced: np.ndarray, default: float = 120.0) -> np.ndarray:
    """Return F0 with unvoiced frames interpolated from the voiced neighbours (for continuous phase)."""
    if not np.any(voiced):
        return np.full(f0.shape, default)
    idx = np.flatnonzero(voiced)
    return np.interp(np.arange(f0.size), idx, f0[idx])


def _allpole_blocks(excitation: np.ndarray, a: np.ndarray, hop: int) -> np.ndarray:
    """Return `excitation` through 1/A(z), A (blocks, order+1) switching every `hop` samples; the filter
    state is rebuilt from the past outputs at each switch (direct form I), so no switching transient."""
    # home-made: librosa has no time-varying filter
    order = a.shape[1] - 1
    j, i = np.meshgrid(np.arange(order), np.arange(order))
    pick = i + 1 + j                                               # zi[i] = -sum_j a[i+1+j]·y[n-1-j]
    state = np.where(pick <= order, np.pad(a, ((0, 0), (0, order)))[:, pick], 0.0)   # (blocks, order, order)
    out = np.zeros(excitation.size + order)                        # out[order + n] is y[n]
    for b in range(-(-excitation.size // hop)):
        lo, hi = b * hop, min(excitation.size, (b + 1) * hop)
        k = min(b, a.shape[0] - 1)
        zi = -state[k] @ out[lo:lo + order][::-1]                  # from y[lo-1], y[lo-2], ...
        out[order + lo:order + hi] = signal.lfilter([1.0], a[k], excitation[lo:hi], zi=zi)[0]
    return out[order:]


# ----------------------------------------------------------------------------- the systems

@lru_cache(maxsize=4)
def _mel_and_pinv(sr: int, n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (HTK-style triangular mel filterbank (n_mels, n_fft/2+1) over 0..sr/2, its pseudo-inverse)."""
    mel = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sr / 2, htk=True, norm=None,
                              dtype=np.float64)
    return mel, np.linalg.pinv(mel)


def spoof_griffinlim(wave: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Return `wave` rebuilt from its smoothed 80-band magnitude mel spectrogram by a few Griffin-Lim
    iterations (Tacotron-era TTS: 1024-point FFT, hop 256, pseudo-inverse mel, power sharpening)."""
    n_fft, hop = 1024, 256
    stft = dict(n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="constant")
    mel, pinv = _mel_and_pinv(sr, n_fft, 80)
    mag = np.abs(librosa.stft(wave, **stft))                                      # (bins, frames)
    log_mel = np.log(mel @ mag + 1e-5)
    # the over-smoothed frames an acoustic model predicts
    log_mel[:, 1:-1] = 0.25 * log_mel[:, :-2] + 0.5 * log_mel[:, 1:-1] + 0.25 * log_mel[:, 2:]
    linear = np.maximum(pinv @ np.exp(log_mel), 0.0) ** rng.uniform(1.0, 1.3)
    # fast Griffin-Lim (Perraudin et al. 2013) from random phases
    return librosa.griffinlim(linear, n_iter=int(rng.integers(8, 25)), length=wave.size, momentum=0.99,
                              init="random", random_state=rng, **stft)


def spoof_lpc(wave: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Return an LPC-10-style resynthesis: order-16 all-pole filters per 10 ms frame driven by an impulse
    train at the estimated pitch (voiced frames) or white noise (unvoiced), no jitter, no shimmer."""
    a, gain = lpc_analysis(wave, order=16)
    f0, voiced = estimate_pitch(wave, sr)
    n = wave.size
    exc = np.zeros(n)
    pos = 0.0
    for j in range(-(-n // HOP)):
        start, stop = j * HOP, min(n, (j + 1) * HOP)
        fj = min(j, f0.size - 1)
        if voiced[fj]:
            period = sr / f0[fj]
            pos = max(pos, start)
            while pos < stop:
                exc[int(pos)] = gain[fj] * math.sqrt(period)
                pos += period
        else:
            exc[start:stop] = rng.standard_normal(stop - start) * gain[fj]
    return librosa.effects.deemphasis(_allpole_blocks(exc, a, HOP), coef=0.97, zi=0.0)


def spoof_sinusoidal(wave: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Return a harmonic-plus-noise resynthesis (parametric-TTS vocoders such as WORLD): harmonics of the
    smoothed pitch track with LPC-envelope amplitudes and fixed random phases, LPC-shaped noise elsewhere."""
    order = 20
    a, gain = lpc_analysis(wave, order=order)
    f0, voiced = estimate_pitch(wave, sr)
    n = wave.size
    frames = f0.size
    f0_track = _fill_unvoiced(f0, voiced)
    f0_s = np.interp(np.arange(n), np.arange(frames) * HOP, f0_track)
    phase = 2 * np.pi * np.cumsum(f0_s) / sr
    f0_low = float(np.percentile(f0_track[voiced], 5)) if voiced.any() else 120.0
    n_harm = max(1, int(0.475 * sr / max(f0_low, 50.0)))
    omega = 2 * np.pi * np.arange(1, n_harm + 1)[None, :] * f0_track[:, None] / sr  # (frames, K)
    bins = np.minimum(np.rint(omega / (2 * np.pi) * 1024).astype(int), 512)
    a_resp = np.take_along_axis(np.abs(np.fft.rfft(a, 1024, axis=1)), bins, axis=1)  # |A(e^jw)| at harmonics
    de_emph = np.abs(1.0 - 0.97 * np.exp(-1j * omega))
    amp = 2 * gain[:, None] * np.sqrt(f0_track[:, None] / sr) / (a_resp * de_emph + 1e-9)
    amp = (amp * (omega < 2 * np.pi * 0.475) * voiced[:, None]).T                  # (K, frames)
    amp = amp * np.exp(1j * rng.uniform(0, 2 * np.pi, size=n_harm))[:, None]      # fixed random phases
    n_hops = -(-n // HOP)                              # samples in hop j: frames j and j+1 crossfade
    z = np.exp(1j * np.pad(phase, (0, n_hops * HOP - n))).reshape(n_hops, HOP)
    here, after = amp[:, :n_hops], amp[:, np.minimum(np.arange(1, n_hops + 1), frames - 1)]
    acc_here, acc_after = np.zeros_like(z), np.zeros_like(z)
    for h in range(n_harm - 1, -1, -1):                # Horner: sum_h coef_h · z^(h+1)
        acc_here += here[h][:, None]
        acc_here *= z
        acc_after += after[h][:, None]
        acc_after *= z
    frac = np.arange(HOP) / HOP
    harmonic = ((1 - frac) * acc_here.real + frac * acc_after.real).reshape(-1)[:n]
    noise_gain = np.repeat(np.where(voiced, 0.15, 1.0) * gain, HOP)[:n]
    noise = librosa.effects.deemphasis(_allpole_blocks(rng.standard_normal(n) * noise_gain, a, HOP),
                                       coef=0.97, zi=0.0)
    return harmonic + noise


@lru_cache(maxsize=2)
def _mdct_basis(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (MDCT cosine basis (half, 2·half), sine window (2·half,))."""
    # home-made: librosa (and scipy) have no MDCT
    nn, kk = np.arange(2 * half), np.arange(half)
    basis = np.cos(np.pi / half * (nn[None, :] + 0.5 + half / 2) * (kk[:, None] + 0.5))
    return basis, np.sin(np.pi * (nn + 0.5) / (2 * half))


def spoof_codec(wave: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Return a low-bit-rate transform-codec round trip: 512-point MDCT, band-limited to 4.5–7.5 kHz, per-band
    scale factors in 1.5 dB steps, few bits per coefficient (quiet bands get none: spectral holes)."""
    half = 256
    basis, win = _mdct_basis(half)
    n = wave.size
    n_frames = -(-n // half) + 1
    padded = np.pad(wave, (half, n_frames * half - n))
    idx = np.arange(n_frames)[:, None] * half + np.arange(2 * half)[None, :]
    coef = (padded[idx] * win) @ basis.T                                          # (frames, half)
    freqs = (np.arange(half) + 0.5) * sr / (2 * half)
    coef[:, freqs > rng.uniform(4500, 7500)] = 0.0
    edges = [0, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256]
    band_db = np.stack([10 * np.log10(np.mean(coef[:, lo:hi] ** 2, axis=1) + 1e-20)
                        for lo, hi in zip(edges[:-1], edges[1:])], axis=1)       # (frames, bands)
    base_bits = rng.uniform(4.0, 5.5)                 # bits of the loudest band; one fewer per 9 dB below it
    bits = np.clip(np.round(base_bits + (band_db - band_db.max(axis=1, keepdims=True)) / 9.0), 0, 6)
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        peak = np.max(np.abs(coef[:, lo:hi]), axis=1) + 1e-20
        scale = 2.0 ** (np.ceil(np.log2(peak) * 4) / 4)                           # 1.5 dB steps
        step = 2 * scale / 2.0 ** bits[:, b]
        q = np.round(coef[:, lo:hi] / step[:, None]) * step[:, None]
        coef[:, lo:hi] = np.where(bits[:, b:b + 1] > 0, q, 0.0)
    frames = (coef @ basis) * win * (2.0 / half)
    out = np.zeros((n_frames + 1) * half)
    for j in range(n_frames):
        out[j * half:j * half + 2 * half] += frames[j]
    return out[half:half + n]


def output_stage(wave: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Return a spoof after the DC-blocking high-pass (50-120 Hz) that recordings also get from the
    microphone, so that the lowest band alone does not give a resynthesis away."""
    return signal.sosfilt(butter(2, float(rng.integers(5, 13) * 10), "highpass", sr), wave)


SPOOFERS = {"griffinlim": spoof_griffinlim, "lpc": spoof_lpc, "codec": spoof_codec,
            "sinusoidal": spoof_sinusoidal}
