"""Run a model on a task: behaviour metrics, recorded activations, and circuit evaluation.

Circuit evaluation reproduces ``evaluate_graph`` of hannamw/EAP-IG (PAPER.md §3.4): the clean
prompt is run, and for every edge *not* in the circuit the child's input receives the parent's
alternative value instead of its circuit-run value — the parent's output on the paired corrupted
prompt (interchange / patching ablation, the paper's default), its mean output over the dataset
(mean ablation) or zero (zero ablation). Many circuits are evaluated in one batched forward.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import Tensor

from circuit_atlas.graph import Graph
from circuit_atlas.models.patchable import Patch
from circuit_atlas.models.protocol import PatchableModel
from circuit_atlas.tasks.base import TaskDataset, behaviour_metrics, metric_values

__all__ = [
    "ABLATIONS",
    "Ablation",
    "CircuitEvaluator",
    "behaviour",
    "evaluate_circuits",
    "mean_outputs",
    "record_outputs",
    "task_logits",
]

log = logging.getLogger(__name__)

Ablation = Literal["patching", "mean", "zero"]
"""How edges outside a circuit are ablated."""

ABLATIONS: tuple[str, ...] = ("patching", "mean", "zero")

DEFAULT_MEMORY_BUDGET = 768 * 2**20
"""Bytes allowed for the per-pass buffer of forward-slot outputs (bounds circuits per pass)."""


def _check(model: PatchableModel, graph: Graph | None) -> Graph:
    g = model.graph
    if graph is not None and (graph.n_layers, graph.n_heads, graph.parallel_residual) != (
        g.n_layers,
        g.n_heads,
        g.parallel_residual,
    ):
        raise ValueError(
            f"graph ({graph.n_layers} layers × {graph.n_heads} heads) does not match the model "
            f"({g.n_layers} × {g.n_heads})"
        )
    return g


@torch.no_grad()
def task_logits(
    model: PatchableModel, data: TaskDataset, *, corrupted: bool = False, batch_size: int = 32
) -> Tensor:
    """Logits ``(n, vocab)`` at each example's metric position, float32.

    Args:
        model: The model.
        data: The task dataset.
        corrupted: Run the corrupted prompts instead of the clean ones.
        batch_size: Examples per forward pass.
    """
    out = []
    for batch in data.batches(batch_size):
        batch = batch.to(model.device)
        tokens = batch.corrupted if corrupted else batch.clean
        out.append(model.run(tokens, batch.metric_positions).float())
    return torch.cat(out)


def behaviour(model: PatchableModel, data: TaskDataset, *, batch_size: int = 32) -> dict:
    """Task behaviour on the clean and the corrupted prompts (PAPER.md §2.5).

    Returns:
        ``{"clean": {...}, "corrupted": {...}}``, each the dict of
        :func:`circuit_atlas.tasks.base.behaviour_metrics` (``metric`` is the paper's metric:
        logit difference in logits, or probability difference in probabilities), plus
        ``metric_values``: the task metric of every example in dataset order (a list of
        floats; the store keeps them per prompt for bootstrap intervals).

    Raises:
        NonFiniteError: If a metric is NaN or infinite; the message names the first forward
            slot whose output is not finite (:func:`circuit_atlas.models.finite.
            check_finite_behaviour`).
    """
    from circuit_atlas.models.finite import check_finite_behaviour

    data_dev = data.to(model.device)
    out = {}
    for side, corrupted in (("clean", False), ("corrupted", True)):
        logits = task_logits(model, data, corrupted=corrupted, batch_size=batch_size)
        out[side] = {**behaviour_metrics(logits, data_dev),
                     "metric_values": metric_values(logits, data_dev).cpu().tolist()}
    check_finite_behaviour(model, data, out, batch_size=batch_size)
    return out


@torch.no_grad()
def record_outputs(
    model: PatchableModel, tokens: Tensor, positions: Tensor
) -> tuple[Tensor, Tensor]:
    """Run ``tokens`` and record every forward slot's output.

    Args:
        model: The model.
        tokens: ``(b, p)`` int64.
        positions: ``(b,)`` int64 metric positions.

    Returns:
        ``(logits (b, vocab), outputs (n_forward, b, p, d_model))`` in the model dtype.
    """
    b, p = tokens.shape
    buf = torch.empty(
        (model.graph.n_forward, b, p, model.spec.d_model), dtype=model.dtype, device=model.device
    )
    logits = model.run(tokens, positions, record=buf)
    return logits, buf


@torch.no_grad()
def mean_outputs(model: PatchableModel, data: TaskDataset, *, batch_size: int = 32) -> Tensor:
    """Mean output of every forward slot over the clean prompts' real (non-pad) positions.

    Returns:
        ``(n_forward, 1, 1, d_model)`` — the alternative value for mean ablation (EAP-IG's
        ``mean`` intervention, averaged over examples and positions).
    """
    total = None
    count = 0
    for batch in data.batches(batch_size):
        batch = batch.to(model.device)
        _, outs = record_outputs(model, batch.clean, batch.metric_positions)
        p = outs.shape[2]
        valid = (torch.arange(p, device=outs.device)[None, :] < batch.lengths[:, None]).to(
            outs.dtype
        )
        s = torch.einsum("fbpd,bp->fd", outs.float(), valid.float())
        total = s if total is None else total + s
        count += int(valid.sum())
    return (total / count).to(model.dtype)[:, None, None, :]


class CircuitEvaluator:
    """Evaluates circuits on one dataset repeatedly, caching what does not depend on the circuit.

    The alternative values (the corrupted run's forward-slot outputs for ``patching``, the means
    for ``mean``) are computed once and kept while they fit in ``cache_budget`` bytes; beyond
    that, the corrupted run is recomputed per call. Use it when many circuits are evaluated on
    the same data (the minimal-circuit search).

    Args:
        model: The model.
        data: The task dataset.
        ablation: ``patching`` (the paper's interchange ablation), ``mean`` or ``zero``.
        batch_size: Examples per forward pass (before multiplying by circuits per pass).
        memory_budget: Bytes for the per-pass buffer of slot differences; bounds how many
            circuits run together in one forward.
        cache_budget: Bytes allowed for cached corrupted-run activations.

    Raises:
        ValueError: For an unknown ablation.
    """

    def __init__(
        self,
        model: PatchableModel,
        data: TaskDataset,
        *,
        ablation: Ablation = "patching",
        batch_size: int = 32,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        cache_budget: int = 2**30,
    ) -> None:
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; choose one of {ABLATIONS}")
        self.model = model
        self.graph = model.graph
        self.data = data
        self.ablation = ablation
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self.batches = [batch.to(model.device) for batch in data.batches(batch_size)]
        self.means = (
            mean_outputs(model, data, batch_size=batch_size) if ablation == "mean" else None
        )
        elem = torch.finfo(model.dtype).bits // 8
        per_batch = [
            self.graph.n_forward * b.clean.numel() * model.spec.d_model * elem for b in self.batches
        ]
        self._cache: dict[int, Tensor] | None = {} if sum(per_batch) <= cache_budget else None
        self.passes = 0
        """Model forward passes run so far (corrupted runs and circuit runs, per batch)."""

    def _alt(self, i: int, batch: TaskDataset) -> Tensor | None:
        if self.ablation == "mean":
            return self.means
        if self.ablation == "zero":
            return None
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        _, alt = record_outputs(self.model, batch.corrupted, batch.metric_positions)
        self.passes += 1
        if self._cache is not None:
            self._cache[i] = alt
        return alt

    def _batch_values(self, edge_masks: Tensor):
        """Yield ``(batch index, first circuit, (k, b) metric values)`` over batches and chunks.

        Raises:
            ValueError: If the masks do not have one entry per edge.
        """
        g = self.graph
        model = self.model
        if edge_masks.shape[-1] != g.n_edges:
            raise ValueError(
                f"edge masks have {edge_masks.shape[-1]} edges, the graph has {g.n_edges}"
            )
        masks = edge_masks.reshape(-1, g.n_edges)
        keep_all = g.dense(masks.to(device=model.device, dtype=model.dtype))  # (k, f, s)
        n_k = masks.shape[0]
        elem = torch.finfo(model.dtype).bits // 8
        for i, batch in enumerate(self.batches):
            b, p = batch.clean.shape
            per_circuit = g.n_forward * b * p * model.spec.d_model * elem * 2
            chunk = max(1, min(n_k, self.memory_budget // max(per_circuit, 1)))
            alt = self._alt(i, batch)
            for start in range(0, n_k, chunk):
                keep = keep_all[start : start + chunk]
                k = keep.shape[0]
                patch = Patch(keep, alt, broadcast=self.ablation == "mean")
                logits = model.run(batch.clean, batch.metric_positions, patch=patch)
                self.passes += 1
                vals = metric_values(logits.view(k * b, -1), _repeat(batch, k))
                yield i, start, vals.view(k, b)

    @torch.no_grad()
    def __call__(self, edge_masks: Tensor) -> Tensor:
        """Mean task metric of each circuit: ``(k, n_edges)`` bool → ``(k,)`` float32.

        Raises:
            ValueError: If the masks do not have one entry per edge.
        """
        n_k = edge_masks.reshape(-1, edge_masks.shape[-1]).shape[0]
        totals = torch.zeros(n_k, dtype=torch.float64)
        for _, start, vals in self._batch_values(edge_masks):
            totals[start : start + vals.shape[0]] += vals.sum(1).double().cpu()
        return (totals / len(self.data)).float()

    @torch.no_grad()
    def per_example(self, edge_masks: Tensor) -> Tensor:
        """Task metric of each circuit on each example: ``(k, n_edges)`` → ``(k, n)`` float32.

        The same runs as :meth:`__call__` (whose value is this tensor's mean over examples, up
        to float rounding), kept per example in dataset order, for bootstrap intervals over
        prompts (:func:`circuit_atlas.analyses.uncertainty.bootstrap_ci`).

        Raises:
            ValueError: If the masks do not have one entry per edge.
        """
        n_k = edge_masks.reshape(-1, edge_masks.shape[-1]).shape[0]
        parts: dict[int, list[Tensor]] = {}
        for i, start, vals in self._batch_values(edge_masks):
            parts.setdefault(i, []).append((start, vals.float().cpu()))
        columns = [torch.cat([v for _, v in sorted(parts[i], key=lambda sv: sv[0])])
                   for i in sorted(parts)]
        return torch.cat(columns, dim=1) if columns else torch.zeros(n_k, 0)


def evaluate_circuits(
    model: PatchableModel,
    graph: Graph | None,
    data: TaskDataset,
    edge_masks: Tensor,
    *,
    ablation: Ablation = "patching",
    batch_size: int = 32,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Tensor:
    """Mean task metric of each circuit's run, with every other edge ablated.

    A one-shot :class:`CircuitEvaluator`; use the class to evaluate many circuits on the same
    data without recomputing the corrupted run.

    Args:
        model: The model.
        graph: Its graph (None = ``model.graph``).
        data: The task dataset.
        edge_masks: ``(k, n_edges)`` or ``(n_edges,)`` bool, True for edges in the circuit.
        ablation: ``patching`` (the parent's output on the corrupted prompt; the paper's),
            ``mean`` (its mean output, :func:`mean_outputs`) or ``zero``.
        batch_size: Examples per forward pass (before multiplying by circuits per pass).
        memory_budget: Bytes for the per-pass activation buffer; bounds how many circuits run
            together in one forward.

    Returns:
        ``(k,)`` float32 mean metric per circuit (logits or probabilities, per the task), or a
        0-d tensor for a single ``(n_edges,)`` mask. An all-True mask gives the clean metric
        m(M); all-False the empty circuit m(∅).

    Raises:
        ValueError: For an unknown ablation, a graph that is not the model's, or masks of the
            wrong size.
    """
    _check(model, graph)
    evaluator = CircuitEvaluator(
        model,
        data,
        ablation=ablation,
        batch_size=batch_size,
        memory_budget=memory_budget,
        cache_budget=0,
    )
    out = evaluator(edge_masks)
    return out[0] if edge_masks.dim() == 1 else out


def _repeat(data: TaskDataset, k: int) -> TaskDataset:
    """The dataset's metric labels repeated ``k`` times (circuit-major), for batched circuits."""
    if k == 1:
        return data
    from dataclasses import replace

    return replace(
        data,
        clean=data.clean.repeat(k, 1),
        corrupted=data.corrupted.repeat(k, 1),
        lengths=data.lengths.repeat(k),
        answer=data.answer.repeat(k),
        wrong=data.wrong.repeat(k),
        group_signs=None if data.group_signs is None else data.group_signs.repeat(k, 1),
        clean_text=(),
        corrupted_text=(),
    )
