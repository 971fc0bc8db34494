"""Find the minimal faithful circuit of a model on a task (PAPER.md §3.2–3.4).

:func:`find_circuit` chains the paper's pipeline: behaviour of the model (clean and corrupted
metric), edge attribution (EAP-IG over inputs, 30 steps), greedy selection of n edges plus
pruning, and a search for the smallest n whose circuit recovers ``threshold`` (0.8) of the
model's metric, with every edge outside the circuit patched from the corrupted run.

The search runs on the *curve* n ↦ faithfulness(prune(select(n))). Circuits are evaluated in
batches by :func:`circuit_atlas.evaluation.evaluate_circuits`; sizes that give the same pruned
circuit are evaluated once. The search procedures themselves live in
:mod:`circuit_atlas.curve_search` and faithfulness in :mod:`circuit_atlas.faithfulness`; both
are re-exported here.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from circuit_atlas.circuit import (
    PRUNE_MODES,
    SELECTIONS,
    PruneMode,
    Selection,
    prune_prefixes,
    selection_order,
)
from circuit_atlas.curve_search import (
    SEARCHES,
    AdaptiveConfig,
    SearchKind,
    SearchResult,
    exhaustive_search,
    fast_search,
    paper_search,
    run_search,
)
from circuit_atlas.errors import ConfigError, UnknownNameError
from circuit_atlas.faithfulness import FAITHFULNESS_KINDS, Baselines, FaithfulnessKind
from circuit_atlas.graph import Graph
from circuit_atlas.result import CircuitResult

__all__ = [
    "FAITHFULNESS_KINDS",
    "SEARCHES",
    "AdaptiveConfig",
    "Baselines",
    "CircuitCurve",
    "SearchResult",
    "check_search_settings",
    "exhaustive_search",
    "fast_search",
    "find_circuit",
    "paper_search",
    "run_search",
]

log = logging.getLogger(__name__)

MASK_BUDGET = 256 * 2**20
"""Bytes of dense circuit masks handed to one ``evaluate_circuits`` call (bounds memory)."""


class CircuitCurve:
    """The metric of prune(select(n)) for any size n, evaluated in batches and memoised.

    Circuits run through one :class:`~circuit_atlas.evaluation.CircuitEvaluator`, so the
    corrupted run is computed once and shared by every circuit; sizes whose pruned circuits
    are identical are evaluated once.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        graph: Its graph.
        data: The task dataset.
        order: Selection order (:func:`~circuit_atlas.circuit.selection_order`); size n is the
            first n edges of it (sizes beyond its length take all of it).
        ablation: ``patching``, ``mean`` or ``zero``.
        batch_size: Examples per forward pass.
        fixpoint: HEAD's iterated pruning (True) or the pinned single pass (False).

    Attributes:
        metric: Mean task metric by requested size.
        sizes: ``(edges, nodes)`` of the pruned circuit by requested size.
        rounds: Calls that ran at least one new circuit (sequential passes over the data).
        circuits: Distinct circuits run.
        calls: Evaluator calls (a round is split to bound the memory of dense masks).
    """

    def __init__(self, model: Any, graph: Graph, data: Any, order: Tensor, *,
                 ablation: str = "patching", batch_size: int = 32,
                 fixpoint: bool = True) -> None:
        from circuit_atlas.evaluation import CircuitEvaluator

        self.graph, self.order, self.fixpoint = graph, order, fixpoint
        self.evaluator = CircuitEvaluator(model, data, ablation=ablation, batch_size=batch_size)
        self.metric: dict[int, float] = {}
        self.sizes: dict[int, tuple[int, int]] = {}
        self._by_circuit: dict[bytes, float] = {}
        self.rounds = self.circuits = self.calls = 0
        self.chunk = max(1, MASK_BUDGET // (graph.n_forward * graph.n_backward * 4))

    @property
    def passes(self) -> int:
        """Model forward passes over a batch of examples run so far (corrupted and circuit)."""
        return self.evaluator.passes

    def masks(self, sizes: Sequence[int]) -> Tensor:
        """``(k, n_edges)`` bool pruned circuits of the given sizes."""
        return self._dense(prune_prefixes(self.graph, self.order, list(sizes),
                                          fixpoint=self.fixpoint))

    def _dense(self, circuits: Sequence[Tensor]) -> Tensor:
        masks = torch.zeros(len(circuits), self.graph.n_edges, dtype=torch.bool)
        for row, edges in enumerate(circuits):
            masks[row, edges] = True
        return masks

    def __call__(self, sizes: Sequence[int]) -> list[float]:
        """Mean metric of each size's circuit (new circuits run in one round)."""
        todo = sorted({int(n) for n in sizes} - self.metric.keys())
        if todo:
            circuits = prune_prefixes(self.graph, self.order, todo, fixpoint=self.fixpoint)
            keys = [c.numpy().tobytes() for c in circuits]
            new: dict[bytes, int] = {}
            for i, key in enumerate(keys):
                if key not in self._by_circuit and key not in new:
                    new[key] = i
            if new:
                self.rounds += 1
                rows = list(new.values())
                for s in range(0, len(rows), self.chunk):
                    part = rows[s : s + self.chunk]
                    values = self.evaluator(self._dense([circuits[i] for i in part]))
                    self.calls += 1
                    for i, v in zip(part, values.tolist(), strict=True):
                        self._by_circuit[keys[i]] = float(v)
                self.circuits += len(rows)
                log.info("evaluated %d circuits for sizes %s…%s", len(rows), todo[0], todo[-1])
            parent, child = self.graph.edge_parent_node, self.graph.edge_child_node
            for n, key, edges in zip(todo, keys, circuits, strict=True):
                self.metric[n] = self._by_circuit[key]
                nodes = torch.unique(torch.cat([parent[edges], child[edges]])).numel()
                self.sizes[n] = (int(edges.numel()), int(nodes))
        return [self.metric[int(n)] for n in sizes]


