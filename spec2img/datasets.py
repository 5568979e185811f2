"""Read every supported dataset layout as a stream of ClipRows: one adapter per layout, plus auto-detection.

Adapters never open audio; they only read metadata (folder names, CSV manifests, ASVspoof protocols) and
check that each named audio file exists. A layout problem raises LayoutError naming the file (and line)
and what to fix.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .audio import AUDIO_EXTENSIONS
from .rows import ClipRow, LayoutError

Log = Callable[[str], None]

LAYOUTS = ("folders", "csv", "asvspoof2019", "asvspoof2021", "asvspoof5", "inthewild", "asvspoof2017")

LAYOUT_HELP = {  # layout name -> what it reads (used in error messages and --help texts)
    "folders": "ROOT/<label>/**/<audio> or ROOT/<split>/<label>/**/<audio> (e.g. Fake-or-Real)",
    "csv": "a CSV manifest with columns file,label[,split,system,speaker,condition,subset,family] "
           "(paths relative to it)",
    "asvspoof2019": "ASVspoof 2019 LA/PA: ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.*.txt "
                    "+ ASVspoof2019_LA_*/flac/",
    "asvspoof2021": "ASVspoof 2021 LA/DF: keys/<LA|DF>/CM/trial_metadata.txt + ASVspoof2021_<LA|DF>_eval/flac/",
    "asvspoof5": "ASVspoof 5: ASVspoof5.{train,dev.track_1,eval.track_1}.tsv + flac_T/, flac_D/, flac_E*/",
    "inthewild": "In-the-Wild: meta.csv (file,speaker,label) with the audio beside it",
    "asvspoof2017": "ASVspoof 2017 V2: protocol_V2/ASVspoof2017_V2_*.txt + ASVspoof2017_V2_{train,dev,eval}/",
}

_LABEL_NAMES = {  # normalized name (lower case, no spaces/_/-) -> label
    **dict.fromkeys(("bonafide", "genuine", "real", "human", "original"), "bonafide"),
    **dict.fromkeys(("spoof", "spoofed", "fake", "synthetic", "deepfake", "generated"), "spoof"),
}
_SPLIT_NAMES = {  # normalized name -> split
    **dict.fromkeys(("train", "training", "trn"), "train"),
    **dict.fromkeys(("val", "valid", "validation", "dev", "development"), "val"),
    **dict.fromkeys(("test", "testing", "eval", "evaluation"), "test"),
}
ACCEPTED_LABELS = "bonafide/bona-fide/genuine/real/human/original, spoof/spoofed/fake/synthetic/deepfake/generated"
ACCEPTED_SPLITS = "train/training/trn, val/valid/validation/dev/development, test/testing/eval/evaluation"


def label_of(name: str) -> str | None:
    """Return "bonafide"/"spoof" for a label name or synonym (any case, '-', '_' or space ignored), else None."""
    return _LABEL_NAMES.get(_normalize(name))


def split_of(name: str) -> str | None:
    """Return "train"/"val"/"test" for a split name or synonym, else None."""
    return _SPLIT_NAMES.get(_normalize(name))


def _normalize(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name).strip().lower())


# ----------------------------------------------------------------------------------------- entry points

def detect_layout(root: Path) -> str:
    """Return the name of the layout found at `root`; LayoutError says what was looked for if none fits."""
    return _detect(Path(root).expanduser())[0]


def iter_rows(root: Path, layout: str = "auto", log: Log = print) -> Iterator[ClipRow]:
    """Return a stream of the dataset's rows (audio is never read); `layout="auto"` detects and logs it.

    Layout problems found up front (unknown layout, missing protocol, unknown folder) raise here;
    per-line problems (unknown label, missing audio) raise while streaming, naming file and line.
    """
    root = Path(root).expanduser()
    if layout == "auto":
        layout, evidence = _detect(root)
        log(f"dataset layout: {layout} (found {evidence})")
    elif layout not in LAYOUTS:
        raise LayoutError(f"unknown dataset layout {layout!r}; known layouts: auto, {', '.join(LAYOUTS)}")
    elif not root.exists():
        raise LayoutError(f"{root}: no such file or folder; give the dataset's root folder (or a .csv manifest)")
    return _ADAPTERS[layout](root, log)


def _detect(root: Path) -> tuple[str, str]:
    """Return (layout, evidence) for root."""
    if not root.exists():
        raise LayoutError(f"{root}: no such file or folder; give the dataset's root folder (or a .csv manifest)")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise LayoutError(f"{root} is a file but not a .csv manifest; give the dataset's root folder instead")
        header = _csv_header(root)
        if _is_inthewild_header(root, header):
            return "inthewild", f"{root.name} with columns file,speaker,label"
        if _manifest_columns(header):
            return "csv", f"manifest {root.name} with file and label columns"
        raise LayoutError(f"{root}: a CSV manifest needs a header row with columns 'file' and 'label' "
                          f"(found: {','.join(header) or 'nothing'})")
    protocol_hits = [(name, ev) for name, probe in _PROTOCOL_PROBES if (ev := probe(root))]
    if len(protocol_hits) > 1:
        found = "; ".join(f"{name} ({ev})" for name, ev in protocol_hits)
        raise LayoutError(f"{root}: several dataset layouts found: {found}. Choose one with --dataset NAME "
                          f"or point at the dataset's own folder")
    if protocol_hits:
        return protocol_hits[0]
    for name, probe in (("csv", _probe_csv), ("folders", _probe_folders)):
        if ev := probe(root):
            return name, ev
    hint = ""
    for track in ("LA", "DF", "PA"):
        if any(root.glob(f"ASVspoof2021_{track}_eval*")):
            hint = (f" Found ASVspoof2021_{track}_eval but no keys/{track}/CM/trial_metadata.txt: download the "
                    f"{track} keys ({track}-keys-full.tar.gz from asvspoof.org) and extract them into {root}.")
    looked = "\n".join(f"  {name}: {LAYOUT_HELP[name]}" for name in LAYOUTS)
    raise LayoutError(f"{root}: no known dataset layout found.{hint} Looked for:\n{looked}")


# ----------------------------------------------------------------------------------------- shared helpers

def _safe_id(text: str) -> str:
    """Return `text` made safe as a file stem: only letters, digits, '.', '-', '_'; at most ~180 bytes."""
    safe = re.sub(r"[^\w.\-]+", "_", text).lstrip(".-") or "clip"
    if len(safe.encode()) > 180:
        digest = hashlib.sha1(text.encode()).hexdigest()[:12]
        while len(safe.encode()) > 160:
            safe = safe[: len(safe) - 10]
        safe = f"{safe}_{digest}"
    return safe


def _clip_id(relative: Path) -> str:
    """Return the clip id for an audio path relative to the dataset root: parts joined by '__', no extension."""
    parts = list(relative.parts[:-1]) + [relative.stem]
    return _safe_id("__".join(parts))


def _is_audio(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _walk_audio(folder: Path) -> Iterator[Path]:
    """Yield audio files under folder, recursively, in sorted order; hidden files and folders skipped."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:           # a symlink loop: do not descend twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if _is_audio(name):
                yield Path(dirpath) / name


