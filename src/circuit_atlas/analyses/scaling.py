"""Correlation of circuit size with model scale (PAPER.md §7.3).

The paper correlates, per task, each model's mean circuit size in nodes (over checkpoints with
step ≥ 1000) with its parameter count. Its plotting script used 14e9 / 28e9 for Pythia-1.4b /
2.8b (a bug); here the parameter counts come from the data (the ``params`` column).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from circuit_atlas.analyses._frames import require_columns, sort_series
from circuit_atlas.analyses.size import PAPER_MEAN_SIZE_MIN_STEP, SizeMeasure, mean_circuit_size
from circuit_atlas.analyses.suites import POOLED_SUITE
from circuit_atlas.errors import AnalysisError

__all__ = [
    "pearson",
    "size_scale_correlation",
    "size_scale_correlation_by_suite",
    "size_scale_correlation_from_circuits",
    "spearman",
]


def _paired(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise AnalysisError(f"x and y must be 1-D of equal length, got {xa.shape} and {ya.shape}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    return xa[keep], ya[keep]


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson product-moment correlation of two paired samples.

    Pairs where either value is NaN or infinite are dropped.

    Args:
        x: First sample, shape ``(n,)``.
        y: Second sample, shape ``(n,)``.

    Returns:
        r in [-1, 1]; NaN when fewer than two pairs remain or either sample is constant.

    Raises:
        AnalysisError: If the samples are not 1-D of equal length.
    """
    xa, ya = _paired(x, y)
    if xa.size < 2:
        return float("nan")
    dx = xa - xa.mean()
    dy = ya - ya.mean()
    denominator = float(np.sqrt((dx * dx).sum() * (dy * dy).sum()))
    if denominator == 0.0:
        return float("nan")
    return float(np.clip((dx * dy).sum() / denominator, -1.0, 1.0))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson r of the ranks (ties get their average rank).

    Args:
        x: First sample, shape ``(n,)``.
        y: Second sample, shape ``(n,)``.

    Returns:
        rho in [-1, 1]; NaN when fewer than two pairs remain or either sample is constant.

    Raises:
        AnalysisError: If the samples are not 1-D of equal length.
    """
    xa, ya = _paired(x, y)
    return pearson(pd.Series(xa).rank().to_numpy(), pd.Series(ya).rank().to_numpy())


def size_scale_correlation(mean_sizes: pd.DataFrame, *, value: str = "mean_size") -> pd.DataFrame:
    """Per task, the correlation between mean circuit size and parameter count.

    Golden values (PAPER.md §7.3): with the table's mean node counts and the true Pythia
    parameter counts, Pearson r ≈ 0.78 (IOI), 0.94 (Greater-Than), 0.64 (Gendered Pronoun),
    0.89 (SVA) and Spearman 0.9, 0.9, 0.9, 1.0. This snippet regenerates them::

        import pandas as pd
        from circuit_atlas.analyses import size_scale_correlation
        params = [70_426_624, 162_322_944, 405_334_016, 1_414_647_808, 2_775_208_960]
        table = {"ioi": [28.9, 43.3, 88.3, 46.6, 135.4], "gt": [13.2, 17.3, 36.7, 35.0, 72.8],
                 "gp": [17.7, 23.7, 39.3, 56.6, 42.3], "sva": [15.0, 34.7, 51.8, 93.9, 97.8]}
        frame = pd.DataFrame([
            {"model": f"m{i}", "params": p, "task": t, "mean_size": sizes[i]}
            for t, sizes in table.items() for i, p in enumerate(params)])
        print(size_scale_correlation(frame))
        # ioi 0.7836, gt 0.9384, gp 0.6352, sva 0.8932; spearman 0.9, 0.9, 0.9, 1.0

    Args:
        mean_sizes: One row per model × task with ``model``, ``params``, ``task`` and ``value``
            (the output of :func:`~circuit_atlas.analyses.size.mean_circuit_size`).
        value: The size column to correlate.

    Returns:
        Columns ``task``, ``n_models``, ``pearson``, ``spearman`` (NaN with fewer than two
        models or constant sizes), one row per task in name order.

    Raises:
        AnalysisError: If a required column is missing.
    """
    require_columns(mean_sizes, ("model", "params", "task", value), "mean_sizes")
    rows = []
    for task, group in mean_sizes.groupby("task", sort=True):
        usable = group.dropna(subset=["params", value])
        rows.append(
            {
                "task": task,
                "n_models": int(usable["model"].nunique()),
                "pearson": pearson(usable["params"], usable[value]),
                "spearman": spearman(usable["params"], usable[value]),
            }
        )
    columns = ["task", "n_models", "pearson", "spearman"]
    return sort_series(pd.DataFrame(rows, columns=columns), extra=())


def size_scale_correlation_by_suite(
    mean_sizes: pd.DataFrame, *, value: str = "mean_size", pooled: bool = True
) -> pd.DataFrame:
    """Per suite and task, the correlation between mean circuit size and parameter count.

    Models of different suites differ in more than size (data, tokenizer, tokens per step,
    architecture), so a correlation over Pythia and OLMo models together mixes scale with
    suite. This computes :func:`size_scale_correlation` on each suite's models alone and, when
    there are several suites and ``pooled``, once more over every model, labelled
    :data:`~circuit_atlas.analyses.suites.POOLED_SUITE`.

    Args:
        mean_sizes: :func:`~circuit_atlas.analyses.size.mean_circuit_size` rows with a ``suite``
            column (add it with :func:`~circuit_atlas.analyses.suites.with_suites`).
        value: The size column to correlate.
        pooled: Add the pooled rows (only when there are two or more suites).

    Returns:
        Columns ``suite``, ``task``, ``n_models``, ``pearson``, ``spearman`` and ``pooled``
        (True on the pooled rows): each suite's rows in suite-name order, then the pooled rows.

    Raises:
        AnalysisError: If a required column is missing or a suite is null.
    """
    require_columns(mean_sizes, ("suite", "model", "params", "task", value), "mean_sizes")
    if mean_sizes["suite"].isna().any():
        models = sorted(mean_sizes.loc[mean_sizes["suite"].isna(), "model"].astype(str).unique())
        raise AnalysisError(f"mean_sizes: null suite for model(s) {models}")
    parts = [size_scale_correlation(group, value=value).assign(suite=suite, pooled=False)
             for suite, group in mean_sizes.groupby("suite", sort=True)]
    if pooled and len(parts) > 1:
        parts.append(size_scale_correlation(mean_sizes, value=value).assign(
            suite=POOLED_SUITE, pooled=True))
    columns = ["suite", "task", "n_models", "pearson", "spearman", "pooled"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def size_scale_correlation_from_circuits(
    circuits: pd.DataFrame,
    *,
    measure: SizeMeasure = "n_nodes",
    min_step: int | None = PAPER_MEAN_SIZE_MIN_STEP,
) -> pd.DataFrame:
    """:func:`mean_circuit_size` followed by :func:`size_scale_correlation` (§7.3 end to end).

    Args:
        circuits: The ``circuits`` table (``model``, ``params``, ``task``, ``step``,
            ``n_nodes``, ``n_edges``).
        measure: Size column (``n_nodes`` as in the paper, or ``n_edges``).
        min_step: Average sizes over checkpoints with ``step >= min_step`` (default 1000).

    Returns:
        The :func:`size_scale_correlation` table.

    Raises:
        AnalysisError: If a required column is missing.
    """
    require_columns(circuits, ("params",), "circuits")
    means = mean_circuit_size(circuits, measure=measure, min_step=min_step)
    return size_scale_correlation(means)
