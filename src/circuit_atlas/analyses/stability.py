"""Circuit stability over training: Jaccard similarity of circuits and its EWMA (PAPER.md §6).

Reproduces ``compute_jaccard_similarity`` of curt-tigges/circuits-over-time
(``utils/data_processing.py``): J(t) = |S_t ∩ S_t'| / |S_t ∪ S_t'| over the in-circuit sets of
consecutive analysed checkpoints t < t', with J = 0 when the union is empty, smoothed as
``J.ewm(alpha=0.5, adjust=False)`` (s_0 = J_0, s_t = α·J_t + (1 − α)·s_{t−1}), as in
``plot_model_task_size.ipynb``. Also provides the code's unused alternatives: Jaccard to a
reference (here, the final) checkpoint and the score-weighted Jaccard
Σ min(w, w') / Σ max(w, w') with w = |score| / Σ|score| normalised per checkpoint.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from circuit_atlas.analyses._frames import check_fraction, require_columns, sort_series
from circuit_atlas.errors import AnalysisError

__all__ = [
    "PAPER_EWMA_ALPHA",
    "PAPER_JACCARD_CHECKPOINTS",
    "Reference",
    "edge_jaccard",
    "ewma",
    "jaccard",
    "jaccard_over_time",
    "node_jaccard",
    "normalized_abs_scores",
    "weighted_jaccard",
]

Reference = Literal["previous", "final"]
"""What each checkpoint's circuit is compared with: the previous analysed checkpoint (the
paper's Figure 5) or the model's final analysed checkpoint."""

PAPER_EWMA_ALPHA = 0.5
"""Smoothing factor of the Jaccard EWMA in ``plot_model_task_size.ipynb``."""

PAPER_JACCARD_CHECKPOINTS: tuple[int, ...] = tuple(
    sorted(
        set(range(1000, 15001, 1000))
        | set(range(15000, 65001, 5000))
        | set(range(70000, 140001, 10000))
    )
)
"""Steps the paper's Jaccard plots keep: 1k…15k by 1k, 15k…65k by 5k, 70k…140k by 10k (33)."""


