"""Settings of the audio → spectrogram-image front end, saved as `images/spec.json`.

The normalization is documented here because every consumer depends on it.

Audio (every front end):
  1. audio is decoded to float32 mono at `sample_rate` (channels averaged, resampled with soxr);
  2. with `trim_silence`, leading and trailing silence is stripped (spec2img.silence.speech_bounds:
     frames of 25 ms, hop 10 ms, whose RMS is more than `trim_db` below the clip's loudest frame).
     The level is relative to the clip's own loudest frame, so an almost-all-silent clip (a short
     sound in silence or hum) keeps its loudest stretch; if less than `trim_min_seconds` remains the
     clip is skipped ("skipped: trimming leaves ..."). Files longer than `read_seconds` are trimmed
     within their first (crop "first") or middle (crop "center") `read_seconds`, keeping memory bounded;
  3. it is cut to `duration` seconds: `crop` "first" keeps the first `duration` seconds, "center"
     the middle ones; shorter clips are repeated end to end until they fill it (as AASIST and RawNet2 do);
  4. every front end uses an STFT or CQT with hop `hop_length`, keeping exactly
     `frames` = duration·sample_rate/hop_length columns (the image width).

Front ends (`frontend`), image height, and pixel values (uint8; rows flipped so that the lowest
frequency, or c0 for lfcc, is the bottom row):
  mel     `n_mels` rows: power mel spectrogram (`n_fft`, `win_length`, Hann window, bands between
          `fmin` and `fmax`);
  linear  n_fft/2+1 rows (257 at n_fft 512): power STFT, every bin from 0 Hz to sample_rate/2, so the
          high-frequency resolution is kept;
  cqt     `cqt_bins` rows: constant-Q power spectrogram (librosa.cqt), `cqt_bins_per_octave` bins per
          octave from `cqt_fmin`; the top bin's filter must stay below sample_rate/2;
  for these three: decibels relative to the clip's own loudest bin, dB = 10·log10(S / max S) floored
  at -`top_db` (so the image is independent of recording gain), and pixel = round(255·(dB + top_db)/top_db):
  255 is the clip's peak, 0 is `top_db` below it or quieter.
  lfcc    3·`n_lfcc` rows (60 by default): linear-frequency cepstral coefficients as in the ASVspoof
          LFCC baselines: `lfcc_filters` triangular filters spaced linearly over 0..sample_rate/2 on the
          power STFT; their energies in dB below the clip's loudest filter, floored at -top_db and
          centred by +top_db/2; orthonormal DCT-II; the first `n_lfcc` coefficients (c0 included),
          then Δ and ΔΔ (librosa.feature.delta, width 3: Δ = (c[t+1] - c[t-1]) / 2, ΔΔ = Δ of Δ). Blocks bottom to top:
          static, Δ, ΔΔ. Cepstra have no frequency rows: each block is mapped linearly with a fixed
          scale, pixel = round(127.5 + 127.5·clip(value / scale, -1, 1)) (128 ≈ 0), scale =
          top_db/2·sqrt(lfcc_filters) for the static block (c0 can never clip) and
          LFCC_DELTA_SCALE / LFCC_DELTA2_SCALE times smaller for Δ / ΔΔ.
A clip whose peak is below `silence_dbfs` has no spectrum to normalize and is skipped
("skipped: silent"), never written as a blank image.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .silence import SILENCE_TOP_DB

SPEC_FILE = "spec.json"
SPEC_VERSION = 1
FRONTENDS = ("mel", "linear", "cqt", "lfcc")
CROPS = ("first", "center")
# lfcc block scales relative to the static one: the 99th percentile of |Δ| and |ΔΔ| on real speech
# (60 real and synthetic speech clips at the defaults) is about 1/9 and 1/15 of the static scale
LFCC_DELTA_SCALE = 8.0     # Δ block scale = static scale / this
LFCC_DELTA2_SCALE = 16.0   # ΔΔ block scale = static scale / this


@dataclass(frozen=True)
class SpecConfig:
    sample_rate: int = 16_000   # Hz; every clip is resampled to this rate
    duration: float = 4.0       # seconds per image; short clips repeat-padded, long ones cropped per `crop`
    frontend: str = field(default="mel", metadata={"choices": FRONTENDS})  # image rows: mel, linear (STFT), cqt
                                # (constant-Q) or lfcc (cepstra with deltas); see spec2img/config.py
    n_mels: int = 128           # mel: bands = image height
    n_fft: int = 512            # FFT size in samples (32 ms at 16 kHz); linear: image height n_fft/2+1
    win_length: int = 400       # analysis window in samples (25 ms at 16 kHz)
    hop_length: int = 160       # hop in samples (10 ms at 16 kHz); width = duration·sr/hop
    fmin: float = 20.0          # Hz, lowest mel band edge
    fmax: float = 0.0           # Hz, highest mel band edge; 0 means sample_rate / 2
    cqt_bins: int = 128         # cqt: bins = image height
    cqt_bins_per_octave: int = 16  # cqt: frequency resolution (128 bins = 8 octaves)
    cqt_fmin: float = 30.0      # cqt: Hz, centre of the lowest bin (30 Hz: the top bin at 7.4 kHz fits 16 kHz audio)
    n_lfcc: int = 20            # lfcc: cepstral coefficients per block (c0 included); image height 3·n_lfcc
    lfcc_filters: int = 20      # lfcc: linear triangular filters over 0..sample_rate/2 (>= n_lfcc)
    top_db: float = 80.0        # dynamic range below the clip's peak mapped onto 0..255
    silence_dbfs: float = -90.0  # peak sample level (dBFS) below which a clip counts as silent
    trim_silence: bool = False  # strip leading and trailing silence (quieter than trim_db below the loudest frame)
    trim_db: float = SILENCE_TOP_DB  # trimming level: dB below the clip's loudest 25 ms frame that counts as silence
    trim_min_seconds: float = 0.2  # a clip with less than this left after trimming is skipped
    crop: str = field(default="first", metadata={"choices": CROPS})  # part of a long clip kept: first, or center
                                # (its middle `duration` seconds)
    read_seconds: float = 60.0  # with trimming: seconds of a long file decoded (its start, or middle for center)
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
    def height(self) -> int:
        """Image height in rows for this front end."""
        return {"mel": self.n_mels, "linear": self.n_fft // 2 + 1, "cqt": self.cqt_bins,
                "lfcc": 3 * self.n_lfcc}.get(self.frontend, self.n_mels)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of every image this config produces."""
        return (self.height, self.frames)

    @property
    def mel_fmax(self) -> float:
        return self.fmax if self.fmax > 0 else self.sample_rate / 2

    def cqt_top_hz(self) -> float:
        """Return the upper edge of the highest CQT filter (librosa's Nyquist check), Hz."""
        ratio = 2.0 ** (1.0 / self.cqt_bins_per_octave)
        alpha = (ratio ** 2 - 1) / (ratio ** 2 + 1)                # librosa's relative bandwidth for this bpo
        top_centre = self.cqt_fmin * 2.0 ** ((self.cqt_bins - 1) / self.cqt_bins_per_octave)
        return top_centre * (1 + 0.5 * 1.50018310546875 * alpha)   # Hann window: 1.5 bins of bandwidth

    def validate(self) -> "SpecConfig":
        """Return self, or raise ValueError naming the setting that cannot work."""
        numbers = {"duration": self.duration, "fmin": self.fmin, "fmax": self.fmax, "top_db": self.top_db,
                   "silence_dbfs": self.silence_dbfs}
        not_finite = [f"{name}={value}" for name, value in numbers.items() if not math.isfinite(value)]
        if not_finite:
            raise ValueError(f"invalid spectrogram settings: {', '.join(not_finite)} must be a finite number")
        problems = []
        if self.frontend not in FRONTENDS:
            problems.append(f"frontend={self.frontend!r} is not one of {', '.join(FRONTENDS)}")
        if self.crop not in CROPS:
            problems.append(f"crop={self.crop!r} is not one of {', '.join(CROPS)}")
        if self.sample_rate < 1000:
            problems.append(f"sample_rate={self.sample_rate} is below 1000 Hz")
        if self.duration <= 0:
            problems.append(f"duration={self.duration} must be positive")
        if self.win_length > self.n_fft:
            problems.append(f"win_length={self.win_length} exceeds n_fft={self.n_fft}")
        if self.hop_length <= 0:
            problems.append(f"hop_length={self.hop_length} must be positive")
        if self.top_db <= 0:
            problems.append(f"top_db={self.top_db} must be positive")
        if self.hop_length > 0 and self.frames < 8:
            problems.append(f"duration·sample_rate/hop_length = {self.frames} columns is too narrow")
        if self.trim_db <= 0:
            problems.append(f"trim_db={self.trim_db} must be positive")
        if self.trim_min_seconds < 0:
            problems.append(f"trim_min_seconds={self.trim_min_seconds} must be >= 0")
        if self.read_seconds < self.duration:
            problems.append(f"read_seconds={self.read_seconds} must be at least duration={self.duration}")
        problems += self._frontend_problems()
        if problems:
            raise ValueError("invalid spectrogram settings: " + "; ".join(problems))
        return self

    def _frontend_problems(self) -> list[str]:
        """Return what cannot work in the settings of the chosen front end."""
        nyquist = self.sample_rate / 2
        if self.frontend == "mel":
            problems = []
            if not 8 <= self.n_mels <= self.n_fft // 2 + 1:
                problems.append(f"n_mels={self.n_mels} must be between 8 and n_fft/2+1={self.n_fft // 2 + 1}")
            if not 0 <= self.fmin < self.mel_fmax <= nyquist:
                problems.append(f"need 0 <= fmin ({self.fmin}) < fmax ({self.mel_fmax}) <= sample_rate/2")
            return problems
        if self.frontend == "linear":
            return [] if self.n_fft >= 16 else [f"n_fft={self.n_fft} gives fewer than 9 rows"]
        if self.frontend == "cqt":
            if self.cqt_bins < 8 or self.cqt_bins_per_octave < 1 or self.cqt_fmin <= 0:
                return [f"cqt_bins={self.cqt_bins} (>= 8), cqt_bins_per_octave={self.cqt_bins_per_octave} (>= 1) "
                        f"and cqt_fmin={self.cqt_fmin} (> 0) are out of range"]
            top = self.cqt_top_hz()
            if top > nyquist:
                octaves = math.log2(nyquist / top)
                fits = self.cqt_bins + math.floor(octaves * self.cqt_bins_per_octave)
                return [f"cqt bins above Nyquist: the top filter of cqt_bins={self.cqt_bins} from cqt_fmin="
                        f"{self.cqt_fmin:g} Hz at {self.cqt_bins_per_octave}/octave reaches {top:.0f} Hz > "
                        f"sample_rate/2 = {nyquist:g} Hz; lower cqt_bins to {max(fits, 0)} or cqt_fmin "
                        f"to {math.floor(self.cqt_fmin * nyquist / top * 100) / 100:g}"]
            return []
        if self.frontend == "lfcc":
            problems = []
            if not 2 <= self.lfcc_filters <= self.n_fft // 2 + 1:
                problems.append(f"lfcc_filters={self.lfcc_filters} must be between 2 and n_fft/2+1")
            if not 1 <= self.n_lfcc <= self.lfcc_filters:
                problems.append(f"n_lfcc={self.n_lfcc} must be between 1 and lfcc_filters={self.lfcc_filters}")
            return problems
        return []

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_height"], d["image_width"] = self.image_shape
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SpecConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known}).validate()


def complete_spec(d: dict) -> dict:
    """Return a spec.json dict with every setting, the defaults filled in for settings that an older
    spec.json lacks (they reproduce the images it describes), for comparing two folders' settings."""
    return {**SpecConfig().to_dict(), **d}


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
