"""Evaluate trained runs: `python -m classify.evaluate RUN [RUN ...] [--split test] [--rule eer]`.

For each run: score the val split and the evaluated split with the run's model, choose the decision
threshold on val only (thresholds.json, read by classify.predict), apply it unchanged to the evaluated
split, and write into the run folder
  scores-<split>.csv (+ scores.csv, a copy for the evaluated split), scores-<split>.txt (ASVspoof format),
  thresholds.json, metrics.json (every number with the formula it comes from), the plots (PNG) and
  report.html (one self-contained page).
Several runs (e.g. seeds): also <runs>/aggregate-<arch>-<n>seeds.json with the mean and std of each metric.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spec2img.config import SPEC_FILE, SpecConfig
from spec2img.manifest import AUG_MARK, MANIFEST_FILE, read_rows
from spec2img.rows import LABELS

from . import metrics as M
from . import plots as P
from .report import TopLossClip, render_report, write_report
from spec2img.fileio import EXIT_WRITE_FAILED, OutputWriteError, check_writable_folder, write_atomic
from .thresholds import (RULES, choose_threshold_with_value, prob_to_score_threshold, read_thresholds,
                         write_thresholds)

TDCF_FORMULA = ("ASVspoof 2019 min t-DCF, legacy formulation (eval plan; eval_metrics.compute_tDCF_legacy): "
                "min over CM thresholds of (C1·Pmiss_cm + C2·Pfa_cm)/min(C1,C2), ASV at its EER threshold, "
                "Pspoof 0.05, Ptar 0.9405, Pnon 0.0095, Cmiss_asv 1, Cfa_asv 10, Cmiss_cm 1, Cfa_cm 10")
FORMULAS = {
    "eer": "ASVspoof official EER (eval_metrics.compute_eer): every score a threshold, miss/false-alarm rates from "
           "cumulative counts, mean of FRR and FAR where |FRR - FAR| is smallest",
    "roc_auc": "ROC-AUC, spoof positive: Mann-Whitney U / (n_spoof·n_bonafide), ties count ½",
    "min_dcf": "ASVspoof 5 minDCF (calculate_modules.compute_mindcf): min over thresholds of "
               "(Cmiss(1-Pspoof)·Pmiss + Cfa·Pspoof·Pfa) / min(Cmiss(1-Pspoof), Cfa·Pspoof), "
               "Pspoof 0.05, Cmiss 1, Cfa 10",
    "act_dcf": "ASVspoof 5 actDCF (calculate_modules.compute_actDCF): the same normalized DCF at the Bayes threshold "
               "-log(Cmiss(1-Pspoof)/(Cfa·Pspoof)) = -0.642 on the LLR",
    "cllr": "ASVspoof 5 Cllr (calculate_CLLR), bits: "
            "½[mean log2(1+e^-LLR) over bona fide + mean log2(1+e^LLR) over spoof]",
    "accuracy": "accuracy = (TP + TN) / N",
    "balanced_accuracy": "balanced accuracy = (TPR + TNR) / 2",
    "precision": "precision = TP / (TP + FP), spoof positive",
    "recall": "recall = TP / (TP + FN), spoof positive (share of spoofs detected)",
    "f1": "F1 = 2TP / (2TP + FP + FN), spoof positive",
    "frr": "false rejection rate = bona fide called spoof / bona fide",
    "far": "false acceptance rate = spoof called bona fide / spoof",
}
PLOT_TITLES = {"confusion_matrix": "confusion matrix at the tuned threshold", "top_losses": "top losses",
               "roc": "ROC", "det": "DET", "precision_recall": "precision-recall", "score_histogram": "score histogram",
               "training_curves": "training curves", "per_attack_eer": "EER per attack",
               "per_condition_eer": "EER per condition"}


class EvaluationError(Exception):
    """A run or images folder that cannot be evaluated; the message says what to fix."""


@dataclass(frozen=True)
class EvalSettings:
    split: str = "test"              # split to evaluate; the threshold is always chosen on val
    rule: str = "eer"                # threshold rule on val: eer | f1 | balanced_accuracy | far
    target_far: float | None = None  # rule far: largest share of val spoofs accepted as bona fide, e.g. 0.01
    asv_scores: Path | None = None   # organizers' ASV score file for min t-DCF (default: found beside the dataset)
    images: Path | None = None       # images folder to evaluate (default: the one in the run's config.json)
    bs: int = 64                     # images per inference batch
    top_k: int = 8                   # clips with the largest loss shown in the plot and the report
    audio_seconds: float = 4.0       # seconds of each top-loss clip embedded in the report
    device: str | None = None        # torch device; default cuda when available, else cpu

    def validate(self) -> "EvalSettings":
        """Return self, or raise ValueError naming the setting that cannot work."""
        from .devices import check_device_name
        problems = [f"--{name.replace('_', '-')} {value} must be {rule}" for name, value, rule, ok in (
            ("bs", self.bs, ">= 1", self.bs >= 1), ("top_k", self.top_k, ">= 0", self.top_k >= 0),
            ("audio_seconds", self.audio_seconds, "> 0", 0 < self.audio_seconds < float("inf")),
            ("target_far", self.target_far, "between 0 and 1",
             self.target_far is None or 0 < self.target_far < 1)) if not ok]
        try:
            check_device_name(self.device)
        except ValueError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass
class SplitScores:
    """One split's clips and what the model said about them."""
    split: str
    clip_id: list[str]
    label: np.ndarray                # 0 bonafide, 1 spoof
    png: list[Path]
    audio: list[str]                 # manifest path ("" when unknown)
    system: list[str]
    condition: list[str]
    logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    skipped: list[str] = field(default_factory=list)   # "path: reason" of unreadable images

    @property
    def spoof_prob(self) -> np.ndarray:
        from .model_io import spoof_probability
        return spoof_probability(self.logits)

    @property
    def score(self) -> np.ndarray:
        from .model_io import bonafide_score
        return bonafide_score(self.logits)

    def counts(self) -> dict:
        """Return {label: number of clips}."""
        return {name: int(np.sum(self.label == i)) for i, name in enumerate(LABELS)}


