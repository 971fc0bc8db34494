"""The MIB circuit track's circuit metrics: the faithfulness curve, CPR and CMD.

Reproduces ``evaluate_area_under_curve`` of the MIB circuit track (Mueller et al. 2025,
hannamw/MIB-circuit-track, file ``MIB_circuit_track/evaluation.py`` at commit ``b759df3``,
with the EAP-IG library it pins as a submodule, hannamw/EAP-IG ``src/eap/graph.py`` at commit
``7af394a``), and the choice of curve per metric made by its ``print_results.py``:

* **Sizes.** For each edge fraction p of :data:`MIB_FRACTIONS` (0.1 % … 100 %, no 0), the
  circuit asks for ``int(p * n_edges)`` edges, ``n_edges`` being every edge of the graph
  (``len(graph.edges)``).
* **Selection.** ``Graph.apply_topn(n, absolute, prune=True)``: the n edges of highest score —
  of |score| when ``absolute`` — then pruned. Circuit-atlas's :func:`~circuit_atlas.circuit.
  topn_order` and fixpoint :func:`~circuit_atlas.circuit.prune_prefixes` are the same rule
  (ties: circuit-atlas takes the lower edge index, MIB ``torch.argsort``'s unspecified order).
* **Faithfulness.** ``(m(C) − m(∅)) / (m(G) − m(∅))`` with m the mean task metric (a ratio of
  means), m(G) the unpatched clean run (``evaluate_baseline``) and m(∅) the empty circuit
  (``apply_topn(0)``, every edge patched).
* **Areas.** A trapezoid rule over consecutive fractions on the linear fraction axis (x from
  0.001 to 1; ``log_scale=False``, the default that ``run_evaluation.py`` uses):
  ``area_under`` = Σ (x₂ − x₁)(f₁ + f₂)/2 and ``area_from_1`` = Σ (x₂ − x₁)(|1 − f₁| + |1 − f₂|)/2.
* **Which curve.** ``print_results.py`` reports **CPR** as ``area_under`` of the run with
  ``absolute=False`` (signed scores) and **CMD** as ``area_from_1`` of the run with
  ``absolute=True`` (|scores|), each falling back to the other run only when its own is missing.
  :func:`mib_metrics` computes both curves in one batched pass.

Circuit-atlas's scores share MIB's sign: both attribute with ``loss=True`` (the negated metric),
so a positive score means patching the edge lowers the task metric.

Differences (deliberate): the faithfulness is undefined (None, and so are CPR and CMD) when
m(G) − m(∅) is noise (:class:`~circuit_atlas.faithfulness.Baselines`' rule), where MIB would
divide anyway; the metric is the task's own (logit or probability difference), MIB's is the
logit difference; edge counts are reported after the fixpoint pruning (the pinned
``prune()`` stops after one round when called by ``apply_topn`` and reaches the fixpoint only
inside ``evaluate_graph``, so MIB's ``weighted_edge_counts`` can count a few dangling edges
that its evaluation does not keep).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from circuit_atlas.circuit import prune_prefixes, topn_order
from circuit_atlas.errors import MibError
from circuit_atlas.faithfulness import Baselines
from circuit_atlas.graph import Graph

__all__ = [
    "MIB_FRACTIONS",
    "MibCurve",
    "MibScores",
    "area_from_1",
    "area_under",
    "cmd",
    "cpr",
    "mib_circuits",
    "mib_curve",
    "mib_for_result",
    "mib_metrics",
    "mib_sizes",
]

log = logging.getLogger(__name__)

MIB_FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Edge fractions of MIB's curve (``percentages`` in ``evaluate_area_under_curve``)."""

