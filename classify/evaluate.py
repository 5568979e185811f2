"""Evaluate trained runs: `classify-evaluate RUN [RUN ...] [--split test] [--rule eer]`.

For each run: score the val split and the evaluated split with the run's model, choose the decision
threshold and fit the score -> LLR calibration on val only, apply both unchanged to the evaluated split,
and publish one output set (classify.outputset) at RUN/evaluation/:
  thresholds.json, calibration.json (read by classify.predict), metrics.json (every number with its formula,
  95 % intervals, the shortcut audit), score files (classify.scorefiles: the project's CSV and the ASVspoof
  2019, 2021 and 5 formats), the plots (PNG) and report.html (one self-contained page).
Several runs (e.g. seeds): also <runs>/aggregate-<arch>-<n>seeds.json with the mean and std of each metric.
This module only orchestrates: scoring (classify.scoring), numbers (classify.results), text (classify.tables),
page (classify.report), pictures (classify.plots), files (classify.scorefiles, classify.outputset).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from spec2img.cli import build_parser as build_cli, parse_settings
from spec2img.fileio import EXIT_WRITE_FAILED, OutputWriteError, check_writable_folder, write_atomic, write_json

from . import plots as P
from .asvscores import find_asv_scores
from .bootstrap import DEFAULT_RESAMPLES
from .calibration import Calibration, CalibrationError, fit_calibration, write_calibration
from .metrics import log_odds_to_llr, predict_labels
from .outputset import output_set
from .report import explanation_section, render_report, top_loss_clips
from .results import aggregate, build_result, select_subset
from .runfolder import CALIBRATION_FILE, EVALUATION_LINK, METRICS_FILE, REPORT_FILE, RunFolderError, check_run
from .scorefiles import write_score_files
from .scoring import EvaluationError, LoadedRun, SplitScores, list_splits, load_run, score_splits
from .tables import format_aggregate, format_table, report_summary
from .thresholds import RULES, choose_threshold_with_value, read_thresholds, write_thresholds

__all__ = ["EvalSettings", "EvaluationError", "evaluate_run", "main"]


@dataclass(frozen=True)
class EvalSettings:
    split: str = "test"              # split to evaluate; the threshold and calibration always come from val
    subset: str = "eval"             # key subset the metrics cover (ASVspoof 2021: eval | progress | hidden_track | all)
    rule: str = field(default="eer", metadata={"choices": RULES})  # threshold rule on val
    target_far: float | None = None  # rule far: largest share of val spoofs accepted as bona fide, e.g. 0.01
    asv_scores: Path | None = None   # organizers' ASV score file for min t-DCF (default: found beside the dataset)
    images: Path | None = None       # images folder to evaluate (default: the one in the run's config.json)
    bs: int = 64                     # images per inference batch
    top_k: int = 8                   # clips with the largest loss shown in the plot and the report
    audio_seconds: float = 4.0       # seconds of each top-loss clip embedded in the report
    device: str | None = None        # torch device; default cuda when available, else cpu
    bootstrap: int = DEFAULT_RESAMPLES  # bootstrap replicates of the 95 % intervals; 0 = no intervals
    seed: int = 0                    # random seed of the bootstrap
    shortcut_strong_eer: float = 0.20  # shortcut audit: flag a cue whose EER alone is at most this
    shortcut_margin: float = 0.05    # shortcut audit: flag a cue within this many EER points (0.05 = 5) of the model
    explain: bool = True             # attribution heat maps and the per-band summary in the report (classify.explain)
    explain_sample: int = 256        # clips attributed for the per-band summary (a seeded sample, half of each
                                     # class, of a larger split); 0 = no summary
    explain_examples: int = 3        # most confident correct clips of each class shown with their heat maps

    def validate(self) -> "EvalSettings":
        """Return self, or raise ValueError naming the option that cannot work."""
        from .devices import check_device_name
        if self.rule == "far" and self.target_far is None:
            raise ValueError("--rule far needs --target-far, e.g. --target-far 0.01")
        if self.bootstrap < 0:
            raise ValueError(f"--bootstrap {self.bootstrap}: must be 0 (no intervals) or more")
        problems = [f"--{name.replace('_', '-')} {value} must be {rule}" for name, value, rule, ok in (
            ("bs", self.bs, ">= 1", self.bs >= 1), ("top_k", self.top_k, ">= 0", self.top_k >= 0),
            ("audio_seconds", self.audio_seconds, "> 0", 0 < self.audio_seconds < float("inf")),
            ("target_far", self.target_far, "between 0 and 1",
             self.target_far is None or 0 < self.target_far < 1)) if not ok]
        try:
            check_device_name(self.device)
        except ValueError as e:
            problems.append(str(e))
        if self.explain_sample < 0 or self.explain_examples < 0:
            problems.append("--explain-sample and --explain-examples must be 0 or more")
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True)
class EvalRuns:
    runs: list[Path]   # run folder(s), e.g. runs/latest; several (e.g. seeds) are also aggregated, and
                       # incomplete ones among them are skipped with a notice


def tune_threshold(val: SplitScores, cfg: EvalSettings, folder: Path, notes: list[str], log=print) -> dict:
    """Choose the threshold on val, write thresholds.json into the output set `folder`, and return its content."""
    try:
        t, info = choose_threshold_with_value(val.spoof_prob, val.label, cfg.rule, cfg.target_far)
        note = None
    except ValueError as e:
        if "unknown threshold rule" in str(e) or "target-far" in str(e):
            raise EvaluationError(str(e)) from None
        t, info = 0.5, {"value": None, "metric": "none", "reason": str(e)}
        note = f"{e}; using spoof_prob >= 0.5 instead"
        notes.append(note)
        log(f"warning: {note}")
    info["counts"] = val.counts()
    write_thresholds(folder, cfg.rule, t, info, cfg.target_far, note)
    return read_thresholds(folder)


def calibrate(val: SplitScores, folder: Path, notes: list[str], log=print) -> tuple[Calibration | None, str]:
    """Fit the score -> LLR calibration on val and write calibration.json into `folder`; return (it, "") or
    (None, why not)."""
    try:
        calibration = fit_calibration(val.score, val.label, "val")
    except CalibrationError as e:
        why = f"no calibration: {e}"
        notes.append(f"{why}; actDCF and Cllr are reported on raw scores only, and the ASVspoof 5 score file "
                     f"holds uncalibrated LLRs")
        log(f"warning: {why}")
        return None, why
    write_calibration(folder / CALIBRATION_FILE, calibration)
    return calibration, ""


def _notes(run: LoadedRun, cfg: EvalSettings) -> list[str]:
    notes = []
    if cfg.split == "val":
        notes.append("the evaluated split is val, on which the threshold and the calibration were fitted: "
                     "these numbers are optimistic")
    recorded = run.config.get("images")
    if cfg.images is not None and run.val_images == run.images and (
            not recorded or Path(recorded).resolve() != run.images.resolve()):
        notes.append(f"the run's training images are not at {recorded}: the threshold and calibration were "
                     f"fitted on the val split of {run.images}")
    return notes


def evaluate_run(run_dir: Path, cfg: EvalSettings = EvalSettings(), log=print) -> dict:
    """Evaluate one run folder; publish every output as one set at RUN/evaluation and return metrics.json's content."""
    from .data import read_png_gray
    if cfg.asv_scores and not Path(cfg.asv_scores).is_file():
        raise EvaluationError(f"--asv-scores {cfg.asv_scores}: no such file")
    run = load_run(run_dir, cfg.images, cfg.device)
    val, test = list_splits(run, cfg.split)
    select_subset(test, cfg.subset)                          # a wrong --subset stops before any scoring
    val, test = score_splits(run, val, test, cfg.bs, log)
    chosen, subset = select_subset(test, cfg.subset)
    notes = _notes(run, cfg)
    asv = (Path(cfg.asv_scores), "") if cfg.asv_scores else find_asv_scores(run.images_spec, cfg.split)
    with output_set(run.run_dir, cfg.split) as folder:
        thresholds = tune_threshold(val, cfg, folder, notes, log)
        tuned = thresholds["spoof_prob_threshold"]
        calibration, why = calibrate(val, folder, notes, log)
        result = build_result(run, cfg, val, test, chosen, subset, thresholds, calibration, why, asv)
        notes += [f"{name} not reported: {m['reason']}" for name, m in result["metrics"].items()
                  if m["value"] is None and (calibration or name not in ("act_dcf", "cllr"))]
        for s in [test] + ([] if val is test else [val]):
            llr = calibration.llr(s.score) if calibration else log_odds_to_llr(s.score, result["llr"]["prior_bonafide"])
            write_score_files(folder, s, llr, predict_labels(s.spoof_prob, tuned), evaluated=s is test)
        clips = top_loss_clips(chosen, cfg.top_k)
        explained = explain_clips(run, cfg, folder, chosen, clips, tuned, notes, log)
        captions = [f"{c.clip_id}\ntrue {c.label}{' ' + c.system if c.system else ''} · score {c.score:.2f}"
                    for c in clips]
        plots = P.draw_evaluation(folder, run.run_dir, cfg.split, chosen.label, chosen.spoof_prob, chosen.score,
                                  tuned, result, [read_png_gray(c.image) for c in clips], captions, notes)
        result["plots"] = {k: os.path.relpath(v, run.run_dir) for k, v in plots.items()}
        if explained is not None:
            result["explanations"] = explained.summary
        result["notes"] = notes
        result["report"] = str(run.run_dir.resolve() / EVALUATION_LINK / REPORT_FILE)
        write_json(folder / METRICS_FILE, result)
        title = f"Evaluation of {run.run_dir.resolve().name} on {cfg.split}"
        page = render_report(title, report_summary(result), result, {P.PLOT_TITLES[k]: v for k, v in plots.items()},
                             clips, notes, cfg.audio_seconds, explanations=explanation_section(
                                 explained.band_plot, explained.summary["reading"], explained.details,
                                 explained.confident, cfg.audio_seconds) if explained is not None else "")
        write_atomic(folder / REPORT_FILE, page)            # last: a set folder holding a report is complete
    return result


