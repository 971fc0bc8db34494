"""Numbers are never silently garbage: refuse NaN or infinite weights and activations.

A NaN weight makes every downstream number NaN; a NaN attribution score sorts arbitrarily, so a
circuit "chosen" from such scores is noise. circuit-atlas therefore checks

- the weights when a model is loaded (:func:`check_finite_weights`, called by
  :func:`circuit_atlas.models.sources.load_model`), naming every non-finite parameter;
- the task behaviour (:func:`check_finite_behaviour`, called by
  :func:`circuit_atlas.evaluation.behaviour`): finite weights can still overflow (float16), and
  then the first forward slot (``input``, a head ``a{l}.h{h}``, an MLP ``m{l}``) whose output is
  not finite is found with one recorded forward pass and named;
- the attribution scores (:func:`check_finite_scores`, called by
  :func:`circuit_atlas.search.find_circuit`) before any circuit is selected.

Each raises :class:`~circuit_atlas.errors.NonFiniteError`; nothing is stored.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from circuit_atlas.errors import NonFiniteError

__all__ = [
    "check_finite_behaviour",
    "check_finite_scores",
    "check_finite_weights",
    "first_nonfinite_slot",
]


def _count(tensor: Tensor) -> tuple[int, int]:
    return int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())


def check_finite_weights(model: torch.nn.Module, where: str = "the model") -> None:
    """Refuse a model with a NaN or infinite parameter or buffer.

    Args:
        model: Any ``torch.nn.Module``.
        where: The checkpoint, for the message.

    Raises:
        NonFiniteError: Naming (up to 5 of) the non-finite tensors, with their NaN / inf counts.
    """
    bad = []
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            nan, inf = _count(tensor.detach())
            bad.append(f"{name} ({nan} NaN, {inf} inf of {tensor.numel()})")
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise NonFiniteError(f"{where} has non-finite weights: {', '.join(bad[:5])}{more}; "
                             "no score computed from it would mean anything")


@torch.no_grad()
def first_nonfinite_slot(model: Any, tokens: Tensor, positions: Tensor) -> str | None:
    """Name the first forward slot whose output is not finite on ``tokens``, or None.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        tokens: ``(b, p)`` int64 prompts.
        positions: ``(b,)`` int64 metric positions.

    Returns:
        ``input``, ``a{l}.h{h}`` or ``m{l}`` (in the graph's slot order, which is the order of
        computation), ``logits`` if only the logits are non-finite, or None if all are finite.
    """
    tokens, positions = tokens.to(model.device), positions.to(model.device)
    b, p = tokens.shape
    # every forward slot's output, as circuit_atlas.evaluation.record_outputs records it
    outputs = torch.empty((model.graph.n_forward, b, p, model.spec.d_model), dtype=model.dtype,
                          device=model.device)  # (n_forward, batch, pos, d_model)
    logits = model.run(tokens, positions, record=outputs)
    finite = torch.isfinite(outputs.flatten(1)).all(dim=1)  # (n_forward,)
    if not bool(finite.all()):
        return model.graph.node_names[int((~finite).nonzero()[0])]
    return None if bool(torch.isfinite(logits).all()) else "logits"


def check_finite_behaviour(model: Any, data: Any, result: dict, *, batch_size: int = 32) -> None:
    """Refuse a behaviour result whose metrics are NaN or infinite, naming the first bad slot.

    Args:
        model: The model that produced ``result``.
        data: The task's :class:`~circuit_atlas.tasks.base.TaskDataset`.
        result: :func:`circuit_atlas.evaluation.behaviour`'s ``{"clean": ..., "corrupted": ...}``.
        batch_size: Examples per forward pass of the diagnosis.

    Raises:
        NonFiniteError: Naming the prompts (clean or corrupted), the metric and the first
            forward slot whose output is not finite.
    """
    for which in ("clean", "corrupted"):
        metric = result[which]["metric"]
        if metric is None or torch.isfinite(torch.as_tensor(float(metric))):
            continue
        slot = None
        for batch in data.batches(batch_size):
            tokens = batch.corrupted if which == "corrupted" else batch.clean
            slot = first_nonfinite_slot(model, tokens, batch.metric_positions)
            if slot is not None:
                break
        where = f"first at the output of {slot!r}" if slot else "outside the recorded slots"
        raise NonFiniteError(f"the {which} metric of task {getattr(data, 'task', '?')!r} is "
                             f"{metric} (activations not finite, {where}); no score is computed "
                             "from it")


def check_finite_scores(scores: Tensor, edge_names: Any, method: str) -> None:
    """Refuse attribution scores with NaN or infinite entries before a circuit is chosen.

    Args:
        scores: ``(n_edges,)`` attribution scores.
        edge_names: The graph's edge names, in score order.
        method: The attribution method, for the message.

    Raises:
        NonFiniteError: Naming how many scores are not finite and the first such edge.
    """
    finite = torch.isfinite(scores)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        raise NonFiniteError(f"{int((~finite).sum())} of {scores.numel()} {method} scores are "
                             f"not finite (first: edge {edge_names[first]!r} = "
                             f"{float(scores[first])}); no circuit is chosen from them")
