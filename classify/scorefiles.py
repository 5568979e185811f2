"""Score files in the formats the organizers' tools read unchanged, and the project's own score table.

  scores-<split>.csv           every clip: clip_id, path, label, system, condition, speaker, subset, spoof_prob,
                               score, llr, pred (the project's table; `scores.csv` is a copy for the evaluated split)
  scores-<split>.txt           ASVspoof 2019 CM format, `<trial> <system or -> <bonafide|spoof> <score>`, read by
                               evaluate_tDCF_asvspoof19.py (numpy.genfromtxt, whitespace separated)
  scores-<split>-2021.txt      ASVspoof 2021 eval-package format, `<trial> <score>`, read by main.py / evaluate.py
                               (pandas.read_csv, sep ' ', no header; the package wants every trial of the key)
  scores-<split>-asvspoof5.tsv ASVspoof 5 evaluation-package format: tab separated, header `filename<TAB>cm-score`,
                               the score being the calibrated LLR (util.load_cm_scores_keys reads it with pandas)
Scores are the log-odds of bona fide (higher = more bona fide). Numbers are written with Python's
shortest round-trip repr, so a tool reading the file sees exactly the scores the metrics were computed on.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from spec2img.fileio import write_atomic
from spec2img.rows import LABELS

from .runfolder import SCORES_FILE, scores_2019_name, scores_2021_name, scores_asvspoof5_name, scores_csv_name

CSV_COLUMNS = ("clip_id", "path", "label", "system", "condition", "speaker", "subset", "spoof_prob", "score", "llr",
               "pred")
ASVSPOOF5_HEADER = ("filename", "cm-score")


def _num(x: float) -> str:
    return repr(float(x))


def scores_table(clip_id, audio, labels, system, condition, speaker, subset, spoof_prob, score, llr, pred) -> str:
    """Return the project's score table as CSV text (CSV_COLUMNS; labels and predictions as names)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i in range(len(clip_id)):
        w.writerow([clip_id[i], audio[i], LABELS[labels[i]], system[i], condition[i], speaker[i], subset[i],
                    _num(spoof_prob[i]), _num(score[i]), _num(llr[i]), LABELS[pred[i]]])
    return buf.getvalue()


def asvspoof2019_text(clip_id, system, labels, score) -> str:
    """Return `<trial> <system or -> <bonafide|spoof> <score>` lines (ASVspoof 2019 CM score file)."""
    return "".join(f"{c} {s or '-'} {LABELS[y]} {_num(v)}\n" for c, s, y, v in zip(clip_id, system, labels, score))


def asvspoof2021_text(clip_id, score) -> str:
    """Return `<trial> <score>` lines (ASVspoof 2021 eval package)."""
    return "".join(f"{c} {_num(v)}\n" for c, v in zip(clip_id, score))


def asvspoof5_text(clip_id, llr) -> str:
    """Return the tab-separated `filename<TAB>cm-score` table of LLRs (ASVspoof 5 evaluation package)."""
    return "\t".join(ASVSPOOF5_HEADER) + "\n" + "".join(f"{c}\t{_num(v)}\n" for c, v in zip(clip_id, llr))


def write_score_files(folder: Path, split, llr: np.ndarray, pred: np.ndarray, evaluated: bool) -> list[Path]:
    """Write every score file of a scored split (classify.scoring.SplitScores) into `folder`; `evaluated` adds
    the scores.csv copy. Return the paths."""
    s = split
    table = scores_table(s.clip_id, s.audio, s.label, s.system, s.condition, s.speaker, s.subset, s.spoof_prob,
                         s.score, llr, pred)
    folder = Path(folder)
    paths = [write_atomic(folder / scores_csv_name(s.split), table)]
    if evaluated:
        paths.append(write_atomic(folder / SCORES_FILE, table))
    paths.append(write_atomic(folder / scores_2019_name(s.split), asvspoof2019_text(s.clip_id, s.system, s.label,
                                                                                     s.score)))
    paths.append(write_atomic(folder / scores_2021_name(s.split), asvspoof2021_text(s.clip_id, s.score)))
    paths.append(write_atomic(folder / scores_asvspoof5_name(s.split), asvspoof5_text(s.clip_id, llr)))
    return paths


def read_scores_table(path: Path) -> list[dict]:
    """Return the rows of a scores-<split>.csv (values as text)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
