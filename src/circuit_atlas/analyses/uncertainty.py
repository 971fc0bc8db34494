"""Bootstrap confidence intervals over prompts for the numbers the report plots.

Every checkpoint's task metric and faithfulness is a mean over a finite set of prompts, so it
moves when the prompts change. :func:`bootstrap_ci` is the one resampling routine of
circuit-atlas: it redraws the prompts with replacement ``n_resamples`` times (default
:data:`N_RESAMPLES` = 1,000) from a seeded NumPy generator, recomputes the statistic on each
redraw and returns the percentile interval (Efron & Tibshirani 1993, §13.3) at ``level``
(default 95 %). The same seed gives the same interval.

The per-prompt values come from the store's ``prompt_metrics`` table (schema v6; one row per
unit × task × run × example, run ∈ ``clean``, ``corrupted``, ``empty``, ``circuit``):

* :func:`metric_intervals`: the mean task metric of one run (Figure 1 uses ``clean``);
* :func:`faithfulness_intervals`: the faithfulness of the found circuit, a ratio of means
  m(C)/m(M) (or (m(C) − m(∅))/(m(M) − m(∅))). The numerator and the denominator are
  resampled *jointly*: one redraw of prompt indices is applied to the circuit run, the clean run
  (and the empty circuit), so their correlation over prompts is kept; the statistic is the ratio
  of the redrawn means, as in the paper's definition (PAPER.md §3.4), never a mean of per-prompt
  ratios.

The IOI algorithm shares (Figure 4 B–D) are bootstrapped with the same routine as a ratio of
means, but when the unit runs (their per-prompt path-patching effects are not stored):
:mod:`circuit_atlas.components.algorithm.intervals`; the store keeps their bounds.

See ``docs/uncertainty.md`` for what each band of the report means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from circuit_atlas.analyses._frames import require_columns, sort_series
from circuit_atlas.errors import AnalysisError

__all__ = [
    "CI_LEVEL",
    "INTERVAL_COLUMNS",
    "N_RESAMPLES",
    "BootstrapCI",
    "bootstrap_ci",
    "faithfulness_intervals",
    "metric_intervals",
]

N_RESAMPLES = 1000
"""Default number of bootstrap resamples."""

CI_LEVEL = 0.95
"""Default coverage of the percentile interval."""

INTERVAL_COLUMNS: tuple[str, ...] = ("estimate", "ci_low", "ci_high", "n_examples",
                                     "n_resamples", "level", "seed")
"""The interval columns of :func:`metric_intervals` and :func:`faithfulness_intervals`."""

_CHUNK_ELEMENTS = 4_000_000  # resampled values held at once (32 MB of float64)

Statistic = Callable[..., np.ndarray]
"""``statistic(sample, axis=1)``: reduces the prompt axis (axis 1) of a ``(r, n, ...)`` array
of ``r`` resamples to ``(r,)`` values (``np.mean`` and ``np.median`` qualify)."""


@dataclass(frozen=True)
class BootstrapCI:
    """A percentile bootstrap interval.

    Attributes:
        estimate: The statistic on the original values (not the mean of the resamples).
        low: Lower bound, the ``(1 − level)/2`` quantile of the resampled statistics.
        high: Upper bound, the ``(1 + level)/2`` quantile.
        level: Nominal coverage (0.95).
        n_resamples: Resamples drawn.
        n_valid: Resamples whose statistic was finite (a ratio can divide by 0 on a redraw);
            the quantiles are over these.
        seed: Seed of the generator.
    """

    estimate: float
    low: float
    high: float
    level: float
    n_resamples: int
    n_valid: int
    seed: int


def _mean(sample: np.ndarray, axis: int = 1) -> np.ndarray:
    return sample.mean(axis=axis)


def bootstrap_ci(
    values: np.ndarray | pd.Series | list[float],
    statistic: Statistic | Literal["mean"] = "mean",
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> BootstrapCI:
    """Percentile bootstrap confidence interval of a statistic over prompts.

    Resample ``r`` draws ``n`` row indices uniformly with replacement
    (``numpy.random.default_rng(seed).integers(0, n, size=(n_resamples, n))``; drawn in chunks of
    resamples from the one generator, which gives the same indices while bounding memory), so
    rows — prompts — are resampled jointly across columns; the interval is the
    ``(1 − level)/2`` and ``(1 + level)/2`` quantiles (``numpy.quantile``, linear
    interpolation) of the ``n_resamples`` statistics.

    Args:
        values: ``(n,)`` per-prompt values, or ``(n, k)`` with one row per prompt and one column
            per quantity that must be resampled together (e.g. circuit and clean metric).
        statistic: ``"mean"`` or a function ``statistic(sample, axis=1)`` reducing the prompt
            axis of a ``(r, n, ...)`` array to ``(r,)`` (vectorised over resamples).
        n_resamples: Number of resamples (≥ 1; default 1,000).
        seed: Seed of the NumPy generator; the same seed gives the same interval.
        level: Coverage in (0, 1) (default 0.95).

    Returns:
        A :class:`BootstrapCI`. With every resampled statistic non-finite, ``low`` and ``high``
        are NaN.

    Raises:
        AnalysisError: If ``values`` is empty, not 1-D or 2-D, or not finite, or if
            ``n_resamples`` or ``level`` is out of range (the message names the value).

    Source: B. Efron and R. Tibshirani, *An Introduction to the Bootstrap* (1993), §13.3.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim not in (1, 2) or data.shape[0] == 0:
        raise AnalysisError(f"bootstrap_ci: values must be a non-empty (n,) or (n, k) array, "
                            f"got shape {data.shape}")
    if not np.isfinite(data).all():
        raise AnalysisError(f"bootstrap_ci: values hold {int((~np.isfinite(data)).sum())} "
                            "non-finite entries; drop them first")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) \
            or n_resamples < 1:
        raise AnalysisError(f"bootstrap_ci: n_resamples must be an integer ≥ 1, "
                            f"got {n_resamples!r}")
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise AnalysisError(f"bootstrap_ci: level must be in (0, 1), got {level!r}")
    if statistic == "mean":
        statistic = _mean
    elif not callable(statistic):
        raise AnalysisError(f"bootstrap_ci: statistic must be 'mean' or a callable, "
                            f"got {statistic!r}")
    n = data.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // int(np.prod(data.shape)))  # resamples held at once
    # Drawn chunk by chunk from one generator: the same indices as one (n_resamples, n) draw.
    stats = np.concatenate([
        np.asarray(statistic(data[rng.integers(0, n, size=(min(chunk, n_resamples - s), n))],
                             axis=1), dtype=np.float64).reshape(-1)
        for s in range(0, int(n_resamples), chunk)
    ])
    if stats.shape != (int(n_resamples),):
        raise AnalysisError(f"bootstrap_ci: statistic returned {stats.shape[0]} values for "
                            f"{n_resamples} resamples; it must reduce axis 1 only")
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(np.asarray(statistic(data[None], axis=1)).reshape(-1)[0])
    finite = stats[np.isfinite(stats)]
    alpha = (1.0 - float(level)) / 2.0
    low, high = (np.quantile(finite, [alpha, 1.0 - alpha]) if finite.size
                 else (np.nan, np.nan))  # fmt: skip
    return BootstrapCI(estimate=estimate, low=float(low), high=float(high), level=float(level),
                       n_resamples=int(n_resamples), n_valid=int(finite.size), seed=int(seed))