# ---------------------------------------------------------------- the run and its images

def read_json(path: Path) -> dict:
    """Return a JSON file's content; EvaluationError naming the file when it is unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise EvaluationError(f"cannot read {path}: {e}") from e


def check_run(run_dir: Path) -> dict:
    """Return the run's config.json (or {}); EvaluationError when the folder lacks the trained model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvaluationError(f"run folder {run_dir} does not exist (train one with `make train` or "
                              f"`python -m classify.train --images images --out runs`)")
    for name in ("model.json", "model.safetensors"):
        if not (run_dir / name).is_file():
            raise EvaluationError(f"{run_dir} has no {name}: it holds no trained weights (the training did not "
                                  f"finish, or this is not a run folder); train again with `make train`")
    return read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}


def images_folder(config: dict, override: Path | None) -> Path:
    """Return the images folder to evaluate: `override`, else the one recorded in config.json."""
    if override is not None:
        folder = Path(override)
    elif config.get("images"):
        folder = Path(config["images"])
    else:
        raise EvaluationError("the run's config.json records no images folder: pass --images DIR")
    if not (folder / SPEC_FILE).is_file():
        raise EvaluationError(f"{folder / SPEC_FILE} not found: {folder} is not an images folder written by spec2img "
                              f"(pass --images DIR, or convert the audio with `python -m spec2img SRC --out DIR`)")
    return folder


def spec_mismatch(run_spec: dict, images_spec: dict) -> list[str]:
    """Return one line per spectrogram setting in which the run's spec and the images' spec.json differ."""
    keys = list(SpecConfig().to_dict())
    return [f"{k}: {run_spec.get(k)!r} for the run, {images_spec.get(k)!r} in the images"
            for k in keys if run_spec.get(k) != images_spec.get(k)]


def check_spec(description: dict, images: Path, run_dir: Path) -> dict:
    """Return the images' spec.json; EvaluationError listing the differences when it is not the run's spec."""
    images_spec = read_json(images / SPEC_FILE)
    diff = spec_mismatch(description.get("spec", {}), images_spec)
    if diff:
        raise EvaluationError(
            f"the images in {images} were made with other spectrogram settings than run {run_dir} was trained on:\n  "
            + "\n  ".join(diff) + f"\nReconvert the audio with the run's settings (its model.json \"spec\"), or pass "
            f"--images with a folder converted like the training images.")
    return images_spec


def manifest_rows(images: Path) -> dict[str, dict]:
    """Return {clip_id: manifest row} of images/manifest.csv ({} when it is missing)."""
    path = Path(images) / MANIFEST_FILE
    return {r["clip_id"]: r for r in read_rows(path)} if path.is_file() else {}


