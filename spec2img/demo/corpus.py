"""The corpus folder: settings, the seeded plan of speakers and utterances, the files, and the command line."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from ..cli import build_parser as build_cli, parse_settings
from ..fileio import EXIT_WRITE_FAILED, OutputWriteError, atomic_path, output_error, remove_stale_parts, write_atomic
from ..progress import progress
from ..workers import OrderedPool, end_with_parent, map_in_order, pool_context
from .talker import Speaker, make_speaker, synthesize_bonafide
from .vocoders import SPOOFERS, SYSTEMS, output_stage, warm_up

GENERATOR_VERSION = 2            # bumped whenever the synthesis changes the audio (2: librosa's Griffin-Lim and LPC)
MANIFEST = "manifest.csv"
SETTINGS_FILE = "demo.json"
README_FILE = "README.txt"
AUDIO_DIR = "audio"


class DemoError(Exception):
    """The target folder cannot take the synthetic corpus; str() says what to do."""


@dataclass(frozen=True)
class DemoConfig:
    clips_per_class: int = 200       # bonafide utterances; as many spoof clips, spread evenly over the systems
    speakers: int = 20               # synthetic talkers (alternately higher- and lower-pitched)
    seed: int = 0                    # every random draw derives from it: same seed, same bytes
    sample_rate: int = 16_000        # Hz, of every clip (written as 16-bit PCM WAV)
    min_seconds: float = 2.0         # shortest utterance
    max_seconds: float = 4.0         # longest utterance; a spoof has its source's exact length
    loudness_dbfs: float = -26.0     # dBFS, RMS level every clip is normalized to (plus a random offset)
    loudness_spread_db: float = 2.0  # dB, the random loudness offset is uniform within ± this
    version: int = field(default=GENERATOR_VERSION, metadata={"cli": False})  # synthesis version, part of the
                                                                              # settings a folder is checked against

    def validate(self) -> "DemoConfig":
        """Return self, or raise DemoError naming the setting that cannot work."""
        if self.clips_per_class < len(SYSTEMS):
            raise DemoError(f"--clips-per-class {self.clips_per_class} is too small: need at least "
                            f"{len(SYSTEMS)} so that every synthetic spoofing system appears")
        if not 1 <= self.speakers <= self.clips_per_class:
            raise DemoError(f"--speakers {self.speakers} must be between 1 and --clips-per-class")
        if self.seed < 0:
            raise DemoError(f"--seed {self.seed} must be 0 or positive")
        if not 0.5 <= self.min_seconds <= self.max_seconds:
            raise DemoError("need 0.5 <= --min-seconds <= --max-seconds")
        if self.sample_rate < 8000:
            raise DemoError(f"--sample-rate {self.sample_rate} is below 8000 Hz: the synthetic fricatives need more")
        return self


@dataclass(frozen=True)
class Utterance:
    speaker: int            # index of the speaker
    index: int              # utterance number within the speaker
    n_samples: int          # length of the bonafide clip and of its spoof
    system: str             # the system that spoofs this utterance


@dataclass(frozen=True)
class DemoClip:
    clip_id: str            # file stem, unique in the corpus
    file: str               # path relative to the corpus folder
    label: str              # "bonafide" | "spoof"
    system: str             # spoofing system, "" for bonafide
    speaker: str            # speaker id


# ----------------------------------------------------------------------------- the plan

def plan_corpus(cfg: DemoConfig) -> list[Utterance]:
    """Return every utterance: speakers in turn, systems cycling within each speaker, seeded lengths."""
    rng = np.random.default_rng([cfg.seed, 0])
    seconds = rng.uniform(cfg.min_seconds, cfg.max_seconds, size=cfg.clips_per_class)
    plan = []
    for u in range(cfg.clips_per_class):
        speaker, index = u % cfg.speakers, u // cfg.speakers
        plan.append(Utterance(speaker, index, int(round(seconds[u] * cfg.sample_rate)),
                              SYSTEMS[(index + speaker) % len(SYSTEMS)]))
    return plan


def utterance_clips(utt: Utterance, speaker: Speaker) -> tuple[DemoClip, DemoClip]:
    """Return the (bonafide, spoof) clips of one utterance."""
    stem = f"{speaker.name}_u{utt.index:03d}"
    return (DemoClip(stem, f"{AUDIO_DIR}/bonafide/{stem}.wav", "bonafide", "", speaker.name),
            DemoClip(f"{stem}_{utt.system}", f"{AUDIO_DIR}/{utt.system}/{stem}_{utt.system}.wav",
                     "spoof", utt.system, speaker.name))


def corpus_clips(cfg: DemoConfig) -> list[DemoClip]:
    """Return every clip of the corpus in manifest order (bonafide and its spoof, utterance by utterance)."""
    speakers = [make_speaker(cfg.seed, s) for s in range(cfg.speakers)]
    return [c for u in plan_corpus(cfg) for c in utterance_clips(u, speakers[u.speaker])]


# ----------------------------------------------------------------------------- audio files

def normalize_loudness(wave: np.ndarray, dbfs: float, peak: float = 0.97) -> np.ndarray:
    """Return float32 `wave` scaled to `dbfs` RMS, scaled down further only if its peak would exceed `peak`."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) + 1e-12
    gain = 10 ** (dbfs / 20) / rms
    gain = min(gain, peak / (float(np.max(np.abs(wave))) + 1e-12))
    return (wave * gain).astype(np.float32)


