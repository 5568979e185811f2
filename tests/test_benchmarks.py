"""The CPU benchmarks run from a fresh clone at a tiny size and write every figure the speed targets are read
from (no figure is asserted: speed is measured, never tested)."""
import json
import sys

import pytest


def run_benchmark(module, tmp_path, monkeypatch, *flags) -> dict:
    """Run benchmarks.<module>.main() with `flags`, its output folder in tmp_path; return the JSON it wrote."""
    bench = __import__(f"benchmarks.{module}", fromlist=["main"])
    monkeypatch.setattr(bench, "OUT", tmp_path)
    monkeypatch.setattr(sys, "argv", [module, *flags])
    bench.main()
    return json.loads((tmp_path / f"{module}.json").read_text())


@pytest.mark.slow
def test_bench_predict_writes_the_front_end_scaling_and_the_end_to_end_ratio(tmp_path, monkeypatch):
    report = run_benchmark("predict_throughput", tmp_path, monkeypatch, "--clips", "8", "--frontend-clips", "12",
                           "--unique", "4", "--rounds", "1", "--arch", "simple_cnn", "--bs", "4", "--workers", "2")
    for key in ("frontend_scaling", "end_to_end_vs_bound", "machine_scaling", "frontend_vs_independent",
                "pool_start_s"):
        assert report[key] > 0, key
    assert {"front end, 1 worker", "front end, 2 workers", "model/cpu", "predict/cpu end to end"} <= set(
        report["clips_per_s"])


@pytest.mark.slow
def test_bench_train_writes_the_out_of_core_ratio_and_the_loaders_memory(tmp_path, monkeypatch):
    report = run_benchmark("train_throughput", tmp_path, monkeypatch, "--arch", "simple_cnn", "--height", "32",
                           "--width", "100", "--bs", "8", "--images", "32", "--epochs", "1", "--steps", "2",
                           "--device", "cpu", "--memory-sizes", "40", "80")
    arch = report["archs"]["simple_cnn"]
    assert report["out_of_core_ratio"] == arch["out_of_core_ratio"] > 0
    assert arch["out-of-core"]["loader"] == "cache" and arch["project"]["loader"] == "memory"
    memory = report["loader_memory"]
    assert [x["loader"] for x in memory["out-of-core"]] == ["cache", "cache"]
    assert [x["train_images"] for x in memory["memory"]] == [40, 80]


@pytest.mark.slow
def test_bench_convert_writes_the_scaling_and_the_machines_own(tmp_path, monkeypatch):
    report = run_benchmark("convert_throughput", tmp_path, monkeypatch, "--clips", "8", "--reference-clips", "2",
                           "--memory-factor", "2", "--rounds", "1")
    for key in ("scaling_efficiency", "machine_scaling", "pool_vs_independent", "cpu_efficiency"):
        assert report[key] > 0, key
    assert report["independent"]["clips"] == 8
