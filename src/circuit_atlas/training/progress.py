"""Progress bars for training events (the entry points' layer: ``train``, ``demo``).

The library reports :class:`~circuit_atlas.training.TrainProgress` events through a callback;
:class:`TrainBars` turns them into tqdm bars. Nothing in the training library imports this module.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainBars"]


class TrainBars:
    """A tqdm progress bar per size for :func:`~circuit_atlas.training.train_suite` events.

    Args:
        describe: Prefix of each bar's description (e.g. ``"train"``).
        enabled: False turns every bar off (the callback still works).
    """

    def __init__(self, describe: str = "train", enabled: bool = True) -> None:
        self.describe = describe
        self.enabled = enabled
        self._bar: Any = None

    def __call__(self, event: Any) -> None:
        """Consume one :class:`~circuit_atlas.training.TrainProgress` event."""
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

    def close(self) -> None:
        """Close the current bar, if any."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
