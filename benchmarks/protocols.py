"""Groups of a collection and the train/test protocols of the generalization benchmark (pure functions).

A group is a source, corpus or system: a CSV column, a row field (system, speaker, condition) or
`path:N`, the N-th component of the audio path below the data folder. Protocols give every clip a
split, as spec2img's CSV adapter reads it:
  in-domain       the whole collection split as spec2img splits it (stratified, grouped by speaker);
  A -> B          clips of groups A are split into train/val, clips of groups B are the test set;
  leave one out   each group in turn is B, all the others A ("others -> B").
When the test groups lack a class (a group may hold one class only, e.g. real recordings alone),
that class's clips of the training groups are split 70/15/15 and their test share joins the test
set, never seen in training. A protocol whose training groups lack a class cannot be trained and
is skipped with its reason.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from spec2img.fileio import write_atomic
from spec2img.rows import LABELS, ClipRow
from spec2img.splits import assign_splits

ROW_FIELDS = ("system", "speaker", "condition", "label")
NO_GROUP = "(none)"                     # the group of a clip whose group value is empty
TRAIN_VAL = (0.8, 0.2, 0.0)             # training groups: train / val shares
BORROWED = (0.7, 0.15, 0.15)            # a class the test groups lack: train / val / test shares


class ProtocolError(ValueError):
    """A group setting or protocol that cannot work; the message says what to change."""


@dataclass(frozen=True)
class Protocol:
    name: str                      # e.g. "in-domain", "unilight_vc -> coqui_tts+pwg_demo"
    kind: str                      # "cross" or "in-domain"
    rows: tuple[ClipRow, ...]      # every clip with its split
    note: str = ""                 # e.g. which test clips were borrowed from the training groups

    def counts(self) -> dict[str, dict[str, int]]:
        """Return {split: {label: clips}}."""
        out: dict[str, dict[str, int]] = {}
        for r in self.rows:
            out.setdefault(r.split, {lab: 0 for lab in LABELS})[r.label] += 1
        return out


def data_folder(data: Path) -> Path:
    """Return the folder that audio paths are relative to: the CSV's folder, or the root itself."""
    data = Path(data)
    return data.parent if data.is_file() else data


def group_values(data: Path, rows: Sequence[ClipRow], group: str) -> list[str]:
    """Return each row's group: `path:N`, a row field, or a column of the CSV manifest `data`."""
    group = group.strip()
    if group.startswith("path:"):
        try:
            n = int(group[5:])
        except ValueError:
            n = 0
        if n < 1:
            raise ProtocolError(f"GROUP {group!r}: path:N needs N >= 1 (path:1 = the first folder below the data)")
        base = data_folder(data).resolve()
        values = []
        for r in rows:
            try:
                parts = Path(r.path).resolve().relative_to(base).parts[:-1]
            except ValueError:
                parts = ()
            values.append(parts[n - 1] if len(parts) >= n else NO_GROUP)
        return values
    if group in ROW_FIELDS:
        return [getattr(r, group) or NO_GROUP for r in rows]
    return _csv_column(Path(data), rows, group)


