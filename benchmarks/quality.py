"""Generalization benchmark: train on some groups of a collection, test on others, per recipe and seed.

    python -m benchmarks.quality DATA --group path:1 [--train-groups A,B [--test-groups C,D]]
        [--frontends mel,linear,cqt,lfcc] [--trims off,on] [--augments none,rawboost:1] [--archs lcnn]
        [--design oneway|factorial|none] [--recipes 'NAME: SPEC FLAGS | TRAIN FLAGS' ...]
        [--seeds 0,1,2] [--epochs 10] [--bs 32] [--spec-args '...'] [--train-args '...']

Protocols (benchmarks.protocols): A -> B and B -> A when --train-groups is given, else leave one
group out; plus the in-domain split of the whole collection. Recipes: a grid over front end x
silence trimming x augmentation ("none" or KINDS:K) x architecture, either one axis changed at a
time from the first value of each (oneway, the default) or every combination (factorial), plus any
of --recipes (spec2img flags | classify.train flags, e.g. `--arch efficientnet_lite0 --weights w.pth`).
Every run uses the project's own stages as a user runs them: `python -m spec2img` on a CSV of the
protocol, `python -m classify.train`, `python -m classify.evaluate --split test` (run in this process
as `python -m` runs them, so the libraries load once; --isolate starts a process per stage). The images of a
(protocol, spectrogram flags) pair are converted once and reused by every seed and architecture;
each finished run is recorded in WORK/results.jsonl, so an interrupted benchmark resumes where it
stopped. Prints one table (EER mean ± std over seeds and ROC-AUC, cross-group and in-domain, per
recipe) and writes it to OUT/quality.csv (one row per recipe and protocol, then the summaries) with
OUT/quality.png.
Cross-group EER of a seed is the mean over the cross-group protocols; mean and sample std are then
taken over seeds. Training seeds vary the weights and batches; the split and augmentation draws stay
those of --split-seed.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.protocols import (Protocol, ProtocolError, cross_protocols, group_values, in_domain, parse_groups,
                                  write_protocol_csv)
from classify.runfolder import METRICS_FILE, evaluation_dir
from spec2img.fileio import write_atomic

RESULTS = "results.jsonl"
DESIGNS = ("oneway", "factorial", "none")


@dataclass(frozen=True)
class QualitySettings:
    data: str                             # CSV manifest or dataset root (any layout spec2img reads)
    group: str = ""                       # the groups: a CSV column, system, speaker, condition, or path:N (the
                                          # N-th folder of each file below the data folder)
    train_groups: str = ""                # A -> B: comma-separated groups to train on; "" = leave one group out
    test_groups: str = ""                 # A -> B: groups to test on; "" = every other group
    both_directions: bool = True          # A -> B is followed by B -> A
    in_domain: bool = True                # also the in-domain split of the whole collection
    frontends: str = "mel,linear,cqt,lfcc"  # front-end axis (the first value is the baseline's)
    trims: str = "off,on"                 # silence-trimming axis: off, on
    augments: str = "none,rawboost:1"     # augmentation axis: none, or KINDS:K (K variants drawn from KINDS)
    archs: str = "lcnn"                   # architecture axis
    design: str = field(default="oneway",  # oneway: one axis changed at a time; factorial: every combination;
                        metadata={"choices": DESIGNS})   # none: only --recipes
    recipes: list[str] = field(default_factory=list,  # extra recipes 'NAME: SPEC2IMG FLAGS | TRAIN FLAGS'
                               metadata={"metavar": "'NAME: SPEC | TRAIN'"})
    seeds: str = "0,1,2"                  # training seeds
    epochs: int = 10                      # classify.train --epochs
    bs: int = 32                          # classify.train --bs
    spec_args: str = ""                   # flags given to every conversion, e.g. "--duration 2 --n-mels 64"
    train_args: str = "--no-pretrained"   # flags given to every training (from scratch on the CPU)
    split_seed: int = 0                   # seed of the protocol splits and of the augmentation draws
    workers: int = 0                      # conversion worker processes (0 = all cores)
    isolate: bool = False                 # run every stage in its own Python process (nothing shared, slower)
    work: str = "benchmarks/out/quality"  # converted images, runs, logs and results.jsonl (resumable)
    out: str = "benchmarks/out"           # folder of quality.csv and quality.png


@dataclass(frozen=True)
class Recipe:
    name: str                             # table label
    spec_args: tuple[str, ...] = ()       # spec2img flags
    train_args: tuple[str, ...] = ()      # classify.train flags


# ---------------------------------------------------------------- recipes


def parse_recipe(text: str) -> Recipe:
    """Parse 'NAME: SPEC FLAGS | TRAIN FLAGS' (either part may be empty)."""
    name, sep, rest = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"--recipes {text!r}: expected 'NAME: SPEC2IMG FLAGS | TRAIN FLAGS'")
    spec, _, train = rest.partition("|")
    return Recipe(name.strip(), tuple(shlex.split(spec)), tuple(shlex.split(train)))


def _axis(text: str, name: str) -> list[str]:
    values = [v.strip() for v in str(text).split(",") if v.strip()]
    if not values:
        raise ValueError(f"--{name} names no value")
    return values


def axis_recipe(frontend: str, trim: str, augment: str, arch: str, show_arch: bool) -> Recipe:
    """Return the recipe of one grid point."""
    if trim not in ("off", "on"):
        raise ValueError(f"--trims value {trim!r}: use off or on")
    spec = ["--frontend", frontend] + (["--trim-silence"] if trim == "on" else [])
    name = frontend + ("+trim" if trim == "on" else "")
    if augment != "none":
        kinds, _, k = augment.rpartition(":")
        if not kinds or not k.isdigit() or int(k) < 1:
            raise ValueError(f"--augments value {augment!r}: use none or KINDS:K, e.g. rawboost:1 or mp3+opus:2")
        spec += ["--augment", k, "--augment-kinds", kinds.replace("+", ",")]
        name += f"+aug({kinds}x{k})"
    return Recipe(name + (f"/{arch}" if show_arch else ""), tuple(spec), ("--arch", arch))


def build_recipes(s: QualitySettings) -> list[Recipe]:
    """Return the recipes: the grid of the axes per `s.design`, then `s.recipes`; names unique."""
    axes = [_axis(s.frontends, "frontends"), _axis(s.trims, "trims"), _axis(s.augments, "augments"),
            _axis(s.archs, "archs")]
    show_arch = len(axes[3]) > 1
    if s.design == "factorial":
        points = list(itertools.product(*axes))
    elif s.design == "oneway":
        base = tuple(a[0] for a in axes)
        points = [base] + [base[:i] + (v,) + base[i + 1:] for i, a in enumerate(axes) for v in a[1:]]
    elif s.design == "none":
        points = []
    else:
        raise ValueError(f"--design {s.design!r}: use oneway, factorial or none")
    recipes = [axis_recipe(*p, show_arch) for p in points] + [parse_recipe(r) for r in s.recipes]
    if not recipes:
        raise ValueError("no recipe: give axes with --design oneway|factorial, or --recipes")
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"recipe names must be unique: {names}")
    return recipes


# ---------------------------------------------------------------- running the stages


def slug(text: str, n: int = 40) -> str:
    """Return a file-name-safe short form of `text` with a hash of the whole."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:n].strip("_")
    return f"{keep}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def run_stage(args: list[str], log_path: Path, isolate: bool = False) -> tuple[bool, str]:
    """Run the command `python -m ARGS` with its output appended to `log_path`; return (ok, last log lines).
    In this process by default (runpy, as `python -m` runs it: the libraries are imported once for all
    runs), or in a child process with `isolate`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"$ python -m {shlex.join(args)}\n")
        log.flush()
        if isolate:
            code = subprocess.run([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT).returncode
        else:
            code = _run_module(args, log)
    tail = " | ".join(line.strip() for line in log_path.read_text(errors="replace").splitlines()[-3:])
    return code == 0, tail


def _run_module(args: list[str], log) -> int:
    """Return the exit status of module args[0] run as __main__ with sys.argv = args, output to `log`."""
    import contextlib
    import runpy
    import traceback
    saved_argv = sys.argv
    sys.argv = [args[0], *args[1:]]
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                runpy.run_module(args[0], run_name="__main__", alter_sys=True)
                return 0
            except SystemExit as done:
                if done.code is None or isinstance(done.code, int):
                    return done.code or 0
                print(done.code)                  # SystemExit("error: ...") prints its message, status 1
                return 1
            except Exception:                      # a crash in one run must not stop the benchmark
                traceback.print_exc()
                return 1
    finally:
        sys.argv = saved_argv
        log.flush()


@dataclass
class Job:
    recipe: Recipe
    protocol: Protocol
    seed: int
    common: tuple = ()    # the settings every recipe shares that change a result (common_settings)

    def key(self) -> str:
        """The identity of a result in results.jsonl: everything that changes it, so that a rerun with other
        --spec-args, --train-args, --epochs, --bs or --split-seed in the same folder never reuses it."""
        return json.dumps([self.recipe.spec_args, self.recipe.train_args, self.protocol.name, self.seed,
                           *self.common])


def common_settings(s: QualitySettings) -> tuple:
    """Return the settings shared by every job that change its result (part of each Job's key)."""
    return (shlex.split(s.spec_args), shlex.split(s.train_args), s.epochs, s.bs, s.split_seed)


class Bench:
    """Runs the jobs of one benchmark folder, converting each image set once and skipping finished runs."""

    def __init__(self, s: QualitySettings, log=print):
        self.s, self.log = s, log
        self.work = Path(s.work)
        self.results = self.work / RESULTS
        self.done: dict[str, dict] = {}
        if self.results.is_file():
            for line in self.results.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue                          # a line cut short by a killed run
                self.done[entry["key"]] = entry
        self.converted: dict[str, tuple[bool, str]] = {}

    def images_for(self, job: Job) -> tuple[Path, bool, str]:
        """Return (images folder, ok, reason) of the job's protocol and spectrogram flags, converting once."""
        spec_args = [*shlex.split(self.s.spec_args), *job.recipe.spec_args]
        folder = self.work / "images" / slug(job.protocol.name, 30) / slug(" ".join(spec_args), 30)
        key = str(folder)
        if key not in self.converted:
            manifest = write_protocol_csv(job.protocol, self.work / "protocols" / f"{slug(job.protocol.name, 30)}.csv")
            ok, tail = run_stage(["spec2img", str(manifest), "--out", str(folder), "--seed", str(self.s.split_seed),
                                  "--workers", str(self.s.workers), *spec_args], folder.with_suffix(".log"),
                               self.s.isolate)
            self.converted[key] = (ok, tail)
        return folder, *self.converted[key]

    def run(self, job: Job) -> dict:
        """Return the job's result, from results.jsonl or by converting, training and evaluating."""
        if job.key() in self.done:
            return self.done[job.key()]
        started = time.perf_counter()
        entry = {"key": job.key(), "recipe": job.recipe.name, "protocol": job.protocol.name,
                 "kind": job.protocol.kind, "seed": job.seed, "eer": None, "roc_auc": None, "error": ""}
        images, ok, tail = self.images_for(job)
        runs = self.work / "runs" / slug(job.recipe.name + " ".join(job.recipe.train_args), 30) \
            / slug(job.protocol.name, 30) / slug(images.name, 20) / f"seed{job.seed}"
        if not ok:
            entry["error"] = f"spec2img failed: {tail}"
        else:
            train_args = ["classify.train", "--images", str(images), "--out", str(runs), "--seed", str(job.seed),
                          "--epochs", str(self.s.epochs), "--bs", str(self.s.bs),
                          *shlex.split(self.s.train_args), *job.recipe.train_args]
            ok, tail = run_stage(train_args, runs / "stages.log", self.s.isolate)
            if ok:
                ok, tail = run_stage(["classify.evaluate", str(runs / "latest"), "--split", "test"],
                                     runs / "stages.log", self.s.isolate)
            if not ok:
                entry["error"] = f"{'training' if 'evaluate' not in tail else 'evaluation'} failed: {tail}"
            else:
                evaluated = evaluation_dir(runs / "latest")          # the run's current evaluation output set
                metrics = json.loads((evaluated / METRICS_FILE).read_text())["metrics"]
                entry.update(eer=metrics["eer"]["value"], roc_auc=metrics["roc_auc"]["value"],
                             run=str((runs / "latest").resolve()))
        entry["seconds"] = round(time.perf_counter() - started, 1)
        self.results.parent.mkdir(parents=True, exist_ok=True)
        with open(self.results, "a") as f:
            f.write(json.dumps(entry) + "\n")
        self.done[entry["key"]] = entry
        return entry


# ---------------------------------------------------------------- the table


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Return (mean, sample std; 0 for one value) of the values that are not None."""
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def summarize(recipes: list[Recipe], protocols: list[Protocol], seeds: list[int], results: dict[str, dict],
              common: tuple = ()) -> tuple[list[dict], list[dict]]:
    """Return (per-protocol rows, per-recipe summary rows) of the finished results (`common`: the jobs'
    shared settings, as in their keys)."""
    detail, summary = [], []
    for recipe in recipes:
        per_seed: dict[str, dict[int, list[tuple]]] = {"cross": {}, "in-domain": {}}
        for protocol in protocols:
            entries = [results.get(Job(recipe, protocol, seed, common).key()) for seed in seeds]
            entries = [e for e in entries if e]
            eer, eer_sd = mean_std([e["eer"] for e in entries])
            auc, auc_sd = mean_std([e["roc_auc"] for e in entries])
            errors = sorted({e["error"] for e in entries if e["error"]})
            detail.append({"recipe": recipe.name, "protocol": protocol.name, "kind": protocol.kind,
                           "runs": sum(e["eer"] is not None for e in entries), "eer_mean": eer, "eer_std": eer_sd,
                           "roc_auc_mean": auc, "roc_auc_std": auc_sd, "note": "; ".join(errors) or protocol.note,
                           "spec_args": shlex.join(recipe.spec_args), "train_args": shlex.join(recipe.train_args)})
            for e in entries:
                if e["eer"] is not None:
                    per_seed[protocol.kind].setdefault(e["seed"], []).append((e["eer"], e["roc_auc"]))
        row = {"recipe": recipe.name, "spec_args": shlex.join(recipe.spec_args),
               "train_args": shlex.join(recipe.train_args)}
        for kind, by_seed in per_seed.items():
            n_protocols = sum(p.kind == kind for p in protocols)
            complete = [v for v in by_seed.values() if len(v) == n_protocols]   # a seed counts once all its folds ran
            prefix = "cross" if kind == "cross" else "in_domain"
            row[f"{prefix}_eer_mean"], row[f"{prefix}_eer_std"] = mean_std([np.mean([x[0] for x in v]) for v in complete])
            row[f"{prefix}_roc_auc_mean"], row[f"{prefix}_roc_auc_std"] = mean_std(
                [np.mean([x[1] for x in v if x[1] is not None]) if any(x[1] is not None for x in v) else None
                 for v in complete])
            row[f"{prefix}_seeds"] = len(complete)
        summary.append(row)
    return detail, summary


def pct(mean: float | None, std: float | None) -> str:
    return "—" if mean is None else f"{100 * mean:5.1f} ± {100 * (std or 0):4.1f}"


def num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def format_table(summary: list[dict]) -> str:
    """Return the printed table: one line per recipe, the first recipe as the reference."""
    base = summary[0].get("cross_eer_mean") if summary else None
    lines = [f"{'recipe':34s} {'cross EER %':>13s} {'vs first':>8s} {'cross AUC':>9s} {'in-domain EER %':>15s} "
             f"{'in AUC':>6s} {'seeds':>5s}"]
    for r in summary:
        change = "" if base in (None, 0) or r["cross_eer_mean"] is None else \
            f"{100 * (r['cross_eer_mean'] - base) / base:+.0f}%"
        lines.append(f"{r['recipe'][:34]:34s} {pct(r['cross_eer_mean'], r['cross_eer_std']):>13s} {change:>8s} "
                     f"{num(r['cross_roc_auc_mean']):>9s} {pct(r['in_domain_eer_mean'], r['in_domain_eer_std']):>15s} "
                     f"{num(r['in_domain_roc_auc_mean']):>6s} {r['cross_seeds']:>2d}/{r['in_domain_seeds']:<2d}")
    return "\n".join(lines)


def write_csv(path: Path, detail: list[dict], summary: list[dict]) -> Path:
    """Write one row per recipe and protocol, then one summary row per recipe (protocol 'cross (mean)' / ...)."""
    import csv
    import io
    columns = ["recipe", "protocol", "kind", "runs", "eer_mean", "eer_std", "roc_auc_mean", "roc_auc_std",
               "note", "spec_args", "train_args"]
    rows = list(detail)
    for r in summary:
        for prefix, label in (("cross", "cross (mean over protocols)"), ("in_domain", "in-domain")):
            rows.append({"recipe": r["recipe"], "protocol": label, "kind": "summary", "runs": r[f"{prefix}_seeds"],
                         "eer_mean": r[f"{prefix}_eer_mean"], "eer_std": r[f"{prefix}_eer_std"],
                         "roc_auc_mean": r[f"{prefix}_roc_auc_mean"], "roc_auc_std": r[f"{prefix}_roc_auc_std"],
                         "note": "runs = seeds with every protocol finished", "spec_args": r["spec_args"],
                         "train_args": r["train_args"]})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items() if k in columns})
    return write_atomic(path, buffer.getvalue())


def plot(path: Path, summary: list[dict]) -> Path:
    """Bar chart of cross-group and in-domain EER per recipe (mean ± std over seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from spec2img.fileio import atomic_path
    names = [r["recipe"] for r in summary]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(names)))
    right = 60.0
    for offset, prefix, label in ((-0.2, "cross", "cross-group"), (0.2, "in_domain", "in-domain")):
        means = [100 * (r[f"{prefix}_eer_mean"] or 0) for r in summary]
        stds = [100 * (r[f"{prefix}_eer_std"] or 0) for r in summary]
        ax.barh(y + offset, means, height=0.4, xerr=stds, label=label, capsize=3)
        right = max(right, *(m + s + 2 for m, s in zip(means, stds)))
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.axvline(50, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("EER % (mean ± std over seeds; 50 % = chance)")
    ax.set_xlim(0, right)                             # the chance line and every error bar in view
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)   # beside the bars, never over them
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- the command


