"""spec2img SRC --out images: convert a labeled speech collection into spectrogram PNGs."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from .augment import CodecUnavailable
from .cli import build_parser as build_cli, parse_settings
from .config import SpecConfig
from .convert import ConversionStopped, ConvertOptions, ConvertSummary, OutputFolderError, convert
from .fileio import EXIT_WRITE_FAILED, OutputWriteError
from .rows import LayoutError

SHOWN_SKIPS = 5

EPILOG = """\
details:
  images/<split>/<label>/<clip_id>.png, 8-bit grayscale, duration*sample_rate/hop_length wide, low
  frequencies at the bottom; height by front end: mel n_mels, linear n_fft/2+1, cqt cqt_bins, lfcc
  3*n_lfcc (static, delta, delta-delta); images/spec.json holds every setting; images/manifest.csv one
  row per clip (status "ok" or "skipped: <reason>"); images/audit/ counts and histograms.
  Normalization: see spec2img/config.py (dB below the clip's own peak, top_db range onto 0..255;
  lfcc: cepstra on a fixed scale, 128 = 0).
  --trim-silence strips leading and trailing audio quieter than --trim-db below the clip's loudest
  25 ms frame before cropping; a clip left with less than --trim-min-seconds is skipped ("trimming
  leaves ..."). Prediction applies the same trimming (the setting is in spec.json).
  --augment K adds K variants per train clip, each drawn from --augment-kinds (kinds, groups, or
  chains joined by '+'): rawboost (rawboost-lnl, rawboost-isd, rawboost-ssi), codec (mp3, opus, mulaw,
  alaw), channel (telephone, lowpass), classic (noise, pitch, stretch), all. Parameters per variant
  are in the manifest's "augmentation" column.
  Silent clips (peak below silence_dbfs, -90 dBFS) have no spectrum to normalize: they are skipped
  with reason "silent", never written as blank images.
  Unreadable, empty, truncated, NaN-containing or non-audio files are skipped with their reason; the
  run goes on and ends with a summary.
  Resume: re-running the same command skips every clip whose PNG decodes with the right shape and
  redoes the rest; PNGs are written under a hidden temporary name and renamed, so a killed run
  leaves no broken image. A folder made with other settings (or another source or split assignment) is refused
  unless --overwrite, which deletes its images, manifest and audit first.
  Shards: --shard K/N converts clips K, K+N, K+2N, ... of the clips sorted by id; run the N shards
  anywhere (a cluster job array) into the same folder with the same settings. Each writes
  manifest.parts/shard-K-of-N.csv; every run merges the finished parts into manifest.csv, and the
  run that completes the set also writes the audit.
exit status: 0 when at least one clip was converted (or this shard has none), 1 when nothing could
  be converted, 2 for a wrong layout, setting or output folder, 4 when an output could not be written
  (disk full, read-only folder: the images written are kept, the same command completes the set once
  the cause is fixed), 130 when interrupted (Ctrl-C; the same command resumes).
"""


@dataclass(frozen=True)
class ConvertPaths:
    source: Path                  # dataset root folder, or a CSV manifest (file,label[,split,system,speaker])
    out: Path = Path("images")    # images folder to write


def build_parser() -> argparse.ArgumentParser:
    """Return the command line: the paths, ConvertOptions, and SpecConfig's settings (saved in spec.json)."""
    return build_cli("spec2img", __doc__.split(": ", 1)[1], [ConvertPaths, ConvertOptions,
                     ("spectrogram settings (saved in spec.json)", SpecConfig)], epilog=EPILOG)


def report(summary: ConvertSummary, images: Path) -> None:
    """Print the end-of-run summary: converted, skipped (first few with reasons), where the list is."""
    manifest = summary.manifest or images / "manifest.csv"
    sys.stderr.flush()
    print(f"{summary.converted} converted, {len(summary.skipped)} skipped (list in {manifest})")
    details = [f"{summary.written} images written", f"{summary.reused} clips already done"]
    if summary.augmented:
        details.append(f"{summary.augmented} augmented images")
    print(f"  {', '.join(details)}; {summary.seconds:.1f} s")
    for clip_id, path, reason in summary.skipped[:SHOWN_SKIPS]:
        print(f"  skipped {clip_id} ({path}): {reason}")
    if len(summary.skipped) > SHOWN_SKIPS:
        print(f"  ... and {len(summary.skipped) - SHOWN_SKIPS} more in {manifest}")


def report_stopped(summary: ConvertSummary, images: Path, error: OutputWriteError) -> None:
    """Print what a run stopped by a failed write had done, the file and cause, and what to do."""
    sys.stderr.flush()
    print(f"stopped after {summary.converted + len(summary.skipped)} of {summary.total} clips: "
          f"{summary.converted} converted ({summary.written} images written by this run, "
          f"{summary.reused} already there), {len(summary.skipped)} skipped; {summary.seconds:.1f} s")
    print(f"error: writing into {images} failed: {error}\n  {error.advice}, then run the same command again: "
          f"the images in {images} are kept, only the rest are converted, and manifest.csv is completed",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    paths, opts, cfg = parse_settings(build_parser(), argv, ConvertPaths, ConvertOptions, SpecConfig)
    try:
        cfg.validate()
        opts.validate()                   # an unknown augmentation kind or a missing codec stops here
    except (ValueError, CodecUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        summary = convert(paths.source, paths.out, cfg, opts, log=lambda text: print(text, flush=True))
    except (LayoutError, OutputFolderError, CodecUnavailable, ValueError) as error:   # ValueError: a setting
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ConversionStopped as stop:
        report_stopped(stop.summary, paths.out, stop.error)
        return EXIT_WRITE_FAILED
    except OutputWriteError as error:
        print(f"error: nothing was converted: {error}\n  {error.advice}, then run the same command again",
              file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted: finished images are kept; run the same command again to resume", file=sys.stderr)
        return 130
    report(summary, paths.out)
    return 0 if summary.converted or summary.total == 0 else 1

if __name__ == "__main__":
    sys.exit(main())
