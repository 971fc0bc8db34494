"""Progress of training events (the entry points' layer: ``train``, ``demo``).

The library reports :class:`~circuit_atlas.training.TrainProgress` events through a callback;
:class:`TrainBars` turns them into tqdm bars on a terminal and into occasional plain lines
elsewhere (:mod:`circuit_atlas.console`). Nothing in the training library imports this module.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainBars"]


class TrainBars:
    """Progress of :func:`~circuit_atlas.training.train_suite` events: a tqdm bar per size.

    When stderr is not a terminal (:func:`circuit_atlas.console.draws_bars`) it writes plain
    lines instead: one when a size starts, is checkpointed or is done, and at most one per
    ``interval`` seconds for the steps and corpus files in between.

    Args:
        describe: Prefix of each bar's description (e.g. ``"train"``).
        enabled: False turns every bar off (the callback still works).
        bars: tqdm bars (True) or plain lines (False); default: bars only on a terminal.
        interval: Plain lines only: least seconds between two step lines.
    """

    def __init__(
        self,
        describe: str = "train",
        enabled: bool = True,
        *,
        bars: bool | None = None,
        interval: float = 30.0,
    ) -> None:
        from circuit_atlas.console import PlainLines, draws_bars

        self.describe = describe
        self.enabled = enabled
        self._bar: Any = None
        draw = draws_bars() if bars is None else bars
        self._lines = PlainLines(interval) if enabled and not draw else None

    def __call__(self, event: Any) -> None:
        """Consume one :class:`~circuit_atlas.training.TrainProgress` event."""
        if self._lines is not None:
            self._line(event)
            return
        from tqdm.auto import tqdm

        if event.event == "prepare" and event.total_steps:
            if self._bar is None:
                self._bar = tqdm(
                    total=event.total_steps,
                    desc=f"{self.describe}: tokenize corpus",
                    unit="file",
                    disable=not self.enabled,
                    dynamic_ncols=True,
                )
            self._bar.update(event.step - self._bar.n)
            self._bar.set_postfix_str(event.message)
        elif event.event == "prepare":
            self.close()
            if self.enabled:
                tqdm.write(f"{self.describe}: preparing {event.message}")
        elif event.event == "start":
            self.close()
            self._bar = tqdm(
                total=event.total_steps,
                initial=event.step,
                desc=f"{self.describe} {event.size}",
                unit="step",
                disable=not self.enabled,
                dynamic_ncols=True,
            )
        elif event.event == "step" and self._bar is not None:
            self._bar.update(event.step - self._bar.n)
            self._bar.set_postfix(loss=f"{event.loss:.3f}", tok_s=f"{event.tokens_per_second:.0f}")
        elif event.event == "done":
            self.close()

    def _line(self, event: Any) -> None:
        lines, name = self._lines, f"{self.describe} {event.size}".strip()
        if lines is None:
            return
        if event.event == "prepare" and event.total_steps:
            lines.tick(f"{name}: {event.message} ({event.step}/{event.total_steps} files)")
        elif event.event == "prepare":
            lines.line(f"{name}: preparing {event.message}")
        elif event.event == "start":
            lines.line(f"{name}: starting at step {event.step}/{event.total_steps}")
        elif event.event == "step":
            lines.tick(
                f"{name}: step {event.step}/{event.total_steps}, loss {event.loss:.3f}, "
                f"{event.tokens_per_second:,.0f} tokens/s"
            )
        elif event.event == "checkpoint":
            detail = f" ({event.message})" if event.message else ""
            lines.line(f"{name}: checkpoint {event.step}/{event.total_steps}{detail}")
        elif event.event == "done":
            detail = f" ({event.message})" if event.message else ""
            lines.line(f"{name}: done at step {event.step}/{event.total_steps}{detail}")

    def close(self) -> None:
        """Close the current bar, if any."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