_KEYS = ("model", "task", "step")


def _runs(prompt_metrics: pd.DataFrame, runs: tuple[str, ...]) -> dict[tuple, np.ndarray]:
    """(model, task, step) → ``(n, len(runs))`` per-prompt metrics, rows aligned by example.

    Series that lack one of the runs are left out.
    """
    require_columns(prompt_metrics, (*_KEYS, "run", "example", "metric"), "prompt_metrics")
    data = prompt_metrics[prompt_metrics["run"].isin(runs)]
    if data.empty:
        return {}
    wide = data.pivot_table(index=[*_KEYS, "example"], columns="run", values="metric",
                            aggfunc="first")  # one row per prompt, one column per run
    if any(r not in wide.columns for r in runs):
        return {}
    wide = wide[list(runs)].dropna()
    out = {}
    for key, group in wide.groupby(level=list(range(len(_KEYS))), sort=False):
        out[(key[0], key[1], int(key[2]))] = group.to_numpy(dtype=np.float64)
    return out


def _frame(rows: list[dict], extra: tuple[str, ...]) -> pd.DataFrame:
    columns = [*_KEYS, *extra, *INTERVAL_COLUMNS]
    return sort_series(pd.DataFrame(rows, columns=columns), extra=("step",))


def _check_settings(n_resamples: int, level: float) -> None:
    bootstrap_ci([0.0], n_resamples=n_resamples, level=level)  # raises naming a bad value