class _UniqueIds:
    """Remembers clip ids handed out; raises LayoutError naming both sources on a collision."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def check(self, clip_id: str, source: str) -> str:
        """Return clip_id after checking it was not used before."""
        first = self._seen.setdefault(clip_id, source)
        if first != source:
            raise LayoutError(f"two clips would get the same id {clip_id!r}: {first} and {source}; "
                              f"rename one of them so that their names differ")
        return clip_id


def _protocol_lines(path: Path, min_fields: int, columns: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, whitespace-split fields) of a protocol file, skipping blank and '#' lines."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) < min_fields:
                raise LayoutError(f"{path}:{lineno}: malformed line, expected at least {min_fields} space-separated "
                                  f"columns ({columns}) but found {len(fields)}: {text[:120]!r}")
            yield lineno, fields


def _label_at(value: str, source: Path, lineno: int) -> str:
    """Return the label for a metadata value, or raise LayoutError naming file and line."""
    label = label_of(value)
    if label is None:
        raise LayoutError(f"{source}:{lineno}: unknown label {value!r}; use one of: {ACCEPTED_LABELS}")
    return label


def _existing(path: Path, source: Path, lineno: int) -> Path:
    """Return path if the audio file exists, else raise LayoutError naming the metadata file and line."""
    if not path.is_file():
        raise LayoutError(f"{source}:{lineno}: audio file {path} not found; restore it, or remove the line "
                          f"from {source.name}")
    return path


def _find_in(dirs: list[Path], name: str, last: list[int]) -> Path | None:
    """Return dirs[i]/name for the first i where it exists, trying the last successful folder first."""
    order = [last[0]] + [i for i in range(len(dirs)) if i != last[0]]
    for i in order:
        candidate = dirs[i] / name
        if candidate.is_file():
            last[0] = i
            return candidate
    return None


def _dash(value: str) -> str:
    return "" if value in ("-", "") else value


def _open_protocols(parts: Iterable[tuple[str, Path, bool]], log: Log) -> list[tuple[str, Path]]:
    """Return [(split, protocol path)] for protocols present; a missing required one raises LayoutError."""
    present = []
    for split, path, required in parts:
        if path.is_file():
            present.append((split, path))
        elif required:
            raise LayoutError(f"{path}: protocol file missing; put the dataset's protocol there "
                              f"(the train and dev protocols are required, eval is optional)")
        else:
            log(f"notice: {path} not found, so the dataset has no {split} split from its own protocol")
    return present


# ----------------------------------------------------------------------------------------- folders

def _probe_folders(root: Path) -> str:
    names = [d.name for d in _top_dirs(root)]
    labels = [n for n in names if label_of(n)]
    splits = [n for n in names if split_of(n)]
    if splits:
        return f"split folders {', '.join(splits)}"
    if labels:
        return f"label folders {', '.join(labels)}"
    return ""


def _top_dirs(root: Path) -> list[Path]:
    return [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
            and d.name != "__MACOSX"]


def _unknown_folder(folder: Path, expected: str) -> LayoutError:
    accepted = (f"label folders ({ACCEPTED_LABELS}) or split folders ({ACCEPTED_SPLITS})"
                if expected == "label or split" else f"label folders ({ACCEPTED_LABELS})")
    return LayoutError(f"{folder}: folder {folder.name!r} is not a {expected} folder; accepted: {accepted}. "
                       f"Rename or move it, or describe the data in a CSV manifest (--dataset csv)")


def _folders_plan(root: Path, log: Log) -> list[tuple[str, str, Path]]:
    """Return [(split or "", label, label folder)] after checking every folder name; logs each mapping."""
    tops = _top_dirs(root)
    if not tops:
        raise LayoutError(f"{root}: no label folders (for example real/ and fake/) found; "
                          f"accepted names: {ACCEPTED_LABELS}")
    for d in tops:
        if not label_of(d.name) and not split_of(d.name):
            raise _unknown_folder(d, "label or split")
    split_dirs = [d for d in tops if split_of(d.name)]
    if split_dirs and len(split_dirs) != len(tops):
        label_dirs = [d.name for d in tops if label_of(d.name)]
        raise LayoutError(f"{root}: mixes split folders ({', '.join(d.name for d in split_dirs)}) with label "
                          f"folders ({', '.join(label_dirs)}); put every label folder inside a split folder "
                          f"or use no split folders at all")
    logged: set[str] = set()

    def mapped(name: str, text: str) -> None:
        if name not in logged:
            logged.add(name)
            log(f"folder '{name}' -> {text}")

    _notice_loose_audio(root, log)
    plan = []
    if not split_dirs:
        for d in tops:
            mapped(d.name, label_of(d.name))
            plan.append(("", label_of(d.name), d))
        return plan
    for s in split_dirs:
        mapped(s.name, f"split {split_of(s.name)}")
        label_dirs = _top_dirs(s)
        if not label_dirs:
            raise LayoutError(f"{s}: split folder holds no label folders (for example real/ and fake/); "
                              f"accepted names: {ACCEPTED_LABELS}")
        for d in label_dirs:
            if not label_of(d.name):
                raise _unknown_folder(d, "label")
            mapped(d.name, label_of(d.name))
            plan.append((split_of(s.name), label_of(d.name), d))
        _notice_loose_audio(s, log)
    return plan


def _notice_loose_audio(folder: Path, log: Log) -> None:
    loose = sum(1 for f in folder.iterdir() if f.is_file() and _is_audio(f.name))
    if loose:
        log(f"notice: {loose} audio files directly in {folder} are not inside a label folder and are ignored")


def _rows_folders(root: Path, log: Log) -> Iterator[ClipRow]:
    if not root.is_dir():
        raise LayoutError(f"{root}: the folders layout needs a folder holding label (or split) folders")
    return _stream_folders(root, _folders_plan(root, log))


def _stream_folders(root: Path, plan: list[tuple[str, str, Path]]) -> Iterator[ClipRow]:
    ids, count = _UniqueIds(), 0
    for split, label, label_dir in plan:
        for path in _walk_audio(label_dir):
            below = path.relative_to(label_dir).parts
            system = below[0] if len(below) > 1 else ""
            clip_id = ids.check(_clip_id(path.relative_to(root)), str(path))
            count += 1
            yield ClipRow(clip_id, path, label, split, system)
    if count == 0:
        raise LayoutError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) inside the label folders")


# ----------------------------------------------------------------------------------------- csv manifest

def _csv_header(path: Path) -> list[str]:
    """Return the lower-cased column names of a CSV file's first row ([] if unreadable)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            first = next(csv.reader(f), [])
    except OSError:
        return []
    return [c.strip().lower() for c in first]


