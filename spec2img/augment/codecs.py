"""Codec round trips in memory with libsndfile (soundfile): MP3, Opus, G.711 μ-law and A-law.

soundfile >= 0.13 bundles a libsndfile that encodes MP3 (LAME) and Ogg Opus and sets their bit rate
through `compression_level`; nothing is downloaded at run time. The measured bit rate (encoded bytes
over the clip's duration, container overhead included) is returned with the decoded audio.
"""
from __future__ import annotations

import io

import numpy as np

MP3_KBPS = (16, 24, 32, 40, 48, 56, 64)     # drawn uniformly: low to medium rates, where MP3 artefacts show
OPUS_KBPS = (8, 12, 16, 24, 32)             # drawn uniformly: Opus' speech range
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)   # the only rates Opus encodes
G711_RATE = 8000                            # G.711 is defined at 8 kHz
MP3_MAX_DELAY = 2 * 1152                    # samples: LAME + decoder delay is 1105 when no gapless header is read


class CodecUnavailable(RuntimeError):
    """The installed soundfile / libsndfile cannot encode a codec; the message says what to install."""


def _soundfile():
    import soundfile as sf
    return sf


def check_codec(fmt: str, subtype: str, kind: str) -> None:
    """Raise CodecUnavailable naming what to install when libsndfile cannot write `fmt`/`subtype`."""
    sf = _soundfile()
    try:
        available = subtype in sf.available_subtypes(fmt)
    except Exception:
        available = False
    if not available or (fmt in ("MP3", "OGG") and tuple(int(v) for v in sf.__version__.split(".")[:2]) < (0, 13)):
        raise CodecUnavailable(
            f"augmentation kind {kind!r} needs libsndfile with {fmt}/{subtype} encoding and soundfile >= 0.13 "
            f"(found soundfile {sf.__version__}, libsndfile {sf.__libsndfile_version__}): "
            f"run `.venv/bin/pip install 'soundfile>=0.13'` (its wheels bundle a libsndfile with MP3 and Opus), "
            f"or leave {kind!r} out of --augment-kinds")


def _resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return wave
    import soxr
    return soxr.resample(wave, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def _round_trip(wave: np.ndarray, rate: int, fmt: str, subtype: str, **options) -> tuple[np.ndarray, float]:
    """Return (decoded float32 wave, kbps of the encoded bytes) of `wave` encoded in memory."""
    sf = _soundfile()
    buffer = io.BytesIO()
    # clip to the codec's input range: a wave boosted above full scale would wrap in integer codecs
    sf.write(buffer, np.clip(wave, -1.0, 1.0), rate, format=fmt, subtype=subtype, **options)
    kbps = len(buffer.getvalue()) * 8 / (wave.size / rate) / 1000
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    return decoded.reshape(-1) if decoded.ndim == 1 else decoded.mean(axis=1), kbps


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Return exactly n samples: `wave` cut, or zero-padded at the end."""
    return wave[:n] if wave.size >= n else np.pad(wave, (0, n - wave.size))


def codec_delay(original: np.ndarray, decoded: np.ndarray, max_lag: int) -> int:
    """Return the lag (0..max_lag samples) at which `decoded` best matches `original` (cross-correlation)."""
    from scipy import signal
    if decoded.size <= original.size:
        return 0
    span = min(original.size, 4 * max_lag)
    corr = signal.correlate(decoded[:span + max_lag], original[:span], mode="valid", method="fft")
    return int(np.argmax(corr[:max_lag + 1]))


def mp3_level(kbps: float, rate: int) -> float:
    """Return libsndfile's compression_level for a constant `kbps` at `rate` (linear between the MPEG
    version's highest and lowest bit rates, as libsndfile maps it)."""
    low, high = (32, 320) if rate >= 32000 else (8, 160) if rate >= 16000 else (8, 64)
    return float(np.clip((high - kbps) / (high - low), 0.0, 0.99))


def mp3_round_trip(wave: np.ndarray, sample_rate: int, kbps: float) -> tuple[np.ndarray, float]:
    """Return (wave after MP3 encoding at about `kbps` constant bit rate and decoding, measured kbps);
    same length and alignment as the input."""
    rate = sample_rate if sample_rate in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000) else 16000
    x = _resample(wave, sample_rate, rate)
    y, measured = _round_trip(x, rate, "MP3", "MPEG_LAYER_III", compression_level=mp3_level(kbps, rate),
                              bitrate_mode="CONSTANT")
    y = y[codec_delay(x, y, MP3_MAX_DELAY):]
    return fit_length(_resample(fit_length(y, x.size), rate, sample_rate), wave.size), measured


def opus_round_trip(wave: np.ndarray, sample_rate: int, kbps: float) -> tuple[np.ndarray, float]:
    """Return (wave after Ogg Opus encoding at about `kbps` and decoding, measured kbps)."""
    rate = sample_rate if sample_rate in OPUS_RATES else 48000
    x = _resample(wave, sample_rate, rate)
    level = float(np.clip((256 - kbps) / 250, 0.0, 1.0))       # libsndfile: 256 kbps at 0 .. 6 kbps at 1
    y, measured = _round_trip(x, rate, "OGG", "OPUS", compression_level=level)
    return fit_length(_resample(fit_length(y, x.size), rate, sample_rate), wave.size), measured


def g711_round_trip(wave: np.ndarray, sample_rate: int, law: str) -> np.ndarray:
    """Return `wave` after G.711 (`law` "ULAW" or "ALAW") at 8 kHz: resampled to 8 kHz (which also band-limits
    it to 4 kHz), companded to 8 bits, decoded and resampled back."""
    x = _resample(wave, sample_rate, G711_RATE)
    y, _ = _round_trip(x, G711_RATE, "WAV", law)
    return fit_length(_resample(y, G711_RATE, sample_rate), wave.size)