def explain_clips(run: LoadedRun, cfg: EvalSettings, folder: Path, s: SplitScores, clips: list, tuned: float,
                  notes: list[str], log=print):
    """Return classify.explain's heat maps and per-band summary of the evaluated clips, written into the output
    set `folder`, or None (with a note saying why) when switched off or when the model cannot be explained."""
    from .explain import ExplainError
    from .explain_outputs import explain_split
    if not cfg.explain:
        return None
    try:
        return explain_split(folder, run.model, run.description, s, clips, tuned, cfg.explain_sample,
                             cfg.explain_examples, log)
    except (ExplainError, OSError) as e:   # no convolutional stage, or an image gone since scoring: say so, go on
        notes.append(f"no heat maps or per-band summary: {e}")
        log(f"warning: no heat maps or per-band summary: {e}")
        return None


# ---------------------------------------------------------------- several runs, command line

def write_aggregate(results: list[dict], runs: list[Path]) -> tuple[Path, dict]:
    """Write <runs parent>/aggregate-<arch>-<n>seeds.json (mean and sample std per metric); return (path, content)."""
    archs = {r["arch"] for r in results}
    arch = archs.pop() if len(archs) == 1 else "mixed"
    out = Path(runs[0]).resolve().parent / f"aggregate-{arch}-{len(results)}seeds.json"
    doc = aggregate(results)
    write_json(out, doc)
    return out, doc


