"""The evaluation's outputs are published as one set: killing `classify.evaluate` at any point leaves RUN/evaluation
on the previous complete set or on the new complete set, never on a mix (classify.outputset)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from classify.outputset import new_set_folder, output_set, prune_sets, publish_set
from classify.runfolder import evaluation_dir

REPO = Path(__file__).resolve().parent.parent
SET_FILES = ("thresholds.json", "calibration.json", "metrics.json", "report.html", "scores.csv", "scores-test.csv",
             "scores-test.txt", "scores-test-2021.txt", "scores-test-asvspoof5.tsv", "scores-val.csv")

# Runs classify.evaluate with spec2img.fileio.publish (the one place that renames a finished file into place,
# the link swap included) wrapped: the process SIGKILLs itself just before or just after the K-th publish.
KILLER = """
import os, signal, sys
import spec2img.fileio as fileio
k, when, count = int(sys.argv[1]), sys.argv[2], [0]
real = fileio.publish
def publish(tmp, path):
    count[0] += 1
    if count[0] == k and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    out = real(tmp, path)
    if count[0] == k and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return out
fileio.publish = publish
from classify.evaluate import main
sys.exit(main(sys.argv[3:]))
"""


def test_a_set_is_published_only_when_its_block_succeeds(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert evaluation_dir(run) is None
    with output_set(run, "test") as folder:
        (folder / "metrics.json").write_text("{}")
        (folder / "report.html").write_text("<html></html>")
    assert evaluation_dir(run) == folder.resolve() and (run / "evaluation").is_symlink()
    with pytest.raises(RuntimeError):
        with output_set(run, "test") as failed:
            (failed / "metrics.json").write_text("half")
            raise RuntimeError("killed halfway")
    assert not failed.exists() and evaluation_dir(run) == folder.resolve()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_pruning_keeps_the_current_the_replaced_and_the_newest_set_of_each_split(tmp_path):
    run = tmp_path / "run"
    (run / "evaluations").mkdir(parents=True)
    dead = _dead_pid()
    folders = []

    def finished(k: int, split: str) -> Path:
        f = run / "evaluations" / f"{split}-20250101-00000{k}-{dead}"
        f.mkdir()
        (f / "report.html").write_text("done")
        folders.append(f)
        return f
    for k, split in enumerate(("test", "val", "test")):
        finished(k, split)
    orphan = run / "evaluations" / f"test-20250101-000009-{dead}"     # killed before its report: never complete
    orphan.mkdir()
    running = new_set_folder(run, "val")                             # a live process still writing it
    (running / "metrics.json").write_text("{}")
    os.rename(running, running.with_name(f"val-20250101-000009-{os.getppid()}"))
    running = running.with_name(f"val-20250101-000009-{os.getppid()}")
    publish_set(run, folders[2])
    publish_set(run, finished(3, "test"))
    left = {p.name for p in (run / "evaluations").iterdir()}
    assert left == {folders[1].name, folders[2].name, folders[3].name, running.name}   # orphan and oldest gone
    assert not orphan.exists()
    assert prune_sets(run, {folders[3]}) == [folders[2]]                     # next time the replaced one goes too


def _evaluate(run: Path, k: int, when: str = "before", timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", KILLER, str(k), when, str(run), "--top-k", "2", "--bootstrap", "50"],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _assert_complete(folder: Path) -> None:
    for name in SET_FILES:
        assert (folder / name).is_file(), f"{name} missing from {folder}"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["threshold"] == json.loads((folder / "thresholds.json").read_text())
    assert metrics["calibration"]["slope"] == json.loads((folder / "calibration.json").read_text())["slope"]
    assert (folder / "report.html").read_text().rstrip().endswith("</html>")


@pytest.mark.slow
def test_killing_evaluate_at_any_point_leaves_one_complete_set(tmp_path):
    from classify.evaluate import EvalSettings, evaluate_run
    from test_evaluate import build_run
    run = build_run(tmp_path)
    evaluate_run(run, EvalSettings(top_k=2, bootstrap=50), log=lambda *a: None)
    publishes = len(list(evaluation_dir(run).iterdir())) + 1     # every file of the set once, then the link swap
    previous = evaluation_dir(run)
    _assert_complete(previous)
    before = _snapshot(previous)
    outcomes = []
    for k, when in ((1, "before"), (publishes // 2, "after"), (publishes, "before"), (publishes, "after")):
        killed = _evaluate(run, k, when)
        assert killed.returncode == -signal.SIGKILL, (k, when, killed.stderr[-2000:])
        now = evaluation_dir(run)
        _assert_complete(now)
        if now == previous:
            assert _snapshot(now) == before, (k, when)           # untouched
            outcomes.append("previous")
        else:
            outcomes.append("new")
            previous, before = now, _snapshot(now)
    assert outcomes == ["previous"] * 3 + ["new"]                # only a kill after the swap shows the new set
    # a kill from outside, at whatever instant it lands
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    existing = len(list((run / "evaluations").iterdir()))
    proc = subprocess.Popen([sys.executable, "-m", "classify.evaluate", str(run), "--top-k", "2"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((run / "evaluations").iterdir())) <= existing:
        time.sleep(0.005)                          # its set folder exists: it is writing
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _assert_complete(evaluation_dir(run))
    # the next evaluation completes and clears the orphans the kills left
    evaluate_run(run, EvalSettings(top_k=2, bootstrap=50), log=lambda *a: None)
    final = evaluation_dir(run)
    _assert_complete(final)
    assert len(list((run / "evaluations").iterdir())) <= 2
    shutil.rmtree(run / "evaluations" / final.name)               # a dangling link is "not evaluated", not a crash
    assert evaluation_dir(run) is None
