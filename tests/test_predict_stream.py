"""classify.predict at scale: the parallel front end (same rows as one worker, bad files keep their rows), rows
handed out in input order as they finish, an interrupted run that keeps its rows and resumes, progress within a
long file, and a row for an input holding no audio."""
import csv
import faulthandler
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_predict import REPO, SPEC, SR, bonafide_wave, spoof_wave, tiny_run, write_wave  # noqa: F401 (fixture)

from classify import predict, rowstream, windows


def mixed_inputs(folder: Path) -> list[Path]:
    """Good clips of several lengths, rates and formats, a long file scored in pieces, and bad files."""
    files = []
    for i in range(6):
        make = bonafide_wave if i % 2 else spoof_wave
        sr = (SR, 22050, 44100)[i % 3]
        files.append(write_wave(folder / f"clip{i}.{'flac' if i % 3 == 1 else 'wav'}", make(0.6 + 0.5 * i, i, sr), sr))
    files.insert(2, write_wave(folder / "long.wav", np.concatenate([bonafide_wave(5.0, 21), spoof_wave(2.3, 21)])))
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.flac").write_text("not audio")
    files.insert(4, folder / "empty.wav")
    files.insert(5, write_wave(folder / "silent.wav", np.zeros(SR, np.float32)))
    files += [folder / "text.flac", folder / "missing.wav"]
    return files


@pytest.fixture
def pieces_of_long_files(monkeypatch):
    """Files over 2 s are scored in pieces of 3 windows (as files over 10 minutes are)."""
    monkeypatch.setattr(windows, "WHOLE_FILE_SECONDS", 2.0)
    monkeypatch.setattr(windows, "CHUNK_SECONDS", 1.5)


def test_parallel_front_end_gives_the_rows_of_one_worker_bad_files_included(tiny_run, tmp_path, pieces_of_long_files):
    files = mixed_inputs(tmp_path)
    predictor = predict.load_predictor(tiny_run, "cpu", log=lambda m: None)
    one = predict.score_files(files, predictor, bs=5, progress=False, workers=1)
    two = predict.score_files(files, predictor, bs=5, progress=False, workers=2)
    assert [r.path for r in two] == [str(p) for p in files]
    assert two == one                                          # every number and status, exactly
    by_name = {Path(r.path).name: r for r in two}
    assert by_name["long.wav"].windows == 14 and by_name["long.wav"].max_spoof_start >= 4.5   # in the spoofed tail
    assert by_name["clip0.wav"].status == "ok" and by_name["clip1.flac"].label == "bonafide"
    assert by_name["empty.wav"].status == "error: empty file (0 bytes)"
    assert by_name["missing.wav"].status == "error: file not found"
    assert by_name["silent.wav"].status.startswith("error: silent")
    assert by_name["text.flac"].status.startswith("error: ") and by_name["text.flac"].spoof_prob is None


def test_a_file_its_worker_dies_on_gets_an_error_row_and_the_others_their_scores(tiny_run, tmp_path, monkeypatch):
    """A decoder that crashes the process (a segfault in a C library) costs that file only."""
    files = [write_wave(tmp_path / f"c{i}.wav", (bonafide_wave, spoof_wave)[i % 2](1.0 + 0.1 * i, i))
             for i in range(34)]
    poison = files[5]                                               # 2 files a task: its task-mate is rendered again
    parent, render = os.getpid(), windows.render_piece

    def crashing(index, path, *args):
        if Path(path) == poison and os.getpid() != parent:
            faulthandler.disable()                                  # pytest's: no stack dump in the test output
            os.kill(os.getpid(), signal.SIGSEGV)
        return render(index, path, *args)
    monkeypatch.setattr(windows, "render_piece", crashing)          # forked workers inherit it
    predictor = predict.load_predictor(tiny_run, "cpu", log=lambda m: None)
    rows = predict.score_files(files, predictor, bs=3, progress=False, workers=2)
    expected = predict.score_files(files, predictor, bs=3, progress=False, workers=1)   # here: no crash
    assert rows[5].status == "error: the process rendering this file died (killed by SIGSEGV)"
    assert rows[5].spoof_prob is None and expected[5].status == "ok"
    others = [(r, e) for k, (r, e) in enumerate(zip(rows, expected)) if k != 5]
    assert all((r.path, r.status, r.label, r.windows) == (e.path, e.status, e.label, e.windows) for r, e in others)
    # the same scores, up to float rounding: the files after it are batched differently
    assert [r.spoof_prob for r, _ in others] == pytest.approx([e.spoof_prob for _, e in others], rel=1e-4)