def write_wav_atomic(path: Path, wave: np.ndarray, sr: int) -> None:
    """Write 16-bit PCM WAV to `path` atomically."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), wave, sr, subtype="PCM_16", format="WAV")


def utterance_waves(cfg: DemoConfig, utt: Utterance) -> tuple[np.ndarray, np.ndarray]:
    """Return the (bonafide, spoof) float32 waves of one utterance, loudness-normalized; pure function
    of (cfg, utt), so the bytes do not depend on which process makes them."""
    speaker = make_speaker(cfg.seed, utt.speaker)
    bona = synthesize_bonafide(speaker, np.random.default_rng([cfg.seed, 2, utt.speaker, utt.index]),
                               utt.n_samples, cfg.sample_rate)
    rng = np.random.default_rng([cfg.seed, 3, utt.speaker, utt.index])
    spoof = output_stage(SPOOFERS[utt.system](bona, rng, cfg.sample_rate), rng, cfg.sample_rate)
    levels = np.random.default_rng([cfg.seed, 4, utt.speaker, utt.index]).uniform(
        -cfg.loudness_spread_db, cfg.loudness_spread_db, size=2) + cfg.loudness_dbfs
    return normalize_loudness(bona, levels[0]), normalize_loudness(spoof, levels[1])


def _one_math_thread():
    """Return a context manager holding numpy's BLAS to one thread (no oversubscription, same bytes
    for any number of workers); a no-op where threadpoolctl (a scikit-learn dependency) is missing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _init_worker(parent_pid: int) -> None:
    """Pool initializer: end with the parent (spec2img.workers), leave Ctrl-C to it, one math thread."""
    end_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _one_math_thread().__enter__()


def _make_utterances(jobs: list[tuple], out=None) -> list[int]:
    """Worker entry point: _make_utterance of each job."""
    return [_make_utterance(job) for job in jobs]


def _worker_died(job: tuple, error: Exception) -> int:
    """Stop the run when a worker dies twice on the same utterance (the OOM killer, a kill): a clear error."""
    raise DemoError(f"a worker process died writing {job[3][0]} ({error}): the clips written are kept; free memory "
                    f"or use --workers 1, then run the same command again to finish")


def _make_utterance(job: tuple[DemoConfig, Utterance, str, list[str]]) -> int:
    """Synthesize one utterance and write its missing files (given relative to `folder`); return how many."""
    cfg, utt, folder, missing = job
    bona, spoof = utterance_waves(cfg, utt)
    for rel in missing:
        wave = spoof if "/bonafide/" not in rel else bona
        write_wav_atomic(Path(folder) / rel, wave, cfg.sample_rate)
    return len(missing)


# ----------------------------------------------------------------------------- the corpus folder

def manifest_text(clips: list[DemoClip]) -> str:
    """Return manifest.csv: file,label,system,speaker, one row per clip, paths relative to the folder."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "label", "system", "speaker"])
    for c in clips:
        writer.writerow([c.file, c.label, c.system, c.speaker])
    return buf.getvalue()


def readme_text(cfg: DemoConfig, clips: list[DemoClip]) -> str:
    """Return README.txt of a corpus folder: that it is synthetic, how it was made, what is where."""
    per_system = {s: sum(c.system == s for c in clips) for s in SYSTEMS}
    n_bona = sum(c.label == "bonafide" for c in clips)
    return f"""SYNTHETIC DEMO CORPUS - not real speech, not real deepfakes.

Made by
    spec2img-demo <this folder> --clips-per-class {cfg.clips_per_class} --speakers {cfg.speakers} --seed {cfg.seed}