def _manifest_columns(header: list[str]) -> bool:
    return "label" in header and ("file" in header or "path" in header)


def _is_inthewild_header(path: Path, header: list[str]) -> bool:
    return path.name.lower() == "meta.csv" and sorted(header) == ["file", "label", "speaker"]


def _probe_csv(root: Path) -> str:
    candidates = _manifest_candidates(root)
    if len(candidates) == 1:
        return f"manifest {candidates[0].name} with file and label columns"
    if candidates:
        return f"manifests {', '.join(c.name for c in candidates)}"
    return ""


def _manifest_candidates(root: Path) -> list[Path]:
    return [p for p in sorted(root.glob("*.csv")) if p.is_file() and _manifest_columns(_csv_header(p))]


def _manifest_path(root: Path) -> Path:
    """Return the manifest CSV for root (the file itself, or the one manifest in the folder)."""
    if root.is_file():
        return root
    candidates = _manifest_candidates(root)
    if not candidates:
        raise LayoutError(f"{root}: no CSV manifest with columns 'file' and 'label' found; write one "
                          f"(file,label[,split,system,speaker,condition]) or pass the .csv file itself")
    if len(candidates) > 1:
        preferred = [c for c in candidates if c.name.lower() == "manifest.csv"]
        if len(preferred) == 1:
            return preferred[0]
        raise LayoutError(f"{root}: several CSV manifests ({', '.join(c.name for c in candidates)}); "
                          f"pass the one to use as the dataset root")
    return candidates[0]


