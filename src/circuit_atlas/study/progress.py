"""Progress of a study run: overall units with an ETA, and the tasks of the unit in flight.

Only the runner uses it (the library itself never prints). On a terminal, progress is drawn as
``tqdm`` bars on stderr; anywhere else (a pipe, a log file: :func:`circuit_atlas.console.
draws_bars`) it is plain lines: one when a unit starts, one when it finishes (with the count
and the ETA), and at most one per ``interval`` seconds for the tasks in between.
"""

from __future__ import annotations

import time
from typing import Any

from circuit_atlas.console import PlainLines, draws_bars

__all__ = ["ProgressBars"]


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ProgressBars:
    """An overall bar over units (ETA from the units finished in this run) and a per-unit bar.

    Args:
        total: Units in the plan.
        initial: Units already done before the run (shown as done, excluded from the ETA rate).
        enabled: Show progress; when False every method is a no-op.
        unit_bars: Also show the tasks of the unit in flight (only when one unit runs at a
            time and its tasks are reported, i.e. the local executor).
        bars: tqdm bars (True) or plain lines (False); default: bars only when stderr is a
            terminal (:func:`circuit_atlas.console.draws_bars`).
        interval: Plain lines only: least seconds between two task lines.
    """

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True,
                 unit_bars: bool = True, bars: bool | None = None,
                 interval: float = 60.0) -> None:
        self.enabled = enabled
        self.unit_bars = unit_bars
        self.total = total
        self.initial = initial
        self._unit_bar: Any = None
        self._overall: Any = None
        self._lines: PlainLines | None = None
        self._done = self._failed = 0
        self._started = time.monotonic()
        self._unit_started: dict[str, float] = {}
        if not enabled:
            return
        if bars if bars is not None else draws_bars():
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self._overall = tqdm(total=total, initial=initial, desc="units", unit="unit",
                                 position=0, dynamic_ncols=True, smoothing=0.1)
        else:
            self._lines = PlainLines(interval)
            self._lines.line(f"units: {initial}/{total} done before this run, "
                             f"{total - initial} to run")

    def start(self, unit: Any) -> None:
        """A unit started: open its task bar (only one unit in flight is shown)."""
        if not self.enabled:
            return
        self._unit_started[unit.unit_id] = time.monotonic()
        if self._lines is not None:
            self._lines.line(f"unit {unit.label} ({unit.unit_id}) started")
            return
        if not self.unit_bars:
            return
        if self._unit_bar is not None:
            self._unit_bar.close()
        self._unit_bar = self._tqdm(total=len(unit.settings.tasks), desc=unit.label,
                                    unit="task", position=1, leave=False, dynamic_ncols=True)

    def on_progress(self, event: str, unit: Any, info: dict) -> None:
        """Progress callback of :func:`circuit_atlas.study.runner.compute_unit`."""
        if not (self.enabled and event == "task"):
            return
        if self._lines is not None:
            self._lines.tick(f"unit {unit.label}: {info.get('task', '')} done in "
                             f"{info.get('seconds', 0.0):.1f} s")
        elif self._unit_bar is not None:
            self._unit_bar.set_postfix_str(info.get("task", ""))
            self._unit_bar.update(1)

    def finish(self, unit: Any, *, ok: bool) -> None:
        """A unit finished (committed or failed)."""
        if not self.enabled:
            return
        self._done += 1
        self._failed += not ok
        if self._lines is not None:
            now = time.monotonic()
            took = now - self._unit_started.pop(unit.unit_id, now)
            left = self.total - self.initial - self._done
            eta = _clock((now - self._started) / self._done * left)
            failed = f", {self._failed} failed" if self._failed else ""
            self._lines.line(f"units: {self.initial + self._done}/{self.total} done{failed}; "
                             f"{unit.label} {'committed' if ok else 'FAILED'} in {took:.1f} s; "
                             f"ETA {eta}")
            return
        if self._unit_bar is not None:
            self._unit_bar.close()
            self._unit_bar = None
        self._overall.update(1)
        if not ok:
            self._overall.set_postfix_str(f"last failed: {unit.label}")

    def close(self) -> None:
        """Close every bar."""
        if self.enabled and self._lines is None:
            if self._unit_bar is not None:
                self._unit_bar.close()
            self._overall.close()
