"""Score new audio files with a trained run: spoof probability, ASVspoof score and label per file.

    classify-predict --run runs/latest AUDIO_OR_FOLDER... [--out scores.csv] [--format csv|json]
                     [--bs 64] [--hop 0.5] [--prior 0.5] [--device cpu|cuda] [--workers 0] [--trust-pickle]
                     [--no-progress] [--explain DIR]

Every file goes through the run's own front end: the spectrogram settings saved in the run's
`model.json` ("spec") and `spec2img.features.clip_to_image`, the function that made the training
images. A clip no longer than the training duration is one window (shorter ones are repeat-padded
exactly as in training); a longer clip is cut into overlapping windows of that duration (default hop:
half a window; the last window is aligned to the end of the file so the tail is scored) and the
windows' logits are averaged. The most-spoof window's probability and start time are reported too.
Files up to 10 minutes are decoded whole; longer ones are decoded 5 minutes at a time, so memory
stays bounded whatever the file's length. Decoding and rendering run in `--workers` processes (default:
one per core, each with one math-library thread; classify.windows) while the model scores the previous
batch of window images, on the GPU when there is one. The progress bar counts files and advances within
a long file piece by piece, with the windows scored so far. A run trained on
silence-trimmed images (spec "trim_silence") scores each file trimmed the same way (files over 10 minutes
are not trimmed).

Rows are written as they finish, in input order (a row as soon as it and every row before it are done).
With --out FILE they are appended to FILE.<key>.part, flushed row by row, so an interrupted or killed run
leaves a readable file of the rows it finished; running the same command again keeps those rows without
reading their files again and scores the rest; FILE itself is written atomically at the end and the part
removed (classify.rowstream: <key> digests the run and the settings, so other settings never reuse it).

Output columns (one row per file, in input order; folders are walked recursively and sorted; a folder
holding no audio file gets a row of its own with that error):
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
  4  the output could not be written (disk full, read-only folder, no permission); the rows finished
     so far stay in the part file
  130 interrupted (Ctrl-C): the finished rows are kept in the part file

Security: the model is rebuilt from `model.safetensors` + `model.json` (plain tensors and JSON: loading
runs no code from the run folder). A run that only has fastai's `export.pkl` is refused, because
unpickling executes whatever code the file contains; `--trust-pickle` loads it anyway, for files
you made yourself or got from someone you trust.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Literal

import numpy as np

from classify import model_io, runfolder
from classify.calibration import (DEFAULT_PRIOR_SPOOF, Calibration, CalibrationError, posterior_spoof,
                                  read_calibration, training_prior, uncalibrated)
from classify.model_io import bonafide_score, spoof_probability
from classify.devices import check_device_name
from classify.rowstream import PartLockedError, RowStream, other_parts
from classify.runfolder import CALIBRATION_FILE, THRESHOLDS_FILE, RunFolderError, evaluation_dir
from classify.thresholds import read_thresholds
from classify.windows import Piece, iter_pieces
from classify.windows import iter_file_windows, window_starts  # noqa: F401 (re-exported: callers import them from here)
from spec2img.audio import AUDIO_EXTENSIONS
from spec2img.cli import build_parser as build_cli, parse_settings
from spec2img.config import SpecConfig
from spec2img.fileio import EXIT_WRITE_FAILED, OutputWriteError, check_writable_folder
from spec2img.progress import progress as progress_bar

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_ALL_FAILED = 0, 1, 2, 3
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


# ---------------------------------------------------------------- inputs

def find_inputs(inputs: Iterable[Path]) -> list[tuple[Path, str]]:
    """Return (path, why it holds no audio or "") per file to score, in order: each named file as given
    (a missing one too, so its row says so), every AUDIO_EXTENSIONS file under each folder (recursive,
    sorted), and the folder itself with its reason when it holds none."""
    found: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            audio = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            found += [(p, "") for p in audio] or [(item, f"error: no audio files ({' '.join(AUDIO_EXTENSIONS)}) "
                                                         f"in this folder")]
        else:
            found.append((item, ""))
    return found


def find_audio(inputs: Iterable[Path]) -> list[Path]:
    """Return the files to score (see find_inputs), without the folders that hold no audio."""
    return [path for path, why in find_inputs(inputs) if not why]


# ---------------------------------------------------------------- scoring many files in batches

def score_files(files: list[Path], predictor: Predictor, bs: int = 64, hop_fraction: float = 0.5,
                progress: bool = True, workers: int = 0, on_row: Callable[[PredictionRow], None] | None = None,
                known: dict[int, PredictionRow] | None = None, windows_out: dict | None = None) -> list[PredictionRow]:
    """Return one PredictionRow per file, in order; a file that cannot be scored gets an error row.

    Files are decoded and rendered into window images by `workers` processes (0 = every core, 1 = in this
    process; classify.windows) while the model scores the previous batch. `on_row(row)` is called in input
    order as soon as a row and every row before it are final. `known` {file index: row}: rows taken as they
    are (an interrupted run's, an input holding no audio); those files are not read. `windows_out`, when given,
    receives {file index: [(window start s, window logits (2,)), ...]} of each file scored, before its on_row."""
    known = known or {}
    rows = [known.get(i) or PredictionRow(path=str(p)) for i, p in enumerate(files)]
    todo = [(i, Path(p)) for i, p in enumerate(files) if i not in known]
    scoring = _Scoring(rows, predictor, bs, set(known), on_row, windows_out)
    with progress_bar(total=len(todo), desc="scoring", unit="file", enabled=progress and bool(todo),
                      bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]") as bar:
        bar.set_postfix_str(f"0/{len(todo)} files", refresh=False)
        for piece in iter_pieces(todo, predictor.spec, hop_fraction, workers):
            scoring.add(piece)
            bar.set_postfix_str(f"{scoring.files_done}/{len(todo)} files, {scoring.windows} windows", refresh=False)
            bar.update(1 / piece.pieces)              # a long file advances the bar piece by piece
        scoring.flush()
    return rows


class _Scoring:
    """Batches the window images of many files through the model and completes each file's row; rows are
    handed to `on_row` in input order as they become final."""

    def __init__(self, rows: list[PredictionRow], predictor: Predictor, bs: int, final: set[int],
                 on_row: Callable[[PredictionRow], None] | None, windows_out: dict | None = None):
        self.rows, self.predictor, self.bs, self.on_row, self.windows_out = rows, predictor, bs, on_row, windows_out
        self.images: list[np.ndarray] = []                       # queued window images, (k, H, W) each
        self.keys: list[tuple[int, float]] = []                  # (file index, window start seconds) per window
        self.results: dict[int, list[tuple[float, np.ndarray]]] = {}   # file index -> [(start, logits (2,))]
        self.waiting: dict[int, int] = {}                        # file index -> windows queued, not yet scored
        self.silent: dict[int, str] = {}                         # file index -> why a window was skipped
        self.final = set(final)                                  # indices whose row is complete
        self.received: set[int] = set()                         # indices whose every piece has arrived
        self.next_row, self.windows = 0, 0

    @property
    def files_done(self) -> int:
        return len(self.received)

    def add(self, piece: Piece) -> None:
        """Take one piece: its error, or its windows (scored when a batch is full)."""
        i, row = piece.index, self.rows[piece.index]
        if piece.piece == 0:
            row.duration = piece.duration
        if piece.error:
            row.status = piece.error
        elif piece.images is not None:
            self.images.append(piece.images)
            self.keys += [(i, start) for start in piece.starts]
            self.waiting[i] = self.waiting.get(i, 0) + len(piece.starts)
        if piece.silent:
            self.silent.setdefault(i, piece.silent)
        if piece.piece == piece.pieces - 1:
            self.received.add(i)
            if not self.waiting.get(i):
                self._complete(i)
        if len(self.keys) >= self.bs:
            self.flush()
        else:
            self._hand_out()

    def flush(self) -> None:
        """Score every queued window, complete the rows that were waiting for them, hand out what is final."""
        if self.keys:
            logits = np.asarray(self.predictor.logits(np.concatenate(self.images)), dtype=np.float32)   # (B, 2)
            for (i, start), row in zip(self.keys, logits):
                self.results.setdefault(i, []).append((start, row))
                self.waiting[i] -= 1
            self.windows += len(self.keys)
            done = {i for i, _ in self.keys if self.waiting[i] == 0}
            self.images, self.keys = [], []
            for i in sorted(done & self.received):
                self._complete(i)
        self._hand_out()

    def _complete(self, i: int) -> None:
        row, predictor = self.rows[i], self.predictor
        windows = self.results.pop(i, [])
        if self.windows_out is not None and windows:
            self.windows_out[i] = windows
        if row.status == "ok":
            if not windows:
                row.status = self.silent.get(i) or "error: no window could be scored"
            else:
                for key, value in combine_windows(np.stack([w for _, w in windows]), [s for s, _ in windows]).items():
                    setattr(row, key, value)
                row.label = label_for(row.spoof_prob, predictor.threshold)
                if predictor.calibration is not None:
                    row.llr = float(predictor.calibration.llr(row.score))
                    row.spoof_posterior = float(posterior_spoof(row.llr, predictor.prior))
        self.final.add(i)

    def _hand_out(self) -> None:
        while self.next_row < len(self.rows) and self.next_row in self.final:
            if self.on_row is not None:
                self.on_row(self.rows[self.next_row])
            self.next_row += 1


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

def csv_cells(row: PredictionRow) -> dict:
    """Return the row's CSV cells: empty for missing numbers, floats to 6 significant digits."""
    return {k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in asdict(row).items()}


def rows_to_csv(rows: list[PredictionRow]) -> str:
    """Return the rows as CSV text with a header (empty cells for missing numbers)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_cells(row) for row in rows)
    return buffer.getvalue()


def rows_to_json(rows: list[PredictionRow], predictor: Predictor, run_dir: Path) -> str:
    """Return the rows and the run's name, threshold and its source as a JSON document."""
    cal = predictor.calibration
    return json.dumps({"run": str(run_dir), "arch": predictor.arch, "threshold": predictor.threshold,
                       "threshold_source": predictor.threshold_source, "prior_spoof": predictor.prior,
                       "calibration": None if cal is None else {"slope": cal.slope, "offset": cal.offset,
                                                                "fitted_on": cal.fitted_on},
                       "spec": predictor.spec.to_dict(), "files": [asdict(r) for r in rows]}, indent=2) + "\n"


TABLE_HEADER = (f"{'label':<9} {'spoof_prob':>10} {'score':>8} {'llr':>8} {'posterior':>9} {'duration':>8} "
                f"{'windows':>7} {'max_spoof':>9} {'at_s':>6}  path / status")


def table_line(r: PredictionRow) -> str:
    """Return the row as one fixed-width line of the terminal table (columns of TABLE_HEADER)."""
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)
    tail = r.path if r.status == "ok" else f"{r.path}  [{r.status}]"
    return (f"{r.label or '-':<9} {num(r.spoof_prob, '.4f'):>10} {num(r.score, '.3f'):>8} "
            f"{num(r.llr, '.3f'):>8} {num(r.spoof_posterior, '.4f'):>9} "
            f"{num(r.duration, '.2f'):>8} {r.windows:>7} {num(r.max_spoof_prob, '.4f'):>9} "
            f"{num(r.max_spoof_start, '.1f'):>6}  {tail}")