def _rows_csv(root: Path, log: Log) -> Iterator[ClipRow]:
    manifest = _manifest_path(root)
    header = _csv_header(manifest)
    if not _manifest_columns(header):
        raise LayoutError(f"{manifest}:1: a CSV manifest needs columns 'file' and 'label' "
                          f"(found: {','.join(header) or 'nothing'})")
    used = [c for c in ("file" if "file" in header else "path", "label", "split", "system", "speaker",
                        "condition", "subset", "family") if c in header]
    ignored = [c for c in header if c not in used]
    log(f"manifest {manifest}: using columns {','.join(used)}" + (f"; ignoring {','.join(ignored)}" if ignored else ""))
    return _stream_csv(manifest)


def _stream_csv(manifest: Path) -> Iterator[ClipRow]:
    base = manifest.parent
    ids = _UniqueIds()
    with open(manifest, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f)
        header = [c.strip().lower() for c in next(reader)]
        col = {name: header.index(name) for name in ("file", "path", "label", "split", "system", "speaker",
                                                      "condition", "subset", "family") if name in header}
        file_col = col.get("file", col.get("path"))

        def cell(fields: list[str], name: str) -> str:
            i = col.get(name)
            return fields[i].strip() if i is not None and i < len(fields) else ""

        for fields in reader:
            lineno = reader.line_num
            if not any(c.strip() for c in fields):
                continue
            name = fields[file_col].strip() if file_col < len(fields) else ""
            if not name:
                raise LayoutError(f"{manifest}:{lineno}: empty file name; fill in the audio path or delete the line")
            label = _label_at(cell(fields, "label"), manifest, lineno)
            split = ""
            if value := cell(fields, "split"):
                split = split_of(value)
                if split is None:
                    raise LayoutError(f"{manifest}:{lineno}: unknown split {value!r}; use one of: {ACCEPTED_SPLITS}"
                                      f" (or leave it empty for every row)")
            relative = Path(name)
            path = _existing(relative if relative.is_absolute() else base / relative, manifest, lineno)
            if relative.is_absolute():
                relative = Path(*relative.parts[1:])
            clip_id = ids.check(_clip_id(Path(os.path.normpath(relative))), f"{manifest.name} line {lineno}")
            yield ClipRow(clip_id, path, label, split, cell(fields, "system"), cell(fields, "speaker"),
                          cell(fields, "condition"), cell(fields, "subset"), cell(fields, "family"))


