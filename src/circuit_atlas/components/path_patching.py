"""Path patching (Wang et al. 2022) in the noising direction, as McDougall's ``path_patch`` does it.

Source followed: Callum McDougall's ``path_patching.py`` (``path_patching_cm/`` in
curt-tigges/circuits-over-time; ``_path_patch_single`` with ``direct_includes_mlps=True``), as
``get_ioi_consistency.py`` calls it (PAPER.md §5). From sender heads S to receivers R, clean input
x, corrupted input x':

1. run x and x', keeping every head's output (``z`` through ``W_O``; b_O belongs to no head);
2. run x with every head's output frozen to its clean value except the senders', which get their
   corrupted output; MLPs and LayerNorms are recomputed (``direct_includes_mlps=False`` freezes
   MLPs too: receivers get clean + Σ_senders (corrupted − clean), McDougall's additive variant);
   record each receiver's input;
3. run x with only the receivers' inputs replaced by the recorded values (at the chosen
   positions), everything else recomputed; the metric reads this run.

A receiver is one head's query, key or value input before LayerNorm, ``(layer, head, "q"|"k"|"v")``
(McDougall's ``q_input``; patching ``hook_q`` is the same, q depends only on its input), or
``"resid_post"``, the final residual stream: replacing it at the metric position gives a head's
direct effect on the logits (§5 B).

Decisions where the reference leaves room:

- Senders are patched at every position. With every head frozen in step 2 no information moves
  between positions, so this equals McDougall's restriction of senders to ``seq_pos``.
- A sender at or after the *last* receiver's layer cannot reach a receiver: its effect is exactly
  0 (McDougall's function returns 0 up to rounding) and it is not run.
- Receiver positions ``"end"`` (``lengths − 1``: PAPER.md §4's "queries at END", ``S2I_token_pos``'s
  ``seq_pos=end_pos``) or ``"all"`` (``seq_pos=None``, used by ``get_ioi_consistency.py``).
- :func:`path_patching_effects` reports the paper's noising metric (patched − clean) /
  (clean − corrupted) of the mean task metric at ``lengths − 1`` (``logit_diff_noising`` in
  ``utils/metrics.py``; for IOI logit(IO) − logit(S)): 0 no effect, −1 the corrupted prompt's.

:func:`path_patch` is the slow reference (three :func:`~circuit_atlas.components.hooked.trace`
runs); :func:`path_patching_effects` and :func:`direct_effects` run the batched
:func:`~circuit_atlas.components.path_sweep.sweep_senders` (see
:mod:`circuit_atlas.components.path_sweep`), tested equal to it one sender at a time. The sweep's
public names (:class:`SenderSweep`, :func:`sweep_senders`, :func:`end_metric_values` and the
:data:`Head`/:data:`Receiver` types) are re-exported here.

Shapes: ``L`` layers, ``h`` heads, ``b`` examples, ``p`` positions, ``d`` d_model, ``e`` d_head,
``K`` senders, ``w`` watched heads, ``V`` vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence

import torch
from torch import Tensor

from circuit_atlas.components.hooked import Trace, trace
from circuit_atlas.components.path_sweep import (
    ExampleMetric,
    Head,
    Receiver,
    ReceiverPositions,
    RunCache,
    SenderSweep,
    _heads,
    _pair,
    _receivers,
    end_metric_values,
    sweep_senders,
)
from circuit_atlas.tasks.base import TaskDataset

__all__ = [
    "Head",
    "Receiver",
    "ReceiverPositions",
    "RunCache",
    "SenderSweep",
    "direct_effects",
    "end_metric_values",
    "path_patch",
    "path_patching_effects",
    "sweep_senders",
]

logger = logging.getLogger(__name__)


@torch.no_grad()
def path_patch(
    model,
    clean: Tensor,
    corrupted: Tensor,
    senders: Iterable[Head],
    receivers: Receiver | Sequence[Receiver],
    *,
    metric: Callable[[Trace], Tensor],
    positions: Tensor | None = None,
    record: Collection[str] = ("logits",),
    direct_includes_mlps: bool = True,
) -> Tensor:
    """Path-patch one set of sender heads into receivers and return the metric (slow reference).

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        clean: ``(b, p)`` int64 clean tokens (McDougall's ``orig_input``).
        corrupted: ``(b, p)`` int64 corrupted tokens (``new_input``).
        senders: Heads ``(layer, head)`` patched together from the corrupted run.
        receivers: :data:`Receiver` values, patched together (or one, e.g. ``"resid_post"``).
        metric: Called with the :class:`~circuit_atlas.components.hooked.Trace` of step 3
            (``logits (b, p, V)`` and whatever ``record`` asks for); with a ``resid_post``
            receiver its logits (and ``resid[L]``) at the patched positions come from step 2.
        positions: Receiver positions: None for all, ``(b,)`` one per example (e.g. END =
            ``lengths − 1``), or ``(b, k)`` several per example.
        record: What step 3 records (see :func:`~circuit_atlas.components.hooked.trace`).
        direct_includes_mlps: Recompute MLPs in step 2 (True, McDougall's default) or freeze
            them to the clean run (False: receivers get clean + Σ sender differences).

    Returns:
        Whatever ``metric`` returns.

    Raises:
        ValueError: For empty senders or receivers, a head outside the model, a malformed
            receiver, mismatched token shapes or positions of the wrong shape.
    """
    clean, corrupted = _pair(model, clean, corrupted)
    senders = _heads(model, senders, "sender")
    if not senders:
        raise ValueError("senders must not be empty")
    rec = _receivers(model, receivers)
    b, p = clean.shape
    if positions is None:
        rows, cols = slice(None), slice(None)
    else:
        positions = positions.to(model.device)
        if positions.dim() == 1:
            positions = positions[:, None]
        if positions.shape[0] != b or positions.dim() != 2:
            raise ValueError(f"positions must be (b,) or (b, k) with b={b}, got "
                             f"{tuple(positions.shape)}")  # fmt: skip
        rows, cols = torch.arange(b, device=model.device)[:, None], positions
    n_layers = model.spec.n_layers
    base = trace(model, clean, record=("resid", "heads"))
    alt = trace(model, corrupted, record=("heads",))
    # Step 2: heads frozen to clean, senders corrupted; record every receiver input.
    if direct_includes_mlps:

        def freeze(layer: int, out: Tensor) -> Tensor:
            new = base.heads[layer].clone()
            for sl, sh in senders:
                if sl == layer:
                    new[sh] = alt.heads[layer, sh]
            return new

        inputs = trace(model, clean, record=("resid",), head_edit=freeze).resid
    else:  # McDougall's direct_includes_mlps=False: add the sender differences to the inputs
        inputs = base.resid.clone()
        for sl, sh in senders:
            inputs[sl + 1 :] += alt.heads[sl, sh] - base.heads[sl, sh]

    # Step 3: clean run with only the receivers' inputs replaced.
    def patch_inputs(layer: int, qkv_in: Tensor) -> Tensor:
        mine = rec.at(layer)
        if not mine:
            return qkv_in
        out = qkv_in.clone()
        for head, c in mine:
            out[c, head][rows, cols] = inputs[layer][rows, cols]
        return out

    run = trace(model, clean, record=tuple(set(record) | {"logits"}), qkv_edit=patch_inputs)
    if rec.resid_post:
        final = inputs[n_layers][rows, cols]
        run.logits[rows, cols] = model.unembed(final)
        if run.resid is not None:
            run.resid[n_layers][rows, cols] = final
    return metric(run)


def path_patching_effects(
    model,
    data: TaskDataset,
    receivers: Receiver | Sequence[Receiver],
    *,
    receiver_positions: ReceiverPositions = "end",
    metric: ExampleMetric | None = None,
    batch_senders: int = 16,
    direct_includes_mlps: bool = True,
    baselines: dict[str, Tensor] | None = None,
    cache: RunCache | None = None,
) -> Tensor:
    """Noising path-patching effect of every head of the model, each as the only sender.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        data: Paired prompts; metrics are read at ``data.metric_positions`` (END).
        receivers: As for :func:`path_patch` (e.g. the name movers' queries, §5 C).
        receiver_positions: ``"end"`` or ``"all"`` (see the module docstring).
        metric: Per-example metric on the logits at END (default: the task's
            :func:`~circuit_atlas.tasks.base.metric_values`, logit(IO) − logit(S) for IOI).
        batch_senders: Senders per batched run.
        direct_includes_mlps: As for :func:`path_patch`.
        baselines: When given, receives ``"clean"`` and ``"corrupted"``: the ``(b,)``
            per-example metrics of the clean and corrupted runs (the effects' baselines), and
            ``"clean_resid"`` ``(b, d)`` and ``"clean_heads"`` ``(L, h, b, d)``: the clean run's
            final residual stream and head outputs at END, and ``"differences"`` ``(L, h, b)``:
            each head's per-example patched − clean metric (0 for heads not run), whose mean
            over examples divided by mean(clean) − mean(corrupted) is the returned effect (the
            per-prompt values behind the bootstrap of :mod:`~circuit_atlas.components.algorithm.
            intervals`).
        cache: Recorded clean/corrupted runs to reuse (:class:`RunCache`).

    Returns:
        ``(L, h)`` effects (patched − clean) / (clean − corrupted) of mean metrics: 0 = no
        effect, −1 = the corrupted prompt's performance. Heads at or after the last receiver's
        layer are exactly 0 (they cannot reach a receiver). NaN/inf if clean = corrupted.

    Raises:
        ValueError: As for :func:`sweep_senders`.
    """
    data = data.to(model.device)
    rec = _receivers(model, receivers)
    n_layers, n_heads = model.spec.n_layers, model.spec.n_heads
    senders = [(layer, head) for layer in range(rec.top) for head in range(n_heads)]
    sweep = sweep_senders(model, data.clean, data.corrupted, data.metric_positions, senders,
                          receivers, receiver_positions=receiver_positions,
                          batch_senders=batch_senders,
                          direct_includes_mlps=direct_includes_mlps, cache=cache)  # fmt: skip
    per_example = end_metric_values(model, sweep.resid, data, metric)  # (K, b)
    patched = per_example.mean(-1)  # (K,)
    clean_values = end_metric_values(model, sweep.clean_resid[None], data, metric)[0]  # (b,)
    corrupted_values = end_metric_values(model, sweep.corrupted_resid[None], data, metric)[0]
    if baselines is not None:
        differences = torch.zeros(n_layers, n_heads, len(clean_values), dtype=per_example.dtype,
                                  device=per_example.device)  # fmt: skip
        differences.view(-1, len(clean_values))[: len(senders)] = per_example - clean_values
        baselines.update(clean=clean_values, corrupted=corrupted_values,
                         clean_resid=sweep.clean_resid, clean_heads=sweep.clean_heads,
                         differences=differences)
    clean, corrupted = clean_values.mean(), corrupted_values.mean()
    if clean == corrupted:
        logger.warning("clean and corrupted metrics are equal (%.4g): effects are not finite",
                       float(clean))  # fmt: skip
    effects = torch.zeros(n_layers, n_heads, dtype=patched.dtype, device=patched.device)
    effects.view(-1)[: len(senders)] = (patched - clean) / (clean - corrupted)
    return effects


def direct_effects(
    model,
    data: TaskDataset,
    *,
    batch_senders: int = 64,
    direct_includes_mlps: bool = True,
    baselines: dict[str, Tensor] | None = None,
    cache: RunCache | None = None,
) -> Tensor:
    """Each head's path-patching effect on the logits through the final residual stream (§5 B).

    ``path_patch(z → resid_post)`` of ``get_ioi_consistency.py``, one head at a time: the final
    residual stream at END is replaced by step 2's (all other heads frozen, MLPs recomputed).

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        data: Paired prompts (IOI: clean vs S2→IO corrupted).
        batch_senders: Senders per batched run.
        direct_includes_mlps: As for :func:`path_patch`.
        baselines: As for :func:`path_patching_effects`.
        cache: As for :func:`path_patching_effects`.

    Returns:
        ``(L, h)`` noising effects (see :func:`path_patching_effects`).
    """
    return path_patching_effects(model, data, "resid_post", receiver_positions="end",
                                 batch_senders=batch_senders,
                                 direct_includes_mlps=direct_includes_mlps,
                                 baselines=baselines, cache=cache)  # fmt: skip
