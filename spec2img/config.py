"""Settings of the audio → spectrogram-image front end, saved as `images/spec.json`.

The normalization is documented here because every consumer depends on it:
  1. audio is decoded to float32 mono at `sample_rate` (channels averaged, resampled with soxr);
  2. it is cut to `duration` seconds: longer clips keep their first `duration` seconds, shorter
     ones are repeated end to end until they fill it (as AASIST and RawNet2 do);
  3. power mel spectrogram (`n_fft`, `win_length`, `hop_length`, Hann window, `n_mels` bands
     between `fmin` and `fmax`), keeping exactly `frames` = duration·sample_rate/hop_length columns;
  4. decibels relative to the clip's own loudest mel bin: dB = 10·log10(S / max S), floored at
     -`top_db` (so the image is independent of recording gain);
  5. uint8 pixel = round(255 · (dB + top_db) / top_db): 255 is the clip's peak, 0 is `top_db`
     below it or quieter;
  6. rows flipped so that low frequencies are at the bottom of the image (row 0 = highest band).
A clip whose peak is below `silence_dbfs` has no spectrum to normalize and is skipped
("skipped: silent"), never written as a blank image.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

SPEC_FILE = "spec.json"
SPEC_VERSION = 1


@dataclass(frozen=True)
class SpecConfig:
    sample_rate: int = 16_000   # Hz; every clip is resampled to this rate
    duration: float = 4.0       # seconds per image; first seconds kept, short clips repeat-padded
    n_mels: int = 128           # mel bands = image height
    n_fft: int = 512            # FFT size in samples (32 ms at 16 kHz)
    win_length: int = 400       # analysis window in samples (25 ms at 16 kHz)
    hop_length: int = 160       # hop in samples (10 ms at 16 kHz); width = duration·sr/hop
    fmin: float = 20.0          # Hz, lowest mel band edge
    fmax: float = 0.0           # Hz, highest mel band edge; 0 means sample_rate / 2
    top_db: float = 80.0        # dynamic range below the clip's peak mapped onto 0..255
    silence_dbfs: float = -90.0  # peak sample level (dBFS) below which a clip counts as silent
    version: int = field(default=SPEC_VERSION, metadata={"cli": False})  # bumped when the image computation changes

    @property
    def frames(self) -> int:
        """Image width in spectrogram columns."""
        return int(round(self.duration * self.sample_rate / self.hop_length))

    @property
    def n_samples(self) -> int:
        """Samples per clip after cropping or padding."""
        return int(round(self.duration * self.sample_rate))

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of every image this config produces."""
        return (self.n_mels, self.frames)

    @property
    def mel_fmax(self) -> float:
        return self.fmax if self.fmax > 0 else self.sample_rate / 2

    def validate(self) -> "SpecConfig":
        """Return self, or raise ValueError naming the setting that cannot work."""
        numbers = {"duration": self.duration, "fmin": self.fmin, "fmax": self.fmax, "top_db": self.top_db,
                   "silence_dbfs": self.silence_dbfs}
        not_finite = [f"{name}={value}" for name, value in numbers.items() if not math.isfinite(value)]
        if not_finite:
            raise ValueError(f"invalid spectrogram settings: {', '.join(not_finite)} must be a finite number")
        problems = []
        if self.sample_rate < 1000:
            problems.append(f"sample_rate={self.sample_rate} is below 1000 Hz")
        if self.duration <= 0:
            problems.append(f"duration={self.duration} must be positive")
        if self.win_length > self.n_fft:
            problems.append(f"win_length={self.win_length} exceeds n_fft={self.n_fft}")
        if self.hop_length <= 0:
            problems.append(f"hop_length={self.hop_length} must be positive")
        if not 8 <= self.n_mels <= self.n_fft // 2 + 1:
            problems.append(f"n_mels={self.n_mels} must be between 8 and n_fft/2+1={self.n_fft // 2 + 1}")
        if not 0 <= self.fmin < self.mel_fmax <= self.sample_rate / 2:
            problems.append(f"need 0 <= fmin ({self.fmin}) < fmax ({self.mel_fmax}) <= sample_rate/2")
        if self.top_db <= 0:
            problems.append(f"top_db={self.top_db} must be positive")
        if self.hop_length > 0 and self.frames < 8:
            problems.append(f"duration·sample_rate/hop_length = {self.frames} columns is too narrow")
        if problems:
            raise ValueError("invalid spectrogram settings: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_height"], d["image_width"] = self.image_shape
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SpecConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known}).validate()


def save_spec(cfg: SpecConfig, folder: Path) -> Path:
    """Write `folder/spec.json` atomically and return its path."""
    from .fileio import write_json
    return write_json(Path(folder) / SPEC_FILE, cfg.to_dict())


def load_spec(folder: Path) -> SpecConfig:
    """Read `folder/spec.json`; FileNotFoundError says what to run when it is missing, ValueError names the
    file when it is unreadable, not JSON or holds unusable settings."""
    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {folder} was not made by spec2img "
            f"(run `make images` or `spec2img SRC --out {folder}` first)")
    fix = f"restore it, or convert again (`spec2img SRC --out {folder} --overwrite`)"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read {path} ({error.strerror or error})") from None
    except ValueError as error:        # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON ({error}): {fix}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} holds no settings (a JSON object is expected): {fix}")
    try:
        return SpecConfig.from_dict(doc)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