# ----------------------------------------------------------------------------------------- ASVspoof 2019

_ASV19_PARTS = (("train", "train", "train.trn", True), ("val", "dev", "dev.trl", True),
                ("test", "eval", "eval.trl", False))


def _find_asvspoof2019(root: Path) -> list[tuple[Path, str]]:
    """Return [(folder holding the protocol folder, track)] for LA/PA protocol folders in root or root/LA|PA."""
    hits = []
    for base in (root, root / "LA", root / "PA"):
        for track in ("LA", "PA"):
            if (base / f"ASVspoof2019_{track}_cm_protocols").is_dir():
                hits.append((base, track))
    return hits


def _probe_asvspoof2019(root: Path) -> str:
    hits = _find_asvspoof2019(root)
    return ", ".join(f"{(b / f'ASVspoof2019_{t}_cm_protocols').relative_to(root)}/" for b, t in hits)


def _rows_asvspoof2019(root: Path, log: Log) -> Iterator[ClipRow]:
    hits = _find_asvspoof2019(root)
    if not hits:
        raise LayoutError(f"{root}: no ASVspoof2019_LA_cm_protocols/ (or _PA_) folder here or in {root}/LA; "
                          f"point at the LA (or PA) folder of ASVspoof 2019")
    if len({track for _, track in hits}) > 1:
        raise LayoutError(f"{root}: holds both ASVspoof 2019 LA and PA; point at {root}/LA or {root}/PA")
    base, track = hits[0]
    proto_dir = base / f"ASVspoof2019_{track}_cm_protocols"
    parts = [(split, proto_dir / f"ASVspoof2019.{track}.cm.{suffix}.txt", required)
             for split, _, suffix, required in _ASV19_PARTS]
    present = _open_protocols(parts, log)
    audio = {split: base / f"ASVspoof2019_{track}_{part}" / "flac" for split, part, _, _ in _ASV19_PARTS}
    return _stream_asvspoof2019(present, audio)


def _stream_asvspoof2019(present: list[tuple[str, Path]], audio: dict[str, Path]) -> Iterator[ClipRow]:
    for split, protocol in present:
        for lineno, (speaker, name, env, system, key, *_) in _protocol_lines(
                protocol, 5, "SPEAKER_ID AUDIO_FILE_NAME ENVIRONMENT_ID|- SYSTEM_ID KEY"):
            label = _label_at(key, protocol, lineno)
            path = _existing(audio[split] / f"{name}.flac", protocol, lineno)
            yield ClipRow(_safe_id(name), path, label, split, "" if label == "bonafide" else _dash(system),
                          speaker, _dash(env))


# ----------------------------------------------------------------------------------------- ASVspoof 2021

