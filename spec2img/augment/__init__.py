"""Audio-level augmentation of train clips, chosen by kind; every variant reproducible and recorded.

Kinds (`--augment-kinds`, comma-separated; a group name stands for its kinds; kinds joined by '+'
form a chain applied left to right as one choice, e.g. `rawboost-lnl+rawboost-isd`, RawBoost's
series algorithm 5):
  rawboost   rawboost-lnl   linear and non-linear convolutive noise (RawBoost algorithm 1)
             rawboost-isd   impulsive signal-dependent noise on 0-10 % of the samples (algorithm 2)
             rawboost-ssi   stationary coloured additive noise at 10-40 dB SNR (algorithm 3)
  codec      mp3            MP3 round trip at 16-64 kbit/s constant bit rate
             opus           Ogg Opus round trip at 8-32 kbit/s
             mulaw, alaw    G.711 μ-law / A-law at 8 kHz (resampled down and back up)
  channel    telephone      band-pass to a telephone band (200-400 Hz .. 3.0-3.7 kHz)
             lowpass        low-pass at 2 kHz .. 0.9 x Nyquist
  classic    noise          white noise at 5-30 dB SNR
             pitch          pitch shift by -2..+2 semitones
             stretch        time stretch by 0.9..1.1
  all        every kind above
Variant k of a clip draws one entry of the list uniformly and then its parameters, from a generator
seeded by (seed, clip id, k): a re-run, another shard or another machine makes the same variant.
`AugmentParams.describe()` (the manifest's "augmentation" column) holds every drawn parameter,
including the seed of the kind's own random draws (noise samples, RawBoost filters). Augmented
audio goes through the same `clip_to_image` as every other clip.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import channel, classic, codecs, rawboost
from .classic import add_noise, pitch_shift, time_stretch  # noqa: F401  (the classic kinds' functions)
from .codecs import CodecUnavailable  # noqa: F401


@dataclass(frozen=True)
class Kind:
    group: str                                                   # group name that includes it
    draw: Callable[[np.random.Generator, int], dict]             # (rng, sample rate) -> parameters
    apply: Callable[[np.ndarray, int, dict, np.random.Generator], np.ndarray]  # (wave, sr, params, rng)
    codec: tuple[str, str] | None = None                         # libsndfile (format, subtype) it needs
    random_inside: bool = False                                  # uses its own random draws (seed recorded)


def _u(low: float, high: float) -> Callable[[np.random.Generator], float]:
    return lambda rng: float(rng.uniform(low, high))


KINDS: dict[str, Kind] = {
    "rawboost-lnl": Kind("rawboost", lambda rng, sr: {},
                         lambda w, sr, p, rng: rawboost.lnl_convolutive_noise(w, sr, rng), random_inside=True),
    "rawboost-isd": Kind("rawboost", lambda rng, sr: {"percent": _u(0, rawboost.ISD_MAX_PERCENT)(rng)},
                         lambda w, sr, p, rng: rawboost.isd_additive_noise(w, p["percent"], rng), random_inside=True),
    "rawboost-ssi": Kind("rawboost", lambda rng, sr: {"snr_db": _u(*rawboost.SSI_SNR_DB)(rng)},
                         lambda w, sr, p, rng: rawboost.ssi_additive_noise(w, sr, p["snr_db"], rng),
                         random_inside=True),
    "mp3": Kind("codec", lambda rng, sr: {"kbps": int(rng.choice(codecs.MP3_KBPS))},
                lambda w, sr, p, rng: codecs.mp3_round_trip(w, sr, p["kbps"])[0], codec=("MP3", "MPEG_LAYER_III")),
    "opus": Kind("codec", lambda rng, sr: {"kbps": int(rng.choice(codecs.OPUS_KBPS))},
                 lambda w, sr, p, rng: codecs.opus_round_trip(w, sr, p["kbps"])[0], codec=("OGG", "OPUS")),
    "mulaw": Kind("codec", lambda rng, sr: {}, lambda w, sr, p, rng: codecs.g711_round_trip(w, sr, "ULAW"),
                  codec=("WAV", "ULAW")),
    "alaw": Kind("codec", lambda rng, sr: {}, lambda w, sr, p, rng: codecs.g711_round_trip(w, sr, "ALAW"),
                 codec=("WAV", "ALAW")),
    "telephone": Kind("channel", lambda rng, sr: {"low_hz": _u(*channel.TELEPHONE_LOW_HZ)(rng),
                                                   "high_hz": _u(*channel.TELEPHONE_HIGH_HZ)(rng)},
                      lambda w, sr, p, rng: channel.telephone_band(w, sr, p["low_hz"], p["high_hz"])),
    "lowpass": Kind("channel", lambda rng, sr: {"cutoff_hz": _u(channel.LOWPASS_HZ[0],
                                                                max(channel.LOWPASS_HZ[0], channel.LOWPASS_HZ[1] * sr / 2))(rng)},
                    lambda w, sr, p, rng: channel.low_pass(w, sr, p["cutoff_hz"])),
    "noise": Kind("classic", lambda rng, sr: {"snr_db": _u(*classic.SNR_DB_RANGE)(rng)},
                  lambda w, sr, p, rng: classic.add_noise(w, p["snr_db"], rng), random_inside=True),
    "pitch": Kind("classic", lambda rng, sr: {"semitones": _u(*classic.SEMITONE_RANGE)(rng)},
                  lambda w, sr, p, rng: classic.pitch_shift(w, sr, p["semitones"])),
    "stretch": Kind("classic", lambda rng, sr: {"rate": _u(*classic.STRETCH_RANGE)(rng)},
                    lambda w, sr, p, rng: classic.time_stretch(w, sr, p["rate"])),
}
GROUPS: dict[str, tuple[str, ...]] = {g: tuple(k for k, v in KINDS.items() if v.group == g)
                                      for g in ("rawboost", "codec", "channel", "classic")}
GROUPS["all"] = tuple(KINDS)
DEFAULT_KINDS = "all"       # what --augment K applies when --augment-kinds is not given


class UnknownKindError(ValueError):
    """An --augment-kinds entry that is neither a kind nor a group; the message lists the known names."""


def expand_kinds(text: str) -> tuple[str, ...]:
    """Return the entries variants choose from: `text` split at commas, group names replaced by their
    kinds, chains ('a+b') kept as one entry; UnknownKindError names what is not known."""
    entries: list[str] = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        if item in GROUPS:
            entries += [k for k in GROUPS[item] if k not in entries]
            continue
        steps = [s.strip() for s in item.split("+")]
        unknown = [s for s in steps if s not in KINDS]
        if unknown:
            where = f" in the chain {item!r}" if len(steps) > 1 else ""
            raise UnknownKindError(
                f"unknown augmentation kind {unknown[0]!r}{where}; kinds: {', '.join(KINDS)}; groups: "
                f"{', '.join(GROUPS)} (a chain joins kinds with '+', e.g. rawboost-lnl+rawboost-isd)")
        chain = "+".join(steps)
        if chain not in entries:
            entries.append(chain)
    if not entries:
        raise UnknownKindError(f"--augment-kinds {text!r} names no augmentation kind; kinds: {', '.join(KINDS)}")
    return tuple(entries)


def check_available(entries: tuple[str, ...]) -> None:
    """Raise CodecUnavailable, naming what to install, when a codec kind in `entries` cannot be encoded here."""
    for kind in dict.fromkeys(k for entry in entries for k in entry.split("+")):
        if KINDS[kind].codec:
            codecs.check_codec(*KINDS[kind].codec, kind)


@dataclass(frozen=True)
class AugmentStep:
    kind: str                                   # one of KINDS
    values: tuple[tuple[str, float], ...] = ()  # drawn parameters, (name, value)
    seed: int = 0                               # seed of the kind's own random draws

    def describe(self) -> str:
        """Return e.g. 'mp3 kbps=24' or 'rawboost-ssi snr_db=23.1 seed=42'."""
        parts = [self.kind] + [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.values]
        if KINDS[self.kind].random_inside:
            parts.append(f"seed={self.seed}")
        return " ".join(parts)


@dataclass(frozen=True)
class AugmentParams:
    steps: tuple[AugmentStep, ...]              # applied in order

    def describe(self) -> str:
        """Return the manifest text: the steps' descriptions joined by ' + '."""
        return " + ".join(step.describe() for step in self.steps) or "none"


def _stable_hash(text: str) -> int:
    """Return a 64-bit hash of `text` that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def variant_params(seed: int, clip_id: str, k: int, entries: tuple[str, ...] = GROUPS["all"],
                   sample_rate: int = 16000) -> AugmentParams:
    """Return the parameters of augmented variant `k` (1-based) of `clip_id`: one entry of `entries`
    drawn uniformly, then each of its kinds' parameters uniformly in their ranges."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _stable_hash(clip_id), int(k)])
    entry = entries[int(rng.integers(len(entries)))]
    steps = []
    for kind in entry.split("+"):
        values = KINDS[kind].draw(rng, sample_rate)
        steps.append(AugmentStep(kind, tuple(values.items()), int(rng.integers(0, 2 ** 32))))
    return AugmentParams(tuple(steps))


def augment_wave(wave: np.ndarray, sample_rate: int, params: AugmentParams) -> np.ndarray:
    """Return the augmented float32 wave: each step of `params` in turn."""
    out = np.asarray(wave, np.float32)
    for step in params.steps:
        out = KINDS[step.kind].apply(out, sample_rate, dict(step.values), np.random.default_rng(step.seed))
        out = np.asarray(out, np.float32)
    return out
