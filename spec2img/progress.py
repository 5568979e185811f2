"""The one progress bar of conversion, the demo corpus, evaluation and prediction (training keeps fastai's).

tqdm on stderr, so that stdout stays clean for results (predict prints CSV or JSON there): redrawn in place
on a terminal; on a log file or a pipe, one line every 10 seconds and one at the end, so logs stay readable.
"""
from __future__ import annotations

import sys
from typing import Iterable


class _Lines:
    """A stream for tqdm off a terminal: each redraw ('\\r' + bar) becomes one line of its own."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, **kwargs):
    """Return a tqdm progress bar over `iterable` (or a manual one, `.update(n)`, when it is None)."""
    from tqdm import tqdm
    tty = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled,
                file=sys.stderr if tty else _Lines(sys.stderr), dynamic_ncols=tty, ncols=None if tty else 100,
                mininterval=0.2 if tty else 10.0, smoothing=0.1, **kwargs)