def _find_asvspoof2021(root: Path) -> list[tuple[str, Path]]:
    """Return [(track, trial_metadata.txt)] for LA/DF keys under root, root/* (e.g. LA-keys-full/) or root=keys."""
    found = []
    bases = [root] + [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    for base in bases:
        for track in ("LA", "DF"):
            for meta in (base / "keys" / track / "CM" / "trial_metadata.txt",
                         base / track / "CM" / "trial_metadata.txt"):
                if meta.is_file() and track not in {t for t, _ in found}:
                    found.append((track, meta))
    return found


def _probe_asvspoof2021(root: Path) -> str:
    return ", ".join(str(meta.relative_to(root)) for _, meta in _find_asvspoof2021(root))


def _audio_dirs_2021(root: Path, track: str) -> list[Path]:
    """Return the existing flac folders that may hold ASVspoof 2021 <track> eval audio."""
    name = f"ASVspoof2021_{track}_eval"
    candidates = [root / name / "flac", root / "flac"]
    candidates += sorted(root.glob(f"{name}_part*/{name}/flac")) + sorted(root.glob(f"*/{name}/flac"))
    return list(dict.fromkeys(d for d in candidates if d.is_dir()))


def _rows_asvspoof2021(root: Path, log: Log) -> Iterator[ClipRow]:
    keys = _find_asvspoof2021(root) if root.is_dir() else []
    if not keys:
        raise LayoutError(f"{root}: no keys/LA/CM/trial_metadata.txt (or keys/DF/...) found; extract the "
                          f"ASVspoof 2021 keys (LA-keys-full.tar.gz / DF-keys-full.tar.gz) into {root}")
    tracks = []
    for track, meta in keys:
        dirs = _audio_dirs_2021(root, track)
        if not dirs:
            raise LayoutError(f"{meta}: no audio folder ASVspoof2021_{track}_eval/flac under {root}; extract the "
                              f"{track} eval audio there (all parts of DF into the same flac/ folder, or keep "
                              f"the ASVspoof2021_{track}_eval_partNN/ folders)")
        tracks.append((track, meta, dirs))
    log(f"ASVspoof 2021 tracks: {', '.join(t for t, _, _ in tracks)} (an evaluation set: every clip is split test; "
        f"each trial keeps its key subset: {', '.join(ASVSPOOF2021_SUBSETS)})")
    return _stream_asvspoof2021(tracks)


# The official condition tags of the 2021 tables (eval-package config.py): LA codecs pooled over transmission,
# DF compression conditions. A clip's condition is "<track>-<tag>-<codec>", e.g. "LA-C2-alaw", "DF-C3-high_mp3".
ASVSPOOF2021_CONDITIONS = {
    "LA": ("none", "alaw", "pstn", "g722", "ulaw", "gsm", "opus"),
    "DF": ("nocodec", "low_mp3", "high_mp3", "low_m4a", "high_m4a", "low_ogg", "high_ogg", "mp3m4a", "oggm4a"),
}
ASVSPOOF2021_SUBSETS = ("eval", "progress", "hidden_track")   # the key's SUBSET column (published results: eval)


def asvspoof2021_condition(track: str, codec: str) -> str:
    """Return the condition of an ASVspoof 2021 trial: "<track>-C<k>-<codec>" with the official tag, or
    "<track>-<codec>" for a codec outside the official list."""
    codecs = ASVSPOOF2021_CONDITIONS[track]
    return f"{track}-C{codecs.index(codec) + 1}-{codec}" if codec in codecs else f"{track}-{codec}"


def _stream_asvspoof2021(tracks: list[tuple[str, Path, list[Path]]]) -> Iterator[ClipRow]:
    for track, meta, dirs in tracks:
        last = [0]
        columns = ("SPEAKER TRIAL_ID CODEC TRANSMISSION ATTACK KEY TRIM SUBSET" if track == "LA"
                   else "SPEAKER TRIAL_ID CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER ...")
        for lineno, fields in _protocol_lines(meta, 6, columns):
            speaker, trial, codec, _second, attack, key = fields[:6]
            subset = fields[7] if len(fields) > 7 else ""
            label = _label_at(key, meta, lineno)
            path = _find_in(dirs, f"{trial}.flac", last) or _existing(dirs[0] / f"{trial}.flac", meta, lineno)
            spoof = not (label == "bonafide" or attack == "bonafide")
            family = _dash(fields[8]) if track == "DF" and spoof and len(fields) > 8 else ""
            yield ClipRow(_safe_id(trial), path, label, "test", _dash(attack) if spoof else "", _dash(speaker),
                          asvspoof2021_condition(track, codec), _dash(subset), family)


# ----------------------------------------------------------------------------------------- ASVspoof 5

_ASV5_PARTS = (("train", "ASVspoof5.train.tsv", "T", True), ("val", "ASVspoof5.dev.track_1.tsv", "D", True),
               ("test", "ASVspoof5.eval.track_1.tsv", "E", False))


def _find_asvspoof5(root: Path) -> Path | None:
    """Return the folder holding the ASVspoof5.*.tsv protocols (root, ASVspoof5_protocols/ or protocols/)."""
    for d in (root, root / "ASVspoof5_protocols", root / "protocols"):
        if any((d / name).is_file() for _, name, _, _ in _ASV5_PARTS):
            return d
    return None


def _probe_asvspoof5(root: Path) -> str:
    d = _find_asvspoof5(root)
    if d is None:
        return ""
    return ", ".join(str((d / n).relative_to(root)) for _, n, _, _ in _ASV5_PARTS if (d / n).is_file())


def _audio_dirs_5(root: Path, proto_dir: Path, letter: str) -> list[Path]:
    """Return existing flac_<letter>* folders in root (and beside the protocol folder), exact names first."""
    preferred = {"T": ["flac_T"], "D": ["flac_D"], "E": ["flac_E_eval", "flac_E", "flac_E_prog"]}[letter]
    candidates = []
    for base in dict.fromkeys((root, proto_dir.parent)):
        candidates += [base / n for n in preferred] + sorted(base.glob(f"flac_{letter}*"))
    return list(dict.fromkeys(d for d in candidates if d.is_dir()))


def _rows_asvspoof5(root: Path, log: Log) -> Iterator[ClipRow]:
    proto_dir = _find_asvspoof5(root) if root.is_dir() else None
    if proto_dir is None:
        raise LayoutError(f"{root}: no ASVspoof5.train.tsv (here or in ASVspoof5_protocols/); extract "
                          f"ASVspoof5_protocols.tar.gz into {root}")
    present = _open_protocols([(split, proto_dir / name, req) for split, name, _, req in _ASV5_PARTS], log)
    parts = []
    for split, protocol in present:
        letter = next(l for s, _, l, _ in _ASV5_PARTS if s == split)
        dirs = _audio_dirs_5(root, proto_dir, letter)
        if not dirs:
            raise LayoutError(f"{protocol}: no audio folder flac_{letter}/ in {root}; extract the "
                              f"flac_{letter}_*.tar archives there")
        parts.append((split, protocol, dirs))
    return _stream_asvspoof5(parts)


def _stream_asvspoof5(parts: list[tuple[str, Path, list[Path]]]) -> Iterator[ClipRow]:
    columns = "SPEAKER_ID FLAC_FILE_NAME GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP"
    for split, protocol, dirs in parts:
        last = [0]
        for lineno, (speaker, name, _g, codec, _q, _s, _tag, attack, key, *_) in _protocol_lines(protocol, 9, columns):
            label = _label_at(key, protocol, lineno)
            path = _find_in(dirs, f"{name}.flac", last) or _existing(dirs[0] / f"{name}.flac", protocol, lineno)
            system = "" if label == "bonafide" or attack == "bonafide" else _dash(attack)
            yield ClipRow(_safe_id(name), path, label, split, system, _dash(speaker), _dash(codec) or "none")


# ----------------------------------------------------------------------------------------- In-the-Wild

def _find_inthewild(root: Path) -> Path | None:
    """Return In-the-Wild's meta.csv (root itself, root/meta.csv or root/release_in_the_wild/meta.csv)."""
    candidates = [root] if root.is_file() else [root / "meta.csv", root / "release_in_the_wild" / "meta.csv"]
    for meta in candidates:
        if meta.is_file() and _is_inthewild_header(meta, _csv_header(meta)):
            return meta
    return None


def _probe_inthewild(root: Path) -> str:
    meta = _find_inthewild(root)
    return f"{meta.relative_to(root)} with columns file,speaker,label" if meta else ""


def _rows_inthewild(root: Path, log: Log) -> Iterator[ClipRow]:
    meta = _find_inthewild(root)
    if meta is None:
        raise LayoutError(f"{root}: no meta.csv with columns file,speaker,label (here or in "
                          f"release_in_the_wild/); point at the extracted release_in_the_wild folder")
    return _stream_inthewild(meta)


def _stream_inthewild(meta: Path) -> Iterator[ClipRow]:
    ids = _UniqueIds()
    with open(meta, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [c.strip().lower() for c in reader.fieldnames or []]
        for fields in reader:
            lineno = reader.line_num
            name = (fields.get("file") or "").strip()
            if not name:
                raise LayoutError(f"{meta}:{lineno}: empty file name; fill it in or delete the line")
            label = _label_at((fields.get("label") or "").strip(), meta, lineno)
            path = _existing(meta.parent / name, meta, lineno)
            clip_id = ids.check(_clip_id(Path(name)), f"{meta.name} line {lineno}")
            yield ClipRow(clip_id, path, label, "", "", (fields.get("speaker") or "").strip())


# ----------------------------------------------------------------------------------------- ASVspoof 2017

_ASV17_PARTS = (("train", "train", "train.trn", True), ("val", "dev", "dev.trl", True),
                ("test", "eval", "eval.trl", False))


def _probe_asvspoof2017(root: Path) -> str:
    proto = root / "protocol_V2"
    hits = [p.name for p in sorted(proto.glob("ASVspoof2017_V2_*.txt"))] if proto.is_dir() else []
    return f"protocol_V2/ with {', '.join(hits)}" if hits else ""


def _rows_asvspoof2017(root: Path, log: Log) -> Iterator[ClipRow]:
    proto = root / "protocol_V2"
    if not proto.is_dir():
        raise LayoutError(f"{root}: no protocol_V2/ folder; point at the ASVspoof 2017 V2 folder that holds "
                          f"protocol_V2/ and ASVspoof2017_V2_train/")
    present = _open_protocols([(split, proto / f"ASVspoof2017_V2_{suffix}.txt", req)
                               for split, _, suffix, req in _ASV17_PARTS], log)
    audio = {split: root / f"ASVspoof2017_V2_{part}" for split, part, _, _ in _ASV17_PARTS}
    return _stream_asvspoof2017(present, audio)


def _stream_asvspoof2017(present: list[tuple[str, Path]], audio: dict[str, Path]) -> Iterator[ClipRow]:
    columns = "FILE genuine|spoof SPEAKER PHRASE ENVIRONMENT PLAYBACK RECORDING"
    for split, protocol in present:
        for lineno, fields in _protocol_lines(protocol, 2, columns):
            name, key, speaker, _phrase, env, playback, recording = (fields + ["-"] * 7)[:7]
            label = _label_at(key, protocol, lineno)
            if not Path(name).suffix:
                name += ".wav"
            path = _existing(audio[split] / name, protocol, lineno)
            devices = "-".join(d for d in (playback, recording) if _dash(d))
            yield ClipRow(_safe_id(Path(name).stem), path, label, split,
                          "" if label == "bonafide" else devices, _dash(speaker), _dash(env))


# ----------------------------------------------------------------------------------------- registry

_PROTOCOL_PROBES = (("asvspoof2019", _probe_asvspoof2019), ("asvspoof2021", _probe_asvspoof2021),
                    ("asvspoof5", _probe_asvspoof5), ("asvspoof2017", _probe_asvspoof2017),
                    ("inthewild", _probe_inthewild))

_ADAPTERS: dict[str, Callable[[Path, Log], Iterator[ClipRow]]] = {
    "folders": _rows_folders, "csv": _rows_csv, "asvspoof2019": _rows_asvspoof2019,
    "asvspoof2021": _rows_asvspoof2021, "asvspoof5": _rows_asvspoof5, "inthewild": _rows_inthewild,
    "asvspoof2017": _rows_asvspoof2017,
}
