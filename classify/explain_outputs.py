"""The files that classify.explain's maps become: for classify.evaluate, the heat maps of the shown clips and the
per-band summary of the evaluated split (in its output set: heatmap-<split>-*.png, band_attribution-<split>.png); for
classify.predict --explain, one picture per scored file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spec2img.rows import LABELS

from .explain import (attribution_maps, band_summary_of_shares, confident_correct, row_shares,
                      stratified_sample)


# ---------------------------------------------------------------- the evaluation report's explanations

@dataclass
class SplitExplanation:
    """What classify.evaluate puts in the report and metrics.json about the model's evidence on one split."""
    confident: list = field(default_factory=list)   # report.TopLossClip of the most confident correct clips
    band_plot: Path | None = None                   # the per-band summary plot
    summary: dict = field(default_factory=dict)     # metrics.json "explanations"
    details: list[str] = field(default_factory=list)  # how the maps and the summary were made, for the report


def explain_split(folder: Path, model, description: dict, s, clips: list, threshold: float, sample: int,
                  examples: int, log=print) -> SplitExplanation:
    """Explain a scored split (classify.scoring.SplitScores) towards its decisions at `threshold`: heat maps of the
    top-loss `clips` (their .heatmap is set) and of the `examples` most confident correct clips per class, and the
    per-band summary over a seeded sample of at most `sample` clips; files go into the output set `folder`
    (heatmap-<split>-<clip_id>.png, band_attribution-<split>.png: a set is one flat folder)."""
    from spec2img.axes import row_axis
    from spec2img.config import SpecConfig

    from .data import read_png_gray
    from .explain_plots import save_band_summary, save_clip_heatmap
    from .report import TopLossClip, cross_entropy
    spec = SpecConfig.from_dict(description["spec"])
    axis = row_axis(spec)
    position = {clip_id: i for i, clip_id in enumerate(s.clip_id)}
    prob, decided = s.spoof_prob, (s.spoof_prob >= threshold).astype(np.int64)
    confident = confident_correct(s.label, prob, threshold, examples)
    shown = [position[c.clip_id] for c in clips] + confident
    picked = stratified_sample(s.label, sample)
    folder = Path(folder)
    loss = cross_entropy(s.logits, s.label)
    heatmaps, shares, ok, where, grid = {}, [], [], "", (0, 0)
    shown_set, picked_set = set(shown), set(picked.tolist())
    todo = sorted(shown_set | picked_set)
    for start in range(0, len(todo), 256):            # bounded memory: maps of the sample are reduced to row shares
        chunk = todo[start:start + 256]
        attr = attribution_maps(model, description, np.stack([read_png_gray(s.png[i]) for i in chunk]),
                                decided[chunk], progress=True)
        where, grid = attr.where, attr.grid
        chunk_shares, chunk_ok = row_shares(attr.maps)
        for j, i in enumerate(chunk):
            if i in picked_set:
                shares.append(chunk_shares[j])
                ok.append(chunk_ok[j])
            if i in shown_set:
                title = (f"{s.clip_id[i]}: true {LABELS[s.label[i]]}, decided {LABELS[decided[i]]} "
                         f"(spoof prob {prob[i]:.3f}); evidence for {LABELS[decided[i]]}")
                heatmaps[i] = save_clip_heatmap(read_png_gray(s.png[i]), attr.maps[j], axis, spec.duration,
                                                folder / f"heatmap-{s.split}-{s.clip_id[i]}.png", title)
    for c in clips:
        c.heatmap = heatmaps.get(position[c.clip_id])
    out = SplitExplanation(confident=[
        TopLossClip(s.clip_id[i], LABELS[s.label[i]], s.system[i], float(prob[i]), float(s.score[i]), float(loss[i]),
                    s.png[i], Path(s.audio[i]) if s.audio[i] else None, heatmaps.get(i)) for i in confident])
    cells = (spec.image_shape[0] / max(grid[0], 1), spec.image_shape[1] / max(grid[1], 1))
    out.details = [
        f"method: {where}, towards each clip's decision at the tuned threshold (spoof_prob >= {threshold:.4g}); "
        f"positive evidence only",
        f"map resolution: {grid[0]} frequency x {grid[1]} time cells of about {cells[0]:.0f} x {cells[1]:.0f} image "
        f"pixels, upsampled to the image: detail finer than one cell is not resolved",
        f"per-band summary over {len(picked)} of the {len(s.clip_id)} clips of {s.split}"
        + (f" (seeded sample, half of each class where possible; --explain-sample {sample})"
           if len(picked) < len(s.clip_id) else "")]
    if len(picked):
        summary = band_summary_of_shares(np.stack(shares), np.asarray(ok), decided[picked], axis)
        if summary["empty_maps"]:
            out.details.append(f"{summary['empty_maps']} clip(s) had no positive evidence for their decision "
                               f"and are left out of the summary")
        out.band_plot = save_band_summary(summary, axis, folder / f"band_attribution-{s.split}.png",
                                          f"attribution per band ({s.split}, {len(picked)} clips)")
    else:
        summary = {"reading": "no per-band summary (--explain-sample 0)"}
    out.summary = {"method": where, "grid": list(grid), "threshold": threshold, "clips": int(len(picked)),
                   "of": len(s.clip_id), **summary}
    log(f"explanations: {summary['reading']}")
    return out