def rows_to_table(rows: list[PredictionRow]) -> str:
    """Return a fixed-width table of the rows for the terminal."""
    return "\n".join([TABLE_HEADER] + [table_line(r) for r in rows]) + "\n"


def resume_key(predictor: Predictor, run_dir: Path, hop_fraction: float, explain: Path | None = None) -> str:
    """Return a short digest of everything a row depends on (the run's model file, threshold, calibration,
    prior, hop, spectrogram settings, columns, the --explain folder): the part file of an interrupted run is
    resumed only under the same key (classify.rowstream)."""
    run_dir = Path(run_dir).resolve()
    model = next((run_dir / n for n in ("model.safetensors", "export.pkl") if (run_dir / n).is_file()), None)
    stat = model.stat() if model is not None else None
    cal = predictor.calibration
    doc = {"run": str(run_dir), "model": None if stat is None else [model.name, stat.st_size, stat.st_mtime_ns],
           "threshold": predictor.threshold, "calibration": None if cal is None else [cal.slope, cal.offset],
           "prior": predictor.prior, "hop": hop_fraction, "spec": predictor.spec.to_dict(), "columns": COLUMNS,
           "explain": None if explain is None else str(Path(explain).resolve())}
    return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:10]


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
    workers: int = 0                 # processes that decode the audio and render the window images while the
                                     # model scores (0 = every core; 1 = in this process)
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
        if self.workers < 0:
            raise ValueError(f"--workers {self.workers}: must be 0 (every core) or more")
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