def load_protocols(s: QualitySettings, log=print) -> list[Protocol]:
    """Return the benchmark's protocols (cross-group ones first); ProtocolError / LayoutError say what to fix."""
    from spec2img.datasets import iter_rows
    rows = list(iter_rows(Path(s.data), "auto", log=lambda *_: None))
    if not s.group:
        raise ProtocolError("name the groups: --group COLUMN, system, speaker, condition or path:N "
                            "(e.g. path:1 when the first folder of each file is its source)")
    groups = group_values(Path(s.data), rows, s.group)
    counts = {g: sum(1 for x in groups if x == g) for g in sorted(set(groups))}
    log(f"{len(rows)} clips in {len(counts)} groups by {s.group}: "
        + ", ".join(f"{g} ({n})" for g, n in counts.items()))
    protocols, skipped = cross_protocols(rows, groups, parse_groups(s.train_groups), parse_groups(s.test_groups),
                                         s.both_directions, s.split_seed)
    for reason in skipped:
        log(f"skipped protocol {reason}")
    if s.in_domain:
        protocols.append(in_domain(rows, s.split_seed))
    for p in protocols:
        c = p.counts()
        log(f"protocol {p.name}: " + ", ".join(f"{split} {c[split]['bonafide']}+{c[split]['spoof']}"
                                                for split in ("train", "val", "test") if split in c)
            + " (bona fide + spoof)" + (f"; {p.note}" if p.note else ""))
    return protocols