# ---------------------------------------------------------------- predict --explain: one picture per file

def picture_names(files: list[Path]) -> list[str]:
    """Return a distinct PNG name per file: its path below the files' common folder, folders joined by '__'
    ('clips/a/b.wav' with 'clips/c.wav' -> 'a__b.wav.png', 'c.wav.png'); repeats get '-2', '-3'."""
    import os
    paths = [Path(os.path.abspath(p)) for p in files]
    common = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path("/")
    names, used = [], set()
    for path in paths:
        base = "__".join(path.relative_to(common).parts) or "audio"
        name, n = f"{base}.png", 1
        while name in used:
            n += 1
            name = f"{base}-{n}.png"
        used.add(name)
        names.append(name)
    return names


def window_image(path: Path, spec, start: float, hop_fraction: float) -> np.ndarray:
    """Return the image of the window of `path` starting at `start` seconds, exactly as classify.predict scored it."""
    from spec2img.features import clip_to_image

    from .windows import iter_file_windows
    for window_start, segment in iter_file_windows(Path(path), spec, hop_fraction):
        if window_start == start:
            return clip_to_image(segment, spec)
    raise ValueError(f"no window of {path} starts at {start} s")


class FileExplainer:
    """Draws predict --explain's picture of one file at a time (the pictures' names fixed for the whole list),
    so that each row can be written as soon as it is finished."""

    def __init__(self, files: list[Path], predictor, out_dir: Path, hop_fraction: float):
        from spec2img.axes import row_axis
        self.files, self.predictor, self.out_dir, self.hop_fraction = files, predictor, Path(out_dir), hop_fraction
        self.axis = row_axis(predictor.spec)
        self.names = picture_names(files)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.drawn = 0

    def draw(self, index: int, row, windows: list) -> None:
        """Write the picture of file `index` from its [(window start s, window logits (2,))] and put its path
        (or why it is missing) in the row's `explanation`."""
        from .explain_plots import save_file_explanation
        from .model_io import spoof_probability
        predictor, spec = self.predictor, self.predictor.spec
        try:
            starts, logits = zip(*sorted(windows, key=lambda w: w[0]))
            probs = spoof_probability(np.stack(logits))
            k = int(np.argmax(probs))                     # the most-spoof window (max_spoof_start) is shown
            decided = int(probs[k] >= predictor.threshold)
            image = window_image(self.files[index], spec, starts[k], self.hop_fraction)
            attr = attribution_maps(predictor.model, predictor.description, image[None], [decided])
            title = (f"{Path(self.files[index]).name}: {row.label}, spoof prob {row.spoof_prob:.3f} "
                     f"({row.windows} window{'s' if row.windows > 1 else ''})\nshown: window at {starts[k]:.2f} s, "
                     f"spoof prob {probs[k]:.3f}; heat map: evidence for {LABELS[decided]} ({attr.where})")
            path = save_file_explanation(image, attr.maps[0], self.axis, spec.duration, self.out_dir / self.names[index],
                                         title, starts, probs, starts[k], predictor.threshold,
                                         row.duration or spec.duration)
            row.explanation = str(path)
            self.drawn += 1
        except Exception as error:   # the scores stand; the row says why its picture is missing
            row.explanation = f"error: {type(error).__name__}: {str(error).strip()[:200]}"


def explain_files(files: list[Path], rows: list, windows: dict, predictor, out_dir: Path, hop_fraction: float,
                  progress: bool = True) -> int:
    """Write one picture per scored file into `out_dir` (predict --explain) and put its path in the row's
    `explanation`; files that could not be scored get none. Return the number of pictures written."""
    from spec2img.progress import progress as progress_bar
    explainer = FileExplainer(files, predictor, out_dir, hop_fraction)
    for index in progress_bar(range(len(files)), desc="explaining", unit="file", enabled=progress and len(files) > 1):
        row = rows[index]
        if row.status == "ok" and windows.get(index):
            explainer.draw(index, row, windows[index])
    return explainer.drawn