def test_spawned_workers_give_the_pieces_of_one_worker(tmp_path, monkeypatch):
    """Where workers are spawned (macOS, Windows) there is no shared memory: images come back by pipe."""
    from spec2img import convert
    monkeypatch.setattr(convert, "pool_context", lambda *torch_free: multiprocessing.get_context("spawn"))
    files = list(enumerate(mixed_inputs(tmp_path)))
    spawned = list(windows.iter_pieces(files, SPEC, 0.5, workers=2))
    here = list(windows.iter_pieces(files, SPEC, 0.5, workers=1))
    assert [(p.index, p.piece, p.error) for p in spawned] == [(p.index, p.piece, p.error) for p in here]
    assert all(np.array_equal(a.images, b.images) for a, b in zip(spawned, here) if b.images is not None)


def test_pieces_come_back_in_input_order_with_few_tasks_in_flight(tmp_path, pieces_of_long_files):
    files = list(enumerate(mixed_inputs(tmp_path)))
    order = [(p.index, p.piece, p.pieces) for p in windows.iter_pieces(files, SPEC, 0.5, workers=2, in_flight=1)]
    assert order == [(p.index, p.piece, p.pieces) for p in windows.iter_pieces(files, SPEC, 0.5, workers=1)]
    assert [i for i, _, _ in order] == sorted(i for i, _, _ in order)
    assert [(k, n) for i, k, n in order if i == 2] == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5)]   # long.wav


def test_rows_are_handed_out_in_input_order_while_later_files_are_still_rendered(tiny_run, tmp_path, monkeypatch):
    files = [write_wave(tmp_path / f"c{i:02d}.wav", (bonafide_wave, spoof_wave)[i % 2](1.0, i)) for i in range(12)]
    rendered = []

    def counting(*args, **kwargs):
        for piece in windows.iter_pieces(*args, **kwargs):
            rendered.append(piece.index)
            yield piece
    monkeypatch.setattr(predict, "iter_pieces", counting)
    seen = []
    predictor = predict.load_predictor(tiny_run, "cpu", log=lambda m: None)
    rows = predict.score_files(files, predictor, bs=2, progress=False, workers=2,
                               on_row=lambda row: seen.append((row.path, len(rendered))))
    assert [path for path, _ in seen] == [r.path for r in rows] == [str(p) for p in files]
    assert seen[0][1] <= 2 < len(files)               # the first row left after the first batch, not at the end


def test_progress_moves_within_a_long_file_piece_by_piece(tiny_run, tmp_path, monkeypatch, pieces_of_long_files):
    long = write_wave(tmp_path / "long.wav", bonafide_wave(7.3, 3))
    updates, postfixes = [], []

    class Bar:
        def __init__(self, **kwargs):
            self.total = kwargs["total"]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            updates.append(n)

        def set_postfix_str(self, text, refresh=True):
            postfixes.append(text)
    monkeypatch.setattr(predict, "progress_bar", lambda **kwargs: Bar(**kwargs))
    predictor = predict.load_predictor(tiny_run, "cpu", log=lambda m: None)
    predict.score_files([long], predictor, bs=2, workers=1)
    assert updates == pytest.approx([0.2] * 5) and sum(updates) == pytest.approx(1.0)   # 14 windows in 5 pieces
    assert postfixes[-1] == "1/1 files, 14 windows" and any("0/1 files" in p and "windows" in p for p in postfixes[1:])