def list_split(images: Path, split: str, manifest: dict[str, dict]) -> SplitScores:
    """Return the split's PNGs (augmented variants excluded) with label, audio path, system and condition."""
    from .data import ImagesError, index_split
    try:
        index = index_split(Path(images), split)
    except ImagesError as e:
        present = sorted(p.name for p in Path(images).iterdir()
                         if p.is_dir() and any((p / label).is_dir() for label in LABELS))
        raise EvaluationError(f"{e}\nsplits present in {images}: {', '.join(present) or 'none'}") from None
    keep = [i for i, p in enumerate(index.paths) if AUG_MARK not in p.stem]
    if not keep:
        raise EvaluationError(f"{Path(images) / split} holds no images: the {split} split is empty")
    ids = [index.paths[i].stem for i in keep]
    rows = [manifest.get(c, {}) for c in ids]
    return SplitScores(split, ids, np.asarray([index.labels[i] for i in keep], dtype=np.int64),
                       [index.paths[i] for i in keep], [r.get("path", "") for r in rows],
                       [r.get("system", "") for r in rows], [r.get("condition", "") for r in rows])


def score_split(s: SplitScores, model, description: dict, device, bs: int, log=print) -> SplitScores:
    """Return the split with logits filled in, decoding and scoring in chunks behind a progress bar;
    unreadable images are reported by name and left out."""
    from spec2img.progress import progress

    from .data import read_png_gray
    from .model_io import predict_logits
    shape = (int(description["spec"]["image_height"]), int(description["spec"]["image_width"]))
    chunk = max(bs, 256)
    logits, ok = [], np.ones(len(s.png), bool)
    for start in progress(range(0, len(s.png), chunk), desc=f"scoring {s.split}", unit="chunk"):
        batch, idx = [], []
        for i in range(start, min(start + chunk, len(s.png))):
            try:
                img = read_png_gray(s.png[i])
                if img.shape != shape:
                    raise OSError(f"size {img.shape} differs from the spec's {shape}")
                batch.append(img)
                idx.append(i)
            except OSError as e:
                ok[i] = False
                s.skipped.append(f"{s.png[i]}: {e}")
                log(f"skipped {s.png[i]}: {e}")
        if batch:
            logits.append(predict_logits(model, np.stack(batch), description, device=device, bs=bs))
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        raise EvaluationError(f"no readable image in {s.split}/ (all {len(s.png)} failed; see the messages above)")
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    return SplitScores(s.split, pick(s.clip_id), s.label[keep], pick(s.png), pick(s.audio), pick(s.system),
                       pick(s.condition), np.concatenate(logits), s.skipped)


# ---------------------------------------------------------------- metrics

def entry(formula: str, fn, *args) -> dict:
    """Return {"value", "formula"} of fn(*args), or value None with the reason when fn raises ValueError."""
    try:
        value = fn(*args)
        value = value[0] if isinstance(value, tuple) else value
        return {"value": float(value), "formula": formula}
    except ValueError as e:
        return {"value": None, "formula": formula, "reason": str(e)}


def training_prior(config: dict) -> tuple[float, str]:
    """Return (effective bona fide prior the model was trained with, why): 0.5 with a class-weighted loss or a
    balanced sampler, else the training split's share of bona fide images."""
    balance = config.get("settings", {}).get("balance")
    if balance in ("weights", "sampler"):
        return 0.5, f"training used --balance {balance}, which makes the effective class prior ½"
    counts = config.get("data", {}).get("counts", {}).get("train", {})
    n_b, n_s = counts.get("bonafide", 0), counts.get("spoof", 0)
    if balance == "none" and n_b and n_s:
        return n_b / (n_b + n_s), f"training used --balance none on {n_b} bona fide and {n_s} spoof images"
    return 0.5, "the run's config.json does not say how classes were balanced; assuming a prior of ½"


def threshold_metrics(labels: np.ndarray, spoof_prob: np.ndarray, threshold: float) -> dict:
    """Return accuracy, balanced accuracy, precision, recall, F1, FRR, FAR and the confusion counts at `threshold`."""
    c = M.confusion_counts(labels, M.predict_labels(spoof_prob, threshold))
    out = {"threshold": {"value": float(threshold), "formula": "spoof when spoof_prob >= threshold"}}
    for name, fn in (("accuracy", M.accuracy), ("balanced_accuracy", M.balanced_accuracy),
                     ("precision", M.precision), ("recall", M.recall), ("f1", M.f1_score),
                     ("frr", lambda c: 1 - M.specificity(c)), ("far", lambda c: 1 - M.recall(c))):
        out[name] = entry(FORMULAS[name], fn, c)
    out["confusion"] = c
    return out


