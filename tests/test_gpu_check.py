"""benchmarks.gpu_check, the one GPU check (`make bench-gpu`), end to end at its tiny CPU size: CI has no
GPU, so this run is the proof that the script works before a GPU session spends its minutes on it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = ["demo data -> images", "train lcnn memory", "train lcnn datablock", "train lcnn staged", "train resnet18",
         "train efficientnet_b0", "evaluate lcnn (cpu)", "evaluate efficientnet_b0 (cpu)", "predict (cpu)",
         "predict export.pkl only (cpu)", "bench-train", "bench-predict"]


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_at_its_smoke_size_and_prints_one_table(tmp_path):
    bench_out = REPO / "benchmarks" / "out"
    before = {p.name: p.read_bytes() for p in bench_out.glob("*.json")} if bench_out.is_dir() else {}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--smoke", "--device", "cpu",
                           "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [s["name"] for s in report["steps"]] == STEPS
    assert all(s["status"] == "ok" for s in report["steps"]), [(s["name"], s["figure"]) for s in report["steps"]]
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["train lcnn datablock"]["details"]["loader"] == "datablock"
    assert steps["train lcnn memory"]["details"]["precision"] == "fp32"
    assert steps["predict export.pkl only (cpu)"]["details"]["max_abs_score_diff"] <= 1e-5
    assert set(steps["bench-train"]["details"]) >= {"simple_cnn", "shape"}
    assert any(k.startswith("predict/cpu") for k in steps["bench-predict"]["details"]["clips_per_s"])
    table = proc.stdout[proc.stdout.index("GPU check on"):]
    assert all(name in table for name in STEPS) and "status" in table
    # the smoke run keeps the user's own benchmark figures
    after = {p.name: p.read_bytes() for p in bench_out.glob("*.json")} if bench_out.is_dir() else {}
    assert {k: v for k, v in after.items() if k != "gpu_check.json"} == {k: v for k, v in before.items()
                                                                          if k != "gpu_check.json"}
