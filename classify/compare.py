"""Compare two evaluated runs on the same evaluation images: `classify-compare RUN_A RUN_B`.

Reads each run's current evaluation set (RUN/evaluation: metrics.json and scores-<split>.csv, written by
classify.evaluate), checks that both scored the same clips with the same labels, keeps the key subset the
evaluations reported (ASVspoof 2021: eval by default), and prints the EER of each run and the difference
EER(A) - EER(B) with its 95 % paired-bootstrap interval and two-sided p-value: both runs are scored on the
same resampled trials (speakers resampled when known, else clips), so the trial-to-trial variance they
share cancels (classify.bootstrap.paired_difference). A positive difference means A has the higher EER.
Exit status: 0 compared, 2 a run that is not evaluated or does not match the other.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spec2img.cli import build_parser as build_cli, parse_settings
from spec2img.fileio import write_json
from spec2img.rows import LABELS

from .bootstrap import CI_METRICS, DEFAULT_RESAMPLES, paired_difference
from .runfolder import METRICS_FILE, evaluation_dir, scores_csv_name
from .scorefiles import read_scores_table


class CompareError(Exception):
    """The two runs cannot be compared; str() says why and what to do."""


@dataclass(frozen=True)
class CompareSettings:
    split: str | None = None         # evaluated split to compare (default: the one run A's evaluation reported)
    subset: str | None = None        # key subset (default: the one the evaluations reported; "all" for every trial)
    metric: str = field(default="eer", metadata={"choices": CI_METRICS})  # metric to compare
    bootstrap: int = DEFAULT_RESAMPLES  # paired bootstrap replicates
    seed: int = 0                    # random seed of the bootstrap

    def validate(self) -> "CompareSettings":
        """Return self, or raise ValueError naming the option that cannot work."""
        if self.bootstrap < 1:
            raise ValueError(f"--bootstrap {self.bootstrap}: need at least 1 replicate")
        return self


@dataclass(frozen=True)
class ComparePaths:
    run_a: Path                      # first evaluated run folder
    run_b: Path                      # second evaluated run folder (same evaluation images)
    out: Path | None = None          # also write the comparison as JSON to this file


def load_evaluation(run: Path, split: str | None) -> tuple[dict, dict[str, dict]]:
    """Return (metrics.json, {clip_id: scores row}) of a run's current evaluation; CompareError when missing."""
    folder = evaluation_dir(run)
    if folder is None or not (folder / METRICS_FILE).is_file():
        raise CompareError(f"{run} has no evaluation: run `classify-evaluate {run}` first")
    metrics = json.loads((folder / METRICS_FILE).read_text())
    split = split or metrics["split"]
    path = folder / scores_csv_name(split)
    if not path.is_file():
        raise CompareError(f"{path} not found: {run} was not evaluated on {split} (its evaluation is of "
                           f"{metrics['split']}); evaluate it with --split {split}")
    return metrics, {r["clip_id"]: r for r in read_scores_table(path)}