def _versions() -> dict[str, str]:
    import transformers

    from circuit_atlas import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "circuit_atlas": __version__}


def _choose(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UnknownNameError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def check_search_settings(*, ig_steps: int = 30, threshold: float = 0.8, max_edges: int = 1600,
                          batch_size: int = 32) -> None:
    """Refuse settings of :func:`find_circuit` that cannot give a circuit, before any work.

    Args:
        ig_steps: Integrated-gradient steps; at least 1.
        threshold: Faithfulness to reach; a number in (0, 1] (the paper's is 0.8).
        max_edges: Largest circuit searched (edges); at least 1.
        batch_size: Examples per forward pass; at least 1.

    Raises:
        ConfigError: Naming the first bad setting and its value.
    """
    if isinstance(ig_steps, bool) or not isinstance(ig_steps, int) or ig_steps < 1:
        raise ConfigError(f"ig_steps must be an integer >= 1, got {ig_steps!r}")
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)
            and 0 < threshold <= 1):
        raise ConfigError(f"threshold must be a faithfulness in (0, 1], got {threshold!r}")
    for name, value in (("max_edges", max_edges), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def find_circuit(
    model: Any,
    data: Any,
    *,
    graph: Graph | None = None,
    method: str = "EAP-IG-inputs",
    ig_steps: int = 30,
    threshold: float = 0.8,
    search: SearchKind = "fast",
    selection: Selection = "greedy",
    ablation: str = "patching",
    prune: PruneMode = "fixpoint",
    batch_size: int = 32,
    max_edges: int = 1600,
    faithfulness: FaithfulnessKind = "ratio",
    scores: Tensor | None = None,
    start: int = 25,
    step: int = 25,
    curve_step: int = 50,
    abs_tol: float = 1e-3,
    n_se: float = 2.0,
    fast_window: int | None = None,
    baseline: dict | None = None,
) -> CircuitResult:
    """Attribute, select and search: the minimal faithful circuit of ``model`` on ``data``.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        data: The task's :class:`~circuit_atlas.tasks.base.TaskDataset`.
        graph: The model's graph (None = ``model.graph``).
        method: Attribution method (:data:`circuit_atlas.attribution.METHODS`).
        ig_steps: Integrated-gradient steps (30 in the paper).
        threshold: Faithfulness the circuit must reach (0.8).
        search: ``fast`` (the paper's answer in a few batched rounds), ``paper`` (the paper's
            adaptive search, one evaluation at a time) or ``exhaustive`` (smallest passing n).
        selection: ``greedy`` (the paper's) or ``topn``.
        ablation: How edges outside the circuit are ablated: ``patching`` (the paper's),
            ``mean`` or ``zero``.
        prune: ``fixpoint`` (EAP-IG HEAD) or ``single`` (the pinned library); equal for edge
            circuits.
        batch_size: Examples per forward pass.
        max_edges: Largest size searched and the fallback size (``end``, 1600).
        faithfulness: Which faithfulness drives the search: ``ratio`` (the paper's) or
            ``normalized``. Both are reported.
        scores: Precomputed ``(n_edges,)`` attribution scores (skips attribution).
        start: First size of the paper's scan (25).
        step: Initial step of the paper's scan (25).
        curve_step: Spacing of the logged faithfulness curve (50).
        abs_tol: Smallest denominator for which faithfulness is defined (metric units).
        n_se: A denominator must also exceed this many standard errors of the clean metric.
        fast_window: Speculation of the fast search (:func:`fast_search`'s ``window``; 0 runs
            only the circuits the paper's procedure asks for: fewest circuits, most rounds —
            cheaper where a batch of circuits costs as much as running them one by one).
            None picks 0 on a CPU and the default speculation on an accelerator.
        baseline: A precomputed :func:`circuit_atlas.evaluation.behaviour` result for ``data``
            (the runner computes it for the task metrics; avoids running it twice).

    Returns:
        The :class:`~circuit_atlas.result.CircuitResult`. When the driving faithfulness is
        undefined (the clean-vs-empty gap is noise) no search runs: the circuit is the fallback
        size ``max_edges`` and ``settings["note"]`` says why.

    Raises:
        UnknownNameError: For an unknown search, selection, ablation, prune mode, faithfulness
            or attribution method.
        ConfigError: For ``ig_steps``, ``max_edges`` or ``batch_size`` < 1, or a threshold
            outside (0, 1] (:func:`check_search_settings`).
        NonFiniteError: If the behaviour or an attribution score is NaN or infinite (the
            message names the first non-finite slot or edge); no circuit is chosen.
        ValueError: For a graph that does not match the model, or bad sizes.
    """
    from circuit_atlas.attribution import METHODS, attribute
    from circuit_atlas.evaluation import ABLATIONS, behaviour
    from circuit_atlas.models.finite import check_finite_scores

    choices = (("search", search, SEARCHES), ("selection", selection, SELECTIONS),
               ("ablation", ablation, ABLATIONS), ("prune mode", prune, PRUNE_MODES),
               ("faithfulness", faithfulness, FAITHFULNESS_KINDS),
               ("attribution method", method, METHODS))
    for name, value, valid in choices:
        _choose(name, value, valid)
    check_search_settings(ig_steps=ig_steps, threshold=threshold, max_edges=max_edges,
                          batch_size=batch_size)
    config = AdaptiveConfig(threshold=threshold, start=start, end=max_edges, initial_step=step)
    graph = _model_graph(model, graph)
    timings: dict[str, float] = {}
    t_all = t = time.perf_counter()

    on_cpu = getattr(getattr(model, "device", None), "type", "cpu") == "cpu"
    if search == "fast" and fast_window is None and on_cpu:
        fast_window = 0  # on a CPU a batch of circuits costs as much as running them in turn
    beh = baseline if baseline is not None else behaviour(model, data, batch_size=batch_size)
    timings["behaviour"] = time.perf_counter() - t
    t = time.perf_counter()
    if scores is None:
        scores = attribute(model, graph, data, method=method, ig_steps=ig_steps,
                           batch_size=batch_size)
    scores = scores.detach().float().cpu()
    check_finite_scores(scores, graph.edge_names, method)  # never a circuit chosen from NaNs
    timings["attribution"] = time.perf_counter() - t
    t = time.perf_counter()
    order = selection_order(graph, scores, selection, limit=max_edges)
    timings["selection"] = time.perf_counter() - t
    t = time.perf_counter()
    curve = CircuitCurve(model, graph, data, order, ablation=ablation, batch_size=batch_size,
                         fixpoint=prune == "fixpoint")
    logged = list(range(curve_step, max_edges + 1, curve_step))
    grid = list(range(start, max_edges, step)) if search == "fast" and fast_window != 0 else []
    curve([0, *logged, *grid])  # round 1: the empty circuit, the logged curve, the scan grid
    clean = beh["clean"]
    baselines = Baselines(clean=clean["metric"], empty=curve.metric[0],
                          clean_se=clean["metric_std"] / math.sqrt(max(len(data), 1)),
                          abs_tol=abs_tol, n_se=n_se)
    note = None
    if baselines.defined(faithfulness):
        found = run_search(search, lambda sizes: [baselines.faithfulness(m, faithfulness)
                                                   for m in curve(sizes)],
                           config, max_size=graph.n_edges, window=fast_window,
                           chunk=max(curve.chunk, 64))
        n_requested, passed = found.size, found.passed
    else:
        found, n_requested, passed = None, max_edges, False
        note = (f"{faithfulness} faithfulness is undefined (clean {baselines.clean:.4g}, empty "
                f"{baselines.empty:.4g}, standard error {baselines.clean_se:.3g}): no search, "
                f"fallback size {max_edges}")
        log.warning(note)
    (final_metric,) = curve([n_requested])
    timings["search"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_all

    in_circuit = curve.masks([n_requested])[0]
    t_examples = time.perf_counter()  # per prompt, for bootstrap intervals (two more circuits)
    per_example = curve.evaluator.per_example(torch.stack([torch.zeros_like(in_circuit),
                                                           in_circuit]))
    example_metrics = {"empty": per_example[0].tolist(), "circuit": per_example[1].tolist()}
    timings["per_example"] = time.perf_counter() - t_examples
    n_edges, n_nodes = curve.sizes[n_requested]
    points = [
        {"n_requested": n, "n_edges": curve.sizes[n][0], "n_nodes": curve.sizes[n][1],
         "metric": m, "faithfulness": baselines.ratio(m),
         "faithfulness_normalized": baselines.normalized(m)}
        for n, m in sorted(curve.metric.items())
    ]
    settings = {
        "method": method, "ig_steps": ig_steps, "threshold": threshold, "search": search,
        "selection": selection, "ablation": ablation, "prune": prune, "batch_size": batch_size,
        "max_edges": max_edges, "faithfulness": faithfulness, "start": start, "step": step,
        "curve_step": curve_step, "abs_tol": abs_tol, "n_se": n_se, "fast_window": fast_window,
        "n_examples": len(data),
        "n_requested": n_requested, "passed": passed, "note": note,
        "graph": {"n_layers": graph.n_layers, "n_heads": graph.n_heads,
                  "parallel_attn_mlp": graph.parallel_residual,
                  "d_model": getattr(getattr(model, "spec", None), "d_model", None),
                  "n_edges": graph.n_edges, "n_nodes": graph.n_nodes},
        "behaviour": beh,
        "search_stats": {
            "rounds": curve.rounds, "circuits": curve.circuits, "evaluate_calls": curve.calls,
            "forward_passes": curve.passes, "n_batches": len(curve.evaluator.batches),
            "search_rounds": None if found is None else found.rounds,
            "sizes_evaluated": None if found is None else found.sizes_evaluated,
            "reference_evaluations": None if found is None else found.reference_evaluations,
            "trace": None if found is None else found.trace,
        },
    }
    names = graph.node_names
    return CircuitResult(
        task=data.task, metric_kind=data.metric, node_names=list(names),
        edge_names=list(graph.edge_names),
        edge_parent=[names[i] for i in graph.edge_parent_node.tolist()],
        edge_child=[names[i] for i in graph.edge_child_node.tolist()],
        scores=scores, in_circuit=in_circuit,
        node_in_circuit=graph.node_mask(in_circuit),
        n_edges=n_edges, n_nodes=n_nodes,
        faithfulness=baselines.ratio(final_metric),
        faithfulness_normalized=baselines.normalized(final_metric),
        clean_metric=clean["metric"], corrupted_metric=beh["corrupted"]["metric"],
        empty_metric=baselines.empty, curve=points, example_metrics=example_metrics,
        settings=settings, versions=_versions(),
        timings=timings, model=dict(getattr(model, "source", None) or {}),
    )


def _model_graph(model: Any, graph: Graph | None) -> Graph:
    own = model.graph
    if graph is None:
        return own
    if (graph.n_layers, graph.n_heads, graph.parallel_residual) != (
        own.n_layers, own.n_heads, own.parallel_residual
    ):
        raise ValueError(
            f"graph ({graph.n_layers} layers × {graph.n_heads} heads) does not match the model "
            f"({own.n_layers} × {own.n_heads})"
        )
    return graph