MASK_BUDGET = 256 * 2**20
"""Bytes of dense circuit masks handed to one evaluator call (as in :mod:`circuit_atlas.search`)."""


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in fractions)
    except (TypeError, ValueError) as exc:
        raise MibError(f"edge fractions must be numbers, got {fractions!r}") from exc
    if len(values) < 2:
        raise MibError(f"a MIB curve needs at least two edge fractions, got {list(values)}")
    for x in values:
        if not (math.isfinite(x) and 0.0 < x <= 1.0):
            raise MibError(f"edge fraction {x!r} is not in (0, 1]; fractions {list(values)}")
    for a, b in zip(values, values[1:], strict=False):
        if not b > a:
            raise MibError(f"edge fractions must increase strictly, got {a!r} then {b!r}")
    return values


def _check_curve(faithfulness: Sequence[float], fractions: Sequence[float]
                 ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xs = _check_fractions(fractions)
    if faithfulness is None or len(faithfulness) == 0:
        raise MibError("the faithfulness curve is empty")
    ys = tuple(float(f) for f in faithfulness)
    if len(ys) != len(xs):
        raise MibError(f"the faithfulness curve has {len(ys)} points, the fractions {len(xs)}")
    for x, y in zip(xs, ys, strict=True):
        if not math.isfinite(y):
            raise MibError(f"faithfulness {y!r} at edge fraction {x} is not finite")
    return xs, ys


def mib_sizes(n_edges: int, fractions: Sequence[float] = MIB_FRACTIONS) -> list[int]:
    """Edges requested at each fraction: ``int(p * n_edges)``, as MIB computes them.

    Args:
        n_edges: Every edge of the graph (MIB's ``len(graph.edges)``).
        fractions: Edge fractions in (0, 1], strictly increasing.

    Returns:
        One size per fraction (before pruning).

    Raises:
        MibError: For bad fractions or a negative ``n_edges``.
    """
    if n_edges < 0:
        raise MibError(f"n_edges must be >= 0, got {n_edges}")
    return [int(p * n_edges) for p in _check_fractions(fractions)]


def area_under(faithfulness: Sequence[float], fractions: Sequence[float] = MIB_FRACTIONS, *,
               log_scale: bool = False) -> float:
    """Trapezoid area under the faithfulness curve (MIB's ``area_under``).

    Args:
        faithfulness: f at each fraction (unitless).
        fractions: The edge fractions (x values), strictly increasing in (0, 1].
        log_scale: Integrate over ln(fraction) instead (MIB's ``log_scale=True``; off in
            ``run_evaluation.py``).

    Returns:
        Σ (x₂ − x₁)(f₁ + f₂)/2 over consecutive points.

    Raises:
        MibError: For an empty curve, a length mismatch, non-finite values or bad fractions.
    """
    xs, ys = _check_curve(faithfulness, fractions)
    if log_scale:
        xs = tuple(math.log(x) for x in xs)
    return sum((x2 - x1) * ((f1 + f2) / 2)
               for x1, x2, f1, f2 in zip(xs, xs[1:], ys, ys[1:], strict=False))


def area_from_1(faithfulness: Sequence[float], fractions: Sequence[float] = MIB_FRACTIONS, *,
                log_scale: bool = False) -> float:
    """Trapezoid area between the faithfulness curve and 1 (MIB's ``area_from_1``).

    Args:
        faithfulness: f at each fraction (unitless).
        fractions: The edge fractions (x values), strictly increasing in (0, 1].
        log_scale: Integrate over ln(fraction) instead.

    Returns:
        Σ (x₂ − x₁)(|1 − f₁| + |1 − f₂|)/2 over consecutive points.

    Raises:
        MibError: For an empty curve, a length mismatch, non-finite values or bad fractions.
    """
    _, ys = _check_curve(faithfulness, fractions)
    return area_under([abs(1.0 - f) for f in ys], fractions, log_scale=log_scale)


def cpr(curve: MibCurve | Sequence[float], fractions: Sequence[float] | None = None) -> float:
    """Circuit performance ratio: the area under f (higher is better; 1 ≈ f = 1 everywhere).

    MIB computes it on the curve of *signed* scores (``absolute=False``); pass that curve (or
    use :func:`mib_metrics`).

    Args:
        curve: A :class:`MibCurve` or the faithfulness values.
        fractions: The fractions of bare values (default :data:`MIB_FRACTIONS`).

    Raises:
        MibError: For an undefined, empty or malformed curve.
    """
    ys, xs = _values(curve, fractions)
    return area_under(ys, xs)


def cmd(curve: MibCurve | Sequence[float], fractions: Sequence[float] | None = None) -> float:
    """Circuit–model distance: the area between f and 1 (lower is better; 0 = f = 1 everywhere).

    MIB computes it on the curve of *absolute* scores (``absolute=True``).

    Args:
        curve: A :class:`MibCurve` or the faithfulness values.
        fractions: The fractions of bare values (default :data:`MIB_FRACTIONS`).

    Raises:
        MibError: For an undefined, empty or malformed curve.
    """
    ys, xs = _values(curve, fractions)
    return area_from_1(ys, xs)


def _values(curve: MibCurve | Sequence[float], fractions: Sequence[float] | None
            ) -> tuple[Sequence[float], Sequence[float]]:
    if isinstance(curve, MibCurve):
        if curve.faithfulness is None:
            raise MibError(f"faithfulness is undefined (m(G) {curve.clean_metric:.4g}, m(0) "
                           f"{curve.empty_metric:.4g}): no CPR/CMD")
        return curve.faithfulness, curve.fractions if fractions is None else fractions
    return curve, MIB_FRACTIONS if fractions is None else fractions


@dataclass(frozen=True)
class MibCurve:
    """MIB's faithfulness curve of one edge-score vector.

    Attributes:
        fractions: Edge fractions (x values).
        absolute: Whether edges were ranked by |score| (True) or by the signed score.
        n_requested: ``int(p * n_edges)`` per fraction (before pruning).
        n_edges: Edges of each pruned circuit.
        metric: Mean task metric of each circuit (logits or probabilities, per the task).
        clean_metric: m(G), the unpatched model's mean metric.
        empty_metric: m(∅), the empty circuit's mean metric.
        faithfulness: (m(C) − m(∅)) / (m(G) − m(∅)) per fraction; None when undefined.
    """

    fractions: tuple[float, ...]
    absolute: bool
    n_requested: tuple[int, ...]
    n_edges: tuple[int, ...]
    metric: tuple[float, ...]
    clean_metric: float
    empty_metric: float
    faithfulness: tuple[float, ...] | None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per point: fraction, absolute, n_requested, n_edges, metric, faithfulness."""
        f = self.faithfulness or (None,) * len(self.fractions)
        return [{"fraction": x, "absolute": self.absolute, "n_requested": n, "n_edges": e,
                 "metric": m, "faithfulness": y}
                for x, n, e, m, y in zip(self.fractions, self.n_requested, self.n_edges,
                                         self.metric, f, strict=True)]


@dataclass(frozen=True)
class MibScores:
    """CPR and CMD of one result, with the two curves they integrate.

    Attributes:
        cpr: Area under the signed-score curve; None when faithfulness is undefined.
        cmd: Area between 1 and the absolute-score curve; None when undefined.
        signed: The curve of ``absolute=False`` (CPR's).
        absolute: The curve of ``absolute=True`` (CMD's).
        seconds: Wall time of the evaluation.
        circuits: Distinct circuits evaluated (the empty one included unless it was given).
        ablation: How edges outside the circuits were ablated (``patching``, MIB's default).
    """

    cpr: float | None
    cmd: float | None
    signed: MibCurve
    absolute: MibCurve
    seconds: float = 0.0
    circuits: int = 0
    ablation: str = "patching"


def mib_circuits(graph: Graph, scores: Tensor, *, absolute: bool = True,
                 fractions: Sequence[float] = MIB_FRACTIONS) -> list[Tensor]:
    """The pruned top-n circuits of MIB's curve (``apply_topn(int(p * n_edges), absolute)``).

    Args:
        graph: The graph.
        scores: ``(n_edges,)`` signed edge scores (circuit-atlas order, ``Graph.edge_names``).
        absolute: Rank by |score| (True) or by the signed score, highest first.
        fractions: Edge fractions.

    Returns:
        One sorted int64 tensor of in-circuit edge indices per fraction, after fixpoint pruning.

    Raises:
        MibError: For bad fractions or scores of the wrong shape.
    """
    if scores.dim() != 1 or scores.numel() != graph.n_edges:
        raise MibError(f"scores have shape {tuple(scores.shape)}; the graph has "
                       f"{graph.n_edges} edges")
    sizes = mib_sizes(graph.n_edges, fractions)
    order = topn_order(graph, scores.detach().float().cpu(), absolute=absolute)
    return prune_prefixes(graph, order, sizes, fixpoint=True)


def mib_curve(model: Any, data: Any, scores: Tensor, *, absolute: bool = True,
              fractions: Sequence[float] = MIB_FRACTIONS, **kwargs: Any) -> MibCurve:
    """MIB's faithfulness curve of ``scores`` for one ranking (see :func:`mib_metrics`).

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        data: The task dataset.
        scores: ``(n_edges,)`` signed edge scores.
        absolute: Rank by |score| (CMD's curve) or the signed score (CPR's).
        fractions: Edge fractions.
        **kwargs: ``ablation``, ``batch_size``, ``clean_metric``, ``clean_se``, ``abs_tol``,
            ``n_se``, ``evaluator`` of :func:`mib_metrics`.

    Returns:
        The curve.

    Raises:
        MibError: For bad fractions or scores.
    """
    curves, _ = _curves(model, data, scores, (absolute,), fractions, **kwargs)
    return curves[0]


def mib_metrics(model: Any, data: Any, scores: Tensor, *,
                fractions: Sequence[float] = MIB_FRACTIONS, **kwargs: Any) -> MibScores:
    """CPR (signed-score curve) and CMD (absolute-score curve) of an edge-score vector.

    Every circuit of both curves and the empty circuit run in one batched pass of a
    :class:`~circuit_atlas.evaluation.CircuitEvaluator` (identical circuits once).

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        data: The task dataset.
        scores: ``(n_edges,)`` signed edge scores (``loss=True`` sign, as MIB's).
        fractions: Edge fractions (default :data:`MIB_FRACTIONS`).
        **kwargs: ``ablation`` (``patching``), ``batch_size`` (32), ``clean_metric`` (m(G);
            None runs the clean prompts), ``empty_metric`` (m(∅) when already known, e.g.
            from the search with the same ablation; None evaluates it), ``clean_se``
            (standard error of m(G) for the undefined rule, 0), ``abs_tol`` (1e-3), ``n_se``
            (2), ``evaluator`` (a :class:`~circuit_atlas.evaluation.CircuitEvaluator` on
            ``data`` to reuse).

    Returns:
        The :class:`MibScores`.

    Raises:
        MibError: For bad fractions or scores.
    """
    import time

    t = time.perf_counter()
    (signed, absolute), n = _curves(model, data, scores, (False, True), fractions, **kwargs)
    seconds = time.perf_counter() - t
    return MibScores(
        cpr=None if signed.faithfulness is None else cpr(signed),
        cmd=None if absolute.faithfulness is None else cmd(absolute),
        signed=signed, absolute=absolute, seconds=seconds, circuits=n,
        ablation=kwargs.get("ablation", "patching"),
    )


def _curves(model: Any, data: Any, scores: Tensor, rankings: Sequence[bool],
            fractions: Sequence[float], *, ablation: str = "patching", batch_size: int = 32,
            clean_metric: float | None = None, empty_metric: float | None = None,
            clean_se: float = 0.0, abs_tol: float = 1e-3, n_se: float = 2.0,
            evaluator: Any = None) -> tuple[list[MibCurve], int]:
    from circuit_atlas.evaluation import CircuitEvaluator, task_logits
    from circuit_atlas.tasks.base import metric_values

    graph = model.graph
    xs = _check_fractions(fractions)
    sizes = mib_sizes(graph.n_edges, xs)
    per_ranking = [mib_circuits(graph, scores, absolute=a, fractions=xs) for a in rankings]
    keys: dict[bytes, int] = {b"": 0}  # the empty circuit first
    circuits: list[Tensor] = [torch.empty(0, dtype=torch.long)]
    for edges in (e for family in per_ranking for e in family):
        key = edges.numpy().tobytes()
        if key not in keys:
            keys[key] = len(circuits)
            circuits.append(edges)
    if evaluator is None:
        evaluator = CircuitEvaluator(model, data, ablation=ablation, batch_size=batch_size)
    chunk = max(1, MASK_BUDGET // (graph.n_forward * graph.n_backward * 4))
    values: list[float] = [] if empty_metric is None else [float(empty_metric)]
    for s in range(len(values), len(circuits), chunk):
        part = circuits[s : s + chunk]
        masks = torch.zeros(len(part), graph.n_edges, dtype=torch.bool)
        for row, edges in enumerate(part):
            masks[row, edges] = True
        values.extend(float(v) for v in evaluator(masks).tolist())
    if clean_metric is None:  # MIB's evaluate_baseline: the unpatched clean run
        logits = task_logits(model, data, batch_size=batch_size)
        clean_metric = float(metric_values(logits, data.to(logits.device)).mean())
    empty = values[0]
    base = Baselines(clean=float(clean_metric), empty=empty, clean_se=clean_se, abs_tol=abs_tol,
                     n_se=n_se)
    curves = []
    for absolute, family in zip(rankings, per_ranking, strict=True):
        metric = tuple(values[keys[e.numpy().tobytes()]] for e in family)
        faith = (tuple(base.normalized(m) for m in metric)  # type: ignore[misc]
                 if base.normalized_defined else None)
        curves.append(MibCurve(fractions=xs, absolute=absolute, n_requested=tuple(sizes),
                               n_edges=tuple(int(e.numel()) for e in family), metric=metric,
                               clean_metric=float(clean_metric), empty_metric=empty,
                               faithfulness=faith))
    ran = len(circuits) - (empty_metric is not None)
    log.info("MIB curves: %d circuits for %d rankings", ran, len(rankings))
    return curves, ran


def mib_for_result(model: Any, data: Any, result: Any, **kwargs: Any) -> MibScores:
    """:func:`mib_metrics` of a :class:`~circuit_atlas.result.CircuitResult`'s edge scores.

    Reuses the result's clean metric m(G), its empty-circuit metric m(∅) (the search's, same
    data and ablation), the clean metric's standard error (for the undefined rule), its
    ablation and batch size; ``kwargs`` override them.

    Args:
        model: The model the result was computed on.
        data: The task dataset of the result.
        result: The :class:`~circuit_atlas.result.CircuitResult`.
        **kwargs: Overrides of :func:`mib_metrics`' keyword arguments.

    Returns:
        The :class:`MibScores`.
    """
    settings = getattr(result, "settings", None) or {}
    clean = (settings.get("behaviour") or {}).get("clean") or {}
    std, n = clean.get("metric_std"), max(len(data), 1)
    options = {"clean_metric": result.clean_metric, "empty_metric": result.empty_metric,
               "clean_se": 0.0 if std is None else float(std) / math.sqrt(n),
               "ablation": settings.get("ablation", "patching"),
               "batch_size": settings.get("batch_size", 32),
               "abs_tol": settings.get("abs_tol", 1e-3), "n_se": settings.get("n_se", 2.0)}
    return mib_metrics(model, data, result.scores, **{**options, **kwargs})