def test_an_input_holding_no_audio_gets_a_row_in_its_place(tiny_run, tmp_path, capsys):
    clip = write_wave(tmp_path / "clip.wav", bonafide_wave(1.0, 5))
    empty = tmp_path / "no_audio"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing to score")
    out = tmp_path / "scores.csv"
    code = predict.main(["--run", str(tiny_run), str(empty), str(clip), str(tmp_path / "gone"), "--out", str(out),
                         "--no-progress"])
    rows = list(csv.DictReader(out.open()))
    assert code == 1
    assert [Path(r["path"]).name for r in rows] == ["no_audio", "clip.wav", "gone"]
    assert rows[0]["status"].startswith("error: no audio files") and rows[1]["status"] == "ok"
    assert rows[2]["status"] == "error: file not found"
    assert "no_audio" in capsys.readouterr().out                          # the table shows it too


def _interrupt_after(monkeypatch, n: int):
    """Make the n-th finished row raise KeyboardInterrupt right after it is written (Ctrl-C there)."""
    write = rowstream.RowStream.write
    count = [0]

    def write_then_stop(self, row):
        write(self, row)
        count[0] += 1
        if count[0] == n:
            raise KeyboardInterrupt
    monkeypatch.setattr(rowstream.RowStream, "write", write_then_stop)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_an_interrupted_run_keeps_its_rows_and_the_same_command_resumes(tiny_run, tmp_path, capsys, monkeypatch,
                                                                         suffix):
    files = [write_wave(tmp_path / f"c{i}.wav", (bonafide_wave, spoof_wave)[i % 2](1.0, 40 + i)) for i in range(6)]
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio yet")
    files.insert(1, bad)
    out = tmp_path / f"scores{suffix}"
    args = ["--run", str(tiny_run), *map(str, files), "--out", str(out), "--bs", "1", "--no-progress"]
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        assert predict.main(args) == 130
    err = capsys.readouterr().err
    parts = list(tmp_path.glob(f"scores{suffix}.*.part"))
    assert len(parts) == 1 and str(parts[0]) in err and "resumes" in err and not out.exists()
    kept = rowstream.read_part(parts[0], predict.PredictionRow, suffix[1:])
    assert [r.path for r in kept] == [str(p) for p in files[:3]]          # input order, each one finished
    assert kept[1].status.startswith("error:") and kept[0].status == kept[2].status == "ok"
    write_wave(bad, bonafide_wave(1.0, 99))                              # the bad file is mended meanwhile

    assert predict.main(args) == 0
    err = capsys.readouterr().err
    assert f"2 already scored in {parts[0]}" in err                    # the ok rows are kept, the error retried
    assert not parts[0].exists()
    resumed = out.read_text()
    assert predict.main(args) == 0                                       # from scratch: the same file
    assert out.read_text() == resumed
    rows = list(csv.DictReader(resumed.splitlines())) if suffix == ".csv" else json.loads(resumed)["files"]
    assert [r["path"] for r in rows] == [str(p) for p in files] and all(r["status"] == "ok" for r in rows)


def test_a_part_made_with_other_settings_is_left_alone(tiny_run, tmp_path, capsys, monkeypatch):
    files = [write_wave(tmp_path / f"c{i}.wav", bonafide_wave(1.0, 60 + i)) for i in range(3)]
    out = tmp_path / "scores.csv"
    args = ["--run", str(tiny_run), *map(str, files), "--out", str(out), "--bs", "1", "--no-progress"]
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        assert predict.main(args) == 130
    part, = tmp_path.glob("scores.csv.*.part")
    before = part.read_bytes()
    capsys.readouterr()
    assert predict.main(args + ["--prior", "0.1"]) == 0
    err = capsys.readouterr().err
    assert "already scored" not in err and f"{part} holds the rows of an interrupted run with other settings" in err
    assert part.read_bytes() == before and len(list(csv.DictReader(out.open()))) == 3