def find_asv_scores(images_spec: dict, split: str) -> tuple[Path | None, str]:
    """Return (the organizers' ASVspoof 2019 ASV score file for `split`, "") or (None, why it is not used)."""
    source = images_spec.get("source", {})
    if source.get("layout") != "asvspoof2019":
        return None, (f"min t-DCF needs the organizers' ASV scores (ASVspoof2019_LA_asv_scores/); the dataset "
                      f"layout is {source.get('layout') or 'unknown'}, not asvspoof2019 "
                      f"(pass --asv-scores FILE to use one)")
    part = {"test": "eval", "val": "dev"}.get(split)
    if part is None:
        return None, f"no ASVspoof 2019 ASV score file matches the {split} split (dev = val, eval = test)"
    root = Path(source.get("root", ""))
    pattern = f"ASVspoof2019_*_asv_scores/ASVspoof2019.*.asv.{part}.gi.trl.scores.txt"
    for folder in (root, root.parent, root.parent.parent):
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if found:
            return found[0], ""
    return None, f"no {pattern} under {root} or its parents: the ASV score files are not there"


def read_asv_scores(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (target, nontarget, spoof) ASV scores from an organizers' file of `<source> <key> <score>` lines."""
    groups = {"target": [], "nontarget": [], "spoof": []}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                key, score = parts[-2], float(parts[-1])
                groups[key].append(score)
            except (IndexError, KeyError, ValueError):
                raise EvaluationError(f"{path} line {n}: expected `<source> <target|nontarget|spoof> <score>`, "
                                      f"got {line.strip()!r}") from None
    return tuple(np.asarray(groups[k]) for k in ("target", "nontarget", "spoof"))


def tdcf_entry(bona: np.ndarray, spoof: np.ndarray, asv_path: Path | None, reason: str) -> dict:
    """Return the min t-DCF entry, or value None with why it is not reported."""
    if asv_path is None:
        return {"value": None, "formula": TDCF_FORMULA, "reason": reason}
    try:
        tar, non, spf = read_asv_scores(asv_path)
    except (OSError, EvaluationError) as e:
        return {"value": None, "formula": TDCF_FORMULA, "reason": f"ASV scores unusable: {e}"}
    e = entry(TDCF_FORMULA, M.min_tdcf_legacy, bona, spoof, tar, non, spf)
    e["asv_scores"] = str(asv_path)
    return e


def split_metrics(s: SplitScores, prior: float, asv: tuple[Path | None, str]) -> dict:
    """Return the threshold-free metrics of a scored split (EER, ROC-AUC, minDCF, actDCF, Cllr, min t-DCF)."""
    score = s.score
    bona, spoof = score[s.label == M.BONAFIDE], score[s.label == M.SPOOF]
    llr = M.log_odds_to_llr(score, prior)
    llr_b, llr_s = llr[s.label == M.BONAFIDE], llr[s.label == M.SPOOF]
    return {"eer": entry(FORMULAS["eer"], M.compute_eer, bona, spoof),
            "roc_auc": entry(FORMULAS["roc_auc"], M.roc_auc, s.label, -score),
            "min_dcf": entry(FORMULAS["min_dcf"], M.compute_min_dcf, bona, spoof),
            "act_dcf": entry(FORMULAS["act_dcf"], M.compute_act_dcf, llr_b, llr_s),
            "cllr": entry(FORMULAS["cllr"], M.compute_cllr, llr_b, llr_s),
            "min_tdcf_legacy": tdcf_entry(bona, spoof, *asv)}


# ---------------------------------------------------------------- outputs

def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return -log softmax(logits)[true class] per clip (float64)."""
    z = np.asarray(logits, np.float64)
    logp = z - np.logaddexp(z[:, 0], z[:, 1])[:, None]
    return -logp[np.arange(len(labels)), labels]


def write_scores(run_dir: Path, s: SplitScores, threshold: float, also_default: bool) -> list[Path]:
    """Write scores-<split>.csv (and scores.csv when `also_default`) and the ASVspoof-style scores-<split>.txt."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["clip_id", "path", "label", "system", "condition", "spoof_prob", "score", "pred"])
    pred = M.predict_labels(s.spoof_prob, threshold)
    for i, (p, sc) in enumerate(zip(s.spoof_prob, s.score)):
        w.writerow([s.clip_id[i], s.audio[i], LABELS[s.label[i]], s.system[i], s.condition[i],
                    f"{p:.8g}", f"{sc:.8g}", LABELS[pred[i]]])
    paths = [write_atomic(run_dir / f"scores-{s.split}.csv", buf.getvalue())]
    if also_default:
        paths.append(write_atomic(run_dir / "scores.csv", buf.getvalue()))
    txt = "".join(f"{s.clip_id[i]} {s.system[i] or '-'} {LABELS[s.label[i]]} {sc:.8g}\n"
                  for i, sc in enumerate(s.score))
    paths.append(write_atomic(run_dir / f"scores-{s.split}.txt", txt))
    return paths


def top_loss_clips(s: SplitScores, k: int) -> list[TopLossClip]:
    """Return the k clips with the largest cross-entropy of their true class."""
    loss = cross_entropy(s.logits, s.label)
    order = np.argsort(-loss, kind="stable")[:k]
    prob, score = s.spoof_prob, s.score
    return [TopLossClip(s.clip_id[i], LABELS[s.label[i]], s.system[i], float(prob[i]), float(score[i]),
                        float(loss[i]), s.png[i], Path(s.audio[i]) if s.audio[i] else None) for i in order]


def make_plots(run_dir: Path, s: SplitScores, tuned: float, result: dict, clips: list[TopLossClip],
               notes: list[str]) -> dict[str, Path]:
    """Draw every plot of the evaluated split into the run folder; return {name: path}."""
    from .data import read_png_gray
    sp, prob, score, y = s.split, s.spoof_prob, s.score, s.label
    out = {}
    pred = M.predict_labels(prob, tuned)
    out["confusion_matrix"] = P.plot_confusion_matrix(
        prob, y, pred, cross_entropy(s.logits, y), run_dir / f"confusion_matrix-{sp}.png",
        f"{sp}: spoof_prob >= {tuned:.4g} (tuned on val)")
    out["top_losses"] = P.plot_top_losses(
        [read_png_gray(c.image) for c in clips],
        [f"{c.clip_id}\ntrue {c.label}{' ' + c.system if c.system else ''} · score {c.score:.2f}" for c in clips],
        run_dir / f"top_losses-{sp}.png", f"{sp}: the {len(clips)} clips with the largest loss")
    both = result["counts"][sp]["bonafide"] and result["counts"][sp]["spoof"]
    if both:
        m = result["metrics"]
        out["roc"] = P.plot_roc(y, -score, m["roc_auc"]["value"], run_dir / f"roc-{sp}.png", f"ROC ({sp})")
        out["det"] = P.plot_det(score[y == 0], score[y == 1], m["eer"]["value"], run_dir / f"det-{sp}.png",
                                f"DET ({sp})")
        out["precision_recall"] = P.plot_precision_recall(y, -score, run_dir / f"precision_recall-{sp}.png",
                                                          f"precision-recall ({sp})")
    else:
        notes.append(f"the {sp} split has one class only ({result['counts'][sp]}): "
                     f"no ROC, DET or precision-recall plot")
    out["score_histogram"] = P.plot_score_histograms(score, y, prob_to_score_threshold(tuned),
                                                     run_dir / f"score_histogram-{sp}.png", f"scores ({sp})")
    out["training_curves"] = P.plot_training_curves(run_dir, run_dir / "training_curves.png")
    if result["per_attack"]:
        out["per_attack_eer"] = P.plot_group_eer(result["per_attack"], run_dir / f"per_attack_eer-{sp}.png",
                                                 f"EER per attack ({sp})", "attack system")
    if result["per_condition"]:
        out["per_condition_eer"] = P.plot_group_eer(result["per_condition"], run_dir / f"per_condition_eer-{sp}.png",
                                                    f"EER per condition ({sp})", "condition")
    for name in PLOT_TITLES:                 # a plot this evaluation could not draw must not linger from an older one
        if name not in out:
            (run_dir / f"{name}-{sp}.png").unlink(missing_ok=True)
    return {k: v for k, v in out.items() if v is not None}


def tune_threshold(val: SplitScores, cfg: EvalSettings, run_dir: Path, notes: list[str], log=print) -> dict:
    """Choose the threshold on val, write thresholds.json, and return its content."""
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
    write_thresholds(run_dir, cfg.rule, t, info, cfg.target_far, note)
    return read_thresholds(run_dir)


@dataclass
class LoadedRun:
    """A run folder ready to score: its model and the images folders it will be scored on."""
    run_dir: Path
    config: dict              # config.json ({} when missing)
    model: object             # torch module in eval mode
    description: dict         # model.json
    images: Path              # folder holding the evaluated split
    images_spec: dict         # its spec.json
    val_images: Path          # folder whose val split sets the threshold (the training images when present)


def load_run(run_dir: Path, cfg: EvalSettings) -> LoadedRun:
    """Return the run with its model loaded and its images folders checked against the run's spec."""
    from .devices import default_device
    from .model_io import load_model
    run_dir = Path(run_dir)
    config = check_run(run_dir)
    images = images_folder(config, cfg.images)
    if cfg.asv_scores and not Path(cfg.asv_scores).is_file():
        raise EvaluationError(f"--asv-scores {cfg.asv_scores}: no such file")
    device = default_device(cfg.device)
    try:
        model, description = load_model(run_dir, device=device)
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as e:
        raise EvaluationError(f"cannot load the model of {run_dir}: {e}") from e
    images_spec = check_spec(description, images, run_dir)
    recorded = Path(config["images"]) if config.get("images") else None
    val_images = recorded if recorded is not None and (recorded / SPEC_FILE).is_file() else images
    if val_images != images:
        check_spec(description, val_images, run_dir)
    return LoadedRun(run_dir, config, model, description, images, images_spec, val_images)


def score_splits(run: LoadedRun, cfg: EvalSettings, log=print) -> tuple[SplitScores, SplitScores]:
    """Return (val, evaluated split) scored by the run's model (the same object when the split is val itself)."""
    device = next(run.model.parameters()).device
    same = cfg.split == "val" and run.val_images == run.images
    test = list_split(run.images, cfg.split, manifest_rows(run.images))
    val = test if same else list_split(run.val_images, "val", manifest_rows(run.val_images))
    log(f"evaluating {run.run_dir} on {run.images / cfg.split} ({len(test.png)} images); threshold from "
        f"{run.val_images / 'val'} ({len(val.png)} images), rule {cfg.rule}")
    val = score_split(val, run.model, run.description, device, cfg.bs, log)
    test = val if same else score_split(test, run.model, run.description, device, cfg.bs, log)
    return val, test


def build_result(run: LoadedRun, cfg: EvalSettings, val: SplitScores, test: SplitScores, thresholds: dict) -> dict:
    """Return the metrics.json content (without plots and notes) of a scored split."""
    tuned = thresholds["spoof_prob_threshold"]
    prior, prior_why = training_prior(run.config)
    asv = (Path(cfg.asv_scores), "") if cfg.asv_scores else find_asv_scores(run.images_spec, cfg.split)
    val_metrics = split_metrics(val, prior, (None, "not computed on val"))
    del val_metrics["min_tdcf_legacy"]
    return {
        "run": str(run.run_dir.resolve()), "arch": run.description.get("arch"), "split": cfg.split,
        "images": str(run.images.resolve()), "val_images": str(run.val_images.resolve()),
        "counts": {cfg.split: test.counts(), "val": val.counts()},
        "score": "log-odds of bona fide = logit_bonafide - logit_spoof (higher = more bona fide); "
                 "spoof_prob = softmax(logits)[spoof]",
        "llr": {"prior_bonafide": prior, "why": prior_why,
                "formula": "LLR = score - log(prior/(1-prior)) (Bayes' rule), used by actDCF and Cllr"},
        "threshold": thresholds,
        "metrics": split_metrics(test, prior, asv),
        "at_tuned_threshold": threshold_metrics(test.label, test.spoof_prob, tuned),
        "at_0.5": threshold_metrics(test.label, test.spoof_prob, 0.5),
        "val": val_metrics,
        "per_attack_formula": "EER (ASVspoof official) of each spoofing system's clips against ALL bona fide clips",
        "per_attack": M.per_attack_eer(test.score, test.label, test.system),
        "per_condition_formula": "EER (ASVspoof official) of bona fide vs spoof clips within each condition",
        "per_condition": M.per_condition_eer(test.score, test.label, test.condition),
        "skipped_images": test.skipped + ([] if val is test else val.skipped),
    }


def evaluate_run(run_dir: Path, cfg: EvalSettings = EvalSettings(), log=print) -> dict:
    """Evaluate one run folder; write every output into it and return the metrics.json content."""
    run = load_run(run_dir, cfg)
    val, test = score_splits(run, cfg, log)
    notes = []
    if cfg.split == "val":
        notes.append("the evaluated split is val, on which the threshold was chosen: these numbers are optimistic")
    recorded = run.config.get("images")
    if cfg.images is not None and run.val_images == run.images and (
            not recorded or Path(recorded).resolve() != run.images.resolve()):
        notes.append(f"the run's training images are not at {run.config.get('images')}: "
                     f"the threshold was chosen on the val split of {run.images}")
    thresholds = tune_threshold(val, cfg, run.run_dir, notes, log)
    tuned = thresholds["spoof_prob_threshold"]
    result = build_result(run, cfg, val, test, thresholds)
    notes += [f"{name} not reported: {m['reason']}" for name, m in result["metrics"].items() if m["value"] is None]
    write_scores(run.run_dir, test, tuned, also_default=True)
    if val is not test:
        write_scores(run.run_dir, val, tuned, also_default=False)
    clips = top_loss_clips(test, cfg.top_k)
    plots = make_plots(run.run_dir, test, tuned, result, clips, notes)
    result["plots"] = {k: str(Path(v).name) for k, v in plots.items()}
    result["notes"] = notes
    write_atomic(run.run_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    page = render_report(
        f"Evaluation of {run.run_dir.name} on {cfg.split}", report_summary(result), result["metrics"],
        result["at_tuned_threshold"], result["at_0.5"], result["per_attack"], result["per_condition"],
        {PLOT_TITLES[k]: v for k, v in plots.items()}, clips, notes, cfg.audio_seconds)
    result["report"] = str(write_report(run.run_dir, page))
    return result


def report_summary(result: dict) -> list[tuple[str, str]]:
    """Return the (label, text) lines at the top of the report."""
    t = result["threshold"]
    val_value = t.get("val", {}).get("value")
    return [("run", result["run"]), ("architecture", str(result["arch"])),
            ("evaluated split", f"{result['split']} of {result['images']}: {result['counts'][result['split']]}"),
            ("threshold", f"spoof when spoof_prob >= {t['spoof_prob_threshold']:.6g} "
                          f"(score < {t['score_threshold']:.4g}), "
                          f"rule {t['rule']} on val ({result['val_images']}: {result['counts']['val']})"
                          + (f", {t['val'].get('metric')} = {val_value:.4f}" if val_value is not None else "")),
            ("score", result["score"]),
            ("LLR for actDCF / Cllr", f"{result['llr']['formula']}; prior {result['llr']['prior_bonafide']:.4g}: "
                                      f"{result['llr']['why']}")]


# ---------------------------------------------------------------- several runs, printing, command line

def flat_metrics(result: dict) -> dict:
    """Return {name: value} of every number worth averaging over runs (tuned/ and 0.5/ prefixes for decisions)."""
    flat = {k: v.get("value") for k, v in result["metrics"].items()}
    for prefix, key in (("tuned", "at_tuned_threshold"), ("0.5", "at_0.5")):
        flat.update({f"{prefix}/{k}": v.get("value") for k, v in result[key].items()
                     if isinstance(v, dict) and "value" in v})
    flat.update({f"eer/{k}": v.get("eer") for k, v in result["per_attack"].items()})
    return flat


def aggregate(results: list[dict], runs: list[Path]) -> tuple[Path, dict]:
    """Write <runs parent>/aggregate-<arch>-<n>seeds.json (mean and sample std per metric); return (path, content)."""
    archs = {r["arch"] for r in results}
    arch = archs.pop() if len(archs) == 1 else "mixed"
    out = Path(runs[0]).resolve().parent / f"aggregate-{arch}-{len(results)}seeds.json"
    doc = {"runs": [r["run"] for r in results], "split": results[0]["split"],
           "std": "sample standard deviation (ddof = 1) over runs",
           "metrics": M.aggregate_runs([flat_metrics(r) for r in results])}
    write_atomic(out, json.dumps(doc, indent=2) + "\n")
    return out, doc


def format_table(result: dict) -> str:
    """Return the printed summary: threshold-free metrics, then tuned vs 0.5 decisions."""
    def f(v):
        return "n/a" if v is None else f"{v:.4f}"
    lines = [f"{result['run']}  ({result['split']}: {result['counts'][result['split']]})",
             f"{'metric':<20} {'value':>10}  formula"]
    for k, m in result["metrics"].items():
        lines.append(f"{k:<20} {f(m['value']):>10}  {(m['formula'] if m['value'] is not None else m['reason'])[:90]}")
    t = result["threshold"]["spoof_prob_threshold"]
    lines.append(f"{'decision metric':<20} {'tuned ' + format(t, '.4g'):>12} {'at 0.5':>10}")
    for k, m in result["at_tuned_threshold"].items():
        if isinstance(m, dict) and "formula" in m and k != "threshold":
            lines.append(f"{k:<20} {f(m['value']):>12} {f(result['at_0.5'][k]['value']):>10}")
    c = result["at_tuned_threshold"]["confusion"]
    lines.append(f"confusion at tuned threshold (spoof positive): "
                 f"TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  TN {c['tn']}")
    return "\n".join(lines)


def format_aggregate(doc: dict) -> str:
    """Return the printed aggregate: mean ± std per metric."""
    lines = [f"aggregate over {len(doc['runs'])} runs ({doc['split']}): mean ± std"]
    for k, m in doc["metrics"].items():
        if m["mean"] is not None:
            std = f" ± {m['std']:.4f}" if m["std"] is not None else ""
            lines.append(f"  {k:<26} {m['mean']:.4f}{std}  (n={m['n']})")
    return "\n".join(lines)


def parse_args(argv=None) -> tuple[list[Path], EvalSettings]:
    """Return (run folders, settings) from the command line."""
    p = argparse.ArgumentParser(prog="python -m classify.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folder(s), e.g. runs/latest; several = seeds to aggregate")
    p.add_argument("--split", default="test", help="split of the images folder to evaluate (default test)")
    p.add_argument("--rule", default="eer", choices=RULES, help="how the threshold is chosen on val (default eer)")
    p.add_argument("--target-far", type=float, default=None,
                   help="rule far: largest share of val spoofs accepted as bona fide, e.g. 0.01")
    p.add_argument("--asv-scores", type=Path, default=None,
                   help="organizers' ASV score file (<source> <target|nontarget|spoof> <score>) for min t-DCF")
    p.add_argument("--images", type=Path, default=None, help="images folder (default: the run's training images)")
    p.add_argument("--bs", type=int, default=64, help="images per inference batch")
    p.add_argument("--top-k", type=int, default=8, help="top-loss clips shown in the report")
    p.add_argument("--audio-seconds", type=float, default=4.0, help="seconds of each top-loss clip in the report")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    a = p.parse_args(argv)
    if a.rule == "far" and a.target_far is None:
        p.error("--rule far needs --target-far, e.g. --target-far 0.01")
    cfg = EvalSettings(a.split, a.rule, a.target_far, a.asv_scores, a.images, a.bs, a.top_k, a.audio_seconds,
                       a.device)
    try:
        cfg.validate()
    except ValueError as e:
        p.error(str(e))
    return a.runs, cfg


def main(argv=None) -> int:
    """Evaluate each run, print its table and report path, and aggregate several runs."""
    runs, cfg = parse_args(argv)
    results = []
    try:
        for run in runs:
            if Path(run).is_dir():
                check_writable_folder(run)  # a read-only run folder stops here, not after scoring
            result = evaluate_run(run, cfg)
            print("\n" + format_table(result))
            print(f"report: {Path(result['report']).resolve()}")
            results.append(result)
        if len(results) > 1:
            path, doc = aggregate(results, runs)
            print(format_aggregate(doc))
            print(f"aggregate: {path}")
    except EvaluationError as e:
        print(f"classify.evaluate: error: {e}", file=sys.stderr)
        return 2
    except OutputWriteError as e:
        done = f" ({len(results)} of {len(runs)} runs evaluated)" if len(runs) > 1 else ""
        print(f"classify.evaluate: error: evaluation stopped{done}: {e}\n  {e.advice}, then run the same "
              f"command again (files are replaced whole, never left half-written)", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted: files already written are whole; run the same command again", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