def jaccard(a: Iterable[Hashable], b: Iterable[Hashable]) -> float:
    """Jaccard similarity |A ∩ B| / |A ∪ B| of two sets; 0 when both are empty (PAPER.md §6).

    Args:
        a: Items of the first set (edge or node names); duplicates are ignored.
        b: Items of the second set.

    Returns:
        A float in [0, 1].
    """
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def weighted_jaccard(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> float:
    """Weighted Jaccard Σ_k min(|a_k|, |b_k|) / Σ_k max(|a_k|, |b_k|); 0 when the sum is 0.

    Items missing from one mapping weigh 0 there. With all weights equal to 1 this is
    :func:`jaccard` of the key sets.

    Args:
        a: Item → weight (e.g. normalised |score|) of the first circuit.
        b: Item → weight of the second circuit.

    Returns:
        A float in [0, 1].

    Raises:
        AnalysisError: If a weight is NaN.
    """
    keys = set(a) | set(b)
    wa = np.array([abs(float(a.get(k, 0.0))) for k in keys], dtype=float)
    wb = np.array([abs(float(b.get(k, 0.0))) for k in keys], dtype=float)
    if np.isnan(wa).any() or np.isnan(wb).any():
        raise AnalysisError("weighted_jaccard: weights must not be NaN")
    total = float(np.maximum(wa, wb).sum())
    return float(np.minimum(wa, wb).sum()) / total if total > 0 else 0.0


def normalized_abs_scores(scores: pd.Series) -> pd.Series:
    """|score| / Σ|score| over the given scores (one checkpoint); all 0 when the sum is 0.

    The original code normalises over every scored edge of the checkpoint, then keeps the
    in-circuit ones; pass all scored edges to reproduce it.
    """
    magnitude = scores.astype(float).abs()
    total = float(magnitude.sum())
    return magnitude / total if total > 0 else magnitude * 0.0


def ewma(values: Sequence[float], alpha: float = PAPER_EWMA_ALPHA) -> np.ndarray:
    """Exponentially weighted moving average s_0 = x_0, s_t = α·x_t + (1 − α)·s_{t−1}.

    Equal to ``pd.Series(values).ewm(alpha=alpha, adjust=False).mean()`` (NaN inputs are skipped
    and carry the previous average forward, as pandas does).

    Args:
        values: The series, shape ``(n,)``.
        alpha: Smoothing factor in (0, 1].

    Returns:
        The smoothed series, shape ``(n,)``.

    Raises:
        AnalysisError: If ``alpha`` is outside (0, 1].
    """
    check_fraction("alpha", alpha)
    series = pd.Series(np.asarray(values, dtype=float))
    return series.ewm(alpha=alpha, adjust=False).mean().to_numpy()


def _checkpoint_items(
    group: pd.DataFrame, item: str, weighted: bool, extra_steps: Iterable[int] = ()
) -> dict[int, set | dict]:
    """Per step: the in-circuit item set, or item → normalised |score| for in-circuit items.

    Steps in ``extra_steps`` without any row get an empty circuit.
    """
    out: dict[int, set | dict] = {int(s): ({} if weighted else set()) for s in extra_steps}
    for step, rows in group.groupby("step", sort=True):
        inside = rows["in_circuit"].astype(bool).to_numpy()
        if weighted:
            weights = normalized_abs_scores(rows["score"]).to_numpy()[inside]
            out[int(step)] = dict(zip(rows[item].to_numpy()[inside], weights, strict=True))
        else:
            out[int(step)] = set(rows[item].to_numpy()[inside])
    return out


def jaccard_over_time(
    frame: pd.DataFrame,
    *,
    item: Literal["edge", "node"],
    reference: Reference = "previous",
    weighted: bool = False,
    alpha: float = PAPER_EWMA_ALPHA,
    checkpoints: Collection[int] | None = None,
    all_steps: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Jaccard similarity of each model × task's circuits across its analysed checkpoints.

    The steps of a model × task are those present in ``frame`` (plus those in ``all_steps``); a
    step whose rows are all outside the circuit, or that has no row, counts as an empty circuit.
    When ``checkpoints`` is given, only those steps are analysed and "consecutive" refers to the
    restricted list (so the paper's last point is 130k → 140k).

    Args:
        frame: The ``edges`` or ``nodes`` table: ``model``, ``task``, ``step``, ``item``,
            ``in_circuit`` and, when ``weighted``, ``score``.
        item: Which set to compare: ``edge`` or ``node``.
        reference: ``previous`` compares step t_i with t_{i+1} (rows carry ``step_from`` = t_i,
            ``step_to`` = t_{i+1}); ``final`` compares every step with the last one
            (``step_from`` = t_i, ``step_to`` = last; the last row has J = 1 unless empty).
        weighted: Use :func:`weighted_jaccard` on |score| normalised per checkpoint over every
            row given for that checkpoint (needs ``score``; edges only).
        alpha: EWMA smoothing factor (paper: 0.5).
        checkpoints: Restrict the analysed steps to this collection (e.g.
            :data:`PAPER_JACCARD_CHECKPOINTS`); None keeps every step.
        all_steps: Optional table with ``model``, ``task``, ``step`` of every analysed checkpoint
            (e.g. the ``circuits`` table), so that a ``frame`` holding only in-circuit rows keeps
            its checkpoints with empty circuits.

    Returns:
        Columns ``model``, ``task``, ``step_from``, ``step_to``, ``size_from``, ``size_to``,
        ``jaccard`` and ``jaccard_ewma`` (EWMA along ``step_from`` within each model × task),
        sorted by model, task, ``step_from``. Model × task pairs with fewer than two analysed
        steps yield no row for ``previous``.

    Raises:
        AnalysisError: If a required column is missing, ``item`` is unknown, ``weighted`` is
            asked for nodes, or ``alpha`` is outside (0, 1].
    """
    if item not in ("edge", "node"):
        raise AnalysisError(f"item must be 'edge' or 'node', got {item!r}")
    if reference not in ("previous", "final"):
        raise AnalysisError(f"reference must be 'previous' or 'final', got {reference!r}")
    if weighted and item != "edge":
        raise AnalysisError("weighted Jaccard needs edge scores; item must be 'edge'")
    check_fraction("alpha", alpha)
    needed = ["model", "task", "step", item, "in_circuit"] + (["score"] if weighted else [])
    require_columns(frame, needed, f"{item}s")
    known: dict[tuple, list[int]] = {}
    if all_steps is not None:
        require_columns(all_steps, ("model", "task", "step"), "all_steps")
        for key, part in all_steps.dropna(subset=["step"]).groupby(["model", "task"], sort=False):
            known[key] = part["step"].astype(int).tolist()
    if checkpoints is not None:
        allowed = set(checkpoints)
        frame = frame[frame["step"].isin(allowed)]
        known = {k: [s for s in v if s in allowed] for k, v in known.items()}
    groups = dict(list(frame.groupby(["model", "task"], sort=False)))
    similarity = weighted_jaccard if weighted else jaccard
    rows = []
    for model, task in list(groups) + [k for k in known if k not in groups]:
        group = groups.get((model, task), frame.iloc[0:0])
        sets = _checkpoint_items(group, item, weighted, known.get((model, task), ()))
        steps = sorted(sets)
        pairs = (
            list(zip(steps[:-1], steps[1:], strict=True))
            if reference == "previous"
            else [(s, steps[-1]) for s in steps]
        )
        values = [similarity(sets[a], sets[b]) for a, b in pairs]
        smoothed = ewma(values, alpha) if values else []
        rows.extend(
            {
                "model": model,
                "task": task,
                "step_from": a,
                "step_to": b,
                "size_from": len(sets[a]),
                "size_to": len(sets[b]),
                "jaccard": j,
                "jaccard_ewma": float(s),
            }
            for (a, b), j, s in zip(pairs, values, smoothed, strict=True)
        )
    columns = [
        "model",
        "task",
        "step_from",
        "step_to",
        "size_from",
        "size_to",
        "jaccard",
        "jaccard_ewma",
    ]
    return sort_series(pd.DataFrame(rows, columns=columns), extra=("step_from",))


def edge_jaccard(edges: pd.DataFrame, **options) -> pd.DataFrame:
    """:func:`jaccard_over_time` on the ``edges`` table (``item="edge"``); see its options."""
    return jaccard_over_time(edges, item="edge", **options)


def node_jaccard(nodes: pd.DataFrame, **options) -> pd.DataFrame:
    """:func:`jaccard_over_time` on the ``nodes`` table (``item="node"``); see its options."""
    return jaccard_over_time(nodes, item="node", **options)
