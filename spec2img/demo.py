"""The built-in SYNTHETIC demo corpus: speech-like bonafide clips and vocoder-style spoofs of them.

    python -m spec2img.demo data/demo [--clips-per-class N] [--seed S] [--workers W] [--overwrite]

Nothing in it was recorded. Bonafide clips come from a source-filter model of a talker (glottal
pulses on a pitch contour with jitter and shimmer, moving formant resonators, aspiration, fricatives,
stop bursts, pauses, room and microphone); each spoof clip is one bonafide utterance resynthesized by
one of the vocoder-style systems in `SYSTEMS`. The folder holds `manifest.csv` (file,label,system,
speaker; paths relative to it; no split column, so spec2img splits by speaker), the audio under
`audio/<bonafide|system>/`, `demo.json` (the settings) and `README.txt`. Everything is drawn from the
seed, per utterance, so the bytes do not depend on the number of workers; a re-run with the same
settings is a no-op and an interrupted run is completed.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal
from scipy.fft import next_fast_len

from .fileio import EXIT_WRITE_FAILED, OutputWriteError, atomic_path, output_error, remove_stale_parts, write_atomic
from .progress import progress
from .workers import end_with_parent, pool_context

GENERATOR_VERSION = 1            # bumped whenever the synthesis changes the audio
SYSTEMS = ("griffinlim", "lpc", "codec", "sinusoidal")   # spoofing systems, in manifest order
MANIFEST = "manifest.csv"
SETTINGS_FILE = "demo.json"
README_FILE = "README.txt"
AUDIO_DIR = "audio"
HOP = 160                        # analysis hop of the vocoders (10 ms at 16 kHz)

# Peterson & Barney (1952) adult male vowel formants F1, F2, F3 in Hz (ARPAbet names)
VOWELS = {"iy": (270, 2290, 3010), "ih": (390, 1990, 2550), "eh": (530, 1840, 2480),
          "ae": (660, 1720, 2410), "aa": (730, 1090, 2440), "ao": (570, 840, 2410),
          "uh": (440, 1020, 2240), "uw": (300, 870, 2240), "ah": (640, 1190, 2390),
          "er": (490, 1350, 1690)}
NASAL = (250, 1100, 2300)        # nasal murmur formants, Hz
ONSETS = ("", "s", "sh", "f", "stop", "nasal")          # syllable onsets
ONSET_P = (0.3, 0.15, 0.1, 0.1, 0.2, 0.15)
FRICATIVE_BANDS = {"s": (3800, 7600), "sh": (2000, 5500), "f": (1200, 7600)}   # Hz


class DemoError(Exception):
    """The target folder cannot take the synthetic corpus; str() says what to do."""


@dataclass(frozen=True)
class DemoConfig:
    clips_per_class: int = 200       # bonafide utterances; as many spoof clips, spread evenly over SYSTEMS
    speakers: int = 20               # synthetic talkers (alternately higher- and lower-pitched)
    seed: int = 0                    # every random draw derives from it: same seed, same bytes
    sample_rate: int = 16_000        # Hz, of every clip (written as 16-bit PCM WAV)
    min_seconds: float = 2.0         # shortest utterance
    max_seconds: float = 4.0         # longest utterance; a spoof has its source's exact length
    loudness_dbfs: float = -26.0     # RMS level every clip is normalized to ...
    loudness_spread_db: float = 2.0  # ... plus a uniform random offset within ± this
    version: int = GENERATOR_VERSION  # synthesis version, part of the settings a folder is checked against

    def validate(self) -> "DemoConfig":
        """Return self, or raise DemoError naming the setting that cannot work."""
        if self.clips_per_class < len(SYSTEMS):
            raise DemoError(f"--clips-per-class {self.clips_per_class} is too small: need at least "
                            f"{len(SYSTEMS)} so that every synthetic spoofing system appears")
        if not 1 <= self.speakers <= self.clips_per_class:
            raise DemoError(f"--speakers {self.speakers} must be between 1 and --clips-per-class")
        if self.seed < 0:
            raise DemoError(f"--seed {self.seed} must be 0 or positive")
        if not 0.5 <= self.min_seconds <= self.max_seconds:
            raise DemoError("need 0.5 <= min_seconds <= max_seconds")
        return self


@dataclass(frozen=True)
class Speaker:
    name: str               # speaker id written to the manifest, e.g. "F03"
    f0: float               # Hz, mean pitch
    formant_scale: float    # vocal-tract factor applied to every formant
    breathiness: float      # aspiration noise relative to the voicing
    jitter: float           # relative s.d. of successive glottal periods
    shimmer: float          # s.d. of successive pulse amplitudes, in natural-log units
    open_quotient: float    # open fraction of the glottal cycle (Rosenberg pulse)
    rate: float             # speaking-rate factor (1 = about 4 syllables/s)


@dataclass(frozen=True)
class Utterance:
    speaker: int            # index of the speaker
    index: int              # utterance number within the speaker
    n_samples: int          # length of the bonafide clip and of its spoof
    system: str             # the system that spoofs this utterance


@dataclass(frozen=True)
class DemoClip:
    clip_id: str            # file stem, unique in the corpus
    file: str               # path relative to the corpus folder
    label: str              # "bonafide" | "spoof"
    system: str             # spoofing system, "" for bonafide
    speaker: str            # speaker id


# ----------------------------------------------------------------------------- the plan

def make_speaker(seed: int, index: int) -> Speaker:
    """Return the voice parameters of synthetic speaker `index` (even: higher voice, odd: lower)."""
    rng = np.random.default_rng([seed, 1, index])
    high = index % 2 == 0
    return Speaker(
        name=f"{'F' if high else 'M'}{index // 2 + 1:02d}",
        f0=float(rng.uniform(165, 250) if high else rng.uniform(80, 140)),
        formant_scale=float(rng.uniform(1.08, 1.2) if high else rng.uniform(0.92, 1.03)),
        breathiness=float(rng.uniform(0.02, 0.12) if high else rng.uniform(0.01, 0.07)),
        jitter=float(rng.uniform(0.004, 0.015)),
        shimmer=float(rng.uniform(0.03, 0.1)),
        open_quotient=float(rng.uniform(0.5, 0.7) if high else rng.uniform(0.4, 0.6)),
        rate=float(rng.uniform(0.8, 1.25)))


def plan_corpus(cfg: DemoConfig) -> list[Utterance]:
    """Return every utterance: speakers in turn, systems cycling within each speaker, seeded lengths."""
    rng = np.random.default_rng([cfg.seed, 0])
    seconds = rng.uniform(cfg.min_seconds, cfg.max_seconds, size=cfg.clips_per_class)
    plan = []
    for u in range(cfg.clips_per_class):
        speaker, index = u % cfg.speakers, u // cfg.speakers
        plan.append(Utterance(speaker, index, int(round(seconds[u] * cfg.sample_rate)),
                              SYSTEMS[(index + speaker) % len(SYSTEMS)]))
    return plan


def utterance_clips(utt: Utterance, speaker: Speaker) -> tuple[DemoClip, DemoClip]:
    """Return the (bonafide, spoof) clips of one utterance."""
    stem = f"{speaker.name}_u{utt.index:03d}"
    return (DemoClip(stem, f"{AUDIO_DIR}/bonafide/{stem}.wav", "bonafide", "", speaker.name),
            DemoClip(f"{stem}_{utt.system}", f"{AUDIO_DIR}/{utt.system}/{stem}_{utt.system}.wav",
                     "spoof", utt.system, speaker.name))


def corpus_clips(cfg: DemoConfig) -> list[DemoClip]:
    """Return every clip of the corpus in manifest order (bonafide and its spoof, utterance by utterance)."""
    speakers = [make_speaker(cfg.seed, s) for s in range(cfg.speakers)]
    return [c for u in plan_corpus(cfg) for c in utterance_clips(u, speakers[u.speaker])]


# ----------------------------------------------------------------------------- bonafide synthesis

def _raised_cosine_gate(n: int, segments: list[tuple[float, float, float]], sr: int, ramp: float) -> np.ndarray:
    """Return a (n,) envelope swelling to `level` on each (start s, stop s, level) segment, cosine ramps."""
    env = np.zeros(n, dtype=np.float64)
    for start, stop, level in segments:
        a, b = int(start * sr), min(n, int(stop * sr))
        if b - a < 2:
            continue
        k = max(1, min(int(ramp * sr), (b - a) // 2))
        fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
        seg = level * (0.7 + 0.3 * np.sin(np.pi * np.arange(b - a) / (b - a)))   # syllable swell
        seg[:k] *= fade
        seg[b - a - k:] *= fade[::-1]
        env[a:b] = np.maximum(env[a:b], seg)
    return env


def _utterance_events(speaker: Speaker, rng: np.random.Generator, seconds: float):
    """Return (voiced segments, formant targets, noise events, accent times) of a random utterance."""
    voiced, targets, noises, accents = [], [], [], []
    t = rng.uniform(0.08, 0.3)
    end = seconds - rng.uniform(0.12, 0.3)
    vowel_names = list(VOWELS)
    while t < end - 0.25:
        n_syllables = int(rng.integers(1, 4))
        stressed = int(rng.integers(n_syllables))
        for s in range(n_syllables):
            onset = ONSETS[rng.choice(len(ONSETS), p=ONSET_P)]
            if onset in FRICATIVE_BANDS:
                d = rng.uniform(0.06, 0.14) / speaker.rate
                noises.append((t, t + d, onset))
                t += 0.85 * d
            elif onset == "stop":
                closure, burst = rng.uniform(0.03, 0.07), rng.uniform(0.008, 0.02)
                noises.append((t + closure, t + closure + burst, "burst"))
                t += closure + burst
            elif onset == "nasal":
                d = rng.uniform(0.04, 0.08) / speaker.rate
                voiced.append((t, t + d, 0.3))
                targets.append((t + d / 2, NASAL))
                t += d
            v = rng.uniform(0.08, 0.22) / speaker.rate * (1.3 if s == stressed else 1.0)
            voiced.append((t, t + v, rng.uniform(0.6, 1.0) * (1.0 if s == stressed else 0.8)))
            targets.append((t + v / 2, VOWELS[vowel_names[rng.integers(len(vowel_names))]]))
            if s == stressed:
                accents.append(t + v / 2)
            t += v
            if t >= end - 0.1:
                break
        t += [0.0, rng.uniform(0.03, 0.1), rng.uniform(0.15, 0.45)][rng.choice(3, p=(0.3, 0.45, 0.25))]
    return voiced, targets, noises, accents


def _pitch_contour(speaker: Speaker, rng: np.random.Generator, n: int, sr: int, accents) -> np.ndarray:
    """Return F0 in Hz per sample: declination, accent peaks, slow drift, sometimes a final rise."""
    tt = np.arange(n) / sr
    seconds = n / sr
    log_f0 = np.interp(tt, [0, seconds], [rng.uniform(0.04, 0.12), -rng.uniform(0.08, 0.2)])
    for a in accents:
        log_f0 += rng.uniform(0.08, 0.25) * np.exp(-0.5 * ((tt - a) / rng.uniform(0.06, 0.15)) ** 2)
    knots = rng.standard_normal(int(seconds * 8) + 2) * 0.04
    log_f0 += np.interp(tt, np.linspace(0, seconds, knots.size), knots)
    if rng.random() < 0.2:      # question-like final rise
        log_f0 += 0.25 * np.clip((tt - (seconds - 0.5)) / 0.5, 0, 1) ** 2
    return speaker.f0 * np.exp(log_f0)


def _glottal_source(speaker: Speaker, rng: np.random.Generator, f0: np.ndarray, sr: int):
    """Return (glottal flow derivative, open-phase flow) per sample: Rosenberg pulses, jitter, shimmer."""
    n = f0.size
    max_periods = int(n * 450 / sr) + 2
    jit = rng.standard_normal(max_periods) * speaker.jitter
    shim = np.exp(rng.standard_normal(max_periods) * speaker.shimmer)
    onsets, periods = np.empty(max_periods), np.empty(max_periods)
    pos, k = 0.0, 0
    while pos < n and k < max_periods:
        period = sr / f0[int(pos)] * (1.0 + jit[k])
        onsets[k], periods[k] = pos, period
        pos += period
        k += 1
    onsets, periods, amps = onsets[:k], periods[:k], shim[:k]
    idx = np.searchsorted(onsets, np.arange(n), side="right") - 1
    phase = (np.arange(n) - onsets[idx]) / periods[idx]          # 0..1 within each period
    tp, tn = 0.66 * speaker.open_quotient, 0.34 * speaker.open_quotient
    flow = np.where(phase < tp, 0.5 - 0.5 * np.cos(np.pi * phase / tp),
                    np.where(phase < tp + tn, np.cos(0.5 * np.pi * (phase - tp) / tn), 0.0))
    flow *= amps[idx]
    return np.diff(flow, prepend=0.0), flow


def _resonator_cascade(formants: np.ndarray, bandwidths: np.ndarray, sr: int) -> np.ndarray:
    """Return the denominators (..., 2·K+1) of K cascaded 2-pole resonators at formants/bandwidths (..., K)
    in Hz; each resonator has unity gain at DC, so the numerator is the sum of the denominator."""
    r = np.exp(-np.pi * bandwidths / sr)
    a1, a2 = -2 * r * np.cos(2 * np.pi * formants / sr), r * r
    poly = np.zeros(formants.shape[:-1] + (2 * formants.shape[-1] + 1,))
    poly[..., 0] = 1.0
    for k in range(formants.shape[-1]):             # multiply in (1 + a1 z^-1 + a2 z^-2)
        poly[..., 2:] = poly[..., 2:] + a1[..., k:k + 1] * poly[..., 1:-1] + a2[..., k:k + 1] * poly[..., :-2]
        poly[..., 1] = poly[..., 1] + a1[..., k] * poly[..., 0]
    return poly


@lru_cache(maxsize=256)
def _butter(order: int, cutoff: tuple[float, ...] | float, btype: str, sr: int) -> np.ndarray:
    """Return a cached Butterworth design as second-order sections."""
    return signal.butter(order, cutoff, btype=btype, fs=sr, output="sos")


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """Return (n,) white noise band-passed to lo..hi Hz (edges rounded to 50 Hz)."""
    hi = min(hi, 0.95 * sr / 2)
    return signal.sosfilt(_butter(4, (round(lo / 50) * 50.0, round(hi / 50) * 50.0), "bandpass", sr),
                   rng.standard_normal(n))


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return (n,) unit-RMS 1/f noise."""
    m = next_fast_len(n)
    spec = np.fft.rfft(rng.standard_normal(m))
    spec /= np.sqrt(np.maximum(np.arange(spec.size), 1.0))
    x = np.fft.irfft(spec, m)[:n]
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def synthesize_bonafide(speaker: Speaker, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Return (n,) float64 speech-like audio of `speaker`: one utterance with pauses, room and microphone."""
    seconds = n / sr
    voiced, targets, noises, accents = _utterance_events(speaker, rng, seconds)
    f0 = _pitch_contour(speaker, rng, n, sr, accents)
    dflow, flow = _glottal_source(speaker, rng, f0, sr)
    voicing = _raised_cosine_gate(n, voiced, sr, ramp=0.035)
    aspiration = rng.standard_normal(n) * (0.3 + flow / (flow.max() + 1e-12))
    source = dflow / (np.sqrt(np.mean(dflow ** 2)) + 1e-12)
    source = voicing * (source + speaker.breathiness * 4.0 * aspiration)

    hop, frame = 128, 512                            # formants move every 8 ms; resonances ring < 32 ms
    n_blocks = 1 + n // hop
    centers = np.arange(n_blocks) * hop / sr
    key_t = np.array([t for t, _ in targets]) if targets else np.array([0.0])
    key_f = np.array([f for _, f in targets], dtype=float) if targets else np.array([VOWELS["ah"]], float)
    formants = np.empty((n_blocks, 5))
    for i in range(3):
        formants[:, i] = np.interp(centers, key_t, key_f[:, i])
    formants[:, 3], formants[:, 4] = 3300.0, 4300.0
    formants *= speaker.formant_scale * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * centers
                                                           + rng.uniform(0, 2 * np.pi)))[:, None]
    formants = np.minimum(formants, 0.45 * sr)
    bandwidths = np.array([60.0, 90.0, 130.0, 190.0, 260.0]) * rng.uniform(0.85, 1.25, size=5)
    denominators = _resonator_cascade(formants, np.broadcast_to(bandwidths, formants.shape), sr)
    responses = denominators.sum(axis=1, keepdims=True) / np.fft.rfft(denominators, 2 * frame, axis=1)
    speech = time_varying_filter(source, responses, hop, frame)
    level = np.sqrt(np.mean(speech[voicing > 0.5] ** 2)) if np.any(voicing > 0.5) else 1.0

    for start, stop, kind in noises:                 # fricatives and stop bursts
        a, b = int(start * sr), min(n, int(stop * sr))
        if b - a < 8:
            continue
        if kind == "burst":
            env = np.exp(-np.arange(b - a) / (0.3 * (b - a)))
            noise = _band_noise(rng, b - a, sr, 800, sr / 2) * 10 ** (rng.uniform(-10, -3) / 20)
        else:
            env = np.hanning(b - a) ** 0.7
            lo, hi = FRICATIVE_BANDS[kind]
            noise = _band_noise(rng, b - a, sr, lo * speaker.formant_scale, hi * speaker.formant_scale)
            noise *= 10 ** (rng.uniform(-20, -8 if kind != "f" else -14) / 20)
        speech[a:b] += level * env * noise

    if rng.random() < 0.6:                           # a small room
        rt60 = rng.uniform(0.12, 0.4)
        ir_t = np.arange(int(rt60 * sr)) / sr
        ir = rng.standard_normal(ir_t.size) * np.exp(-6.9 * ir_t / rt60)
        ir *= 10 ** (rng.uniform(-20, -10) / 20) / (np.sqrt(np.sum(ir ** 2)) + 1e-12)
        speech = speech + signal.fftconvolve(speech, ir)[:n]
    rms = np.sqrt(np.mean(speech ** 2)) + 1e-12
    speech = speech + _pink_noise(rng, n) * rms * 10 ** (rng.uniform(-58, -42) / 20)   # room tone
    speech = signal.sosfilt(_butter(2, float(rng.integers(5, 13) * 10), "highpass", sr), speech)
    if rng.random() < 0.6:                           # microphone / channel bandwidth
        speech = signal.sosfilt(_butter(6, float(rng.integers(60, 79) * 100), "lowpass", sr), speech)
    return speech / (np.sqrt(np.mean(speech ** 2)) + 1e-12) * 0.05


# ----------------------------------------------------------------------------- analysis for the vocoders

def frame_signal(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Return (1 + len//hop, frame) frames centred on multiples of `hop` (zero-padded at both ends)."""
    n_frames = 1 + wave.size // hop
    padded = np.pad(wave, (frame // 2, frame // 2 + hop))
    idx = np.arange(n_frames)[:, None] * hop + np.arange(frame)[None, :]
    return padded[idx]


def lpc_analysis(wave: np.ndarray, order: int, sr: int, frame: int = 400, hop: int = HOP,
                 preemphasis: float = 0.97) -> tuple[np.ndarray, np.ndarray]:
    """Return (A polynomials (frames, order+1) with A[:,0]=1, residual RMS per frame) of the pre-emphasized
    signal: autocorrelation method (Hann window, 60 Hz lag window), vectorized Levinson-Durbin."""
    pre = np.append(wave[:1], wave[1:] - preemphasis * wave[:-1])
    win = np.hanning(frame)
    x = frame_signal(pre, frame, hop) * win
    spec = np.fft.rfft(x, 2 * frame)
    r = np.fft.irfft(spec.real ** 2 + spec.imag ** 2)[:, :order + 1]
    r *= np.exp(-0.5 * (2 * np.pi * 60.0 / sr * np.arange(order + 1)) ** 2)
    r[:, 0] = r[:, 0] * (1 + 1e-6) + 1e-12
    a = np.zeros((x.shape[0], order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        k = -(r[:, i] + np.sum(a[:, 1:i] * r[:, i - 1:0:-1], axis=1)) / err
        a[:, 1:i] = a[:, 1:i] + k[:, None] * a[:, i - 1:0:-1]
        a[:, i] = k
        err *= 1.0 - k * k
    return a, np.sqrt(np.maximum(err, 0.0) / np.sum(win ** 2))


def estimate_pitch(wave: np.ndarray, sr: int, hop: int = HOP, fmin: float = 60.0,
                   fmax: float = 400.0) -> tuple[np.ndarray, np.ndarray]:
    """Return (F0 Hz, voiced bool) per hop-spaced frame: normalized autocorrelation of the 1 kHz low band."""
    frame = 2 * int(sr / fmin) + 2
    low = signal.sosfiltfilt(_butter(4, 1000.0, "lowpass", sr), wave)
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


def time_varying_filter(x: np.ndarray, responses: np.ndarray, hop: int, frame: int) -> np.ndarray:
    """Return `x` filtered by frequency responses (frames, n_fft/2+1), one per frame centred on each
    multiple of `hop`: Hann-windowed frames (`frame` a multiple of 2·hop) are convolved in the zero-padded
    FFT domain (n_fft = 2·frame) and overlap-added. Exact when each impulse response is shorter than `frame`."""
    n_fft, lead = 2 * frame, frame // hop            # `lead` frames of zeros before x complete the window sum
    frames = frame_signal(np.pad(x, (frame, frame)), frame, hop) * np.hanning(frame + 1)[:-1]  # periodic Hann
    rows = np.clip(np.arange(frames.shape[0]) - lead, 0, responses.shape[0] - 1)
    filtered = np.fft.irfft(np.fft.rfft(frames, n_fft, axis=1) * responses[rows], n_fft, axis=1)
    out = np.zeros((frames.shape[0] - 1) * hop + n_fft)
    for r in range(n_fft // hop):                    # add each hop-long slice of all frames at once
        out[r * hop:r * hop + frames.shape[0] * hop] += filtered[:, r * hop:(r + 1) * hop].reshape(-1)
    start = frame // 2 + frame
    return out[start:start + x.size] * (2.0 * hop / frame)     # periodic Hann at hop = frame/4 sums to 2


def _deemphasis(x: np.ndarray, coef: float = 0.97) -> np.ndarray:
    return signal.lfilter([1.0], [1.0, -coef], x)


# ----------------------------------------------------------------------------- the spoofing systems

@lru_cache(maxsize=4)
def _mel_and_pinv(sr: int, n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (HTK-style triangular mel filterbank (n_mels, n_fft/2+1) over 0..sr/2, its pseudo-inverse)."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)
    edges = 700.0 * (10 ** (np.linspace(0.0, hz_to_mel(sr / 2), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    mel = np.maximum(0.0, np.minimum(lower, upper))
    return mel, np.linalg.pinv(mel)


def stft(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Return the Hann-window STFT (frames, n_fft/2+1) of frames centred on multiples of `hop`."""
    return np.fft.rfft(frame_signal(wave, n_fft, hop) * np.hanning(n_fft + 1)[:-1], axis=1)


def istft(spec: np.ndarray, n_fft: int, hop: int, n: int) -> np.ndarray:
    """Return the (n,) weighted overlap-add inverse of `stft` (n_fft a multiple of hop)."""
    win = np.hanning(n_fft + 1)[:-1]
    frames = np.fft.irfft(spec, n_fft, axis=1) * win
    total = (frames.shape[0] - 1) * hop + n_fft
    out, norm = np.zeros(total + n_fft), np.zeros(total + n_fft)
    span = frames.shape[0] * hop
    for r in range(n_fft // hop):                    # add each hop-long slice of all frames at once
        out[r * hop:r * hop + span] += frames[:, r * hop:(r + 1) * hop].reshape(-1)
        norm[r * hop:r * hop + span] += np.tile(win[r * hop:(r + 1) * hop] ** 2, frames.shape[0])
    start = n_fft // 2
    return out[start:start + n] / np.maximum(norm[start:start + n], 1e-8)


def griffin_lim(magnitude: np.ndarray, n_fft: int, hop: int, n: int, n_iter: int,
                rng: np.random.Generator, momentum: float = 0.99) -> np.ndarray:
    """Return (n,) audio whose STFT magnitude approximates `magnitude` (frames, bins): fast Griffin-Lim
    (Perraudin et al. 2013) from random phases."""
    angles = np.exp(2j * np.pi * rng.random(magnitude.shape))
    rebuilt = np.zeros_like(angles)
    for _ in range(n_iter):
        previous = rebuilt
        rebuilt = stft(istft(magnitude * angles, n_fft, hop, n), n_fft, hop)
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles /= np.abs(angles) + 1e-16
    return istft(magnitude * angles, n_fft, hop, n)


def spoof_griffinlim(wave: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Return `wave` rebuilt from its smoothed 80-band magnitude mel spectrogram by a few Griffin-Lim
    iterations (Tacotron-era TTS: 1024-point FFT, hop 256, pseudo-inverse mel, power sharpening)."""
    n_fft, hop = 1024, 256
    mel, pinv = _mel_and_pinv(sr, n_fft, 80)
    mag = np.abs(stft(wave, n_fft, hop)).T                                       # (bins, frames)
    log_mel = np.log(mel @ mag + 1e-5)
    # the over-smoothed frames an acoustic model predicts
    log_mel[:, 1:-1] = 0.25 * log_mel[:, :-2] + 0.5 * log_mel[:, 1:-1] + 0.25 * log_mel[:, 2:]
    linear = np.maximum(pinv @ np.exp(log_mel), 0.0) ** rng.uniform(1.0, 1.3)
    return griffin_lim(linear.T, n_fft, hop, wave.size, int(rng.integers(8, 25)), rng)


def spoof_lpc(wave: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Return an LPC-10-style resynthesis: order-16 all-pole filters per 10 ms frame driven by an impulse
    train at the estimated pitch (voiced frames) or white noise (unvoiced), no jitter, no shimmer."""
    a, gain = lpc_analysis(wave, order=16, sr=sr)
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
    return _deemphasis(_allpole_blocks(exc, a, HOP))


def spoof_sinusoidal(wave: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Return a harmonic-plus-noise resynthesis (parametric-TTS vocoders such as WORLD): harmonics of the
    smoothed pitch track with LPC-envelope amplitudes and fixed random phases, LPC-shaped noise elsewhere."""
    order = 20
    a, gain = lpc_analysis(wave, order=order, sr=sr)
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
    noise = _deemphasis(_allpole_blocks(rng.standard_normal(n) * noise_gain, a, HOP))
    return harmonic + noise


@lru_cache(maxsize=2)
def _mdct_basis(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (MDCT cosine basis (half, 2·half), sine window (2·half,))."""
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
    return signal.sosfilt(_butter(2, float(rng.integers(5, 13) * 10), "highpass", sr), wave)


SPOOFERS = {"griffinlim": spoof_griffinlim, "lpc": spoof_lpc, "codec": spoof_codec,
            "sinusoidal": spoof_sinusoidal}


# ----------------------------------------------------------------------------- loudness and files

def normalize_loudness(wave: np.ndarray, dbfs: float, peak: float = 0.97) -> np.ndarray:
    """Return float32 `wave` scaled to `dbfs` RMS, scaled down further only if its peak would exceed `peak`."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) + 1e-12
    gain = 10 ** (dbfs / 20) / rms
    gain = min(gain, peak / (float(np.max(np.abs(wave))) + 1e-12))
    return (wave * gain).astype(np.float32)


def write_wav_atomic(path: Path, wave: np.ndarray, sr: int) -> None:
    """Write 16-bit PCM WAV to `path` atomically."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), wave, sr, subtype="PCM_16", format="WAV")


def utterance_waves(cfg: DemoConfig, utt: Utterance) -> tuple[np.ndarray, np.ndarray]:
    """Return the (bonafide, spoof) float32 waves of one utterance, loudness-normalized; pure function
    of (cfg, utt), so the bytes do not depend on which process makes them."""
    speaker = make_speaker(cfg.seed, utt.speaker)
    bona = synthesize_bonafide(speaker, np.random.default_rng([cfg.seed, 2, utt.speaker, utt.index]),
                               utt.n_samples, cfg.sample_rate)
    rng = np.random.default_rng([cfg.seed, 3, utt.speaker, utt.index])
    spoof = output_stage(SPOOFERS[utt.system](bona, rng, cfg.sample_rate), rng, cfg.sample_rate)
    levels = np.random.default_rng([cfg.seed, 4, utt.speaker, utt.index]).uniform(
        -cfg.loudness_spread_db, cfg.loudness_spread_db, size=2) + cfg.loudness_dbfs
    return normalize_loudness(bona, levels[0]), normalize_loudness(spoof, levels[1])


def _one_math_thread():
    """Return a context manager holding numpy's BLAS to one thread (no oversubscription, same bytes
    for any number of workers); a no-op where threadpoolctl (a scikit-learn dependency) is missing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _init_worker(parent_pid: int) -> None:
    """Pool initializer: end with the parent (spec2img.workers), leave Ctrl-C to it, one math thread."""
    import signal as system_signal   # `signal` here is scipy.signal
    end_with_parent(parent_pid)
    system_signal.signal(system_signal.SIGINT, system_signal.SIG_IGN)
    _one_math_thread().__enter__()


def _make_utterance(job: tuple[DemoConfig, Utterance, str, list[str]]) -> int:
    """Synthesize one utterance and write its missing files (given relative to `folder`); return how many."""
    cfg, utt, folder, missing = job
    bona, spoof = utterance_waves(cfg, utt)
    for rel in missing:
        wave = spoof if "/bonafide/" not in rel else bona
        write_wav_atomic(Path(folder) / rel, wave, cfg.sample_rate)
    return len(missing)


# ----------------------------------------------------------------------------- the corpus folder

def manifest_text(clips: list[DemoClip]) -> str:
    """Return manifest.csv: file,label,system,speaker, one row per clip, paths relative to the folder."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "label", "system", "speaker"])
    for c in clips:
        writer.writerow([c.file, c.label, c.system, c.speaker])
    return buf.getvalue()


def readme_text(cfg: DemoConfig, clips: list[DemoClip]) -> str:
    """Return README.txt of a corpus folder: that it is synthetic, how it was made, what is where."""
    per_system = {s: sum(c.system == s for c in clips) for s in SYSTEMS}
    n_bona = sum(c.label == "bonafide" for c in clips)
    return f"""SYNTHETIC DEMO CORPUS - not real speech, not real deepfakes.

Made by
    python -m spec2img.demo <this folder> --clips-per-class {cfg.clips_per_class} --speakers {cfg.speakers} --seed {cfg.seed}
(generator version {cfg.version}; settings in {SETTINGS_FILE}). Nothing here was recorded: every sample
was computed from the seed, so the same command gives the same bytes. Use it to try the pipeline
end to end; results on it say nothing about detecting real spoofed speech.

{len(clips)} clips, 16-bit PCM WAV, mono, {cfg.sample_rate} Hz, {cfg.min_seconds:g}-{cfg.max_seconds:g} s each, RMS normalized
to {cfg.loudness_dbfs:g} dBFS +/- {cfg.loudness_spread_db:g} dB; a spoof is exactly as long as its source, so neither
loudness nor duration gives it away.

bonafide ({n_bona} clips, audio/bonafide/<speaker>_u<NNN>.wav), {cfg.speakers} synthetic speakers
(F.. higher-pitched, M.. lower-pitched, each with its own pitch, vocal-tract length, breathiness,
jitter, shimmer and speaking rate): a source-filter model of an utterance. Rosenberg glottal pulses
follow a pitch contour (declination, accents on stressed syllables, slow drift, sometimes a final
rise) with period jitter and amplitude shimmer, plus pulsed aspiration noise; a cascade of five
resonators whose formants glide between vowel targets (Peterson & Barney) and nasal murmurs;
fricative noise (s, sh, f), stop closures and bursts; pauses between words; sometimes a small room
(reverberation), always a faint room tone, a microphone high-pass and often a 6-7.8 kHz low-pass.

spoof ({len(clips) - n_bona} clips, audio/<system>/<speaker>_u<NNN>_<system>.wav): each bonafide utterance
resynthesized by one vocoder-style system (cycled within each speaker):
  griffinlim  ({per_system['griffinlim']}) 80-band magnitude mel spectrogram, smoothed in time, pseudo-inverted and
              sharpened (power 1-1.3), phase rebuilt by 8-24 Griffin-Lim iterations (Tacotron-era TTS).
  lpc         ({per_system['lpc']}) LPC-10-style source-filter resynthesis: order-16 all-pole filter per 10 ms
              frame, impulse train at the estimated pitch or white noise; no jitter or shimmer.
  codec       ({per_system['codec']}) low-bit-rate transform-codec round trip: MDCT, band limit 4.5-7.5 kHz, coarse
              per-band quantization that leaves spectral holes.
  sinusoidal  ({per_system['sinusoidal']}) harmonic-plus-noise vocoder: harmonics of the smoothed pitch track with
              LPC-envelope amplitudes and fixed random phases, LPC-shaped noise elsewhere.
Every spoof then passes the same kind of 50-120 Hz high-pass as the bonafide microphone.

manifest.csv: file,label,system,speaker (file relative to this folder; system empty for bonafide).
It has no split column on purpose: spec2img splits by speaker, so an utterance and its spoofed
version never land in different splits. Convert with
    python -m spec2img <this folder> --out images --dataset auto
"""


def _folder_state(folder: Path, cfg: DemoConfig, overwrite: bool, log) -> None:
    """Check that `folder` is empty or holds a synthetic corpus of the same settings; with `overwrite`,
    remove an older synthetic corpus. Raises DemoError saying what to do otherwise."""
    if folder.exists() and not folder.is_dir():
        raise DemoError(f"{folder} is a file, not a folder: choose a new or empty folder for the synthetic corpus")
    settings_path = folder / SETTINGS_FILE
    if settings_path.is_file():
        try:
            old = json.loads(settings_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old == asdict(cfg):
            return
        if not overwrite:
            raise DemoError(f"{folder} holds a synthetic demo corpus made with other settings ({old}); "
                            f"pass --overwrite to replace it, or choose another folder")
        log(f"replacing the synthetic demo corpus in {folder} (other settings: {old})")
        shutil.rmtree(folder / AUDIO_DIR, ignore_errors=True)
        for name in (MANIFEST, README_FILE, SETTINGS_FILE):
            (folder / name).unlink(missing_ok=True)
        return
    if folder.is_dir() and any(folder.iterdir()):
        raise DemoError(f"{folder} is not empty and holds no synthetic demo corpus ({SETTINGS_FILE} missing): "
                        f"choose an empty or new folder for the synthetic demo corpus")


def _is_complete(path: Path, n_samples: int) -> bool:
    """Return True when `path` is a readable WAV of exactly `n_samples` frames."""
    try:
        return path.is_file() and sf.info(str(path)).frames == n_samples
    except Exception:
        return False


def generate_corpus(folder: Path, cfg: DemoConfig = DemoConfig(), workers: int = 0,
                    overwrite: bool = False, log=print) -> dict:
    """Write the synthetic corpus into `folder` (completing a partial one; a no-op when complete) and
    return a summary {"clips", "written", "seconds", "manifest"}."""
    cfg.validate()
    folder = Path(folder)
    _folder_state(folder, cfg, overwrite, log)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(error, folder) from None
    remove_stale_parts(folder / AUDIO_DIR, recursive=True)
    speakers = [make_speaker(cfg.seed, s) for s in range(cfg.speakers)]
    plan = plan_corpus(cfg)
    clips = [c for u in plan for c in utterance_clips(u, speakers[u.speaker])]
    manifest = folder / MANIFEST
    jobs = []
    for utt in plan:
        missing = [c.file for c in utterance_clips(utt, speakers[utt.speaker])
                   if not _is_complete(folder / c.file, utt.n_samples)]
        if missing:
            jobs.append((cfg, utt, str(folder), missing))
    summary = {"clips": len(clips), "written": 0, "seconds": 0.0, "manifest": str(manifest)}
    text = manifest_text(clips)
    if not jobs and manifest.is_file() and manifest.read_text() == text:
        log(f"synthetic demo corpus in {folder} is already complete ({len(clips)} clips, seed {cfg.seed}): "
            f"nothing to do")
        return summary

    write_atomic(folder / SETTINGS_FILE, json.dumps(asdict(cfg), indent=2) + "\n")
    write_atomic(folder / README_FILE, readme_text(cfg, clips))
    manifest.unlink(missing_ok=True)                 # written last: its presence means "complete"
    n_workers = min(len(jobs), workers if workers > 0 else (os.cpu_count() or 1))
    if not jobs:
        log(f"synthetic demo corpus in {folder}: every clip present, rewriting {MANIFEST}")
    else:
        log(f"synthesizing {sum(len(j[3]) for j in jobs)} of {len(clips)} synthetic clips "
            f"({len(jobs)} utterances) into {folder} with {max(n_workers, 1)} worker(s)")
    start = time.perf_counter()
    if n_workers <= 1:
        with _one_math_thread():
            written = sum(progress(map(_make_utterance, jobs), len(jobs), desc="synthesizing", unit="utterance"))
    else:
        with pool_context().Pool(n_workers, initializer=_init_worker, initargs=(os.getpid(),)) as pool:
            written = sum(progress(pool.imap_unordered(_make_utterance, jobs, chunksize=2), len(jobs),
                                   desc="synthesizing", unit="utterance"))
    write_atomic(manifest, text)
    summary.update(written=written, seconds=time.perf_counter() - start)
    log(f"synthetic demo corpus ready: {len(clips)} clips ({cfg.clips_per_class} bonafide, "
        f"{cfg.clips_per_class} spoof from {', '.join(SYSTEMS)}; {cfg.speakers} speakers); wrote {written} "
        f"in {summary['seconds']:.1f} s; manifest {manifest}")
    return summary


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m spec2img.demo",
                                description="Write the seeded SYNTHETIC demo corpus (speech-like bonafide "
                                            "clips and vocoder-style spoofs) with manifest.csv.")
    d = DemoConfig()
    p.add_argument("folder", type=Path, help="where to write the synthetic corpus (e.g. data/demo)")
    p.add_argument("--clips-per-class", type=int, default=d.clips_per_class,
                   help="bonafide utterances, and as many spoof clips spread over the systems")
    p.add_argument("--speakers", type=int, default=d.speakers, help="number of synthetic speakers")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every random draw (same seed, same bytes)")
    p.add_argument("--workers", type=int, default=0, help="processes; 0 = all cores, 1 = in this process")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a synthetic corpus made with other settings in the folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command line: generate the synthetic corpus; return the exit status."""
    args = _parse_args(argv)
    cfg = DemoConfig(clips_per_class=args.clips_per_class, speakers=min(args.speakers, args.clips_per_class),
                     seed=args.seed)
    try:
        if args.workers < 0:
            raise DemoError(f"--workers {args.workers} must be 0 (all cores) or more")
        generate_corpus(args.folder, cfg, workers=args.workers, overwrite=args.overwrite)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OutputWriteError as e:
        print(f"error: {e}\n  {e.advice}, then run the same command again: the clips written are kept and "
              f"only the rest are made", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted: the clips written are kept; run the same command again to finish", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
