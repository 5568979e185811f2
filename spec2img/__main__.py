"""python -m spec2img SRC --out images: convert a labeled speech collection into spectrogram PNGs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import SpecConfig
from .convert import ConversionStopped, ConvertOptions, ConvertSummary, OutputFolderError, convert
from .datasets import LAYOUTS
from .fileio import EXIT_WRITE_FAILED, OutputWriteError
from .rows import LayoutError
SHOWN_SKIPS = 5

EPILOG = """\
details:
  images/<split>/<label>/<clip_id>.png, 8-bit grayscale, n_mels high x duration*sample_rate/hop_length
  wide, low frequencies at the bottom; images/spec.json holds every setting; images/manifest.csv one
  row per clip (status "ok" or "skipped: <reason>"); images/audit/ counts and histograms.
  Normalization: see spec2img/config.py (dB below the clip's own peak, top_db range onto 0..255).
  Silent clips (peak below silence_dbfs, -90 dBFS) have no spectrum to normalize: they are skipped
  with reason "silent", never written as blank images.
  Unreadable, empty, truncated, NaN-containing or non-audio files are skipped with their reason; the
  run goes on and ends with a summary.
  Resume: re-running the same command skips every clip whose PNG decodes with the right shape and
  redoes the rest; PNGs are written to <name>.png.part and renamed, so a killed run leaves no broken
  image. A folder made with other settings (or another source or split assignment) is refused
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


def shard_arg(text: str) -> tuple[int, int]:
    """Parse 'K/N' (1 <= K <= N)."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected K/N, e.g. 2/8") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: need 1 <= K <= N")
    return k, n


def ratios_arg(text: str) -> tuple[float, float, float]:
    """Parse 'train,val,test' fractions summing to 1."""
    try:
        ratios = tuple(float(x) for x in text.split(","))
    except ValueError:
        ratios = ()
    if len(ratios) != 3 or not all(0 <= r <= 1 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"--split-ratios {text!r}: expected three fractions summing to 1, "
                                         f"e.g. 0.7,0.15,0.15")
    return ratios


def build_parser() -> argparse.ArgumentParser:
    d = SpecConfig()
    p = argparse.ArgumentParser(prog="python -m spec2img", description=__doc__.split(": ", 1)[1],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, help="dataset root folder, or a CSV manifest (file,label[,split,system,speaker])")
    p.add_argument("--out", type=Path, default=Path("images"), help="images folder to write (default: images)")
    p.add_argument("--dataset", choices=("auto", *LAYOUTS), default="auto", help="dataset layout (default: detect it)")
    p.add_argument("--workers", type=int, default=0, help="worker processes, one math thread each (0 = all cores)")
    p.add_argument("--shard", type=shard_arg, default=(1, 1), metavar="K/N",
                   help="convert only shard K of N (1-based), for job arrays (default: 1/1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split assignment and augmentation")
    p.add_argument("--split-ratios", type=ratios_arg, default=(0.7, 0.15, 0.15), metavar="TRAIN,VAL,TEST",
                   help="split fractions for datasets without their own splits (default: 0.7,0.15,0.15)")
    p.add_argument("--augment", type=int, default=0, metavar="K",
                   help="K extra variants per train clip: noise 5-30 dB SNR, pitch ±2 semitones, "
                        "time stretch 0.9-1.1, one or several per variant (default: 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="when --out holds images made with other settings (or another source or split "
                        "assignment), delete its images, manifest and audit and convert afresh; "
                        "with the same settings a run always resumes")
    g = p.add_argument_group("spectrogram settings (saved in spec.json)")
    g.add_argument("--sample-rate", type=int, default=d.sample_rate, help="Hz every clip is resampled to")
    g.add_argument("--duration", type=float, default=d.duration, help="seconds per image (first seconds; short clips repeated)")
    g.add_argument("--n-mels", type=int, default=d.n_mels, help="mel bands = image height")
    g.add_argument("--n-fft", type=int, default=d.n_fft, help="FFT size, samples")
    g.add_argument("--hop-length", type=int, default=d.hop_length, help="hop, samples (width = duration*sr/hop)")
    g.add_argument("--win-length", type=int, default=d.win_length, help="window, samples (<= n_fft)")
    g.add_argument("--fmin", type=float, default=d.fmin, help="lowest mel frequency, Hz")
    g.add_argument("--fmax", type=float, default=d.fmax, help="highest mel frequency, Hz (0 = sample_rate/2)")
    g.add_argument("--top-db", type=float, default=d.top_db, help="dB range below the clip's peak mapped onto 0..255")
    return p


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
    args = build_parser().parse_args(argv)
    try:
        cfg = SpecConfig(sample_rate=args.sample_rate, duration=args.duration, n_mels=args.n_mels,
                         n_fft=args.n_fft, hop_length=args.hop_length, win_length=args.win_length,
                         fmin=args.fmin, fmax=args.fmax, top_db=args.top_db).validate()
        if args.augment < 0 or args.workers < 0:
            raise ValueError("--augment and --workers must be >= 0")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    opts = ConvertOptions(layout=args.dataset, workers=args.workers, shard=args.shard, seed=args.seed,
                          split_ratios=args.split_ratios, augment=args.augment, overwrite=args.overwrite)
    try:
        summary = convert(args.source, args.out, cfg, opts, log=lambda text: print(text, flush=True))
    except (LayoutError, OutputFolderError, ValueError) as error:   # ValueError: a setting that cannot work
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ConversionStopped as stop:
        report_stopped(stop.summary, args.out, stop.error)
        return EXIT_WRITE_FAILED
    except OutputWriteError as error:
        print(f"error: nothing was converted: {error}\n  {error.advice}, then run the same command again",
              file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted: finished images are kept; run the same command again to resume", file=sys.stderr)
        return 130
    report(summary, args.out)
    return 0 if summary.converted or summary.total == 0 else 1

if __name__ == "__main__":
    sys.exit(main())