def test_a_part_another_run_is_writing_is_refused(tiny_run, tmp_path, capsys):
    clip = write_wave(tmp_path / "c.wav", bonafide_wave(1.0, 70))
    out = tmp_path / "scores.csv"
    predictor = predict.load_predictor(tiny_run, "cpu", log=lambda m: None)
    args = predict.parse_args(["--run", str(tiny_run), str(clip), "--out", str(out)])
    holder, _ = predict._row_stream(predictor, args)
    holder.open(predict.PredictionRow)
    try:
        code = predict.main(["--run", str(tiny_run), str(clip), "--out", str(out), "--no-progress"])
    finally:
        holder.close()
    assert code == 2 and "being written by another" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_kill_9_keeps_the_finished_rows_readable_and_a_rerun_completes_the_file(tiny_run, tmp_path):
    files = [write_wave(tmp_path / "audio" / f"c{i:02d}.wav", (bonafide_wave, spoof_wave)[i % 2](1.0, i))
             for i in range(24)]
    out = tmp_path / "scores.csv"
    args = ["--run", str(tiny_run), str(tmp_path / "audio"), "--out", str(out), "--bs", "1", "--no-progress"]
    slow_rows = ("import sys, time; from classify import predict, rowstream; w = rowstream.RowStream.write; "
                 "rowstream.RowStream.write = lambda self, row: (w(self, row), time.sleep(0.3)); "
                 "sys.exit(predict.main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", slow_rows, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(tmp_path.glob("scores.csv.*.part"))
        if parts and len(parts[0].read_text().splitlines()) >= 4:           # header + 3 rows
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    part, = tmp_path.glob("scores.csv.*.part")
    kept = list(csv.DictReader(part.open()))
    assert 3 <= len(kept) < len(files) and all(r["status"] == "ok" for r in kept)
    assert [r["path"] for r in kept] == [str(p) for p in files[:len(kept)]]
    done = subprocess.run([sys.executable, "-m", "classify.predict", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(kept)} already scored" in done.stderr and not part.exists()
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == [str(p) for p in files]
    assert rows[:len(kept)] == kept                                      # the kept rows, unchanged


def test_one_long_file_is_spread_over_the_workers_and_one_short_file_starts_none(tmp_path, monkeypatch,
                                                                                  pieces_of_long_files):
    from spec2img import convert
    started = []
    real = convert.worker_pool

    def recording(workers, *args, **kwargs):
        started.append(workers)
        return real(workers, *args, **kwargs)
    monkeypatch.setattr(convert, "worker_pool", recording)
    long = write_wave(tmp_path / "long.wav", bonafide_wave(7.3, 3))
    short = write_wave(tmp_path / "short.wav", bonafide_wave(1.0, 4))
    pieces = list(windows.iter_pieces([(0, long)], SPEC, 0.5, workers=2))
    assert started == [2] and [p.piece for p in pieces] == [0, 1, 2, 3, 4]
    list(windows.iter_pieces([(0, short)], SPEC, 0.5, workers=2))
    assert started == [2]                                        # a single short file: rendered in this process


def test_with_explain_each_row_is_written_with_its_picture(tiny_run, tmp_path, capsys, monkeypatch):
    files = [write_wave(tmp_path / f"c{i}.wav", (bonafide_wave, spoof_wave)[i % 2](1.5, 80 + i)) for i in range(4)]
    out, pictures = tmp_path / "scores.csv", tmp_path / "pictures"
    args = ["--run", str(tiny_run), *map(str, files), "--out", str(out), "--explain", str(pictures), "--bs", "1",
            "--no-progress"]
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        assert predict.main(args) == 130
    part, = tmp_path.glob("scores.csv.*.part")
    kept = list(csv.DictReader(part.open()))
    assert len(kept) == 2 and all(Path(r["explanation"]).is_file() for r in kept)   # drawn before written
    capsys.readouterr()
    assert predict.main(args) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["explanation"] for r in rows[:2]] == [r["explanation"] for r in kept]
    assert all(Path(r["explanation"]).is_file() for r in rows) and len(list(pictures.glob("*.png"))) == 4
