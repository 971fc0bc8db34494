"""Seeds as an axis of a study: curves across training runs, and seed-vs-step circuit overlap.

The paper studies one training run per size (PAPER.md §8: no repeated runs), so a change between
checkpoints cannot be told from run-to-run noise. With several seeds of one model (PolyPythias,
the Stanford CRFM GPT-2 runs, or ``circuit-atlas train --seeds``) every model of the store has a
``base_model`` (the name shared by its seeds) and a ``seed`` (``units`` table, schema v5):

* :func:`across_seeds` turns any per-model curve over training into mean ± spread over seeds;
* :func:`emergence_across_seeds` gives emergence points (:func:`~circuit_atlas.analyses.
  emergence.emergence_table` rows) a spread over seeds;
* :func:`seed_jaccard` makes a seed-only difference in circuits a number: the Jaccard
  similarity of two seeds' circuits at the same step (mean over seed pairs), next to the Jaccard
  between consecutive steps of one seed (mean over seeds, as in
  :func:`~circuit_atlas.analyses.stability.jaccard_over_time`). A step-to-step change that is
  no larger than the seed-to-seed difference is within run-to-run noise.

Units without a seed (older stores, single-run sources) are their own base model.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from circuit_atlas.analyses._frames import require_columns, sort_series
from circuit_atlas.analyses.stability import jaccard, jaccard_over_time
from circuit_atlas.errors import AnalysisError

__all__ = [
    "SEED_COLUMNS",
    "across_seeds",
    "emergence_across_seeds",
    "seed_jaccard",
    "seed_map",
]

SEED_COLUMNS: tuple[str, ...] = ("model", "base_model", "seed")
"""Columns of :func:`seed_map`."""


def seed_map(units: pd.DataFrame) -> pd.DataFrame:
    """Model → ``base_model`` and ``seed``, from the ``units`` table.

    Args:
        units: The ``units`` table (``model``; ``base_model`` and ``seed`` from schema v5).

    Returns:
        One row per model: ``model``, ``base_model`` (``model`` where null or absent) and
        ``seed`` (nullable integer).

    Raises:
        AnalysisError: If ``model`` is missing, or one model has two base models or seeds.
    """
    require_columns(units, ["model"], "units")
    frame = units[[c for c in SEED_COLUMNS if c in units.columns]].copy()
    if "base_model" not in frame.columns:
        frame["base_model"] = None
    if "seed" not in frame.columns:
        frame["seed"] = None
    frame["base_model"] = frame["base_model"].where(frame["base_model"].notna(), frame["model"])
    frame["seed"] = pd.array(frame["seed"].astype("Float64").round(), dtype="Int64")
    out = frame.drop_duplicates().reset_index(drop=True)
    clashes = out["model"][out["model"].duplicated()].unique().tolist()
    if clashes:
        raise AnalysisError(f"units: model(s) {clashes} have several base models or seeds")
    return out[list(SEED_COLUMNS)]


def _with_seeds(frame: pd.DataFrame, units: pd.DataFrame, what: str) -> pd.DataFrame:
    require_columns(frame, ["model"], what)
    return frame.drop(columns=["base_model", "seed"], errors="ignore").merge(
        seed_map(units), on="model", how="left").assign(
        base_model=lambda f: f["base_model"].where(f["base_model"].notna(), f["model"]))


def across_seeds(frame: pd.DataFrame, value: str, units: pd.DataFrame, *,
                 by: Sequence[str] = ("task", "step")) -> pd.DataFrame:
    """Mean ± spread over seeds of a per-model curve (one value per model × task × step).

    Args:
        frame: A curve table with ``model``, the ``by`` columns and ``value`` (e.g.
            ``task_metrics`` with ``logit_diff``, ``circuits`` with ``n_edges``); a
            ``tokens_seen`` column is carried along (its first value per group).
        value: The column to aggregate.
        units: The ``units`` table (for ``base_model`` and ``seed``).
        by: Columns that, with ``base_model``, identify one point of the curve.

    Returns:
        One row per ``base_model`` × ``by``: ``mean``, ``std`` (sample standard deviation over
        seeds, ``ddof=1``; NaN with one seed), ``min``, ``max``, ``n_seeds`` and
        ``tokens_seen`` when given, sorted like every curve table.

    Raises:
        AnalysisError: If a column is missing, or one model has two rows at one point.
    """
    require_columns(frame, ["model", *by, value], "curve")
    data = _with_seeds(frame, units, "curve")
    keys = ["base_model", *by]
    repeated = data.duplicated(subset=["model", *by])
    if repeated.any():
        first = data.loc[repeated, ["model", *by]].iloc[0].to_dict()
        raise AnalysisError(f"across_seeds: several rows of {value!r} at {first}; "
                            f"aggregate them first")
    grouped = data.dropna(subset=[value]).groupby(keys, sort=False)
    out = grouped[value].agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan,
                             min="min", max="max", n_seeds="count").reset_index()
    if "tokens_seen" in data.columns:
        out = out.merge(grouped["tokens_seen"].first().reset_index(), on=keys, how="left")
    out = out.rename(columns={"base_model": "model"}).assign(quantity=value)
    return sort_series(out, extra=tuple(c for c in by if c != "task"))


def emergence_across_seeds(emergence: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """The spread over seeds of emergence points.

    Args:
        emergence: :func:`~circuit_atlas.analyses.emergence.emergence_table` output (one row
            per model × task: ``emerged``, ``step``, ``tokens_seen``).
        units: The ``units`` table.

    Returns:
        One row per ``base_model`` (as ``model``) × task: ``n_seeds``, ``n_emerged``, and the
        ``mean``/``std``/``min``/``max`` of ``step`` and of ``tokens_seen`` over the seeds where
        it emerged (``step_mean``, ``step_std``, ..., ``tokens_seen_max``; std NaN with fewer
        than two).

    Raises:
        AnalysisError: If a column is missing.
    """
    require_columns(emergence, ["model", "task", "emerged", "step", "tokens_seen"], "emergence")
    data = _with_seeds(emergence, units, "emergence")
    rows = []
    for (base, task), group in data.groupby(["base_model", "task"], sort=False):
        emerged = group[group["emerged"].astype(bool)]
        row = {"model": base, "task": task, "n_seeds": len(group), "n_emerged": len(emerged)}
        for column in ("step", "tokens_seen"):
            values = emerged[column].astype(float).dropna()
            row.update({f"{column}_mean": values.mean() if len(values) else np.nan,
                        f"{column}_std": values.std(ddof=1) if len(values) > 1 else np.nan,
                        f"{column}_min": values.min() if len(values) else np.nan,
                        f"{column}_max": values.max() if len(values) else np.nan})
        rows.append(row)
    columns = ["model", "task", "n_seeds", "n_emerged"] + [
        f"{c}_{s}" for c in ("step", "tokens_seen") for s in ("mean", "std", "min", "max")]
    return sort_series(pd.DataFrame(rows, columns=columns), extra=())


def seed_jaccard(frame: pd.DataFrame, units: pd.DataFrame, *, item: Literal["edge", "node"],
                 all_steps: pd.DataFrame | None = None) -> pd.DataFrame:
    """Jaccard between seeds at the same step, next to Jaccard between consecutive steps.

    For each base model × task × step t:

    * ``seed_jaccard``: mean over every pair of seeds (s, s') analysed at t of
      J(C_s(t), C_s'(t)), the Jaccard similarity of their in-circuit ``item`` sets
      (:func:`~circuit_atlas.analyses.stability.jaccard`); ``seed_jaccard_min``/``_max`` over
      the pairs, ``n_pairs``;
    * ``step_jaccard``: mean over seeds of J(C_s(t_prev), C_s(t)), t_prev the seed's previous
      analysed step (PAPER.md §6, Figure 5); ``step_jaccard_std`` over seeds; NaN at a seed's
      first step.

    Args:
        frame: The ``edges`` or ``nodes`` table (``model``, ``task``, ``step``, ``item``,
            ``in_circuit``).
        units: The ``units`` table.
        item: ``edge`` or ``node``.
        all_steps: Optional ``model``, ``task``, ``step`` of every analysed checkpoint (the
            ``circuits`` table), so that checkpoints with an empty circuit count.

    Returns:
        Columns ``model`` (the base model), ``task``, ``step``, ``n_seeds``, ``n_pairs``,
        ``seed_jaccard``, ``seed_jaccard_min``, ``seed_jaccard_max``, ``step_jaccard``,
        ``step_jaccard_std``, sorted by model, task, step.

    Raises:
        AnalysisError: If a column is missing or ``item`` is unknown.
    """
    if item not in ("edge", "node"):
        raise AnalysisError(f"item must be 'edge' or 'node', got {item!r}")
    require_columns(frame, ["model", "task", "step", item, "in_circuit"], f"{item}s")
    seeds = seed_map(units)
    base_of = dict(zip(seeds["model"], seeds["base_model"], strict=True))
    inside = frame[frame["in_circuit"].astype(bool)]
    sets: dict[tuple, set] = {}
    for (model, task, step), rows in inside.groupby(["model", "task", "step"], sort=False):
        sets[(model, task, int(step))] = set(rows[item])
    steps = frame[["model", "task", "step"]]
    if all_steps is not None:
        require_columns(all_steps, ("model", "task", "step"), "all_steps")
        steps = pd.concat([steps, all_steps[["model", "task", "step"]]])
    for model, task, step in steps.dropna().drop_duplicates().itertuples(index=False):
        sets.setdefault((model, task, int(step)), set())
    over_time = jaccard_over_time(frame, item=item, all_steps=all_steps)
    over_time["model"] = over_time["model"].map(lambda m: base_of.get(m, m))
    by_point: dict[tuple, dict[str, set]] = {}
    for (model, task, step), members in sets.items():
        by_point.setdefault((base_of.get(model, model), task, step), {})[model] = members
    rows = []
    for (base, task, step), runs in by_point.items():
        pairs = [jaccard(a, b) for a, b in itertools.combinations(runs.values(), 2)]
        moves = over_time[(over_time["model"] == base) & (over_time["task"] == task)
                          & (over_time["step_to"] == step)]["jaccard"]
        rows.append({
            "model": base, "task": task, "step": step, "n_seeds": len(runs),
            "n_pairs": len(pairs),
            "seed_jaccard": float(np.mean(pairs)) if pairs else np.nan,
            "seed_jaccard_min": float(np.min(pairs)) if pairs else np.nan,
            "seed_jaccard_max": float(np.max(pairs)) if pairs else np.nan,
            "step_jaccard": float(moves.mean()) if len(moves) else np.nan,
            "step_jaccard_std": float(moves.std(ddof=1)) if len(moves) > 1 else np.nan,
        })
    columns = ["model", "task", "step", "n_seeds", "n_pairs", "seed_jaccard", "seed_jaccard_min",
               "seed_jaccard_max", "step_jaccard", "step_jaccard_std"]
    return sort_series(pd.DataFrame(rows, columns=columns), extra=("step",))
