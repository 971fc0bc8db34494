r"""Progress for the CLI layer: tqdm bars on a terminal, occasional plain lines anywhere else.

A tqdm bar redraws itself with carriage returns many times a second; in a log file (CI,
``nohup``, ``> run.log``) that is thousands of ``\r`` refreshes in one endless line. So when
stderr is not a terminal (and not a Jupyter kernel, where tqdm draws widgets), the progress
classes of :mod:`circuit_atlas.study.progress` and :mod:`circuit_atlas.training.cli` write
:class:`PlainLines` instead: one timestamped line per event that matters (a unit finished, a
checkpoint saved) and at most one line per ``interval`` seconds for the others. The library
itself never prints.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import TextIO

__all__ = ["PlainLines", "draws_bars"]


def draws_bars(stream: TextIO | None = None) -> bool:
    """Whether progress on ``stream`` (default stderr) should be tqdm bars, not plain lines.

    True on a terminal and in a Jupyter kernel; False for pipes and files.
    """
    stream = sys.stderr if stream is None else stream
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
    return "ipykernel" in sys.modules


class PlainLines:
    """Timestamped plain progress lines on stderr, rate-limited.

    Args:
        interval: Least number of seconds between two :meth:`tick` lines (a :meth:`line` is
            always written).
        stream: Where to write (default: ``sys.stderr`` at the time of writing).
    """

    def __init__(self, interval: float = 30.0, stream: TextIO | None = None) -> None:
        self.interval = interval
        self.stream = stream
        self._last = -float("inf")

    def line(self, text: str) -> None:
        """Write one line now (no carriage return; flushed)."""
        stream = self.stream or sys.stderr
        stream.write(f"[{datetime.now():%H:%M:%S}] {text}\n")
        stream.flush()
        self._last = time.monotonic()

    def tick(self, text: str) -> None:
        """Write ``text`` if at least ``interval`` seconds passed since the last line."""
        if time.monotonic() - self._last >= self.interval:
            self.line(text)
