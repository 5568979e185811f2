"""The one command-line idiom (spec2img.cli): options generated from settings dataclasses, defaults written once."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from spec2img import cli


def _parse_pair(text: str) -> tuple[int, int]:
    a, b = text.split("/")
    if int(a) > int(b):
        raise ValueError("need A <= B")
    return int(a), int(b)


@dataclass(frozen=True)
class Paths:
    inputs: list[Path]              # files to read
    out: Path = Path("out")         # where to write


@dataclass(frozen=True)
class Settings:
    n_mels: int = 128               # mel bands = image height
    rate: float = 0.5               # a fraction that needs a long explanation, so its comment
                                    # goes on below the field
    mode: Literal["fast", "exact"] = "fast"  # how to compute
    device: str | None = None       # torch device (default: the best one)
    pretrained: bool = True         # start from ImageNet weights
    pair: tuple[int, int] = field(default=(1, 1),  # which pair, A/B
                                  metadata={"parse": _parse_pair, "metavar": "A/B"})
    version: int = field(default=3, metadata={"cli": False})  # not an option
    # a section comment at the field's own indentation is not part of any help


def _help(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {a.dest: a.help for a in parser._actions if a.dest not in ("help", "version")}


def test_fields_become_options_with_their_defaults_types_and_comments():
    parser = cli.build_parser("tool", "does things", [Paths, ("settings", Settings)])
    paths, settings = cli.parse_settings(parser, ["a.wav", "b.wav"], Paths, Settings)
    assert paths == Paths([Path("a.wav"), Path("b.wav")]) and settings == Settings()
    paths, settings = cli.parse_settings(parser, ["x", "--n-mels", "64", "--rate", "0.25", "--mode", "exact",
                                                  "--device", "cpu", "--no-pretrained", "--pair", "2/3",
                                                  "--out", "elsewhere"], Paths, Settings)
    assert settings == Settings(n_mels=64, rate=0.25, mode="exact", device="cpu", pretrained=False, pair=(2, 3))
    assert paths.out == Path("elsewhere") and isinstance(settings.n_mels, int)
    helps = _help(parser)
    assert helps["n_mels"] == "mel bands = image height (default: 128)"
    assert helps["rate"].startswith("a fraction that needs a long explanation, so its comment goes on below the "
                                    "field") and "section comment" not in helps["rate"]
    assert helps["mode"] == "how to compute (one of: fast, exact; default: fast)"
    assert helps["device"] == "torch device (default: the best one)"      # None is not shown as a default
    assert helps["pair"] == "which pair, A/B (default: 1/1)"
    assert "version" not in helps


@pytest.mark.parametrize("argv, message", [(["x", "--mode", "slow"], "invalid choice"),
                                           (["x", "--pair", "3/2"], "--pair '3/2': need A <= B"),
                                           (["x", "--n-mels", "many"], "invalid int value"),
                                           ([], "required")])
def test_bad_values_stop_with_the_option_named_and_exit_status_2(argv, message, capsys):
    parser = cli.build_parser("tool", "does things", [Paths, Settings])
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_one_flag_one_field_and_unsupported_types_are_refused_when_the_parser_is_built():
    @dataclass
    class Other:
        n_mels: int = 64            # clashes with Settings.n_mels

    @dataclass
    class Odd:
        sizes: tuple[int, int] = (1, 2)  # no parse function for a tuple

    with pytest.raises(TypeError, match="n_mels"):
        cli.build_parser("tool", "", [Settings, Other])
    with pytest.raises(TypeError, match="parse"):
        cli.build_parser("tool", "", [Odd])


def test_version_comes_from_the_package_metadata_or_pyproject(capsys):
    parser = cli.build_parser("tool", "", [Settings])
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--version"])
    assert stop.value.code == 0
    text = capsys.readouterr().out.strip()
    assert text.startswith("tool ") and cli.package_version() in text
    import tomllib
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert cli.package_version().split()[0] == pyproject["project"]["version"]


def _commands():
    from classify import compare, evaluate, predict, train
    from spec2img import __main__ as convert_cli, audit, demo
    return {"spec2img": (convert_cli.build_parser(), [convert_cli.ConvertPaths, convert_cli.ConvertOptions,
                                                      convert_cli.SpecConfig]),
            "spec2img-demo": (demo.build_parser(), [demo.DemoRun, demo.DemoConfig]),
            "spec2img-audit": (audit.build_parser(), [audit.AuditPaths]),
            "classify-train": (train.build_parser(), [train.TrainConfig]),
            "classify-evaluate": (evaluate.build_parser(), [evaluate.EvalRuns, evaluate.EvalSettings]),
            "classify-compare": (compare.build_parser(), [compare.ComparePaths, compare.CompareSettings]),
            "classify-predict": (predict.build_parser(), [predict.PredictSettings])}


@pytest.mark.parametrize("command", ["spec2img", "spec2img-demo", "spec2img-audit", "classify-train",
                                     "classify-evaluate", "classify-compare", "classify-predict"])
def test_every_command_option_has_help_and_the_dataclass_default(command):
    parser, classes = _commands()[command]
    helps = _help(parser)
    assert parser.prog == command
    for cls in classes:
        for f in cli.cli_fields(cls):
            assert helps.get(f.name), f"{cls.__name__}.{f.name} has no comment to show as help"
            if f.default is not dataclasses.MISSING:
                assert parser.get_default(f.name) == f.default, f.name


def test_list_options_take_one_or_more_values():
    @dataclass
    class Bench:
        arch: list[str] | None = None     # architectures (default: chosen by device)
        sizes: list[int] = field(default_factory=lambda: [1, 2])  # sizes to try

    parser = cli.build_parser("bench", "", [Bench])
    bench, = cli.parse_settings(parser, ["--arch", "a", "b", "--sizes", "3"], Bench)
    assert bench.arch == ["a", "b"] and bench.sizes == [3]
    assert cli.parse_settings(parser, [], Bench)[0] == Bench()