def benchmark(s: QualitySettings, log=print) -> tuple[list[dict], list[dict]]:
    """Run (or resume) every job, write quality.csv and quality.png, print the table; return (detail, summary)."""
    recipes = build_recipes(s)
    seeds = [int(x) for x in _axis(s.seeds, "seeds")]
    protocols = load_protocols(s, log)
    bench = Bench(s, log)
    common = common_settings(s)
    jobs = [Job(r, p, seed, common) for r in recipes for p in protocols for seed in seeds]
    todo = sum(j.key() not in bench.done for j in jobs)
    log(f"{len(recipes)} recipes x {len(protocols)} protocols x {len(seeds)} seeds = {len(jobs)} runs "
        f"({len(jobs) - todo} already done in {bench.results})")
    started, ran = time.perf_counter(), 0
    for i, job in enumerate(jobs, 1):
        fresh = job.key() not in bench.done
        entry = bench.run(job)
        if fresh:
            ran += 1
            left = (time.perf_counter() - started) / ran * (todo - ran)
            result = f"EER {100 * entry['eer']:.2f}%" if entry["eer"] is not None else entry["error"]
            log(f"[{i}/{len(jobs)}] {job.recipe.name} | {job.protocol.name} | seed {job.seed}: {result} "
                f"({entry['seconds']:.0f} s; about {left / 60:.0f} min left)")
    detail, summary = summarize(recipes, protocols, seeds, bench.done, common)
    out = Path(s.out)
    csv_path, png_path = write_csv(out / "quality.csv", detail, summary), plot(out / "quality.png", summary)
    log("")
    log(format_table(summary))
    log(f"\ncross EER: mean over the {sum(p.kind == 'cross' for p in protocols)} cross-group protocols per seed, then "
        f"mean ± std over seeds; 'vs first': relative change against {recipes[0].name}")
    failures = [e for e in bench.done.values() if e["error"] and e["key"] in {j.key() for j in jobs}]
    for e in failures:
        log(f"failed: {e['recipe']} | {e['protocol']} | seed {e['seed']}: {e['error']}")
    log(f"wrote {csv_path} and {png_path}")
    return detail, summary


def build_parser() -> argparse.ArgumentParser:
    """Return the command line, generated from QualitySettings (spec2img.cli)."""
    from spec2img.cli import build_parser as build_cli
    return build_cli("python -m benchmarks.quality", __doc__.split("\n\n")[0], [QualitySettings],
                     epilog=__doc__.split("\n\n", 2)[2])


def main(argv: list[str] | None = None) -> int:
    from spec2img.cli import parse_settings
    from spec2img.rows import LayoutError
    settings, = parse_settings(build_parser(), argv, QualitySettings)
    try:
        benchmark(settings, log=lambda text: print(text, flush=True))
    except (ProtocolError, LayoutError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are in {Path(settings.work) / RESULTS}; run the same command again "
              f"to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
