"""A packed uint8 copy of the training images beside them, read batch by batch: training when the images exceed
the memory budget.

`images/cache/<key>.u8` holds the decoded train and val images one after the other, (N, H, W) uint8 in C order
(`np.memmap(path, np.uint8, "r", shape=(N, H, W))` opens it); `images/cache/<key>.json` is its index (the image
of each row: relative PNG path, label, split). `<key>` is a digest of spec.json and of every PNG's path, size and
modification time, so changing, adding or removing a PNG, or changing spec.json, gives another key: the cache is
rebuilt, and the caches of other keys are deleted. The file is written once, in chunks (memory bounded), under a
temporary name that spec2img.fileio.atomic_path publishes only when complete, and the index after it: a killed
build leaves no cache that looks complete, and the next build removes its temporary file. Builds of one folder
take turns (a lock file), so the processes of a multi-GPU run build it once.

Batches are read with positioned reads (`os.preadv`, one per image, several threads) into a fresh buffer, pinned
when CUDA is there: nothing is mapped, so the process's memory stays flat however large the cache; the operating
system's page cache keeps what fits in RAM, and the disk serves the rest.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spec2img.config import SPEC_FILE
from spec2img.fileio import atomic_path, remove_stale_parts, write_json

CACHE_DIR = "cache"          # below the images folder
CHUNK = 512                  # images decoded and written per step while building
READ_THREADS = 4             # positioned reads in flight per batch
FORMAT_VERSION = 1


class CacheUnavailable(Exception):
    """The cache cannot be written beside the images (read-only folder, full disk); str() says why."""


@dataclass
class CacheFile:
    """A built cache: the raw file, the image shape, and per split the rows, labels and PNG paths."""
    path: Path                          # images/cache/<key>.u8
    shape: tuple[int, int]              # (H, W) of every image
    rows: dict[str, np.ndarray]         # split -> int64 row numbers in the file
    labels: dict[str, np.ndarray]       # split -> label index per row
    paths: dict[str, list[Path]]        # split -> PNG path per row


def cache_key(images: Path, found: dict, shape: tuple[int, int]) -> str:
    """Return the digest of spec.json and every listed PNG's relative path, size and modification time."""
    images = Path(images)
    digest = hashlib.sha1(f"v{FORMAT_VERSION} {shape}\n".encode())
    digest.update((images / SPEC_FILE).read_bytes())
    for split in sorted(found):
        for path in found[split].paths:
            stat = os.stat(path)
            digest.update(f"{split}\t{Path(path).relative_to(images)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def open_cache(images: Path, found: dict, shape: tuple[int, int], workers: int = 0, log=print) -> CacheFile:
    """Return the cache of the images listed in `found` ({split: ImageIndex}), building it first when it is
    missing or stale. PNGs that fail to decode are reported and left out. Raises CacheUnavailable."""
    folder = Path(images) / CACHE_DIR
    key = cache_key(images, found, shape)
    try:
        folder.mkdir(exist_ok=True)
        with _build_lock(folder):
            cache = _read(folder, key, shape)
            if cache is None:
                _build(images, folder, key, found, shape, workers, log)
                cache = _read(folder, key, shape)
    except OSError as error:
        raise CacheUnavailable(f"cannot write the image cache in {folder} ({error.strerror or error})") from None
    if cache is None:
        raise CacheUnavailable(f"the image cache in {folder} could not be read back after building it")
    first = 0                                  # the rows of each split follow `found`'s order: share its paths
    for split in sorted(found):
        cache.paths[split] = [found[split].paths[r - first] for r in cache.rows[split]]
        first += len(found[split].paths)
    return cache


def _read(folder: Path, key: str, shape: tuple[int, int]) -> CacheFile | None:
    """Return the cache of `key` when its index and complete raw file are there, else None."""
    index_file, raw = folder / f"{key}.json", folder / f"{key}.u8"
    try:
        index = json.loads(index_file.read_text())
        size = raw.stat().st_size
    except (OSError, ValueError):
        return None
    if index.get("key") != key or tuple(index.get("shape", ())) != tuple(shape) or \
            size != index.get("images", -1) * shape[0] * shape[1]:
        return None
    root = folder.parent
    return CacheFile(raw, tuple(shape), {s: np.asarray(v["rows"], np.int64) for s, v in index["splits"].items()},
                     {s: np.asarray(v["labels"], np.int64) for s, v in index["splits"].items()},
                     {s: [root / p for p in v["paths"]] for s, v in index["splits"].items()})


def _build(images: Path, folder: Path, key: str, found: dict, shape: tuple[int, int], workers: int, log) -> None:
    """Decode every listed PNG into `<key>.u8` (in chunks), publish it, then its index; remove other caches."""
    from fastprogress.fastprogress import progress_bar
    from fastai.torch_core import rank_distrib
    from classify.data import decode_images
    remove_stale_parts(folder)
    items = [(split, path, label) for split in sorted(found) for path, label in zip(found[split].paths,
                                                                                     found[split].labels)]
    log(f"data: writing the image cache {folder / key}.u8 ({len(items)} images, "
        f"{len(items) * shape[0] * shape[1] / 2 ** 30:.2f} GiB), once for these images")
    ok = np.zeros(len(items), bool)
    with atomic_path(folder / f"{key}.u8") as tmp, open(tmp, "wb") as f:
        starts = range(0, len(items), CHUNK)
        bar = progress_bar(starts, display=rank_distrib() == 0)
        bar.comment = "caching images"
        for start in bar:
            chunk = items[start:start + CHUNK]
            pixels, good = decode_images([p for _, p, _ in chunk], shape, workers, log, show=False)
            f.write(pixels.tobytes())
            ok[start:start + len(chunk)] = good
    splits = {}
    for split in sorted(found):
        mine = [i for i, (s, _, _) in enumerate(items) if s == split and ok[i]]
        splits[split] = {"rows": mine, "labels": [int(items[i][2]) for i in mine],
                         "paths": [str(Path(items[i][1]).relative_to(images)) for i in mine]}
    write_json(folder / f"{key}.json", {"key": key, "format_version": FORMAT_VERSION, "shape": list(shape),
                                       "images": len(items), "dtype": "uint8", "layout": "(images, height, width)",
                                       "splits": splits})
    for other in folder.iterdir():
        if other.suffix in (".u8", ".json") and other.stem != key:
            other.unlink(missing_ok=True)


@contextmanager
def _build_lock(folder: Path):
    """Hold an exclusive lock on the cache folder while checking and building (other processes wait)."""
    try:
        import fcntl
    except ImportError:          # no flock (Windows): unlocked
        yield
        return
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class CachedImages(torch.utils.data.Dataset):
    """The images of one split in a cache file: `labels` (N,), `paths`, `ids`, `vocab`; `gather(idxs)` reads them."""

    def __init__(self, file: Path, rows: np.ndarray, labels, paths: list[Path], shape: tuple[int, int], vocab):
        self.file, self.rows, self.shape, self.vocab = Path(file), np.asarray(rows, np.int64), tuple(shape), list(vocab)
        self.labels = torch.as_tensor(np.asarray(labels, np.int64))
        self.paths = list(paths)
        self._fd = None
        self._pid = None

    @classmethod
    def split_of(cls, cache: CacheFile, split: str, vocab) -> "CachedImages":
        """Return one split of a built cache."""
        return cls(cache.path, cache.rows[split], cache.labels[split], cache.paths[split], cache.shape, vocab)

    @property
    def ids(self) -> list[str]:
        """The PNG stems (clip ids)."""
        return [p.stem for p in self.paths]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.gather(np.asarray([i]))[0], self.labels[i]

    def gather(self, idxs: np.ndarray, pin: bool = False) -> torch.Tensor:
        """Return uint8 (B, 1, H, W) images `idxs` (positions in this split), read from the file in parallel."""
        idxs = np.asarray(idxs, np.int64)
        out = torch.empty((len(idxs), 1, *self.shape), dtype=torch.uint8, pin_memory=pin)
        flat = out.numpy().reshape(len(idxs), -1)
        size = flat.shape[1]
        offsets = self.rows[idxs] * size
        fd = self._descriptor()

        def read(part: range) -> None:
            for j in part:
                if os.preadv(fd, [flat[j]], int(offsets[j])) != size:
                    raise OSError(f"{self.file}: short read of image row {self.rows[idxs[j]]} (was the cache "
                                  f"truncated? delete {self.file.parent} to rebuild it)")
        n = len(idxs)
        step = max(1, -(-n // READ_THREADS))
        parts = [range(s, min(n, s + step)) for s in range(0, n, step)]
        if len(parts) == 1:
            read(parts[0])
        else:
            for _ in _readers().map(read, parts):
                pass
        return out

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():      # one descriptor per process (forked loaders too)
            self._fd, self._pid = os.open(self.file, os.O_RDONLY), os.getpid()
        return self._fd

    def __getstate__(self):                                   # pickled without its file descriptor
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass

    def new_empty(self) -> "CachedImages":
        """Return an empty set of the same image size (what fastai's `export` pickles instead of the data)."""
        return CachedImages(self.file, self.rows[:0], [], [], self.shape, self.vocab)


_READERS: dict[int, ThreadPoolExecutor] = {}


def _readers() -> ThreadPoolExecutor:
    """Return this process's pool of reader threads (os.preadv releases the GIL)."""
    pool = _READERS.get(os.getpid())
    if pool is None:
        pool = _READERS[os.getpid()] = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="cache-read")
    return pool
