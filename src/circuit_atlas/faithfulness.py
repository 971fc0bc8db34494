"""Faithfulness of a circuit: the paper's ratio and the normalised score (PAPER.md §3.4).

With m(·) the mean task metric of a run, M the full model and ∅ the empty circuit (every edge
ablated; under patching this is the corrupted run):

* ``ratio`` (the paper's): m(C) / m(M);
* ``normalized``: (m(C) − m(∅)) / (m(M) − m(∅)).

A ratio means nothing when its denominator is noise (early checkpoints, where the model has not
learnt the task). :class:`Baselines` calls a faithfulness *undefined* (None) when the
denominator is smaller than ``abs_tol`` (1e-3 metric units: logits or probabilities) or than
``n_se`` (2) standard errors of the clean mean metric (per-example std / √n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from circuit_atlas.errors import UnknownNameError

__all__ = ["FAITHFULNESS_KINDS", "Baselines", "FaithfulnessKind"]

FaithfulnessKind = Literal["ratio", "normalized"]
"""``ratio`` = m(C)/m(M) (the paper's); ``normalized`` = (m(C) − m(∅))/(m(M) − m(∅))."""

FAITHFULNESS_KINDS: tuple[str, ...] = ("ratio", "normalized")


@dataclass(frozen=True)
class Baselines:
    """The reference metrics that turn a circuit's metric into faithfulness.

    Attributes:
        clean: m(M), the full model's mean metric on the clean prompts.
        empty: m(∅), the mean metric with every edge ablated.
        clean_se: Standard error of ``clean`` (per-example std / √n); 0 disables the check.
        abs_tol: Smallest denominator, in metric units, for which a ratio is defined.
        n_se: A denominator must also exceed this many standard errors of ``clean``.
    """

    clean: float
    empty: float
    clean_se: float = 0.0
    abs_tol: float = 1e-3
    n_se: float = 2.0

    def _defined(self, denominator: float) -> bool:
        return math.isfinite(denominator) and abs(denominator) >= max(
            self.abs_tol, self.n_se * self.clean_se
        )

    @property
    def ratio_defined(self) -> bool:
        """Whether m(M) is far enough from 0 for m(C)/m(M) to mean anything."""
        return self._defined(self.clean)

    @property
    def normalized_defined(self) -> bool:
        """Whether m(M) − m(∅) is large enough for the normalised faithfulness."""
        return self._defined(self.clean - self.empty)

    def ratio(self, metric: float) -> float | None:
        """The paper's faithfulness m(C)/m(M), or None when undefined."""
        return metric / self.clean if self.ratio_defined else None

    def normalized(self, metric: float) -> float | None:
        """(m(C) − m(∅)) / (m(M) − m(∅)), or None when undefined."""
        if not self.normalized_defined:
            return None
        return (metric - self.empty) / (self.clean - self.empty)

    def faithfulness(self, metric: float, kind: FaithfulnessKind) -> float | None:
        """Faithfulness of the given kind (see :data:`FAITHFULNESS_KINDS`).

        Raises:
            UnknownNameError: For an unknown kind.
        """
        if kind not in _KINDS:
            raise UnknownNameError(
                f"unknown faithfulness {kind!r}; choose one of {', '.join(FAITHFULNESS_KINDS)}"
            )
        return _KINDS[kind](self, metric)

    def defined(self, kind: FaithfulnessKind) -> bool:
        """Whether faithfulness of this kind is defined."""
        return self.faithfulness(self.clean, kind) is not None


_KINDS = {"ratio": Baselines.ratio, "normalized": Baselines.normalized}
