"""Self-repair after ablating name movers: which heads take over (backup name movers).

Source followed: curt-tigges/circuits-over-time ``utils/backup_analysis.py`` (``run_iteration``,
``get_metrics_and_attributions``, ``run_ablated_model``, ``process_backup_results``; PAPER.md §5
"Related experiments"). On the clean IOI prompts:

1. the heads to ablate are the name movers with copy score ≥ 75 % (``threshold``);
2. a clean run and a run with those heads' outputs set to zero (``hook_z`` = 0: the head writes
   nothing, at every position) give the mean logit difference at END and every head's **direct
   logit attribution** (DLA) at END: its output, centred and divided by *that run's* final
   LayerNorm scale, times the final LayerNorm weight, dotted with ``W_U[:, IO] − W_U[:, S]``
   (TransformerLens' ``apply_ln_to_stack`` on folded weights), averaged over prompts;
3. the change of each head's DLA (ablated − clean; 0 for the ablated heads, as the reference
   sets it) says which heads take over.

A head is a **backup name mover** when its DLA rises by at least ``backup_fraction`` (10 %) of
the ablated heads' summed clean DLA — what the ablation removed. The reference plots the top
heads by change instead of naming them; the fraction rule is ours.

Deviation: the reference picks the heads to ablate among heads with an in-circuit edge into the
logits; we take every head with copy score ≥ 75 % (whole-model scores, like the other component
scores; the circuit link is made separately).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from circuit_atlas.components.hooked import trace
from circuit_atlas.components.path_sweep import Head, end_metric_values
from circuit_atlas.errors import AlgorithmError
from circuit_atlas.models.patchable import upcast
from circuit_atlas.tasks.base import TaskDataset

__all__ = ["SelfRepair", "direct_logit_attribution", "self_repair"]


@dataclass(frozen=True)
class SelfRepair:
    """The self-repair experiment at one checkpoint.

    Attributes:
        ablated: The heads zero-ablated (copy score ≥ ``threshold``); empty when none qualifies.
        reason: ``no_name_movers`` when nothing was ablated, else None.
        clean_logit_diff: Mean logit difference (logits) of the clean run.
        ablated_logit_diff: The same with ``ablated`` zeroed (= clean when nothing was ablated).
        clean_dla: ``(L, h)`` mean direct logit attribution of each head (logits), clean run.
        ablated_dla: ``(L, h)`` the same in the ablated run.
        dla_change: ``(L, h)`` ablated − clean, 0 for the ablated heads.
        backup: ``(L, h)`` bool: backup name movers (see the module docstring).
        threshold: Copy score from which a head is ablated.
        backup_fraction: The backup rule's fraction.
    """

    ablated: tuple[Head, ...]
    reason: str | None
    clean_logit_diff: float
    ablated_logit_diff: float
    clean_dla: Tensor
    ablated_dla: Tensor
    dla_change: Tensor
    backup: Tensor
    threshold: float
    backup_fraction: float

    @property
    def logit_diff_change(self) -> float:
        """Ablated − clean mean logit difference (logits)."""
        return self.ablated_logit_diff - self.clean_logit_diff

    @property
    def logit_diff_change_pct(self) -> float | None:
        """The change as % of the clean logit difference (the reference's); None if that is 0."""
        if self.clean_logit_diff == 0 or not math.isfinite(self.clean_logit_diff):
            return None
        return 100.0 * self.logit_diff_change / abs(self.clean_logit_diff)

    @property
    def backup_heads(self) -> tuple[Head, ...]:
        """The backup name movers ``(layer, head)``, sorted."""
        return tuple((int(a), int(b)) for a, b in self.backup.nonzero().tolist())


def _end_run(model, data: TaskDataset, ablate: tuple[Head, ...]) -> tuple[Tensor, Tensor]:
    """Final residual stream ``(b, d)`` and head outputs ``(L, h, b, d)`` at END."""
    rows = torch.arange(len(data), device=model.device)
    ends = data.metric_positions.to(model.device)
    kept: list[Tensor] = []

    def edit(layer: int, out: Tensor) -> Tensor:  # out (h, b, p, d)
        mine = [head for lr, head in ablate if lr == layer]
        if mine:
            out = out.clone()
            out[mine] = 0
        kept.append(out[:, rows, ends])  # (h, b, d)
        return out

    run = trace(model, data.clean, record=("resid",), head_edit=edit)
    return run.resid[model.spec.n_layers][rows, ends], torch.stack(kept)


def direct_logit_attribution(model, data: TaskDataset, final: Tensor, heads: Tensor) -> Tensor:
    """Mean direct logit attribution of head outputs at END (logits).

    Args:
        model: The model (final LayerNorm weight, unembedding, epsilon).
        data: IOI prompts (``answer`` = IO, ``wrong`` = S).
        final: ``(b, d)`` the run's final residual stream at END (its LayerNorm scale is used).
        heads: ``(..., b, d)`` outputs (through W_O, no b_O) at END.

    Returns:
        ``(...)`` float64: mean over prompts of ``((o − mean o) / σ · w_f) · (W_U[:, IO] −
        W_U[:, S])``, σ the final LayerNorm scale of ``final``.
    """
    x = upcast(final).double()
    sigma = model.norm_scale(x)  # (b, 1) the final norm's divisor
    w_u = upcast(model.unembedding).double()
    direction = (w_u[:, data.answer.to(model.device)] - w_u[:, data.wrong.to(model.device)]).T
    o = upcast(heads).double()
    centred = model.center(o) / sigma * upcast(model.norm_weights("final")[0]).double()
    return (centred * direction).sum(-1).mean(-1)


@torch.no_grad()
def self_repair(
    model,
    data: TaskDataset,
    copy: Tensor,
    *,
    threshold: float = 0.75,
    backup_fraction: float = 0.10,
    clean: tuple[Tensor, Tensor] | None = None,
) -> SelfRepair:
    """Zero-ablate the strong name movers and measure which heads take over.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        data: IOI prompts (clean prompts are used; ``answer`` = IO, ``wrong`` = S).
        copy: ``(L, h)`` copy scores (fractions; the reference's 75 % is 0.75).
        threshold: Heads with copy score ≥ this are ablated.
        backup_fraction: See the module docstring.
        clean: The clean run's final residual stream ``(b, d)`` and head outputs ``(L, h, b, d)``
            at END, when already computed (e.g. by the direct-effect sweep); None runs it.

    Returns:
        A :class:`SelfRepair`; without a qualifying head, nothing is ablated (one clean run,
        ``reason="no_name_movers"``, no backup heads).

    Raises:
        AlgorithmError: If ``copy`` does not match the model's heads or a setting is not finite.
    """
    spec = model.spec
    if tuple(copy.shape) != (spec.n_layers, spec.n_heads):
        raise AlgorithmError(f"copy scores have shape {tuple(copy.shape)}, the model has "
                             f"{(spec.n_layers, spec.n_heads)} heads")  # fmt: skip
    if not (math.isfinite(threshold) and math.isfinite(backup_fraction)):
        raise AlgorithmError(f"threshold and backup_fraction must be finite, got {threshold!r}, "
                             f"{backup_fraction!r}")  # fmt: skip
    data = data.to(model.device)
    ablate = tuple((int(a), int(b)) for a, b in (copy.double() >= threshold).nonzero().tolist())
    final, heads = clean if clean is not None else _end_run(model, data, ())
    clean_ld = float(end_metric_values(model, final[None], data).mean())
    clean_dla = direct_logit_attribution(model, data, final, heads).cpu()
    if not ablate:
        zero = torch.zeros_like(clean_dla)
        return SelfRepair((), "no_name_movers", clean_ld, clean_ld, clean_dla, clean_dla.clone(),
                          zero, zero.bool(), threshold, backup_fraction)  # fmt: skip
    a_final, a_heads = _end_run(model, data, ablate)
    ablated_ld = float(end_metric_values(model, a_final[None], data).mean())
    ablated_dla = direct_logit_attribution(model, data, a_final, a_heads).cpu()
    change = ablated_dla - clean_dla
    lost = float(sum(clean_dla[h] for h in ablate))
    for h in ablate:
        change[h] = 0.0
    backup = (change > 0) & (change >= backup_fraction * lost)
    if lost <= 0:  # the ablated heads did not help: nothing to take over
        backup = torch.zeros_like(backup)
    return SelfRepair(ablate, None, clean_ld, ablated_ld, clean_dla, ablated_dla, change, backup,
                      threshold, backup_fraction)  # fmt: skip