(generator version {cfg.version}; settings in {SETTINGS_FILE}). Nothing here was recorded: every sample
was computed from the seed, so the same command gives the same bytes. Use it to try the pipeline
end to end; results on it say nothing about detecting real spoofed speech.

{len(clips)} clips, 16-bit PCM WAV, mono, {cfg.sample_rate} Hz, {cfg.min_seconds:g}-{cfg.max_seconds:g} s each, RMS normalized
to {cfg.loudness_dbfs:g} dBFS +/- {cfg.loudness_spread_db:g} dB; a spoof is exactly as long as its source, so neither
loudness nor duration gives it away.

bonafide ({n_bona} clips, audio/bonafide/<speaker>_u<NNN>.wav), {cfg.speakers} synthetic speakers
(F.. higher-pitched, M.. lower-pitched, each with its own pitch, vocal-tract length, breathiness,
jitter, shimmer and speaking rate): a source-filter model of an utterance. Rosenberg glottal pulses
follow a pitch contour (declination, accents on stressed syllables, slow drift, sometimes a final
rise) with period jitter and amplitude shimmer, plus pulsed aspiration noise; a cascade of five
resonators whose formants glide between vowel targets (Peterson & Barney) and nasal murmurs;
fricative noise (s, sh, f), stop closures and bursts; pauses between words; sometimes a small room
(reverberation), always a faint room tone, a microphone high-pass and often a 6-7.8 kHz low-pass.

spoof ({len(clips) - n_bona} clips, audio/<system>/<speaker>_u<NNN>_<system>.wav): each bonafide utterance
resynthesized by one vocoder-style system (cycled within each speaker):
  griffinlim  ({per_system['griffinlim']}) 80-band magnitude mel spectrogram, smoothed in time, pseudo-inverted and
              sharpened (power 1-1.3), phase rebuilt by 8-24 Griffin-Lim iterations (Tacotron-era TTS).
  lpc         ({per_system['lpc']}) LPC-10-style source-filter resynthesis: order-16 all-pole filter (Burg) per 10 ms
              frame, impulse train at the estimated pitch or white noise; no jitter or shimmer.
  codec       ({per_system['codec']}) low-bit-rate transform-codec round trip: MDCT, band limit 4.5-7.5 kHz, coarse
              per-band quantization that leaves spectral holes.
  sinusoidal  ({per_system['sinusoidal']}) harmonic-plus-noise vocoder: harmonics of the smoothed pitch track with
              LPC-envelope amplitudes and fixed random phases, LPC-shaped noise elsewhere.
Every spoof then passes the same kind of 50-120 Hz high-pass as the bonafide microphone.

manifest.csv: file,label,system,speaker (file relative to this folder; system empty for bonafide).
It has no split column on purpose: spec2img splits by speaker, so an utterance and its spoofed
version never land in different splits. Convert with
    spec2img <this folder> --out images --dataset auto
