"""Decode any common audio file to float32 mono at one sample rate, or say why not."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".au", ".wma")


class AudioError(Exception):
    """A clip that cannot be used; str() is the reason written to the manifest."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int   # Hz, as stored in the file
    channels: int
    duration: float    # seconds, of the whole file


def probe_audio(path: Path) -> AudioInfo:
    """Return the file's rate, channels and duration without decoding it all."""
    path = Path(path)
    if not path.is_file():
        raise AudioError("file not found")
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    import soundfile as sf
    try:
        info = sf.info(str(path))
        return AudioInfo(int(info.samplerate), int(info.channels), float(info.frames) / info.samplerate)
    except Exception as sf_error:  # not a libsndfile format: try audioread (ffmpeg, gstreamer)
        try:
            import audioread
            with audioread.audio_open(str(path)) as f:
                return AudioInfo(int(f.samplerate), int(f.channels), float(f.duration))
        except Exception:
            raise AudioError(f"not a readable audio file ({_short(sf_error)})") from None


def load_audio(path: Path, sample_rate: int, max_seconds: float | None = None,
               offset: float = 0.0) -> tuple[np.ndarray, AudioInfo]:
    """Return (float32 mono samples at `sample_rate`, info of the file).

    Only `offset` .. `offset + max_seconds` is decoded, so memory is bounded on long files.
    Raises AudioError for empty, zero-length, undecodable or NaN/Inf-containing audio.
    """
    info = probe_audio(path)
    if info.duration <= 0:
        raise AudioError("zero-length audio (no samples)")
    wave, sr = _decode(Path(path), info, max_seconds, offset)
    if wave.size == 0:
        raise AudioError("zero-length audio (no samples decoded)")
    if not np.all(np.isfinite(wave)):
        raise AudioError("audio contains NaN or Inf samples")
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if sr != sample_rate:
        import soxr
        wave = soxr.resample(wave, sr, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return wave, info


def _decode(path: Path, info: AudioInfo, max_seconds: float | None, offset: float) -> tuple[np.ndarray, int]:
    import soundfile as sf
    start = int(offset * info.sample_rate)
    stop = None if max_seconds is None else start + int(math.ceil(max_seconds * info.sample_rate))
    try:
        with sf.SoundFile(str(path)) as f:
            if start:
                f.seek(min(start, f.frames))
            n = -1 if stop is None else stop - start
            wave = f.read(n, dtype="float32", always_2d=True)
            if f.frames > 0 and wave.shape[0] == 0 and start < f.frames:
                raise AudioError("truncated or corrupt audio data (no frames could be decoded)")
            return wave, int(f.samplerate)
    except AudioError:
        raise
    except Exception as sf_error:
        # libsndfile raises on truncated FLAC/MP3 frames and on formats it lacks: try librosa/audioread
        try:
            import librosa
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(path), sr=None, mono=False, offset=offset, duration=max_seconds)
            y = np.atleast_2d(y).T if y.ndim == 1 else y.T
            return y.astype(np.float32), int(sr)
        except Exception:
            raise AudioError(f"cannot decode audio ({_short(sf_error)})") from None


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "does not exist or is not a regular file" in text:
        # libsndfile's MP3 probe says this about an existing file whose header it cannot parse
        return "unrecognized format or corrupt header"
    text = text.split(": ", 1)[-1] if text.startswith("Error opening") else text
    return text[:160]
