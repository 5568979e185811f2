"""Audio-level augmentation for train clips: noise at a random SNR, pitch shift, time stretch.

Pure functions of (wave, parameters). The parameters of variant k of a clip are drawn from a
generator seeded by (seed, clip id, k), so a re-run, another shard or another machine makes the
same variant. Augmented audio goes through the same `clip_to_image` as every other clip.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SNR_DB_RANGE = (5.0, 30.0)        # white-noise signal-to-noise ratio, dB
SEMITONE_RANGE = (-2.0, 2.0)      # pitch shift, semitones
STRETCH_RANGE = (0.9, 1.1)        # time-stretch rate (>1 faster/shorter, <1 slower/longer)
TRANSFORMS = ("noise", "pitch", "stretch")
VOCODER_WINDOW_S = 0.032          # phase-vocoder window: librosa's default 2048 samples (128 ms at
                                  # 16 kHz) smears onsets and clicks across ~10 image columns


@dataclass(frozen=True)
class AugmentParams:
    snr_db: float | None = None      # add white noise at this SNR; None = no noise
    semitones: float | None = None   # pitch shift; None = none
    stretch: float | None = None     # time-stretch rate; None = none
    noise_seed: int = 0              # seed of the noise samples

    def describe(self) -> str:
        """Return a short human-readable description, e.g. 'noise 12.3dB+pitch -1.40st'."""
        parts = []
        if self.snr_db is not None:
            parts.append(f"noise {self.snr_db:.1f}dB")
        if self.semitones is not None:
            parts.append(f"pitch {self.semitones:+.2f}st")
        if self.stretch is not None:
            parts.append(f"stretch x{self.stretch:.3f}")
        return "+".join(parts) or "none"


def _stable_hash(text: str) -> int:
    """Return a 64-bit hash of `text` that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def variant_params(seed: int, clip_id: str, k: int) -> AugmentParams:
    """Return the parameters of augmented variant `k` (1-based) of `clip_id`: one transform or a
    combination, chosen uniformly among the 7 non-empty subsets, each parameter uniform in its range."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _stable_hash(clip_id), int(k)])
    subset = int(rng.integers(1, 2 ** len(TRANSFORMS)))          # bit mask, 1..7
    use = {name: bool(subset >> i & 1) for i, name in enumerate(TRANSFORMS)}
    snr = float(rng.uniform(*SNR_DB_RANGE))
    semitones = float(rng.uniform(*SEMITONE_RANGE))
    stretch = float(rng.uniform(*STRETCH_RANGE))
    noise_seed = int(rng.integers(0, 2 ** 32))
    return AugmentParams(snr_db=snr if use["noise"] else None,
                         semitones=semitones if use["pitch"] else None,
                         stretch=stretch if use["stretch"] else None,
                         noise_seed=noise_seed)


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Return `wave` plus white Gaussian noise whose power is `snr_db` below the wave's mean power."""
    power = float(np.mean(np.square(wave, dtype=np.float64)))
    noise_std = np.sqrt(power / 10 ** (snr_db / 10))
    return (wave + rng.standard_normal(wave.shape) * noise_std).astype(np.float32)


def vocoder_fft(sample_rate: int) -> int:
    """Return the phase-vocoder FFT size: the power of two nearest VOCODER_WINDOW_S seconds."""
    return int(2 ** round(np.log2(VOCODER_WINDOW_S * sample_rate)))


def pitch_shift(wave: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Return `wave` shifted by `semitones` at the same length (phase vocoder + resampling)."""
    import librosa
    return librosa.effects.pitch_shift(np.asarray(wave, np.float32), sr=sample_rate, n_steps=semitones,
                                       n_fft=vocoder_fft(sample_rate)).astype(np.float32)


def time_stretch(wave: np.ndarray, sample_rate: int, rate: float) -> np.ndarray:
    """Return `wave` played `rate` times faster at the same pitch (length divided by `rate`)."""
    import librosa
    return librosa.effects.time_stretch(np.asarray(wave, np.float32), rate=rate,
                                        n_fft=vocoder_fft(sample_rate)).astype(np.float32)


def augment_wave(wave: np.ndarray, sample_rate: int, params: AugmentParams) -> np.ndarray:
    """Return the augmented float32 wave: time stretch, then pitch shift, then noise (SNR measured
    on the transformed signal)."""
    out = np.asarray(wave, np.float32)
    if params.stretch is not None:
        out = time_stretch(out, sample_rate, params.stretch)
    if params.semitones is not None:
        out = pitch_shift(out, sample_rate, params.semitones)
    if params.snr_db is not None:
        out = add_noise(out, params.snr_db, np.random.default_rng(params.noise_seed))
    return out
