"""Window images of audio files, as classify.predict scores them, rendered in worker processes in input order.

A file no longer than the training duration is one window (repeat-padded as in training); a longer one is
cut into windows of that duration, `hop_fraction` of a window apart, the last aligned to the end of the file
so its tail is scored. A run trained on silence-trimmed images (spec "trim_silence") has each file up to
WHOLE_FILE_SECONDS trimmed the same way before it is cut (longer files are not trimmed). Files up to WHOLE_FILE_SECONDS are decoded whole, as one piece; longer ones in pieces
of CHUNK_SECONDS (plus one window), each decoded on its own, so memory stays bounded whatever the file's
length, a long file is spread over the workers, and progress is reported piece by piece.

`iter_pieces` hands the pieces back in input order (file by file, piece by piece): with one worker in this
process, otherwise from worker processes (spec2img.convert.worker_pool: one math-library thread each, ending
with their parent; their images come back through shared memory) while the caller scores the previous batch.
At most `in_flight` tasks are pending at a time, so memory stays bounded however many files there are. A file
that cannot be read gives a piece carrying its error instead of images, and so does one whose worker process
died on it (a crash in a decoder); the same files give the same pieces whatever the number of workers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from spec2img.audio import AudioError, load_audio, probe_audio
from spec2img.config import SpecConfig
from spec2img.features import SilentClipError, clip_to_image, speech_span

WHOLE_FILE_SECONDS = 600.0   # files up to this long are decoded in one piece
CHUNK_SECONDS = 300.0        # longer files are decoded this many seconds (plus one window) at a time
FILES_PER_TASK = 8           # at most this many short files per worker task (fewer round trips)
SLOT_WINDOWS = 4             # shared memory per task: room for this many windows per file (more: sent by pipe)
WORKER_NICENESS = 10         # workers run below the scoring process's priority: on a CPU the model's threads are
                             # not stalled by them (measured ~10% more clips/s end to end on 2 cores), on a GPU
                             # machine the process feeding the GPU keeps its core


@dataclass
class Piece:
    """The window images of one piece of one file, or the reason the file cannot be scored."""
    index: int                               # the file's position in the input list
    piece: int = 0                           # 0-based piece of the file
    pieces: int = 1                          # pieces of the file
    duration: float | None = None            # seconds of the whole file (its header)
    starts: list[float] = field(default_factory=list)   # start (seconds) of each rendered window
    images: np.ndarray | None = None         # uint8 (windows, n_mels, frames), or None when none rendered
    error: str = ""                          # "error: <reason>" when the file cannot be scored
    silent: str = ""                         # why a window was skipped as silent (the file's error if none is left)
    shared: tuple[int, tuple] | None = None  # in transit from a worker: (offset, shape) of `images` in its slot


# ---------------------------------------------------------------- window arithmetic (pure)

def window_starts(total: int, window: int, hop: int, min_step: int = 1) -> list[int]:
    """Return the start samples of windows covering `total` samples: every `hop` from 0, plus one
    aligned to the end, unless it would start less than `min_step` samples after the previous one."""
    if total <= window:
        return [0]
    starts = list(range(0, total - window + 1, hop))
    if total - window - starts[-1] >= min_step:
        starts.append(total - window)
    return starts


def piece_plan(duration: float, spec: SpecConfig, hop_fraction: float) -> list[list[int]]:
    """Return the window start samples of each piece of a file of `duration` seconds longer than
    WHOLE_FILE_SECONDS (pieces of CHUNK_SECONDS of windows)."""
    sr, win = spec.sample_rate, spec.n_samples
    hop = _hop(spec, hop_fraction)
    starts = window_starts(int(round(duration * sr)), win, hop, spec.hop_length)
    per_piece = max(1, int(CHUNK_SECONDS * sr) // hop)
    return [starts[i:i + per_piece] for i in range(0, len(starts), per_piece)]


def _hop(spec: SpecConfig, hop_fraction: float) -> int:
    return max(1, int(round(hop_fraction * spec.n_samples)))


# ---------------------------------------------------------------- audio -> windows

def iter_piece_windows(path: Path, spec: SpecConfig, hop_fraction: float = 0.5, piece: int = 0,
                       duration: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (start seconds, float32 samples of one window) of piece `piece` of the file; raises AudioError.
    A file up to WHOLE_FILE_SECONDS is one piece, decoded whole; `duration` (the header's) saves a probe."""
    sr, win = spec.sample_rate, spec.n_samples
    if duration is None:
        duration = probe_audio(path).duration
    if duration <= WHOLE_FILE_SECONDS:
        wave, _ = load_audio(path, sr)
        first = 0
        if spec.trim_silence:   # trained on trimmed clips: score the same part (longer files: windows, untrimmed)
            first, last = speech_span(wave, spec)
            wave = wave[first:last]
        for s in window_starts(wave.size, win, _hop(spec, hop_fraction), spec.hop_length):
            yield (first + s) / sr, wave[s:s + win]
        return
    group = piece_plan(duration, spec, hop_fraction)[piece]
    base = group[0]
    wave, _ = load_audio(path, sr, max_seconds=(group[-1] - base + win) / sr, offset=base / sr)
    for s in group:
        segment = wave[s - base:s - base + win]
        if segment.size < win and wave.size >= win:   # the header promised more samples than decoded
            segment = wave[-win:]
        yield s / sr, segment


