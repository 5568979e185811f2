"""Score new audio files with a trained run: spoof probability, ASVspoof score and label per file.

    classify-predict --run runs/latest AUDIO_OR_FOLDER... [--out scores.csv] [--format csv|json]
                     [--bs 64] [--hop 0.5] [--prior 0.5] [--device cpu|cuda] [--trust-pickle] [--no-progress]
                     [--explain DIR]

Every file goes through the run's own front end: the spectrogram settings saved in the run's
`model.json` ("spec") and `spec2img.features.clip_to_image`, the function that made the training
images. A clip no longer than the training duration is one window (shorter ones are repeat-padded
exactly as in training); a longer clip is cut into overlapping windows of that duration (default hop:
half a window; the last window is aligned to the end of the file so the tail is scored) and the
windows' logits are averaged. The most-spoof window's probability and start time are reported too.
Files up to 10 minutes are decoded whole; longer ones are decoded 5 minutes at a time, so memory
stays bounded whatever the file's length. A run trained on silence-trimmed images (spec "trim_silence")
scores the trimmed file the same way (files over 10 minutes are not trimmed). Window images from all
files are batched together and scored on the GPU when there is one.

Output columns (one row per file, in input order; folders are walked recursively and sorted):
  path              the audio file
  spoof_prob        P(spoof) from the mean of the windows' logits
  score             ASVspoof-convention score, higher = more bonafide: logit_bonafide - logit_spoof
  llr               calibrated log-likelihood ratio of bona fide, log p(x|bona fide)/p(x|spoof), by the run's
                    calibration.json (fitted on val by classify.evaluate); before evaluation: the score minus the
                    training prior log-odds, with a notice
  spoof_posterior   P(spoof | file) at the prior --prior (P(spoof) before listening; default 0.5) from the llr:
                    1 / (1 + exp(llr - log(prior / (1 - prior))))
  label             "spoof" when spoof_prob >= the run's tuned threshold (thresholds.json
                    "spoof_prob_threshold", written by classify.evaluate; 0.5 with a notice without it)
  duration          seconds of the whole file
  windows           windows scored (silent windows of a long file are skipped)
  max_spoof_prob    spoof probability of the most-spoof window
  max_spoof_start   start of that window, seconds into the file
  status            "ok" or "error: <reason>" (the numbers are then empty)
  explanation       with --explain DIR: the file's picture (its most-spoof window's spectrogram with the
                    model's attribution heat map, and the spoof probability of every window); empty
                    for a file that could not be scored (its status says why)

Exit status:
  0  every file was scored
  1  some files failed (their rows say why); the others were scored
  2  usage error, unusable run folder (incomplete: training killed or failed; missing model.json /
     model.safetensors; pickle-only run without --trust-pickle), or no audio file found
  3  every file failed
  4  the output could not be written (disk full, read-only folder, no permission)
  130 interrupted (Ctrl-C)

Security: the model is rebuilt from `model.safetensors` + `model.json` (plain tensors and JSON: loading
runs no code from the run folder). A run that only has fastai's `export.pkl` is refused, because
unpickling executes whatever code the file contains; `--trust-pickle` loads it anyway, for files
you made yourself or got from someone you trust.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

import numpy as np

from classify import model_io, runfolder
from classify.calibration import (DEFAULT_PRIOR_SPOOF, Calibration, CalibrationError, posterior_spoof,
                                  read_calibration, training_prior, uncalibrated)
from classify.model_io import bonafide_score, spoof_probability
from classify.devices import check_device_name
from classify.runfolder import CALIBRATION_FILE, THRESHOLDS_FILE, RunFolderError, evaluation_dir
from classify.thresholds import read_thresholds
from spec2img.fileio import EXIT_WRITE_FAILED, OutputWriteError, check_writable_folder, write_atomic
from spec2img.audio import AUDIO_EXTENSIONS, AudioError, load_audio, probe_audio
from spec2img.cli import build_parser as build_cli, parse_settings
from spec2img.config import SpecConfig
from spec2img.features import SilentClipError, clip_to_image, speech_span
from spec2img.progress import progress as progress_bar

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_ALL_FAILED = 0, 1, 2, 3
WHOLE_FILE_SECONDS = 600.0   # files up to this long are decoded in one piece
CHUNK_SECONDS = 300.0        # longer files are decoded this many seconds (plus one window) at a time
DEFAULT_THRESHOLD = 0.5      # spoof_prob threshold when the run has no thresholds.json


@dataclass
class PredictionRow:
    path: str                              # the audio file, as given or found
    spoof_prob: float | None = None        # P(spoof) of the mean of the window logits
    score: float | None = None             # logit_bonafide - logit_spoof (higher = more bonafide)
    llr: float | None = None               # calibrated LLR of bona fide (calibration.json)
    spoof_posterior: float | None = None   # P(spoof | file) at the prior P(spoof) = --prior
    label: str = ""                        # "bonafide" | "spoof" at the run's threshold
    duration: float | None = None          # seconds of the whole file
    windows: int = 0                       # windows scored
    max_spoof_prob: float | None = None    # spoof probability of the most-spoof window
    max_spoof_start: float | None = None   # seconds: start of the most-spoof window
    status: str = "ok"                     # "ok" or "error: <reason>"
    explanation: str = ""                  # --explain: the file's picture (empty when not drawn; "error: ..." if failed)


COLUMNS = [f.name for f in fields(PredictionRow)]


@dataclass
class Predictor:
    spec: SpecConfig                                 # the run's spectrogram settings
    logits: Callable[[np.ndarray], np.ndarray]       # uint8 (N, H, W) images -> float32 (N, 2) logits
    threshold: float                                 # label spoof when spoof_prob >= threshold
    threshold_source: str                            # where the threshold came from, for the notice
    arch: str = ""                                   # model architecture, for the report header
    calibration: Calibration | None = None           # score -> LLR map (calibration.json or uncalibrated)
    prior: float = DEFAULT_PRIOR_SPOOF               # P(spoof) of the spoof_posterior column
    model: object = None                             # the torch module (for --explain's attribution maps)
    description: dict | None = None                  # its model.json (input size, normalization, builder)


# ---------------------------------------------------------------- windows and scores (numpy)

def window_starts(total: int, window: int, hop: int, min_step: int = 1) -> list[int]:
    """Return the start samples of windows covering `total` samples: every `hop` from 0, plus one
    aligned to the end, unless it would start less than `min_step` samples after the previous one."""
    if total <= window:
        return [0]
    starts = list(range(0, total - window + 1, hop))
    if total - window - starts[-1] >= min_step:
        starts.append(total - window)
    return starts


def combine_windows(logits: np.ndarray, starts_s: Iterable[float]) -> dict:
    """Return spoof_prob and score of the mean of (W, 2) window logits, and the most-spoof window's
    probability and start (seconds)."""
    logits = np.asarray(logits, dtype=np.float64)
    mean = logits.mean(axis=0, keepdims=True)                  # (1, 2)
    per_window = spoof_probability(logits)
    worst = int(np.argmax(per_window))
    return {"spoof_prob": float(spoof_probability(mean)[0]), "score": float(bonafide_score(mean)[0]),
            "windows": int(len(logits)), "max_spoof_prob": float(per_window[worst]),
            "max_spoof_start": float(list(starts_s)[worst])}


def label_for(spoof_prob: float, threshold: float) -> str:
    """Return "spoof" when spoof_prob >= threshold, else "bonafide" (the evaluation's convention)."""
    return "spoof" if spoof_prob >= threshold else "bonafide"


# ---------------------------------------------------------------- audio -> window images

def iter_file_windows(path: Path, spec: SpecConfig, hop_fraction: float = 0.5
                      ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (start seconds, float32 samples of one window) covering the file; raises AudioError.

    Windows are spec.duration long, `hop_fraction` of a window apart, the last aligned to the end
    (skipped when it would add less than one spectrogram column). Memory is bounded: files longer
    than WHOLE_FILE_SECONDS are decoded CHUNK_SECONDS at a time."""
    sr, win = spec.sample_rate, spec.n_samples
    hop = max(1, int(round(hop_fraction * win)))
    info = probe_audio(path)
    if info.duration <= WHOLE_FILE_SECONDS:
        wave, _ = load_audio(path, sr)
        first = 0
        if spec.trim_silence:   # trained on trimmed clips: score the same part (longer files: windows, untrimmed)
            first, last = speech_span(wave, spec)
            wave = wave[first:last]
        for s in window_starts(wave.size, win, hop, spec.hop_length):
            yield (first + s) / sr, wave[s:s + win]
        return
    starts = window_starts(int(round(info.duration * sr)), win, hop, spec.hop_length)
    per_chunk = max(1, int(CHUNK_SECONDS * sr) // hop)
    for i in range(0, len(starts), per_chunk):
        group = starts[i:i + per_chunk]
        base = group[0]
        wave, _ = load_audio(path, sr, max_seconds=(group[-1] - base + win) / sr, offset=base / sr)
        for s in group:
            segment = wave[s - base:s - base + win]
            if segment.size < win and wave.size >= win:   # the header promised more samples than decoded
                segment = wave[-win:]
            yield s / sr, segment


def find_audio(inputs: Iterable[Path]) -> list[Path]:
    """Return the files to score: each named file as given, and every AUDIO_EXTENSIONS file under
    each folder (recursive, sorted); a path that does not exist is kept so its row says so."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            found.append(item)
    return found


# ---------------------------------------------------------------- scoring many files in batches

class _Batcher:
    """Collects window images from many files and scores them `bs` at a time."""

    def __init__(self, logits_fn: Callable[[np.ndarray], np.ndarray], bs: int):
        self.logits_fn, self.bs = logits_fn, bs
        self.images: list[np.ndarray] = []
        self.keys: list[tuple[int, float]] = []                  # (file index, window start seconds)
        self.results: dict[int, list[tuple[float, np.ndarray]]] = {}

    def add(self, key: tuple[int, float], image: np.ndarray) -> None:
        self.images.append(image)
        self.keys.append(key)
        if len(self.images) >= self.bs:
            self.flush()

    def flush(self) -> None:
        if not self.images:
            return
        logits = np.asarray(self.logits_fn(np.stack(self.images)), dtype=np.float32)   # (B, 2)
        for (index, start), row in zip(self.keys, logits):
            self.results.setdefault(index, []).append((start, row))
        self.images, self.keys = [], []


def score_files(files: list[Path], predictor: Predictor, bs: int = 64, hop_fraction: float = 0.5,
                progress: bool = True, windows_out: dict | None = None) -> list[PredictionRow]:
    """Return one PredictionRow per file, in order; a file that cannot be scored gets an error row.
    `windows_out`, when given, receives {file index: [(window start s, window logits (2,)), ...]}."""
    from threadpoolctl import threadpool_limits
    rows = [PredictionRow(path=str(p)) for p in files]
    batcher = _Batcher(predictor.logits, bs)
    with threadpool_limits(limits=1, user_api="blas"), \
            progress_bar(total=len(files), desc="scoring", unit="file", enabled=progress and len(files) > 1) as bar:
        _queue_windows(files, rows, predictor.spec, batcher, hop_fraction, bar)
        batcher.flush()
    if windows_out is not None:
        windows_out.update(batcher.results)
    for index, row in enumerate(rows):
        if row.status != "ok":
            continue
        windows = batcher.results.get(index, [])
        if not windows:
            row.status = "error: no window could be scored"
            continue
        combined = combine_windows(np.stack([w for _, w in windows]), [s for s, _ in windows])
        for key, value in combined.items():
            setattr(row, key, value)
        row.label = label_for(row.spoof_prob, predictor.threshold)
        if predictor.calibration is not None:
            row.llr = float(predictor.calibration.llr(row.score))
            row.spoof_posterior = float(posterior_spoof(row.llr, predictor.prior))
    return rows


def _queue_windows(files: list[Path], rows: list[PredictionRow], spec: SpecConfig, batcher: "_Batcher",
                   hop_fraction: float, bar) -> None:
    """Render every window of every file into `batcher`; a file that fails gets its error in its row."""
    for index, (path, row) in enumerate(zip(files, rows)):
        try:
            row.duration = probe_audio(path).duration
            silent = None
            for start, segment in iter_file_windows(path, spec, hop_fraction):
                try:
                    batcher.add((index, start), clip_to_image(segment, spec))
                except SilentClipError as error:       # a silent stretch of a longer file: skip that window
                    silent = silent or error
            if silent is not None and not _queued(batcher, index):
                raise silent
        except AudioError as error:
            row.status = f"error: {error}"
            if getattr(error, "info", None) is not None:   # truncated: the duration that decodes
                row.duration = error.info.duration
        except Exception as error:   # keep scoring the other files; the row names what went wrong
            row.status = f"error: {type(error).__name__}: {str(error).strip()[:200]}"
        bar.update()


def _queued(batcher: _Batcher, index: int) -> bool:
    """Return whether any window of file `index` is waiting or already scored."""
    return index in batcher.results or any(k[0] == index for k in batcher.keys)


# ---------------------------------------------------------------- loading the run

def read_threshold(folder: Path | None) -> tuple[float | None, str]:
    """Return (spoof_prob threshold, where it came from) from the evaluation set's thresholds.json (read by
    classify.thresholds), or (None, why not); `folder` is runfolder.evaluation_dir(run), resolved once for
    thresholds and calibration together."""
    if folder is None:
        return None, "the run has not been evaluated"
    path = Path(folder) / THRESHOLDS_FILE
    try:
        data = read_thresholds(folder)
        if data is None:
            return None, f"{path} not found"
        value = float(data["spoof_prob_threshold"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"{path} has no usable spoof_prob_threshold ({error})"
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return None, f"{path}: spoof_prob_threshold={value} is not a probability"
    return value, f"{path} (rule {data.get('rule', '?')}, tuned on {data.get('split', '?')})"


def load_predictor(run_dir: Path, device: str | None = None, bs: int = 64, trust_pickle: bool = False,
                   log: Callable[[str], None] = print) -> Predictor:
    """Return a Predictor for a complete run (runfolder.check_run): safetensors + model.json, or export.pkl
    only with trust_pickle. Raises RunFolderError naming what is missing and what to do."""
    run_dir = Path(run_dir)
    model_file = runfolder.check_run(run_dir, allow_pickle=trust_pickle)
    from classify.devices import default_device
    device = str(default_device(device))
    if model_file == runfolder.EXPORT:
        log(f"WARNING (--trust-pickle): {runfolder.PICKLE_WARNING}")
        predictor = _pickle_predictor(run_dir, device, bs)
    else:
        predictor = _safetensors_predictor(run_dir, device, bs)
    folder = evaluation_dir(run_dir)                   # resolved once: threshold and calibration of one set
    threshold, source = read_threshold(folder)
    if threshold is None:
        log(f"notice: no tuned threshold ({source}); labelling spoof when spoof_prob >= {DEFAULT_THRESHOLD}. "
            f"Run `classify-evaluate {run_dir}` to tune one on the validation split.")
        threshold, source = DEFAULT_THRESHOLD, "the default (no tuned threshold)"
    predictor.threshold, predictor.threshold_source = threshold, source
    predictor.calibration = _calibration(run_dir, folder, log)
    return predictor


def _calibration(run_dir: Path, folder: Path | None, log: Callable[[str], None]) -> Calibration:
    """Return the run's fitted calibration, or the uncalibrated map (training prior) with a notice."""
    try:
        found = read_calibration(folder / CALIBRATION_FILE) if folder is not None else None
    except CalibrationError as error:
        raise RunFolderError(str(error)) from None
    if found is not None:
        return found
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    prior, _ = training_prior(config)
    log(f"notice: no calibration.json (run `classify-evaluate {run_dir}` to fit one on val): the llr "
        f"column is the uncalibrated score - log({prior:g}/{1 - prior:g}) and spoof_posterior relies on it")
    return uncalibrated(prior)


def _safetensors_predictor(run_dir: Path, device: str, bs: int) -> Predictor:
    try:
        model, description = model_io.load_model(run_dir, device=device)
    except RunFolderError:
        raise
    except Exception as error:    # unreadable weights, unknown builder, unusable device: all stop here
        raise RunFolderError(f"cannot load the model in {run_dir} ({type(error).__name__}: "
                             f"{str(error).strip()[:300]})") from None
    spec = _spec_from(description.get("spec"), run_dir / runfolder.MODEL_JSON)

    def logits(images: np.ndarray) -> np.ndarray:
        return model_io.predict_logits(model, images, description, device=device, bs=bs)
    return Predictor(spec, logits, DEFAULT_THRESHOLD, "", str(description.get("arch", "")), model=model,
                     description=description)


def _pickle_predictor(run_dir: Path, device: str, bs: int) -> Predictor:
    """Load export.pkl with fastai (this executes the pickled code) and score with its model through
    the same preprocessing as every other run (model_io.predict_logits)."""
    from fastai.learner import load_learner
    from torch import nn
    description = _pickle_description(run_dir)
    spec = _spec_from(description.get("spec"), run_dir / runfolder.MODEL_JSON)
    pickle_file = run_dir / runfolder.EXPORT
    try:
        learn = load_learner(pickle_file, cpu=device == "cpu")
        model = learn.model
    except Exception as error:
        raise RunFolderError(f"cannot load {pickle_file} as a fastai Learner "
                             f"({type(error).__name__}: {str(error).strip()[:200]})") from None
    if not isinstance(model, nn.Module):
        raise RunFolderError(f"{pickle_file} holds no fastai Learner with a model")
    model = model.to(device).eval()

    def logits(images: np.ndarray) -> np.ndarray:
        return model_io.predict_logits(model, images, description, device=device, bs=bs)
    return Predictor(spec, logits, DEFAULT_THRESHOLD, "", f"{description.get('arch', '?')} (export.pkl)",
                     model=model, description=description)


def _pickle_description(run_dir: Path) -> dict:
    """Return model.json's dict, or one rebuilt from config.json (spec, input size, ImageNet statistics)."""
    if (run_dir / runfolder.MODEL_JSON).is_file():
        return model_io.read_description(run_dir)
    config = runfolder.read_config(run_dir)
    if not config:
        raise RunFolderError(f"{run_dir} has {runfolder.EXPORT} but neither {runfolder.MODEL_JSON} nor "
                             f"{runfolder.CONFIG}, so the spectrogram settings it was trained with are unknown")
    from classify.archs import IMAGENET_MEAN, IMAGENET_STD
    spec = _spec_from(config.get("spec"), run_dir / runfolder.CONFIG)
    height, width = (config.get("data") or {}).get("input_shape") or spec.image_shape
    return {"arch": (config.get("settings") or {}).get("arch", "?"), "spec": config["spec"],
            "input": {"height": int(height), "width": int(width), "channels": 3},
            "normalize": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}


def _spec_from(spec_dict: dict | None, source: Path) -> SpecConfig:
    if not spec_dict:
        raise RunFolderError(f"{source} has no \"spec\" entry: the run does not say which spectrogram "
                             f"settings it was trained with")
    try:
        return SpecConfig.from_dict(spec_dict)
    except (TypeError, ValueError) as error:
        raise RunFolderError(f"{source}: unusable \"spec\": {error}") from None


# ---------------------------------------------------------------- output

def rows_to_csv(rows: list[PredictionRow]) -> str:
    """Return the rows as CSV text with a header (empty cells for missing numbers)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v))
                         for k, v in asdict(row).items()})
    return buffer.getvalue()


def rows_to_json(rows: list[PredictionRow], predictor: Predictor, run_dir: Path) -> str:
    """Return the rows and the run's name, threshold and its source as a JSON document."""
    cal = predictor.calibration
    return json.dumps({"run": str(run_dir), "arch": predictor.arch, "threshold": predictor.threshold,
                       "threshold_source": predictor.threshold_source, "prior_spoof": predictor.prior,
                       "calibration": None if cal is None else {"slope": cal.slope, "offset": cal.offset,
                                                                "fitted_on": cal.fitted_on},
                       "spec": predictor.spec.to_dict(), "files": [asdict(r) for r in rows]}, indent=2) + "\n"


def rows_to_table(rows: list[PredictionRow]) -> str:
    """Return a fixed-width table of the rows for the terminal."""
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)
    lines = [f"{'label':<9} {'spoof_prob':>10} {'score':>8} {'llr':>8} {'posterior':>9} {'duration':>8} {'windows':>7} "
             f"{'max_spoof':>9} {'at_s':>6}  path / status"]
    for r in rows:
        tail = r.path if r.status == "ok" else f"{r.path}  [{r.status}]"
        lines.append(f"{r.label or '-':<9} {num(r.spoof_prob, '.4f'):>10} {num(r.score, '.3f'):>8} "
                     f"{num(r.llr, '.3f'):>8} {num(r.spoof_posterior, '.4f'):>9} "
                     f"{num(r.duration, '.2f'):>8} {r.windows:>7} {num(r.max_spoof_prob, '.4f'):>9} "
                     f"{num(r.max_spoof_start, '.1f'):>6}  {tail}")
    return "\n".join(lines) + "\n"


def exit_code(rows: list[PredictionRow]) -> int:
    """Return 0 when every row is ok, 3 when none is, 1 otherwise."""
    failed = sum(r.status != "ok" for r in rows)
    return EXIT_OK if failed == 0 else EXIT_ALL_FAILED if failed == len(rows) else EXIT_SOME_FAILED


# ---------------------------------------------------------------- command line

@dataclass(frozen=True)
class PredictSettings:
    inputs: list[Path] = field(metadata={"metavar": "AUDIO_OR_FOLDER"})  # audio files and/or folders (walked
                                                                         # recursively for audio files)
    run: Path = Path("runs/latest")  # training run folder with model.safetensors + model.json
    out: Path | None = None          # write the results here (atomically) and print a table; without it the
                                     # results go to stdout
    format: Literal["csv", "json"] | None = None  # format of --out (default: from its extension, else csv);
                                                  # without --out, print this format to stdout instead of the table
    bs: int = 64                     # window images per model batch
    hop: float = 0.5                 # hop between windows of a long clip, as a fraction of the window (0 < hop <= 1)
    device: str | None = None        # torch device (default: cuda when available, else cpu)
    trust_pickle: bool = False       # allow loading a run that only has fastai's export.pkl (pickle runs code:
                                     # only for runs you trust)
    prior: float = DEFAULT_PRIOR_SPOOF  # prior probability that a file is spoof, for the spoof_posterior column
                                        # (0.5: equal odds; e.g. 0.05 where spoofs are rare)
    progress: bool = True            # progress bar on stderr
    explain: Path | None = field(default=None, metadata={"metavar": "DIR"})  # write one PNG per scored file into
                                     # DIR: its most-spoof window's spectrogram with the model's heat map and, for
                                     # files longer than one window, the spoof probability of every window
                                     # (column explanation holds its path)

    def validate(self) -> "PredictSettings":
        """Return self, or raise ValueError naming the option that cannot work."""
        if not 0 < self.prior < 1:
            raise ValueError(f"--prior {self.prior}: must be strictly between 0 and 1 (a probability of spoof)")
        if not 0 < self.hop <= 1:
            raise ValueError(f"--hop {self.hop}: must be in (0, 1], a fraction of the window")
        if self.bs < 1:
            raise ValueError(f"--bs {self.bs}: must be at least 1")
        if self.out is not None and self.out.is_dir():
            raise ValueError(f"--out {self.out} is a folder: give a file name such as {self.out / 'scores.csv'}")
        if self.explain is not None and self.explain.exists() and not self.explain.is_dir():
            raise ValueError(f"--explain {self.explain} is a file: give a folder for the pictures")
        check_device_name(self.device)
        return self


def build_parser():
    """Return the command line: one option per PredictSettings field (spec2img.cli)."""
    doc = __doc__ or ""
    return build_cli("classify-predict", doc.split("\n\n")[0], [PredictSettings],
                     epilog="Output columns" + doc.split("Output columns", 1)[1].split("Security:")[0]
                     + "Security:" + doc.split("Security:")[1])


def parse_args(argv: list[str] | None = None) -> PredictSettings:
    """Return the validated settings of the command line (exit status 2 with a message when they cannot work)."""
    parser = build_parser()
    settings, = parse_settings(parser, argv, PredictSettings)
    try:
        return settings.validate()
    except ValueError as error:
        parser.error(str(error))


def _emit(rows: list[PredictionRow], predictor: Predictor, args: PredictSettings) -> None:
    fmt = args.format or ("json" if args.out is not None and args.out.suffix.lower() == ".json" else "csv")
    text = rows_to_json(rows, predictor, args.run) if fmt == "json" else rows_to_csv(rows)
    if args.out is not None:
        write_atomic(args.out, text)
        sys.stdout.write(rows_to_table(rows))
        print(f"wrote {args.out} ({len(rows)} rows, {fmt})", file=sys.stderr)
    else:
        sys.stdout.write(text if args.format else rows_to_table(rows))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status documented in the module docstring."""
    args = parse_args(argv)
    files = find_audio(args.inputs)
    if not files:
        print(f"error: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in "
              f"{' '.join(map(str, args.inputs))}", file=sys.stderr)
        return EXIT_USAGE
    def log(message: str) -> None:
        print(message, file=sys.stderr)
    try:
        if args.out is not None:
            check_writable_folder(args.out.parent)   # before scoring, not after
        predictor = load_predictor(args.run, args.device, args.bs, args.trust_pickle, log=log)
        predictor.prior = args.prior
        if args.explain is not None:
            from classify.explain import ExplainError, check_explainable
            try:
                log(f"--explain: {check_explainable(predictor.model, predictor.description)}")
            except ExplainError as error:
                print(f"error: --explain: {error}", file=sys.stderr)
                return EXIT_USAGE
            check_writable_folder(args.explain)
        log(f"run {args.run} ({predictor.arch}); threshold spoof_prob >= {predictor.threshold:.4g} from "
            f"{predictor.threshold_source}; {len(files)} file(s)")
        windows = {} if args.explain is not None else None
        rows = score_files(files, predictor, bs=args.bs, hop_fraction=args.hop, progress=args.progress,
                           windows_out=windows)
        if args.explain is not None:
            from classify.explain_outputs import explain_files
            drawn = explain_files(files, rows, windows, predictor, args.explain, args.hop, progress=args.progress)
            log(f"wrote {drawn} picture(s) to {args.explain}")
        _emit(rows, predictor, args)
    except RunFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OutputWriteError as error:
        print(f"error: {error}\n  {error.advice}, then run the same command again", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted: nothing more is scored; run the same command again", file=sys.stderr)
        return 130
    code = exit_code(rows)
    if code != EXIT_OK:
        failed = sum(r.status != "ok" for r in rows)
        log(f"{failed} of {len(rows)} file(s) could not be scored (see their status)")
    return code


if __name__ == "__main__":
    sys.exit(main())
