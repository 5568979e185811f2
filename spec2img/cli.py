"""The one command-line idiom: every command's options are generated from its settings dataclasses.

A field becomes an option: its name the flag (`n_mels` -> `--n-mels`), its type the parser, its default the
default, and its comment (`n_mels: int = 128  # mel bands = image height`, continued on the comment-only
lines below it that are indented deeper than the field) the help text. A field without a default is a
positional argument (`list[...]`: one or more). So adding a flag is adding a field.
`bool` fields give `--name/--no-name`; `X | None` fields take an X and default to None; `list[X]` fields take
one or more; `Literal[...]` fields list their choices. Field metadata says what a type cannot:
    cli=False            keep the field off the command line (e.g. SpecConfig.version)
    parse=function       text -> value, raising ValueError with the message (e.g. "K/N" for --shard)
    metavar="K/N"        how the value is shown in --help
    choices=(...)        the allowed values, when they are not a Literal
Every command also gets `--version` (the installed distribution's version, see `package_version`).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

DISTRIBUTION = "spec2img-antispoof"   # the name in pyproject.toml, whose version every command prints


def package_version() -> str:
    """Return the version of the installed distribution, else the one in the clone's pyproject.toml."""
    from importlib import metadata
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:     # run from a clone that was not pip-installed
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            import tomllib
            return tomllib.loads(pyproject.read_text())["project"]["version"] + " (not installed)"
        except (ImportError, OSError, KeyError, ValueError):
            return "unknown (not installed)"


@lru_cache(maxsize=None)
def field_comments(cls: type) -> dict[str, str]:
    """Return {field name: its trailing comment} for the annotated fields of `cls` and its dataclass bases."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        source = textwrap.dedent(source)
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        spans = {node.target.id: (node.lineno, node.end_lineno, node.col_offset) for node in body
                 if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
        lines = source.splitlines()
        line_comments: dict[int, tuple[int, str]] = {}      # line -> (column, text) of its comment
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                line_comments.setdefault(token.start[0], (token.start[1], token.string.lstrip("#").strip()))
        for name, (first, last, indent) in spans.items():
            found = [line_comments[n] for n in range(first, last + 1) if n in line_comments]
            if not found:
                continue
            n = last + 1                         # comment-only lines indented deeper than the field go on
            while n in line_comments and indent < line_comments[n][0] and not lines[n - 1].split("#")[0].strip():
                found.append(line_comments[n])
                n += 1
            comments[name] = " ".join(text for _, text in found)
    return comments


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """Return the fields of dataclass `cls` that are command-line options or arguments."""
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("cli", True)]


def flag(name: str) -> str:
    """Return the option of a field name: `n_mels` -> `--n-mels`."""
    return "--" + name.replace("_", "-")


class _OnOff(argparse.BooleanOptionalAction):
    """`--name` / `--no-name`, with the help text as given (Python 3.10 would append the default again)."""

    def __init__(self, *args, help=None, **kwargs):
        super().__init__(*args, help=help, **kwargs)
        self.help = help


def _unwrap_optional(tp) -> tuple[Any, bool]:
    """Return (T, True) for `T | None`, else (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _shown(value, metavar: str = "") -> str:
    """Return a default as typed on the command line (a tuple joined like its metavar: 1/1, 0.7,0.15,0.15)."""
    if isinstance(value, (tuple, list)):
        return ("/" if "/" in metavar else ",").join(str(v) for v in value)
    return "none" if value is None else str(value)


def _converter(parse: Callable[[str], Any], option: str) -> Callable[[str], Any]:
    """Wrap `parse` so that its ValueError becomes argparse's message naming the option."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{option} {text!r}: {error}") from None
    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_settings(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """Add one argument per command-line field of dataclass `cls` to `parser` (or an argument group)."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for f in cli_fields(cls):
        tp, _ = _unwrap_optional(hints[f.name])
        help_text = comments.get(f.name, "").replace("%", "%%")
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if has_default else None)
        kwargs: dict[str, Any] = {}
        origin = typing.get_origin(tp)
        choices = f.metadata.get("choices")
        if origin is Literal:
            choices = typing.get_args(tp)
            tp = type(choices[0])
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        if not has_default:                               # a positional argument
            item = typing.get_args(tp)[0] if origin in (list, tuple) else tp
            if origin in (list, tuple):
                kwargs["nargs"] = "+"
            kwargs.setdefault("metavar", f.name.upper())
            parser.add_argument(f.name, type=f.metadata.get("parse", item), help=help_text, choices=choices,
                                **kwargs)
            continue
        option = flag(f.name)
        shown = "" if default in (None, "") else f" (default: {_shown(default, f.metadata.get('metavar', ''))})"
        if tp is bool and "parse" not in f.metadata:
            parser.add_argument(option, dest=f.name, action=_OnOff, default=default, help=help_text + shown)
            continue
        parse = f.metadata.get("parse")
        if parse is None and origin is list:               # list[T]: one or more values
            kwargs["nargs"] = "+"
            tp = origin = typing.get_args(tp)[0]
        if parse is None:
            if origin in (tuple, list) or tp not in (int, float, str, Path):
                raise TypeError(f"{cls.__name__}.{f.name}: type {hints[f.name]} needs metadata parse=function")
            parse = tp
        kwargs["type"] = _converter(parse, option) if "parse" in f.metadata else parse
        if choices is not None:
            kwargs["choices"] = tuple(choices)
            kwargs.setdefault("metavar", f.name.upper())
            shown = f" (one of: {', '.join(map(str, choices))}" + ("" if default is None else
                                                                    f"; default: {_shown(default)}") + ")"
        parser.add_argument(option, dest=f.name, default=default, help=help_text + shown, **kwargs)


def build_parser(prog: str, description: str, settings: Iterable[type | tuple[str | None, type]],
                 epilog: str | None = None) -> argparse.ArgumentParser:
    """Return a parser with `--version` and the options of each settings dataclass; an item may be
    (group title, class) to list that class's options under a heading of their own. Two classes of one
    command must not share a field name (TypeError)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    seen: dict[str, str] = {}
    for item in settings:
        title, cls = item if isinstance(item, tuple) else (None, item)
        for f in cli_fields(cls):
            if f.name in seen:
                raise TypeError(f"{cls.__name__}.{f.name} is also a field of {seen[f.name]}: one flag, one field")
            seen[f.name] = cls.__name__
        add_settings(parser.add_argument_group(title) if title else parser, cls)
    return parser


def settings_from(args: argparse.Namespace, cls: type):
    """Return an instance of dataclass `cls` from the parsed arguments (fields off the command line keep
    their defaults)."""
    return cls(**{f.name: getattr(args, f.name) for f in cli_fields(cls) if hasattr(args, f.name)})


def parse_settings(parser: argparse.ArgumentParser, argv: Sequence[str] | None, *classes: type) -> tuple:
    """Parse `argv` and return one instance per dataclass in `classes`, in order."""
    args = parser.parse_args(argv)
    return tuple(settings_from(args, cls) for cls in classes)
