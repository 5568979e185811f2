"""`pip install .` into a fresh virtual environment gives every stage's console command, with --help and --version.

The fresh environment sees the already installed dependencies through a .pth file (so no network and no torch
download is needed) but holds none of the project: the commands must come from the installed package, and
--version from its metadata.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMMANDS = sorted(PYPROJECT["project"]["scripts"])


def test_every_stage_has_a_console_command_pointing_at_a_main_function():
    import importlib
    assert {"spec2img", "spec2img-demo", "spec2img-audit", "classify-train", "classify-evaluate",
            "classify-compare", "classify-predict"} <= set(COMMANDS)
    for name, target in PYPROJECT["project"]["scripts"].items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_requirements_lock_pins_every_dependency_exactly_within_the_ranges():
    from packaging.requirements import Requirement
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not an exact pin"
            pins[name.lower().replace("_", "-")] = version
    project = PYPROJECT["project"]
    for text in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is missing from requirements.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name], str(req.specifier))
        assert "==" not in str(req.specifier), f"pyproject.toml pins {name}: use a compatible range"


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_gives_each_command_with_help_and_version(tmp_path):
    source = tmp_path / "clone"                  # a copy, so that building leaves nothing in the repository
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("spec2img", "classify"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies (and pip, setuptools) already installed for the tests, seen read-only from the new venv
    (Path(purelib) / "installed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_INDEX"] = "1"                    # nothing may come from the network
    done = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-build-isolation", str(source)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    version = PYPROJECT["project"]["version"]

    def run(command: str, flag: str) -> tuple[str, str, subprocess.CompletedProcess]:
        return command, flag, subprocess.run([venv / "bin" / command, flag], capture_output=True, text=True,
                                             timeout=300, env=env, cwd=tmp_path)

    jobs = [(c, f) for c in COMMANDS for f in ("--help", "--version")]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda job: run(*job), jobs))
    for command, flag, proc in results:
        assert proc.returncode == 0, (command, flag, proc.stderr[-2000:])
        if flag == "--version":
            assert proc.stdout.strip() == f"{command} {version}", (command, proc.stdout)
        else:
            assert proc.stdout.startswith(f"usage: {command} ") and "--version" in proc.stdout, command
    imported = subprocess.run([python, "-c", "import spec2img, classify; print(spec2img.__file__)"],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(venv) in imported.stdout, imported      # the installed copy, not the repository
