"""Loading a run and the images it is evaluated on, and scoring a split with its model.

A split is listed from images/<split>/<label>/*.png (augmented variants excluded) with each clip's
manifest row (audio path, system, condition, speaker, key subset, shortcut cues). Scoring stops with
EvaluationError, naming the clips, when the model gives a NaN or infinite logit: the official scripts
would silently rank such a clip as the most bona fide one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spec2img.config import SPEC_FILE, SpecConfig, complete_spec
from spec2img.manifest import AUG_MARK, MANIFEST_FILE, read_rows
from spec2img.rows import LABELS

from . import runfolder

NAMED_CLIPS = 20      # clips named in a message before "and N more"


class EvaluationError(Exception):
    """A run or images folder that cannot be evaluated; the message says what to fix."""


@dataclass
class SplitScores:
    """One split's clips and what the model said about them."""
    split: str
    clip_id: list[str]
    label: np.ndarray                # 0 bonafide, 1 spoof
    png: list[Path]
    rows: list[dict]                 # each clip's manifest row ({} when the manifest lacks it)
    logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    skipped: list[str] = field(default_factory=list)   # "path: reason" of unreadable images

    def column(self, name: str) -> list[str]:
        """Return a manifest column for every clip ("" where unknown)."""
        return [r.get(name) or "" for r in self.rows]

    @property
    def audio(self) -> list[str]:
        return self.column("path")

    @property
    def system(self) -> list[str]:
        return self.column("system")

    @property
    def condition(self) -> list[str]:
        return self.column("condition")

    @property
    def speaker(self) -> list[str]:
        return self.column("speaker")

    @property
    def subset(self) -> list[str]:
        return self.column("subset")

    @property
    def spoof_prob(self) -> np.ndarray:
        from .model_io import spoof_probability
        return spoof_probability(self.logits)

    @property
    def score(self) -> np.ndarray:
        from .model_io import bonafide_score
        return bonafide_score(self.logits)

    def take(self, index) -> "SplitScores":
        """Return the clips at `index` (an index array or boolean mask) as a split of their own."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, dtype=np.int64)
        pick = lambda xs: [xs[i] for i in index]  # noqa: E731
        logits = self.logits[index] if len(self.logits) else self.logits
        return SplitScores(self.split, pick(self.clip_id), self.label[index], pick(self.png), pick(self.rows),
                           logits, self.skipped)

    def counts(self) -> dict:
        """Return {label: number of clips}."""
        return {name: int(np.sum(self.label == i)) for i, name in enumerate(LABELS)}


def named(items: list[str], limit: int = NAMED_CLIPS) -> str:
    """Return the first `limit` items joined by ', ', with 'and N more' when there are more."""
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


# ---------------------------------------------------------------- the run and its images

def read_json(path: Path) -> dict:
    """Return a JSON file's content; EvaluationError naming the file when it is unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise EvaluationError(f"cannot read {path}: {e}") from e


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
                              f"(pass --images DIR, or convert the audio with `spec2img SRC --out DIR`)")
    return folder


def spec_mismatch(run_spec: dict, images_spec: dict) -> list[str]:
    """Return one line per spectrogram setting in which the run's spec and the images' spec.json differ."""
    keys = list(SpecConfig().to_dict())
    run_spec, images_spec = complete_spec(run_spec), complete_spec(images_spec)   # older files: the defaults
    return [f"{k}: {run_spec.get(k)!r} for the run, {images_spec.get(k)!r} in the images"
            for k in keys if run_spec.get(k) != images_spec.get(k)]


def check_spec(description: dict, images: Path, run_dir: Path) -> dict:
    """Return the images' spec.json; EvaluationError listing the differences when it is not the run's spec."""
    images_spec = read_json(images / SPEC_FILE)
    diff = spec_mismatch(description.get("spec", {}), images_spec)
    if diff:
        raise EvaluationError(
            f"the images in {images} were made with other spectrogram settings than run {run_dir} was trained on:\n  "
            + "\n  ".join(diff) + "\nReconvert the audio with the run's settings (its model.json \"spec\"), or pass "
            "--images with a folder converted like the training images.")
    return images_spec


def manifest_rows(images: Path) -> dict[str, dict]:
    """Return {clip_id: manifest row} of images/manifest.csv ({} when it is missing)."""
    path = Path(images) / MANIFEST_FILE
    return {r["clip_id"]: r for r in read_rows(path)} if path.is_file() else {}


