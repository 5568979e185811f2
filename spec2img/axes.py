"""What the rows and columns of a spectrogram image mean: Hz per row, seconds per column.

One function per front end, registered in ROW_AXES: attribution maps, plots and band summaries read
the image axes from here, so they follow whichever front end made the images (spec.json "frontend";
images made before front ends existed are mel). Rows are listed top row first, as in the image
(spec2img flips the rows so that low frequencies are at the bottom). A front end whose rows are not
frequencies (lfcc: cepstral coefficients) says so (`RowAxis.hz` is None) instead of inventing Hz.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RowAxis:
    """The meaning of each image row, top row first."""
    frontend: str                    # the front end that made the images
    label: str                       # axis title, e.g. "frequency (Hz, mel scale)"
    hz: np.ndarray | None            # centre frequency of each row in Hz, or None when rows are not frequencies
    names: tuple[str, ...]           # a short name per row ("1.2 kHz", "Δ c3"), for ticks and tables
    hz_top: float | None = None      # Hz, upper edge of the top row's band (None when rows are not frequencies)
    blocks: tuple[tuple[str, int, int], ...] = ()  # (name, first row, last row + 1) of stacked feature blocks


def frontend_of(cfg) -> str:
    """Return the front end of a SpecConfig (mel for settings written before front ends were selectable)."""
    return getattr(cfg, "frontend", "mel") or "mel"


def hz_name(f: float) -> str:
    """Return a compact frequency label: '250 Hz', '1.5 kHz', '8 kHz'."""
    return f"{f:.0f} Hz" if f < 1000 else f"{f / 1000:.3g} kHz"


def _frequency_axis(frontend: str, label: str, hz_low_first: np.ndarray, hz_top: float) -> RowAxis:
    hz = np.asarray(hz_low_first, dtype=np.float64)[::-1].copy()   # top row = highest frequency
    return RowAxis(frontend, label, hz, tuple(hz_name(f) for f in hz), float(hz_top))


def mel_rows(cfg) -> RowAxis:
    """Centre frequency of each mel band: librosa.filters.mel puts band i's peak at mel_frequencies(n+2)[i+1]."""
    import librosa
    edges = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.mel_fmax)   # Slaney mel, as the filters
    return _frequency_axis("mel", "frequency (Hz, mel scale)", edges[1:-1], edges[-1])


def linear_rows(cfg) -> RowAxis:
    """Centre frequency of each STFT bin, 0 Hz to sample_rate/2."""
    nyquist = cfg.sample_rate / 2
    return _frequency_axis("linear", "frequency (Hz, linear)", np.linspace(0, nyquist, cfg.n_fft // 2 + 1), nyquist)


def cqt_rows(cfg) -> RowAxis:
    """Centre frequency of each constant-Q bin (librosa.cqt_frequencies)."""
    import librosa
    hz = librosa.cqt_frequencies(cfg.cqt_bins, fmin=cfg.cqt_fmin, bins_per_octave=cfg.cqt_bins_per_octave)
    top = min(hz[-1] * 2 ** (0.5 / cfg.cqt_bins_per_octave), cfg.sample_rate / 2)   # half a bin above the top centre
    return _frequency_axis("cqt", "frequency (Hz, constant-Q)", hz, top)


def lfcc_rows(cfg) -> RowAxis:
    """LFCC rows are cepstral coefficients in three stacked blocks (bottom up: static, Δ, ΔΔ), not frequencies."""
    n = cfg.n_lfcc
    low_first = [(block, c) for block in ("static", "Δ", "ΔΔ") for c in range(n)]
    names = tuple(f"{'' if block == 'static' else block + ' '}c{c}" for block, c in reversed(low_first))
    height = 3 * n
    blocks = tuple((block, height - (k + 1) * n, height - k * n) for k, block in enumerate(("static", "Δ", "ΔΔ")))
    return RowAxis("lfcc", "LFCC coefficient (blocks bottom to top: static, Δ, ΔΔ; not frequencies)", None,
                   names, None, blocks)


ROW_AXES = {"mel": mel_rows, "linear": linear_rows, "cqt": cqt_rows, "lfcc": lfcc_rows}


def row_axis(cfg) -> RowAxis:
    """Return what each image row of `cfg`'s images means; ValueError for a front end not in ROW_AXES."""
    frontend = frontend_of(cfg)
    if frontend not in ROW_AXES:
        raise ValueError(f"no row axis is defined for front end {frontend!r} (known: {', '.join(ROW_AXES)})")
    return ROW_AXES[frontend](cfg)


def row_frequencies(cfg) -> np.ndarray:
    """Return one centre frequency (Hz) per image row, top row first; ValueError when rows are not frequencies."""
    axis = row_axis(cfg)
    if axis.hz is None:
        raise ValueError(f"the rows of {axis.frontend} images are not frequencies: {axis.label}")
    return axis.hz


def column_times(cfg) -> np.ndarray:
    """Return the time (s) at the centre of each image column, from the start of the window (centred STFT frames)."""
    return np.arange(cfg.frames) * cfg.hop_length / cfg.sample_rate