def _csv_column(data: Path, rows: Sequence[ClipRow], column: str) -> list[str]:
    if not data.is_file():
        raise ProtocolError(f"GROUP {column!r}: {data} is a folder, so only path:N or one of "
                            f"{', '.join(ROW_FIELDS)} can name the groups")
    with open(data, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = {name.strip().lower(): name for name in reader.fieldnames or []}
        if column.lower() not in header:
            raise ProtocolError(f"GROUP {column!r} is not a column of {data} (columns: {', '.join(header)}); "
                                f"name a column, one of {', '.join(ROW_FIELDS)}, or path:N")
        file_key = header.get("file") or header.get("path")
        by_file = {(data.parent / row[file_key].strip()).resolve(): row[header[column.lower()]].strip()
                   for row in reader}
    return [by_file.get(Path(r.path).resolve(), "") or NO_GROUP for r in rows]


def parse_groups(text: str) -> list[str]:
    """Return the comma-separated group names in `text`."""
    return [g.strip() for g in str(text).split(",") if g.strip()]


def in_domain(rows: Sequence[ClipRow], seed: int = 0) -> Protocol:
    """Return the whole collection split as `python -m spec2img` splits it by default."""
    fresh = [replace(r, split="") for r in rows]
    return Protocol("in-domain", "in-domain", tuple(assign_splits(fresh, seed=seed)))


def cross_group(rows: Sequence[ClipRow], groups: Sequence[str], train_groups: Sequence[str],
                test_groups: Sequence[str], seed: int = 0, name: str = "") -> Protocol:
    """Return the A -> B protocol (train on `train_groups`, test on `test_groups`), named "A -> B" unless
    `name` is given; ProtocolError when it cannot be trained or tested."""
    name = name or f"{'+'.join(train_groups)} -> {'+'.join(test_groups)}"
    train_pool = [replace(r, split="") for r, g in zip(rows, groups) if g in train_groups]
    test_pool = [replace(r, split="test") for r, g in zip(rows, groups) if g in test_groups]
    if not test_pool:
        raise ProtocolError(f"{name}: no clip in the test groups")
    lacking = [lab for lab in LABELS if not any(r.label == lab for r in train_pool)]
    if lacking:
        raise ProtocolError(f"{name}: the training groups hold no {lacking[0]} clip, so nothing can be trained")
    note = ""
    missing = [lab for lab in LABELS if not any(r.label == lab for r in test_pool)]
    borrowed: list[ClipRow] = []
    if missing:
        taken = [r for r in train_pool if r.label in missing]
        train_pool = [r for r in train_pool if r.label not in missing]
        borrowed = assign_splits(taken, ratios=BORROWED, seed=seed)
        moved = sum(r.split == "test" for r in borrowed)
        if moved == 0 or not any(r.split != "test" for r in borrowed):
            raise ProtocolError(f"{name}: the test groups hold no {missing[0]} clip and too few can be borrowed")
        note = (f"{moved} {'/'.join(missing)} test clips borrowed from the training groups "
                f"(the test groups hold none)")
    trained = assign_splits(train_pool, ratios=TRAIN_VAL, seed=seed) if train_pool else []
    return Protocol(name, "cross", tuple(trained + borrowed + test_pool), note)


def cross_protocols(rows: Sequence[ClipRow], groups: Sequence[str], train_groups: Sequence[str] = (),
                    test_groups: Sequence[str] = (), both_directions: bool = True, seed: int = 0
                    ) -> tuple[list[Protocol], list[str]]:
    """Return (protocols, skipped reasons): A -> B (and B -> A) when train groups are given, else leave
    one group out for every group."""
    known = sorted(set(groups))
    for g in [*train_groups, *test_groups]:
        if g not in known:
            raise ProtocolError(f"group {g!r} not found; the groups are: {', '.join(known)}")
    if len(known) < 2:
        raise ProtocolError(f"only one group ({', '.join(known)}): a cross-group protocol needs two or more; "
                            f"choose another GROUP")
    if train_groups:
        test = list(test_groups) or [g for g in known if g not in train_groups]
        pairs = [(list(train_groups), test, "")] + ([(test, list(train_groups), "")] if both_directions else [])
    else:
        pairs = [([g for g in known if g != held], [held], f"others -> {held}") for held in known]
    protocols, skipped = [], []
    for train, test, name in pairs:
        try:
            protocols.append(cross_group(rows, groups, train, test, seed, name))
        except ProtocolError as error:
            skipped.append(str(error))
    if not protocols:
        raise ProtocolError("no cross-group protocol can be trained: " + "; ".join(skipped))
    return protocols, skipped


def write_protocol_csv(protocol: Protocol, path: Path) -> Path:
    """Write the protocol as a spec2img CSV manifest (absolute file paths, a split for every clip)."""
    buffer = io.StringIO()
    w = csv.writer(buffer, lineterminator="\n")
    w.writerow(["file", "label", "split", "system", "speaker", "condition"])
    for r in sorted(protocol.rows, key=lambda r: str(r.path)):
        w.writerow([str(Path(r.path).resolve()), r.label, r.split, r.system, r.speaker, r.condition])
    return write_atomic(path, buffer.getvalue())
