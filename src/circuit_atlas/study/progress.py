"""Progress bars for a study run: overall units with an ETA, and the tasks of the unit in flight.

Only the runner uses them (the library itself never prints). Bars go to stderr through ``tqdm``
and are disabled when not requested.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProgressBars"]


class ProgressBars:
    """An overall bar over units (ETA from the units finished in this run) and a per-unit bar.

    Args:
        total: Units in the plan.
        initial: Units already done before the run (shown as done, excluded from the ETA rate).
        enabled: Draw the bars; when False every method is a no-op.
        unit_bars: Also draw the task bar of the unit in flight (only when one unit runs at a
            time and its tasks are reported, i.e. the local executor).
    """

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True,
                 unit_bars: bool = True) -> None:
        self.enabled = enabled
        self.unit_bars = unit_bars
        self._unit_bar: Any = None
        self._overall: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self._overall = tqdm(total=total, initial=initial, desc="units", unit="unit",
                                 position=0, dynamic_ncols=True, smoothing=0.1)

    def start(self, unit: Any) -> None:
        """A unit started: open its task bar (only one unit in flight is shown)."""
        if not (self.enabled and self.unit_bars):
            return
        if self._unit_bar is not None:
            self._unit_bar.close()
        self._unit_bar = self._tqdm(total=len(unit.settings.tasks), desc=unit.label,
                                    unit="task", position=1, leave=False, dynamic_ncols=True)

    def on_progress(self, event: str, unit: Any, info: dict) -> None:
        """Progress callback of :func:`circuit_atlas.study.runner.compute_unit`."""
        if self.enabled and event == "task" and self._unit_bar is not None:
            self._unit_bar.set_postfix_str(info.get("task", ""))
            self._unit_bar.update(1)

    def finish(self, unit: Any, *, ok: bool) -> None:
        """A unit finished (committed or failed)."""
        if not self.enabled:
            return
        if self._unit_bar is not None:
            self._unit_bar.close()
            self._unit_bar = None
        self._overall.update(1)
        if not ok:
            self._overall.set_postfix_str(f"last failed: {unit.label}")

    def close(self) -> None:
        """Close every bar."""
        if self.enabled:
            if self._unit_bar is not None:
                self._unit_bar.close()
            self._overall.close()