def _row_stream(predictor: Predictor, args: PredictSettings) -> tuple[RowStream, str]:
    """Return the stream that writes rows as they finish (classify.rowstream) and the output format."""
    fmt = args.format or ("json" if args.out is not None and args.out.suffix.lower() == ".json" else "csv")
    show = "table" if args.out is not None or not args.format else ("csv" if fmt == "csv" else "")
    key = resume_key(predictor, args.run, args.hop, args.explain)
    return RowStream(args.out, fmt, key, csv_cells, COLUMNS, show, TABLE_HEADER, table_line), fmt


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status documented in the module docstring."""
    args = parse_args(argv)
    inputs = find_inputs(args.inputs)
    if all(why for _, why in inputs):
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
        stream, fmt = _row_stream(predictor, args)
        resumed = stream.open(PredictionRow)
    except (RunFolderError, PartLockedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OutputWriteError as error:
        print(f"error: {error}\n  {error.advice}, then run the same command again", file=sys.stderr)
        return EXIT_WRITE_FAILED
    files = [path for path, _ in inputs]
    known = {i: PredictionRow(path=str(path), status=why) for i, (path, why) in enumerate(inputs) if why}
    for i, path in enumerate(files):
        if i not in known and str(path) in resumed:
            known[i] = resumed[str(path)]
            stream.keep(known[i])
    kept = sum(r.status == "ok" for r in known.values())
    log(f"run {args.run} ({predictor.arch}); threshold spoof_prob >= {predictor.threshold:.4g} from "
        f"{predictor.threshold_source}; {len(files)} file(s)"
        + (f"; {kept} already scored in {stream.part} (an interrupted run): kept" if kept else ""))
    if args.out is not None:
        for other in other_parts(args.out, stream.key):
            log(f"notice: {other} holds the rows of an interrupted run with other settings; left as it is")
    windows = {} if args.explain is not None else None
    explainer = None
    if args.explain is not None:                     # each file's picture is drawn before its row is written
        from classify.explain_outputs import FileExplainer
        explainer, order = FileExplainer(files, predictor, args.explain, args.hop), iter(range(len(files)))

    def write(row: PredictionRow) -> None:
        if explainer is not None:
            index = next(order)
            if index in windows:
                explainer.draw(index, row, windows.pop(index))
        stream.write(row)
    try:
        rows = score_files(files, predictor, bs=args.bs, hop_fraction=args.hop, progress=args.progress,
                           workers=args.workers, on_row=write, known=known, windows_out=windows)
        if explainer is not None:
            log(f"wrote {explainer.drawn} picture(s) to {args.explain}")
        text = rows_to_json(rows, predictor, args.run) if fmt == "json" else rows_to_csv(rows)
        stream.finish(text)
    except KeyboardInterrupt:
        stream.close()
        where = f": the rows finished so far are in {stream.part}, and" if stream.part is not None else ";"
        print(f"\ninterrupted{where} running the same command again resumes", file=sys.stderr)
        return 130
    except OutputWriteError as error:
        stream.close()
        kept = f"; the rows finished so far are in {stream.part}" if stream.part is not None else ""
        print(f"error: {error}{kept}\n  {error.advice}, then run the same command again (it resumes)",
              file=sys.stderr)
        return EXIT_WRITE_FAILED
    if args.out is not None:
        log(f"wrote {args.out} ({len(rows)} rows, {fmt})")
    elif stream.show == "":
        sys.stdout.write(text)
    code = exit_code(rows)
    if code != EXIT_OK:
        failed = sum(r.status != "ok" for r in rows)
        log(f"{failed} of {len(rows)} file(s) could not be scored (see their status)")
    return code


if __name__ == "__main__":
    sys.exit(main())
