"""A flexible (slow-path) forward pass for component scores: records and edits per head.

The edge-patching forward of :mod:`circuit_atlas.models.patchable` is built for speed over the edge
graph; component scores need other views of the same computation: attention patterns, each
head's output, the residual stream before every layer, and interventions on single heads (path
patching freezes head outputs and replaces a receiver's query input; CSPA replaces one head's
output). :func:`trace` runs the model layer by layer with the model's own building blocks
through the model's residual walker
(:meth:`~circuit_atlas.models.patchable.PatchableTransformer.walk`, part of the
:class:`~circuit_atlas.models.protocol.PatchableModel` protocol) and exposes those views. It
equals the model's ``forward`` when nothing is edited (tested in
``tests/test_components_hooked.py``).

Shapes use ``L`` layers, ``h`` heads, ``b`` batch, ``p`` positions, ``d`` d_model, ``e`` d_head,
``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from torch import Tensor

from circuit_atlas.models.patchable import BlockOutput, upcast

__all__ = ["HeadEdit", "QKVEdit", "Trace", "trace", "head_values"]

HeadEdit = Callable[[int, Tensor], Tensor]
"""``edit(layer, out)`` with each head's output ``(h, b, p, d)`` (through W_O, without b_O);
returns the outputs to use (same shape)."""

QKVEdit = Callable[[int, Tensor], Tensor]
"""``edit(layer, qkv_in)`` with the q/k/v inputs before LayerNorm ``(3, h, b, p, d)`` (a
read-only expanded view of the residual stream: clone before writing); returns the inputs to
use (same shape)."""

RECORDABLE = frozenset({"resid", "heads", "mlp", "patterns", "logits"})


@dataclass
class Trace:
    """What :func:`trace` recorded; fields not asked for are None.

    Attributes:
        logits: ``(b, p, V)`` logits at every position (model dtype).
        resid: ``(L + 1, b, p, d)`` residual stream before each layer; ``resid[L]`` is the final
            residual stream before the final LayerNorm. ``resid[0]`` is the token embedding.
        heads: ``(L, h, b, p, d)`` each head's output through its slice of W_O (no b_O), after
            any edit.
        mlp: ``(L, b, p, d)`` each MLP's output.
        patterns: ``(L, h, b, p, p)`` attention probabilities (query, key); float32 for
            half-precision models, the model dtype otherwise.
    """

    logits: Tensor | None = None
    resid: Tensor | None = None
    heads: Tensor | None = None
    mlp: Tensor | None = None
    patterns: Tensor | None = None


@torch.no_grad()
def trace(
    model,
    tokens: Tensor,
    *,
    record: Collection[str] = ("logits",),
    head_edit: HeadEdit | None = None,
    qkv_edit: QKVEdit | None = None,
) -> Trace:
    """Run ``model`` on ``tokens``, recording and editing per-head activations.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        tokens: ``(b, p)`` int64 token ids.
        record: Any of ``logits``, ``resid``, ``heads``, ``mlp``, ``patterns``.
        head_edit: Replaces head outputs layer by layer (e.g. freezing heads to a cached run,
            or an ablation). Later layers read the edited outputs.
        qkv_edit: Replaces the per-head q/k/v inputs (before LayerNorm) layer by layer (e.g.
            path patching into a receiver's queries).

    Returns:
        A :class:`Trace` with the recorded fields.

    Raises:
        ValueError: If ``record`` names something not recordable, or ``tokens`` is not 2-D.
    """
    unknown = sorted(set(record) - RECORDABLE)
    if unknown:
        raise ValueError(f"cannot record {unknown}; recordable: {sorted(RECORDABLE)}")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (batch, pos), got shape {tuple(tokens.shape)}")
    spec = model.spec
    n_layers = spec.n_layers
    x = model.embed(tokens.to(model.device))
    b, p, d = x.shape
    out = Trace()
    if "resid" in record:
        out.resid = x.new_empty((n_layers + 1, b, p, d))
    if "heads" in record:
        out.heads = x.new_empty((n_layers, spec.n_heads, b, p, d))
    if "mlp" in record:
        out.mlp = x.new_empty((n_layers, b, p, d))
    if "patterns" in record:
        out.patterns = upcast(x.new_empty((n_layers, spec.n_heads, b, p, p)))

    def observe(layer: int, before: Tensor, step: BlockOutput) -> None:
        if out.resid is not None:
            out.resid[layer] = before
        if out.patterns is not None:
            out.patterns[layer] = step.pattern
        if out.heads is not None:
            out.heads[layer] = step.heads
        if out.mlp is not None:
            out.mlp[layer] = step.mlp

    resid = model.walk(x, model.rotary(p), qkv_edit=qkv_edit, head_edit=head_edit,
                       observe=observe)  # fmt: skip
    if out.resid is not None:
        out.resid[n_layers] = resid
    if "logits" in record:
        out.logits = model.unembed(resid)
    return out


@torch.no_grad()
def head_values(model, layer: int, resid: Tensor) -> Tensor:
    """Each head's value vectors ``(h, b, p, e)`` (with b_V) from the residual stream.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        layer: Layer index.
        resid: ``(b, p, d)`` residual stream before ``layer`` (``Trace.resid[layer]``).

    A head's output at query position i is ``Σ_j pattern[i, j] · values[j] @ W_O[head]``.
    """
    return model.qkv(layer, resid[None, None])[2]