"""


def _folder_state(folder: Path, cfg: DemoConfig, overwrite: bool, log) -> None:
    """Check that `folder` is empty or holds a synthetic corpus of the same settings; with `overwrite`,
    remove an older synthetic corpus. Raises DemoError saying what to do otherwise."""
    if folder.exists() and not folder.is_dir():
        raise DemoError(f"{folder} is a file, not a folder: choose a new or empty folder for the synthetic corpus")
    settings_path = folder / SETTINGS_FILE
    if settings_path.is_file():
        try:
            old = json.loads(settings_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old == asdict(cfg):
            return
        if not overwrite:
            raise DemoError(f"{folder} holds a synthetic demo corpus made with other settings ({old}); "
                            f"pass --overwrite to replace it, or choose another folder")
        log(f"replacing the synthetic demo corpus in {folder} (other settings: {old})")
        shutil.rmtree(folder / AUDIO_DIR, ignore_errors=True)
        for name in (MANIFEST, README_FILE, SETTINGS_FILE):
            (folder / name).unlink(missing_ok=True)
        return
    if folder.is_dir() and any(folder.iterdir()):
        raise DemoError(f"{folder} is not empty and holds no synthetic demo corpus ({SETTINGS_FILE} missing): "
                        f"choose an empty or new folder for the synthetic demo corpus")


def _is_complete(path: Path, n_samples: int) -> bool:
    """Return True when `path` is a readable WAV of exactly `n_samples` frames."""
    try:
        return path.is_file() and sf.info(str(path)).frames == n_samples
    except Exception:
        return False


def generate_corpus(folder: Path, cfg: DemoConfig = DemoConfig(), workers: int = 0,
                    overwrite: bool = False, log=print) -> dict:
    """Write the synthetic corpus into `folder` (completing a partial one; a no-op when complete) and
    return a summary {"clips", "written", "seconds", "manifest"}."""
    cfg.validate()
    folder = Path(folder)
    _folder_state(folder, cfg, overwrite, log)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(error, folder) from None
    remove_stale_parts(folder / AUDIO_DIR, recursive=True)
    plan = plan_corpus(cfg)
    clips = corpus_clips(cfg)                         # (bonafide, spoof) of plan[0], then of plan[1], ...
    manifest = folder / MANIFEST
    jobs = []
    for utt, pair in zip(plan, zip(clips[::2], clips[1::2])):
        missing = [c.file for c in pair if not _is_complete(folder / c.file, utt.n_samples)]
        if missing:
            jobs.append((cfg, utt, str(folder), missing))
    summary = {"clips": len(clips), "written": 0, "seconds": 0.0, "manifest": str(manifest)}
    text = manifest_text(clips)
    if not jobs and manifest.is_file() and manifest.read_text() == text:
        log(f"synthetic demo corpus in {folder} is already complete ({len(clips)} clips, seed {cfg.seed}): "
            f"nothing to do")
        return summary

    write_atomic(folder / SETTINGS_FILE, json.dumps(asdict(cfg), indent=2) + "\n")
    write_atomic(folder / README_FILE, readme_text(cfg, clips))
    manifest.unlink(missing_ok=True)                 # written last: its presence means "complete"
    n_workers = min(len(jobs), workers if workers > 0 else (os.cpu_count() or 1))
    if not jobs:
        log(f"synthetic demo corpus in {folder}: every clip present, rewriting {MANIFEST}")
    else:
        log(f"synthesizing {sum(len(j[3]) for j in jobs)} of {len(clips)} synthetic clips "
            f"({len(jobs)} utterances) into {folder} with {max(n_workers, 1)} worker(s)")
    start = time.perf_counter()
    if jobs:
        warm_up()                                     # once here, inherited by forked workers
    if n_workers <= 1:
        with _one_math_thread():
            written = sum(progress(map(_make_utterance, jobs), len(jobs), desc="synthesizing", unit="utterance"))
    else:
        with OrderedPool(n_workers, pool_context(), _init_worker, (os.getpid(),)) as pool:
            counts = map_in_order(pool, _make_utterances, jobs, 2, 4 * n_workers, _worker_died)
            written = sum(progress(counts, len(jobs), desc="synthesizing", unit="utterance"))
    write_atomic(manifest, text)
    summary.update(written=written, seconds=time.perf_counter() - start)
    log(f"synthetic demo corpus ready: {len(clips)} clips ({cfg.clips_per_class} bonafide, "
        f"{cfg.clips_per_class} spoof from {', '.join(SYSTEMS)}; {cfg.speakers} speakers); wrote {written} "
        f"in {summary['seconds']:.1f} s; manifest {manifest}")
    return summary


@dataclass(frozen=True)
class DemoRun:
    folder: Path                 # where to write the synthetic corpus (e.g. data/demo)
    workers: int = 0             # processes; 0 = all cores, 1 = in this process (the bytes do not depend on it)
    overwrite: bool = False      # replace a synthetic corpus made with other settings in the folder


def build_parser():
    """Return the command line: DemoRun's options and DemoConfig's settings (saved in demo.json)."""
    return build_cli("spec2img-demo", "Write the seeded SYNTHETIC demo corpus (speech-like bonafide clips and "
                     "vocoder-style spoofs) with manifest.csv.", [DemoRun, ("corpus settings (saved in demo.json)",
                                                                            DemoConfig)])


def main(argv: list[str] | None = None) -> int:
    """Command line: generate the synthetic corpus; return the exit status."""
    run, cfg = parse_settings(build_parser(), argv, DemoRun, DemoConfig)
    cfg = replace(cfg, speakers=min(cfg.speakers, cfg.clips_per_class))
    try:
        if run.workers < 0:
            raise DemoError(f"--workers {run.workers} must be 0 (all cores) or more")
        generate_corpus(run.folder, cfg, workers=run.workers, overwrite=run.overwrite)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OutputWriteError as e:
        print(f"error: {e}\n  {e.advice}, then run the same command again: the clips written are kept and "
              f"only the rest are made", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted: the clips written are kept; run the same command again to finish", file=sys.stderr)
        return 130
    return 0
