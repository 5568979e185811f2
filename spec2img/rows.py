"""The row every dataset adapter yields, and the label and split vocabularies."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LABELS = ("bonafide", "spoof")            # class order everywhere: index 0 bonafide, 1 spoof
SPLITS = ("train", "val", "test")


class LayoutError(Exception):
    """The dataset's layout or metadata is wrong; str() names the file (and line) and what to fix."""


@dataclass(frozen=True)
class ClipRow:
    clip_id: str            # unique within the dataset; the PNG is named <clip_id>.png
    path: Path              # audio file
    label: str              # "bonafide" | "spoof"
    split: str = ""         # "train" | "val" | "test", or "" when the dataset defines none
    system: str = ""        # attack / system id ("A07", "griffinlim"); "" for bonafide or unknown
    speaker: str = ""       # speaker id, "" when unknown
    condition: str = ""     # recording / codec condition where the dataset gives one ("LA-C3-pstn", "mp3")
    subset: str = ""        # the key's evaluation subset where the protocol has one (ASVspoof 2021: eval,
                            # progress, hidden_track); "" otherwise
    family: str = ""        # attack family where the protocol gives one (ASVspoof 2021 DF: vocoder type)
