"""Figures 2 and 3 of the paper: component scores of attention heads over training (§4).

Drawn from the store's ``component_heads`` table with the head choices of
:mod:`circuit_atlas.analyses.components`; same conventions as :mod:`circuit_atlas.figures`
(Agg canvas, no pyplot state, tokens seen on a log axis, models coloured by size).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from circuit_atlas.analyses import attach_tokens
from circuit_atlas.analyses.components import (
    PAPER_FIG2_FRACTION,
    SelectionRule,
    frequent_heads,
    representative_heads,
)
from circuit_atlas.figures import (
    _empty_panel,
    _legend,
    _log_tokens,
    _panel_grid,
    _positive_tokens,
    model_colors,
)

__all__ = ["LABELS", "component_heads_figure", "representative_heads_figure"]

LABELS: dict[str, str] = {
    "induction": "induction score",
    "duplicate_token": "duplicate-token score",
    "previous_token": "previous-token score",
    "successor": "successor score",
    "name_mover": "copy score (name mover)",
    "negative_name_mover": "negative copy score",
    "copy_suppression": "CSPA (copy suppression)",
    "s_inhibition": "S-inhibition (1 = confirmed)",
    "s_inhibition_effect": "path-patching effect",
}
"""Y-axis label of each component."""


def _series(heads: pd.DataFrame, tokens: pd.DataFrame, component: str, task: str | None):
    part = heads[heads["component"] == component]
    if task is not None:
        part = part[part["task"] == task]
    part = part.drop_duplicates(subset=["model", "step", "layer", "head"])
    return _positive_tokens(attach_tokens(part, tokens)).sort_values("tokens_seen")


def representative_heads_figure(
    heads: pd.DataFrame,
    tokens: pd.DataFrame,
    panels: Sequence[tuple[str, str]],
    *,
    params: pd.DataFrame | None = None,
    frac: float = PAPER_FIG2_FRACTION,
    rule: SelectionRule = "most_in_circuit",
) -> Figure:
    """Figure 2: per component, one line per model — its representative in-circuit head.

    Args:
        heads: The ``component_heads`` table.
        tokens: ``model``, ``step``, ``tokens_seen`` (:func:`circuit_atlas.analyses.step_tokens`).
        panels: ``(component, task)`` per panel, e.g. ``[("successor", "greater-than")]``.
        params: A table with ``model`` and ``params`` for the colours (default: ``heads``).
        frac: Threshold of :func:`~circuit_atlas.analyses.representative_heads`.
        rule: Its selection rule.

    Returns:
        The figure; a panel without any candidate says so.
    """
    figure, axes = _panel_grid(len(panels))
    colors = model_colors(params if params is not None else heads)
    for axis, (component, task) in zip(axes, panels, strict=False):
        chosen = representative_heads(heads, component=component, task=task, frac=frac,
                                      rule=rule)  # fmt: skip
        series = _series(heads, tokens, component, task)
        drawn = 0
        for _, pick in chosen.iterrows():
            line = series[(series["model"] == pick["model"]) & (series["layer"] == pick["layer"])
                          & (series["head"] == pick["head"])]  # fmt: skip
            if line.empty:
                continue
            axis.plot(line["tokens_seen"], line["score"], color=colors.get(pick["model"]),
                      lw=1.6, label=f"{pick['model']} {pick['node']}")  # fmt: skip
            drawn += 1
        axis.set_title(f"{component} ({task})", fontsize=10)
        if drawn:
            _log_tokens(axis)
            axis.set_ylabel(LABELS.get(component, component))
            axis.legend(fontsize=7, loc="best")
        else:
            _empty_panel(axis, "no in-circuit head\npasses the threshold")
    _legend(figure, {m: c for m, c in colors.items()})
    return figure


def component_heads_figure(
    heads: pd.DataFrame,
    tokens: pd.DataFrame,
    model: str,
    panels: Sequence[tuple[str, str]],
    *,
    n: int = 5,
) -> Figure:
    """Figure 3: for one model, the ``n`` heads most often in the circuit, one line each.

    Args:
        heads: The ``component_heads`` table.
        tokens: ``model``, ``step``, ``tokens_seen``.
        model: The model to draw.
        panels: ``(component, task)`` per panel.
        n: Heads per panel (paper: 5).

    Returns:
        The figure.
    """
    figure, axes = _panel_grid(len(panels))
    for axis, (component, task) in zip(axes, panels, strict=False):
        chosen = frequent_heads(heads, model=model, component=component, task=task, n=n)
        series = _series(heads[heads["model"] == model], tokens, component, task)
        for _, pick in chosen.iterrows():
            line = series[(series["layer"] == pick["layer"]) & (series["head"] == pick["head"])]
            axis.plot(line["tokens_seen"], line["score"], lw=1.4,
                      label=f"{pick['node']} (in circuit at {pick['n_in_circuit']})")  # fmt: skip
        axis.set_title(f"{model}:\n{component} ({task})", fontsize=10)
        if len(chosen):
            _log_tokens(axis)
            axis.set_ylabel(LABELS.get(component, component))
            axis.legend(fontsize=7, loc="best")
        else:
            _empty_panel(axis, "no in-circuit head\npasses the threshold")
    return figure
