"""The synthetic talker: a source-filter model of speech (glottal pulses on a pitch contour, formant
resonators, aspiration, fricatives, stop bursts, pauses, room and microphone) for the bonafide clips.

Home-made throughout: librosa analyses audio but has no speech-synthesis pieces (glottal source, formant
resonators, time-varying filtering); scipy gives the filter designs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal
from scipy.fft import next_fast_len

from .dsp import butter, frame_signal

# Peterson & Barney (1952) adult male vowel formants F1, F2, F3 in Hz (ARPAbet names)
VOWELS = {"iy": (270, 2290, 3010), "ih": (390, 1990, 2550), "eh": (530, 1840, 2480),
          "ae": (660, 1720, 2410), "aa": (730, 1090, 2440), "ao": (570, 840, 2410),
          "uh": (440, 1020, 2240), "uw": (300, 870, 2240), "ah": (640, 1190, 2390),
          "er": (490, 1350, 1690)}
NASAL = (250, 1100, 2300)        # nasal murmur formants, Hz
ONSETS = ("", "s", "sh", "f", "stop", "nasal")          # syllable onsets
ONSET_P = (0.3, 0.15, 0.1, 0.1, 0.2, 0.15)
FRICATIVE_BANDS = {"s": (3800, 7600), "sh": (2000, 5500), "f": (1200, 7600)}   # Hz


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


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """Return (n,) white noise band-passed to lo..hi Hz (edges rounded to 50 Hz)."""
    hi = min(hi, 0.95 * sr / 2)
    return signal.sosfilt(butter(4, (round(lo / 50) * 50.0, round(hi / 50) * 50.0), "bandpass", sr),
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
    speech = signal.sosfilt(butter(2, float(rng.integers(5, 13) * 10), "highpass", sr), speech)
    if rng.random() < 0.6:                           # microphone / channel bandwidth
        speech = signal.sosfilt(butter(6, float(rng.integers(60, 79) * 100), "lowpass", sr), speech)
    return speech / (np.sqrt(np.mean(speech ** 2)) + 1e-12) * 0.05


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
