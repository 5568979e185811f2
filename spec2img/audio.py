"""Decode any common audio file to float32 mono at one sample rate, or say why not."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import truncation

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".au", ".wma")
CUT_SEARCH_SECONDS = 1.0    # bisection of a cut FLAC/MP3 stops at this span, then reads on to the cut


class AudioError(Exception):
    """A clip that cannot be used; str() is the reason written to the manifest."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int   # Hz, as stored in the file
    channels: int
    duration: float    # seconds of the whole file: as its header states (probe_audio), as decoded (load_audio)


class TruncatedAudioError(AudioError):
    """The file holds less audio than its header promises; `info.duration` is the part that decodes."""

    def __init__(self, info: AudioInfo, stated: float | None):
        self.info, self.stated = info, stated
        said = ("the Ogg stream ends without its end-of-stream page" if stated is None
                else f"header says {stated:.2f} s")
        super().__init__(f"truncated: {said}, decoded {info.duration:.2f} s")

    def __reduce__(self):               # picklable across worker processes
        return type(self), (self.info, self.stated)


def probe_audio(path: Path) -> AudioInfo:
    """Return the file's rate, channels and duration (as its header states) without decoding it."""
    path = Path(path)
    if not path.exists():
        raise AudioError("file not found")
    if not path.is_file():
        raise AudioError("not a file (a folder or a device)")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except PermissionError:
        raise AudioError("permission denied: the file cannot be read (check its permissions)") from None
    except OSError as error:
        raise AudioError(f"cannot read the file ({error.strerror or error})") from None
    if not head:
        raise AudioError("empty file (0 bytes)")
    import soundfile as sf
    try:
        info = sf.info(str(path))
        frames = truncation.header_frames(path) if info.format in ("WAV", "WAVEX", "RF64", "AIFF") else None
        frames = info.frames if frames is None else frames
        return AudioInfo(int(info.samplerate), int(info.channels), float(frames) / info.samplerate)
    except Exception as sf_error:  # not a libsndfile format: try audioread (ffmpeg, gstreamer)
        not_audio = _not_audio(head)
        if not_audio:
            raise AudioError(f"not audio: {not_audio}") from None
        try:
            import audioread
            with audioread.audio_open(str(path)) as f:
                info = AudioInfo(int(f.samplerate), int(f.channels), float(f.duration))
        except Exception:
            info = None
        if info is None or not info.duration > 0 or info.sample_rate <= 0:
            # ffmpeg "opens" many non-audio files and reports no duration: that is not an empty clip
            raise AudioError(f"not a readable audio file ({_short(sf_error)})") from None
        return info


def load_audio(path: Path, sample_rate: int, max_seconds: float | None = None,
               offset: float = 0.0) -> tuple[np.ndarray, AudioInfo]:
    """Return (float32 mono samples at `sample_rate`, info of the file).

    Only `offset` .. `offset + max_seconds` is decoded, so memory is bounded on long files. When reading
    from the start, the file is also checked for truncation without decoding the rest (spec2img.truncation).
    Raises AudioError for empty, zero-length, truncated, undecodable or NaN/Inf-containing audio
    (TruncatedAudioError for a file holding less than its header states).
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
            if start == 0:
                expected = f.frames if n < 0 else min(n, f.frames)
                _raise_if_truncated(path, wave.shape[0], short=wave.shape[0] < expected, opened=f)
            return wave, int(f.samplerate)
    except AudioError:
        raise
    except Exception as sf_error:
        if start == 0:
            _raise_if_truncated(path, 0, short=False)   # a FLAC cut short fails to decode at the cut
        # libsndfile raises on corrupt FLAC/MP3 frames and on formats it lacks: try librosa/audioread
        try:
            import librosa
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(path), sr=None, mono=False, offset=offset, duration=max_seconds)
            y = np.atleast_2d(y).T if y.ndim == 1 else y.T
            return y.astype(np.float32), int(sr)
        except Exception:
            raise AudioError(f"cannot decode audio ({_short(sf_error)})") from None


def _raise_if_truncated(path: Path, decoded: int, short: bool, opened=None) -> None:
    """Raise TruncatedAudioError when the file holds less than it states. `decoded`: frames read from its
    start; `short`: that read stopped before the frames asked for (so `decoded` is all there is); `opened`:
    the file's soundfile.SoundFile when it is open already (its position is then moved)."""
    import soundfile as sf
    try:
        if opened is None:
            with sf.SoundFile(str(path)) as f:
                frames, sr, channels, fmt = f.frames, f.samplerate, f.channels, f.format
        else:
            frames, sr, channels, fmt = opened.frames, opened.samplerate, opened.channels, opened.format
    except Exception:
        return
    stated = truncation.header_frames(path) if fmt in ("WAV", "WAVEX", "RF64", "AIFF") else None
    if stated is not None:             # libsndfile counts the frames the file holds
        present = frames
    elif fmt in ("FLAC", "MP3"):       # STREAMINFO / Xing frame count; measure what decodes
        stated, hint = frames, None
        if fmt == "MP3" and not short:
            share = _mp3_share_present(path, frames / sr)
            if share is None:
                return
            hint = int(stated * share) - 2 * sr   # the bytes there say about where the audio stops
        if short:
            present = decoded
        else:
            with truncation.quiet_c_stderr():
                present = truncation.decodable_frames(lambda: sf.SoundFile(str(path)), stated, decoded,
                                                      max(1, int(CUT_SEARCH_SECONDS * sr)), hint, opened)
    elif fmt == "OGG":
        if not truncation.ogg_ends_cleanly(path):
            raise TruncatedAudioError(AudioInfo(sr, channels, frames / sr), None)
        return
    else:
        return
    if stated - present > truncation.TOLERANCE_SECONDS * sr:
        raise TruncatedAudioError(AudioInfo(sr, channels, present / sr), stated / sr)


def _mp3_share_present(path: Path, seconds: float) -> float | None:
    """Return the share of its stream an MP3 holds when its Xing/VBRI header states more bytes than the file
    has (a cut file), else None."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        sizes = truncation.mp3_stream_bytes(f, size)
    if sizes is None or seconds <= 0:
        return None
    stated, present = sizes
    if stated - present <= stated * truncation.TOLERANCE_SECONDS / seconds:
        return None
    return present / stated


def _not_audio(head: bytes) -> str:
    """Return what a file's first bytes show it is when that is plainly not audio ('' otherwise)."""
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer file, not the audio (run `git lfs pull` in the dataset's repository)"
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a failed download?)"
    if b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            return ""
        if all(c.isprintable() or c in "\r\n\t" for c in text):
            first = text.strip().splitlines()[0][:40] if text.strip() else ""
            return f"a text file (starts with {first!r})"
    return ""


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "does not exist or is not a regular file" in text:
        # libsndfile's MP3 probe says this about an existing file whose header it cannot parse
        return "unrecognized format or corrupt header"
    if text.rstrip(".") == "System error":
        return "the system refused to read it"
    text = text.split(": ", 1)[-1] if text.startswith("Error opening") else text
    return text[:160]