def build_parser():
    """Return the command line: the run folders and one option per EvalSettings field (spec2img.cli)."""
    return build_cli("classify-evaluate", __doc__.split("\n")[0], [EvalRuns, EvalSettings])


def parse_args(argv=None) -> tuple[list[Path], EvalSettings]:
    """Return (run folders, settings) from the command line (exit status 2 with a message when unusable)."""
    parser = build_parser()
    runs, cfg = parse_settings(parser, argv, EvalRuns, EvalSettings)
    try:
        return runs.runs, cfg.validate()
    except ValueError as error:
        parser.error(str(error))


def usable_runs(runs: list[Path], log=print) -> list[Path]:
    """Return the runs that runfolder.check_run accepts; with several runs the others are skipped with a
    notice, a single unusable run raises RunFolderError."""
    if len(runs) == 1:
        check_run(runs[0])
        return list(runs)
    usable = []
    for run in runs:
        try:
            check_run(run)
            usable.append(run)
        except RunFolderError as error:
            log(f"skipped {run}: {error}")
    if not usable:
        raise RunFolderError(f"none of the {len(runs)} runs can be evaluated (see the messages above)")
    return usable


def main(argv=None) -> int:
    """Evaluate each run, print its table and report path, and aggregate several runs."""
    runs, cfg = parse_args(argv)
    results = []
    try:
        runs = usable_runs(runs, log=lambda message: print(f"classify-evaluate: {message}", file=sys.stderr))
        for run in runs:
            if Path(run).is_dir():
                check_writable_folder(run)  # a read-only run folder stops here, not after scoring
            result = evaluate_run(run, cfg)
            print("\n" + format_table(result))
            print(f"report: {result['report']}")
            results.append(result)
        if len(results) > 1:
            path, doc = write_aggregate(results, runs)
            print(format_aggregate(doc))
            print(f"aggregate: {path}")
    except (EvaluationError, RunFolderError) as e:
        print(f"classify-evaluate: error: {e}", file=sys.stderr)
        return 2
    except OutputWriteError as e:
        done = f" ({len(results)} of {len(runs)} runs evaluated)" if len(runs) > 1 else ""
        print(f"classify-evaluate: error: evaluation stopped{done}: {e}\n  {e.advice}, then run the same "
              f"command again (the previous evaluation stays in place: a new one is published whole)",
              file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted: the previous evaluation stays in place; run the same command again", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