def list_split(images: Path, split: str, manifest: dict[str, dict]) -> SplitScores:
    """Return the split's PNGs (augmented variants excluded) with their labels and manifest rows."""
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
    return SplitScores(split, ids, np.asarray([index.labels[i] for i in keep], dtype=np.int64),
                       [index.paths[i] for i in keep], [manifest.get(c, {}) for c in ids])


def check_finite(s: SplitScores) -> None:
    """Raise EvaluationError naming every clip whose logits hold NaN or infinity."""
    bad = np.flatnonzero(~np.all(np.isfinite(s.logits), axis=1))
    if bad.size:
        raise EvaluationError(
            f"the model gave a NaN or infinite logit for {bad.size} of {len(s.clip_id)} clips of {s.split}: "
            f"{named([s.clip_id[i] for i in bad])}. Such a score has no rank (the official scripts would call "
            f"the clip the most bona fide one); check the weights (a diverged training) and these images.")


def score_split(s: SplitScores, model, description: dict, device, bs: int, log=print) -> SplitScores:
    """Return the split with logits filled in, decoding and scoring in chunks behind a progress bar;
    unreadable images are reported by name and left out; non-finite logits stop the evaluation."""
    from spec2img.progress import progress

    from .data import read_png_gray
    from .model_io import predict_logits
    shape = (int(description["spec"]["image_height"]), int(description["spec"]["image_width"]))
    chunk = max(bs, 256)
    logits, ok = [], np.ones(len(s.png), bool)
    for start in progress(range(0, len(s.png), chunk), desc=f"scoring {s.split}", unit="chunk"):
        batch = []
        for i in range(start, min(start + chunk, len(s.png))):
            try:
                img = read_png_gray(s.png[i])
                if img.shape != shape:
                    raise OSError(f"size {img.shape} differs from the spec's {shape}")
                batch.append(img)
            except OSError as e:
                ok[i] = False
                s.skipped.append(f"{s.png[i]}: {e}")
                log(f"skipped {s.png[i]}: {e}")
        if batch:
            logits.append(predict_logits(model, np.stack(batch), description, device=device, bs=bs))
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        raise EvaluationError(f"no readable image in {s.split}/ (all {len(s.png)} failed; see the messages above)")
    scored = s.take(keep)
    scored.logits = np.concatenate(logits)
    check_finite(scored)
    return scored


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


def load_run(run_dir: Path, images: Path | None, device: str | None) -> LoadedRun:
    """Return the run with its model loaded and its images folders checked against the run's spec."""
    from .devices import default_device
    from .model_io import load_model
    run_dir = Path(run_dir)
    runfolder.check_run(run_dir)
    config = runfolder.read_config(run_dir)
    folder = images_folder(config, images)
    try:
        model, description = load_model(run_dir, device=default_device(device))
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as e:
        raise EvaluationError(f"cannot load the model of {run_dir}: {e}") from e
    images_spec = check_spec(description, folder, run_dir)
    recorded = Path(config["images"]) if config.get("images") else None
    val_images = recorded if recorded is not None and (recorded / SPEC_FILE).is_file() else folder
    if val_images != folder:
        check_spec(description, val_images, run_dir)
    return LoadedRun(run_dir, config, model, description, folder, images_spec, val_images)


def list_splits(run: LoadedRun, split: str) -> tuple[SplitScores, SplitScores]:
    """Return (val, evaluated split) listed but not scored (the same object when the split is val itself)."""
    test = list_split(run.images, split, manifest_rows(run.images))
    same = split == "val" and run.val_images == run.images
    return (test if same else list_split(run.val_images, "val", manifest_rows(run.val_images))), test


def score_splits(run: LoadedRun, val: SplitScores, test: SplitScores, bs: int, log=print
                 ) -> tuple[SplitScores, SplitScores]:
    """Return (val, evaluated split) scored by the run's model (one scoring when they are the same split)."""
    device = next(run.model.parameters()).device
    log(f"evaluating {run.run_dir} on {run.images / test.split} ({len(test.png)} images); threshold and calibration "
        f"from {run.val_images / 'val'} ({len(val.png)} images)")
    scored_val = score_split(val, run.model, run.description, device, bs, log)
    return scored_val, (scored_val if test is val else score_split(test, run.model, run.description, device, bs, log))