def iter_file_windows(path: Path, spec: SpecConfig, hop_fraction: float = 0.5
                      ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (start seconds, float32 samples of one window) covering the whole file, piece after piece;
    raises AudioError."""
    duration = probe_audio(path).duration
    pieces = 1 if duration <= WHOLE_FILE_SECONDS else len(piece_plan(duration, spec, hop_fraction))
    for piece in range(pieces):
        yield from iter_piece_windows(path, spec, hop_fraction, piece, duration)


def render_piece(index: int, path: Path, spec: SpecConfig, hop_fraction: float, piece: int = 0,
                 pieces: int = 0) -> Piece:
    """Return piece `piece` (of `pieces`, 0 = found from the file's length) of file `path` rendered into window
    images; a file that cannot be read gives a Piece with its `error` (and the header's duration when it has
    one) instead of raising."""
    out = Piece(index, piece, pieces or 1)
    images = []
    try:
        info = probe_audio(path)
        out.duration = info.duration
        if info.duration > WHOLE_FILE_SECONDS and not pieces:
            out.pieces = len(piece_plan(info.duration, spec, hop_fraction))
        for start, segment in iter_piece_windows(path, spec, hop_fraction, piece, info.duration):
            try:
                images.append(clip_to_image(segment, spec))
                out.starts.append(start)
            except SilentClipError as error:       # a silent stretch of a longer file: skip that window
                out.silent = out.silent or f"error: {error}"
    except AudioError as error:                   # also silent, or too little left by trimming (spec "trim_silence")
        out.error = f"error: {error}"
        if getattr(error, "info", None) is not None:   # truncated: the duration that decodes
            out.duration = error.info.duration
    except Exception as error:   # keep scoring the other files; the row names what went wrong
        out.error = f"error: {type(error).__name__}: {str(error).strip()[:200]}"
    if out.error and piece == 0:
        out.pieces = 1                             # an unreadable file: no more pieces to ask for
    elif images and not out.error:
        out.images = np.stack(images)
    return out


def render_task(task: tuple[SpecConfig, float, list[tuple[int, str, int, int]]], out: memoryview | None = None
                ) -> list[Piece]:
    """Worker entry point: render each (file index, path, piece, pieces) of the task with `render_piece`; the
    images that fit go into `out` (the task's shared memory, see spec2img.workers.OrderedPool)."""
    spec, hop_fraction, items = task
    rendered = [render_piece(index, Path(path), spec, hop_fraction, piece, pieces)
                for index, path, piece, pieces in items]
    offset = 0
    for piece in rendered if out is not None else ():
        size = 0 if piece.images is None else piece.images.nbytes
        if size and offset + size <= len(out):
            np.frombuffer(out, np.uint8, size, offset)[:] = piece.images.reshape(-1)
            piece.shared, piece.images = (offset, piece.images.shape), None
            offset += size
    return rendered


def collect_task(pieces: list[Piece], out: memoryview | None) -> list[Piece]:
    """Return `pieces` with the images a worker left in shared memory `out` copied back into them."""
    for piece in pieces:
        if piece.shared is not None:
            offset, shape = piece.shared
            piece.images = np.frombuffer(out, np.uint8, int(np.prod(shape)), offset).reshape(shape).copy()
            piece.shared = None
    return pieces


# ---------------------------------------------------------------- many files, in order

def resolve_workers(workers: int, files: int) -> int:
    """Return the worker processes to use: `workers` (0 = every usable core), at most one per task."""
    from spec2img.convert import resolve_workers as all_cores
    return max(1, min(all_cores(workers), files))


def count_tasks(files: Sequence[tuple[int, Path]], spec: SpecConfig, hop_fraction: float) -> int:
    """Return how many pieces `files` make (a file that cannot be probed counts one); probes every file, so
    only worth it for a few."""
    pieces = 0
    for _, path in files:
        try:
            duration = probe_audio(path).duration
        except AudioError:
            duration = 0.0
        pieces += 1 if duration <= WHOLE_FILE_SECONDS else len(piece_plan(duration, spec, hop_fraction))
    return pieces


def iter_pieces(files: Sequence[tuple[int, Path]], spec: SpecConfig, hop_fraction: float = 0.5,
                workers: int = 0, in_flight: int = 0) -> Iterator[Piece]:
    """Yield the Pieces of `files` ((index, path) pairs) in their order, piece by piece: rendered in this
    process (`workers` 1) or by worker processes (0 = every core) with at most `in_flight` tasks pending
    (default 4 per worker; twice that while a long file's pieces are added). Closing the generator stops
    the workers."""
    files = list(files)
    wanted = resolve_workers(workers, 1 << 30)
    # fewer files than workers (one long recording, say): as many workers as pieces, no more (each costs a fork)
    workers = resolve_workers(wanted, len(files) if len(files) >= wanted else count_tasks(files, spec, hop_fraction))
    if workers == 1:
        yield from _pieces_here(files, spec, hop_fraction)
        return
    from spec2img.convert import worker_pool
    from spec2img.workers import in_order, results_or_split
    in_flight = in_flight or 4 * workers
    per_task = max(1, min(FILES_PER_TASK, len(files) // (workers * 8)))   # small tasks: no straggler at the end
    paths = dict(files)
    slot_bytes = per_task * SLOT_WINDOWS * int(np.prod(spec.image_shape))
    with worker_pool(workers, spec, torch_free=True, niceness=WORKER_NICENESS, slots=2 * in_flight,
                     slot_bytes=slot_bytes) as pool:
        def submit(items: list[tuple[int, Path, int, int]]) -> Callable[[], list[Piece]]:
            task = pool.submit(render_task, (spec, hop_fraction, [(i, str(p), k, n) for i, p, k, n in items]),
                               collect_task)
            return lambda: results_or_split(task, items, submit, _died)
        tasks = ([(i, p, 0, 0) for i, p in files[s:s + per_task]] for s in range(0, len(files), per_task))
        for results in in_order(submit, tasks, in_flight):
            for first in results:
                yield first
                if first.pieces > 1:          # a long file: its other pieces, in order, before the next file
                    rest = ([(first.index, paths[first.index], k, first.pieces)] for k in range(1, first.pieces))
                    for (piece,) in in_order(submit, rest, in_flight):
                        yield piece


def _died(item: tuple[int, Path, int, int], error: Exception) -> Piece:
    """The piece of a file whose worker process died rendering it (a decoder crash, the OOM killer)."""
    index, _, piece, pieces = item
    return Piece(index, piece, pieces or 1, error=f"error: the process rendering this file died ({error})")


def _pieces_here(files, spec, hop_fraction) -> Iterator[Piece]:
    from spec2img.convert import one_math_thread
    with one_math_thread():
        for index, path in files:
            first = render_piece(index, path, spec, hop_fraction)
            yield first
            for k in range(1, first.pieces):
                yield render_piece(index, path, spec, hop_fraction, k, first.pieces)