def paired_trials(a: dict[str, dict], b: dict[str, dict], subset: str) -> tuple[list[str], np.ndarray, list[str]]:
    """Return (clip ids, labels, speakers) scored by both runs, in the key subset `subset` ("all": every trial);
    CompareError when the runs scored different clips or disagree on a label."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise CompareError(f"the runs were not evaluated on the same images: {len(only_a)} clips only in A "
                           f"({', '.join(only_a[:5])}), {len(only_b)} only in B ({', '.join(only_b[:5])}); "
                           f"evaluate both with the same --images and --split")
    ids = sorted(c for c in a if subset == "all" or a[c].get("subset", "") == subset)
    wrong = [c for c in ids if a[c]["label"] != b[c]["label"]]
    if wrong:
        raise CompareError(f"the runs disagree on the label of {len(wrong)} clips ({', '.join(wrong[:5])}): "
                           f"they were evaluated on different data")
    if not ids:
        raise CompareError(f"no trial of subset {subset!r}")
    labels = np.asarray([LABELS.index(a[c]["label"]) for c in ids])
    return ids, labels, [a[c].get("speaker", "") for c in ids]


def compare(run_a: Path, run_b: Path, cfg: CompareSettings = CompareSettings()) -> dict:
    """Return the comparison: each run's metric, the difference A - B, its paired 95 % interval and p-value."""
    if cfg.metric not in CI_METRICS:
        raise CompareError(f"--metric {cfg.metric}: choose one of {', '.join(CI_METRICS)}")
    meta_a, a = load_evaluation(run_a, cfg.split)
    meta_b, b = load_evaluation(run_b, cfg.split or meta_a["split"])
    subset = cfg.subset or meta_a.get("subset", {}).get("name", "all")
    if cfg.subset is None and meta_b.get("subset", {}).get("name", "all") != subset:
        raise CompareError(f"run A reports key subset {subset!r}, run B {meta_b['subset']['name']!r}: pass --subset")
    ids, labels, speakers = paired_trials(a, b, subset)
    score_a = np.asarray([float(a[c]["score"]) for c in ids])
    score_b = np.asarray([float(b[c]["score"]) for c in ids])
    diff = paired_difference(score_a, score_b, labels, speakers, cfg.metric, cfg.bootstrap, cfg.seed)
    return {"run_a": str(run_a), "run_b": str(run_b), "split": cfg.split or meta_a["split"], "subset": subset,
            "clips": len(ids), "counts": {n: int(np.sum(labels == i)) for i, n in enumerate(LABELS)}, **diff,
            "method": "paired bootstrap: both runs scored on the same resampled trials; interval = 2.5th and "
                      "97.5th percentiles of the replicate differences; p = (1 + #{|d* - d| >= |d|}) / (1 + B)"}


def format_comparison(r: dict) -> str:
    """Return the printed comparison."""
    m = r["metric"]
    lo, hi = r["ci95"] if r["ci95"] else (float("nan"), float("nan"))
    pct = 100 if m == "eer" else 1
    unit = " %" if m == "eer" else ""
    verdict = ("the interval excludes 0: the difference is unlikely to be resampling noise"
               if r["ci95"] and (lo > 0 or hi < 0) else "the interval includes 0: no reliable difference")
    return "\n".join([
        f"{r['clips']} clips of {r['split']} (subset {r['subset']}; {r['counts']}), {r['resamples']} paired bootstrap "
        f"replicates over {r['units']} {r['unit']}s",
        f"  A {r['run_a']}: {m} {pct * r['a']:.3f}{unit}",
        f"  B {r['run_b']}: {m} {pct * r['b']:.3f}{unit}",
        f"  A - B = {pct * r['difference']:+.3f}{unit}, 95 % interval [{pct * lo:+.3f}, {pct * hi:+.3f}]{unit}, "
        f"p = {r['p_value']:.4f}",
        f"  {verdict}"])


def build_parser():
    """Return the command line: ComparePaths and one option per CompareSettings field (spec2img.cli)."""
    return build_cli("classify-compare", __doc__.split("\n\n")[0], [ComparePaths, CompareSettings],
                     epilog=__doc__.split("\n\n", 1)[1])


def parse_args(argv=None) -> tuple[Path, Path, Path | None, CompareSettings]:
    """Return (run A, run B, --out, settings) from the command line."""
    parser = build_parser()
    paths, cfg = parse_settings(parser, argv, ComparePaths, CompareSettings)
    try:
        return paths.run_a, paths.run_b, paths.out, cfg.validate()
    except ValueError as error:
        parser.error(str(error))


def main(argv=None) -> int:
    """Compare the two runs and print the result; return the exit status."""
    run_a, run_b, out, cfg = parse_args(argv)
    try:
        result = compare(run_a, run_b, cfg)
    except (CompareError, ValueError) as e:
        print(f"classify-compare: error: {e}", file=sys.stderr)
        return 2
    print(format_comparison(result))
    if out is not None:
        write_json(out, result)
        print(f"comparison: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
