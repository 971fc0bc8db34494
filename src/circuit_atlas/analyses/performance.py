"""Task performance over training tokens, per model (the paper's Figure 1).

The paper plots the *raw* clean-model task metric against tokens seen (log x axis), one line per
model: logit difference for IOI and Gendered Pronoun, probability difference for Greater-Than and
SVA (PAPER.md §2.5). In the ``task_metrics`` table that metric is ``clean_metric`` and its kind is
``metric_kind``. Steps ≤ 100 are dropped in the paper's plotting script
(:data:`PAPER_DROP_STEPS_AT_MOST`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from circuit_atlas.analyses._frames import require_columns, sort_series
from circuit_atlas.errors import AnalysisError

__all__ = ["METRIC_COLUMNS", "PAPER_DROP_STEPS_AT_MOST", "task_performance"]

METRIC_COLUMNS: tuple[str, ...] = (
    "clean_metric",
    "corrupted_metric",
    "accuracy",
    "rank0",
    "prob_mass",
    "logit_diff",
    "prob_diff",
)
"""Metric columns of the ``task_metrics`` table that :func:`task_performance` can melt.

``clean_metric`` is the task's own metric on clean prompts (the curve of Figure 1); the others are
the extra behaviour metrics that ``get_model_task_performance.py`` records (PAPER.md §2.5).
"""

PAPER_DROP_STEPS_AT_MOST = 100
"""Figure 1 drops checkpoints with step ≤ 100 (``plotting/figure_1.py``; PAPER.md §2.5)."""

_ID_COLUMNS = ("model", "task", "step", "tokens_seen")


def task_performance(
    task_metrics: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    drop_steps_at_most: int | None = None,
) -> pd.DataFrame:
    """Tidy task performance: one row per model × task × checkpoint × metric.

    Args:
        task_metrics: The store's ``task_metrics`` table (columns ``model``, ``task``, ``step``,
            ``tokens_seen`` and the metric columns; ``params`` and ``metric_kind`` are carried
            along when present).
        metrics: Which metric columns to keep (default: every column of
            :data:`METRIC_COLUMNS` present in the frame).
        drop_steps_at_most: Drop checkpoints with ``step <= drop_steps_at_most``; pass
            :data:`PAPER_DROP_STEPS_AT_MOST` (100) to reproduce Figure 1. None keeps every step.

    Returns:
        Columns ``model``, ``params``, ``task``, ``metric_kind``, ``step``, ``tokens_seen``,
        ``metric`` (the column name) and ``value`` (float; NaN values are dropped), sorted by model
        size, task, metric and step. Tokens are raw training tokens seen at the checkpoint.

    Raises:
        AnalysisError: If an id column or a requested metric column is missing.
    """
    require_columns(task_metrics, _ID_COLUMNS, "task_metrics")
    if metrics is None:
        metrics = [c for c in METRIC_COLUMNS if c in task_metrics.columns]
    else:
        unknown = [m for m in metrics if m not in task_metrics.columns]
        if unknown:
            raise AnalysisError(
                f"task_metrics: requested metric(s) {unknown} not in the frame; "
                f"available: {[c for c in METRIC_COLUMNS if c in task_metrics.columns]}"
            )
    frame = task_metrics
    if drop_steps_at_most is not None:
        frame = frame[frame["step"] > drop_steps_at_most]
    carried = [c for c in ("params", "metric_kind") if c in frame.columns]
    tidy = frame.melt(
        id_vars=[*_ID_COLUMNS, *carried],
        value_vars=list(metrics),
        var_name="metric",
        value_name="value",
    )
    for column in ("params", "metric_kind"):
        if column not in tidy.columns:
            tidy[column] = pd.NA
    tidy["value"] = pd.to_numeric(tidy["value"], errors="coerce").astype(float)
    tidy = tidy.dropna(subset=["value"])
    columns = ["model", "params", "task", "metric_kind", "step", "tokens_seen", "metric", "value"]
    return sort_series(tidy[columns], extra=("metric", "step"))