def metric_intervals(
    prompt_metrics: pd.DataFrame,
    *,
    run: str = "clean",
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """Bootstrap interval of the mean task metric per model × task × checkpoint.

    Args:
        prompt_metrics: The store's ``prompt_metrics`` table (``model``, ``task``, ``step``,
            ``run``, ``example``, ``metric``).
        run: Which run: ``clean`` (Figure 1's curve), ``corrupted``, ``empty`` or ``circuit``.
        n_resamples: Resamples per point (default 1,000).
        seed: Generator seed, the same for every point.
        level: Coverage (default 0.95).

    Returns:
        One row per model × task × step with a ``run``: ``run``, ``estimate`` (the mean metric,
        in logits or probabilities as the task's ``metric_kind``), ``ci_low``, ``ci_high``,
        ``n_examples``, ``n_resamples``, ``level``, ``seed``; sorted like every curve table.

    Raises:
        AnalysisError: If a column is missing or a setting is out of range.
    """
    _check_settings(n_resamples, level)
    rows = []
    for (model, task, step), values in _runs(prompt_metrics, (run,)).items():
        ci = bootstrap_ci(values[:, 0], n_resamples=n_resamples, seed=seed, level=level)
        rows.append({"model": model, "task": task, "step": step, "run": run,
                     "estimate": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                     "n_examples": len(values), "n_resamples": n_resamples, "level": level,
                     "seed": seed})  # fmt: skip
    return _frame(rows, ("run",))


def _ratio(sample: np.ndarray, axis: int = 1) -> np.ndarray:
    means = sample.mean(axis=axis)  # (r, 2): circuit, clean
    with np.errstate(divide="ignore", invalid="ignore"):
        return means[..., 0] / means[..., 1]


def _normalized(sample: np.ndarray, axis: int = 1) -> np.ndarray:
    means = sample.mean(axis=axis)  # (r, 3): circuit, clean, empty
    with np.errstate(divide="ignore", invalid="ignore"):
        return (means[..., 0] - means[..., 2]) / (means[..., 1] - means[..., 2])


def faithfulness_intervals(
    prompt_metrics: pd.DataFrame,
    *,
    kind: Literal["ratio", "normalized"] = "ratio",
    defined: pd.DataFrame | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """Bootstrap interval of the found circuit's faithfulness per model × task × checkpoint.

    Prompts are resampled jointly for the circuit run, the clean run and (``normalized``) the
    empty circuit; each redraw's statistic is the ratio of its means: m(C)/m(M) or
    (m(C) − m(∅))/(m(M) − m(∅)) (PAPER.md §3.4; :class:`~circuit_atlas.faithfulness.Baselines`).

    Args:
        prompt_metrics: The store's ``prompt_metrics`` table (needs runs ``circuit`` and
            ``clean``; ``empty`` for ``normalized``).
        kind: ``ratio`` (the paper's) or ``normalized``.
        defined: Optional ``circuits`` table: points whose stored faithfulness of this kind is
            null (undefined, PAPER.md §3.4) get no interval, so an interval is never shown for
            a ratio whose denominator is noise.
        n_resamples: Resamples per point (default 1,000).
        seed: Generator seed, the same for every point.
        level: Coverage (default 0.95).

    Returns:
        One row per model × task × step: ``kind``, ``estimate``, ``ci_low``, ``ci_high``,
        ``n_examples``, ``n_resamples``, ``level``, ``seed``.

    Raises:
        AnalysisError: If a column is missing, ``kind`` is unknown or a setting is out of range.
    """
    if kind not in ("ratio", "normalized"):
        raise AnalysisError(f"kind must be 'ratio' or 'normalized', got {kind!r}")
    _check_settings(n_resamples, level)
    runs = ("circuit", "clean") if kind == "ratio" else ("circuit", "clean", "empty")
    statistic = _ratio if kind == "ratio" else _normalized
    keep = None
    if defined is not None:
        column = "faithfulness" if kind == "ratio" else "faithfulness_normalized"
        require_columns(defined, (*_KEYS, column), "circuits")
        ok = defined[defined[column].notna()]
        keep = {(m, t, int(s)) for m, t, s in ok[list(_KEYS)].itertuples(index=False)}
    rows = []
    for key, values in _runs(prompt_metrics, runs).items():
        if keep is not None and key not in keep:
            continue
        ci = bootstrap_ci(values, statistic, n_resamples=n_resamples, seed=seed, level=level)
        rows.append({"model": key[0], "task": key[1], "step": key[2], "kind": kind,
                     "estimate": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                     "n_examples": len(values), "n_resamples": n_resamples, "level": level,
                     "seed": seed})  # fmt: skip
    return _frame(rows, ("kind",))
