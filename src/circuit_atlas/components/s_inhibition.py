"""S-inhibition heads (PAPER.md §4 row "S-inhibition", §5 C) by path patching into name movers.

Source followed: curt-tigges/circuits-over-time ``get_ioi_consistency.py`` (candidates),
``utils/component_evaluation.py`` ``evaluate_s2i_candidates`` and ``utils/head_metrics.py``
``S2I_token_pos`` (the confirmation test), on McDougall's ``path_patch`` as reimplemented in
:mod:`circuit_atlas.components.path_patching`.

1. **Effect.** Every head is path-patched (noising: clean IOI prompts, S2→IO corrupted prompts)
   into the name movers' query inputs; the effect is the normalised logit-difference change
   (:func:`~circuit_atlas.components.path_patching.path_patching_effects`). A head is a
   *candidate* if its effect is below ``threshold`` (−0.001).
2. **Token same, position opposite.** Each candidate is path-patched on its own into the name
   movers' queries at END, from the dataset in which IO and S1 swap tokens
   (``gen_flipped_prompts("ABB->BAB, BAB->ABB")``: the S2 token is unchanged, but the name that
   occurs once now stands where S1 stood). A *confirmed* S-inhibition head then lowers the mean
   logit difference, lowers the name movers' mean attention from END to the IO position and
   raises it to the S1 position (means over name movers and examples).

Where we deviate:

- The candidate effect patches the name movers' queries at END (PAPER.md §4); the reference
  script patches them at every position (``seq_pos=None``). ``receiver_positions="all"`` gives
  the reference's choice.
- The reference tests only candidates that are also in the EAP-IG circuit with an edge into a
  name mover's query; component scores here are whole-model scores, so every candidate is
  tested (the link to circuits is made later, by ``components.link_to_circuit``).
- The reference reports relative changes ``(ablated − original) / original``; we return the
  absolute changes (logits, attention probability) and the baselines. Their signs agree except
  for the logit difference when the clean logit difference is negative (early checkpoints),
  where the reference's relative change flips sign and its "decrease" test inverts; we test the
  actual decrease.
- The confirmation deltas are computed for every head below the last name mover's layer (not only
  candidates): heads at or after it cannot reach a name mover's query and get 0.
- A delta within rounding of zero (64 machine epsilons of the metric's dtype, times
  max(1, |clean logit difference|) for the logit difference) counts as no change: a head whose
  output the swap does not move (one that only counts name tokens) is not confirmed by the sign
  of its rounding error.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from circuit_atlas.components.path_patching import (
    Head,
    ReceiverPositions,
    RunCache,
    _heads,
    end_metric_values,
    path_patching_effects,
    sweep_senders,
)
from circuit_atlas.errors import TaskDataError
from circuit_atlas.tasks.base import TaskDataset

__all__ = ["SInhibitionResult", "s_inhibition_heads", "token_same_position_opposite"]

logger = logging.getLogger(__name__)

_NOISE_EPS = 64
"""Deltas within this many machine epsilons (of the metric's dtype; times max(1, |clean
logit difference|) for the logit difference) count as zero in the confirmation test."""


@dataclass(frozen=True)
class SInhibitionResult:
    """S-inhibition scores of every head (``(L, h)`` tensors).

    Attributes:
        effect: Noising path-patching effect through the name movers' queries (0 = none,
            −1 = corrupted performance); 0 for heads at or after the last name mover's layer,
            NaN without name movers.
        candidate: ``effect < threshold``.
        confirmed: ``candidate`` and all three deltas have the S-inhibition sign
            (``logit_diff_delta < 0``, ``io_attention_delta < 0``, ``s1_attention_delta > 0``,
            each beyond rounding noise).
        logit_diff_delta: Mean logit difference (logits) after path-patching the head into the
            name movers' queries at END from the token-same-position-opposite prompts, minus the
            clean mean.
        io_attention_delta: Change of the name movers' attention probability from END to IO
            (mean over name movers and examples).
        s1_attention_delta: The same to S1.
        name_movers: The name movers used as receivers.
        threshold: The candidate threshold.
        baseline_logit_diff: Clean mean logit difference (NaN without name movers).
        baseline_io_attention: Clean mean name-mover attention from END to IO.
        baseline_s1_attention: Clean mean name-mover attention from END to S1.
        differences: ``(L, h, n)`` per-example patched − clean logit difference behind
            ``effect`` (``effect`` is their mean over examples over the clean − corrupted gap);
            None without name movers. Read by the bootstrap of the algorithm shares
            (:mod:`circuit_atlas.components.algorithm.intervals`).
    """

    effect: Tensor
    candidate: Tensor
    confirmed: Tensor
    logit_diff_delta: Tensor
    io_attention_delta: Tensor
    s1_attention_delta: Tensor
    name_movers: tuple[Head, ...]
    threshold: float
    baseline_logit_diff: float
    baseline_io_attention: float
    baseline_s1_attention: float
    differences: Tensor | None = None


def _name_positions(data: TaskDataset) -> tuple[Tensor, Tensor]:
    """``(n,)`` IO and S1 positions: the IO token occurs once, S (S1 then S2) at least twice."""
    if data.metric != "logit_diff":
        raise TaskDataError(
            f"task {data.task!r}: S-inhibition needs an IOI-style logit_diff dataset, got metric "
            f"{data.metric!r}"
        )
    n, p = data.clean.shape
    real = torch.arange(p, device=data.clean.device)[None, :] < data.lengths[:, None]
    is_io = (data.clean == data.answer[:, None]) & real
    is_s = (data.clean == data.wrong[:, None]) & real
    bad = ((is_io.sum(1) != 1) | (is_s.sum(1) < 2) | (data.answer == data.wrong)).nonzero()
    if len(bad):
        i = int(bad[0])
        text = data.clean_text[i] if data.clean_text else data.clean[i].tolist()
        raise TaskDataError(
            f"task {data.task!r}: example {i} ({text!r}) must contain the IO token "
            f"{int(data.answer[i])} once and the S token {int(data.wrong[i])} at least twice"
        )
    return is_io.int().argmax(1), is_s.int().argmax(1)


def _swap_names(text: str, io: str, s: str) -> str | None:
    """``text`` with its first IO and first S mention swapped (None if one is missing)."""
    spans = []
    for name, other in ((io, s), (s, io)):
        match = re.search(rf"\b{re.escape(name)}\b", text)
        if match is None:
            return None
        spans.append((match.start(), match.end(), other))
    for start, end, other in sorted(spans, reverse=True):
        text = text[:start] + other + text[end:]
    return text


def token_same_position_opposite(data: TaskDataset) -> TaskDataset:
    """The "token same, position opposite" patching dataset: IO and S1 swap tokens.

    ``gen_flipped_prompts("ABB->BAB, BAB->ABB")`` of the reference (``S2I_token_pos``): in each
    clean prompt the IO token and the S1 token trade places; S2 and every position stay.

    Args:
        data: An IOI :class:`~circuit_atlas.tasks.base.TaskDataset`.

    Returns:
        A copy whose ``corrupted`` prompts are the swapped clean prompts (``clean``, ``answer``
        = IO and ``wrong`` = S unchanged), with ``corrupted_text`` when the clean text and the
        ``io_names``/``s_names`` of ``info`` cover every example (else empty), and ``info``
        entries ``io_pos``/``s1_pos`` (the clean prompt's positions) and ``corruption``.

    Raises:
        TaskDataError: If an example does not hold the IO token once and the S token at least
            twice, or the metric is not a logit difference.
    """
    io_pos, s1_pos = _name_positions(data)
    rows = torch.arange(len(data), device=data.clean.device)
    swapped = data.clean.clone()
    swapped[rows, io_pos] = data.wrong
    swapped[rows, s1_pos] = data.answer
    io_names, s_names = data.info.get("io_names", ()), data.info.get("s_names", ())
    texts: tuple[str, ...] = ()
    if data.clean_text and len(io_names) == len(s_names) == len(data):
        found = [_swap_names(t, io, s) for t, io, s in zip(data.clean_text, io_names, s_names,
                                                           strict=True)]  # fmt: skip
        texts = tuple(found) if all(t is not None for t in found) else ()  # type: ignore[arg-type]
    info = {**data.info, "corruption": "ABB->BAB, BAB->ABB (IO and S1 swap tokens)",
            "io_pos": tuple(io_pos.tolist()), "s1_pos": tuple(s1_pos.tolist())}  # fmt: skip
    return replace(data, corrupted=swapped, corrupted_text=texts, info=info)


def _nan_result(model, movers: tuple[Head, ...], threshold: float) -> SInhibitionResult:
    shape = (model.spec.n_layers, model.spec.n_heads)
    nan = torch.full(shape, float("nan"))
    false = torch.zeros(shape, dtype=torch.bool)
    return SInhibitionResult(nan, false, false.clone(), nan.clone(), nan.clone(), nan.clone(),
                             movers, threshold, math.nan, math.nan, math.nan)  # fmt: skip


@torch.no_grad()
def s_inhibition_heads(
    model,
    data: TaskDataset,
    name_movers: Iterable[Head],
    *,
    threshold: float = -0.001,
    receiver_positions: ReceiverPositions = "end",
    batch_senders: int = 16,
    cache: RunCache | None = None,
) -> SInhibitionResult:
    """Find S-inhibition heads: candidates by path patching, confirmed by the token/position test.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        data: IOI prompts (clean vs S2→IO corrupted; answer = IO, wrong = S).
        name_movers: Name-mover heads ``(layer, head)`` whose queries are the receivers.
        threshold: Candidates have an effect below this (paper: −0.001).
        receiver_positions: Where the candidate effect patches the queries: ``"end"`` (paper)
            or ``"all"`` (the reference script). The confirmation test always uses END.
        batch_senders: Senders per batched run.
        cache: Recorded runs to share with other sweeps on ``data``
            (:class:`~circuit_atlas.components.path_sweep.RunCache`; one is made if None).

    Returns:
        An :class:`SInhibitionResult`. Without name movers: NaN effects and deltas, no
        candidates, and a logged warning.

    Raises:
        ValueError: If a name mover is not a (layer, head) pair inside the model, or the
            threshold is not finite.
        TaskDataError: If the data is not IOI-like (see :func:`token_same_position_opposite`).
    """
    movers = _heads(model, name_movers, "name mover")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    if not movers:
        logger.warning("s_inhibition_heads: no name movers given; every S-inhibition score is "
                       "NaN and no head is a candidate")  # fmt: skip
        return _nan_result(model, movers, threshold)
    data = data.to(model.device)
    cache = cache if cache is not None else RunCache()
    patch_from = token_same_position_opposite(data)
    io_pos, s1_pos = (torch.tensor(patch_from.info[k], device=model.device)
                      for k in ("io_pos", "s1_pos"))  # fmt: skip
    receivers = [(layer, head, "q") for layer, head in movers]
    per_prompt: dict[str, Tensor] = {}
    effect = path_patching_effects(model, data, receivers, receiver_positions=receiver_positions,
                                   batch_senders=batch_senders, baselines=per_prompt,
                                   cache=cache)  # fmt: skip
    candidate = effect < threshold

    top = max(layer for layer, _ in movers)
    senders = [(layer, head) for layer in range(top) for head in range(model.spec.n_heads)]
    sweep = sweep_senders(model, data.clean, patch_from.corrupted, data.metric_positions, senders,
                          receivers, receiver_positions="end", watch=movers,
                          batch_senders=batch_senders, cache=cache)  # fmt: skip
    rows = torch.arange(len(data), device=model.device)

    def attention(patterns: Tensor, pos: Tensor) -> Tensor:  # (..., w, n, p) -> (...)
        return patterns[..., rows, pos].mean((-2, -1))

    ld = end_metric_values(model, sweep.resid, data).mean(-1)  # (K,)
    ld_clean = end_metric_values(model, sweep.clean_resid[None], data).mean()
    io_clean, s1_clean = (
        attention(sweep.clean_patterns, io_pos),
        attention(sweep.clean_patterns, s1_pos),
    )
    deltas = []
    for values in (ld - ld_clean, attention(sweep.patterns, io_pos) - io_clean,
                   attention(sweep.patterns, s1_pos) - s1_clean):  # fmt: skip
        full = torch.zeros_like(effect, dtype=values.dtype)
        full.view(-1)[: len(senders)] = values
        deltas.append(full.to(effect.dtype))
    ld_delta, io_delta, s1_delta = deltas
    # A change within rounding of zero is no change (a head whose signal the swap cannot move,
    # e.g. one that only counts name tokens, gets deltas of ~1e-16 with either sign).
    tol = _NOISE_EPS * torch.finfo(ld.dtype).eps
    ld_tol = tol * max(1.0, abs(float(ld_clean)))
    confirmed = candidate & (ld_delta < -ld_tol) & (io_delta < -tol) & (s1_delta > tol)
    return SInhibitionResult(
        effect=effect,
        candidate=candidate,
        confirmed=confirmed,
        logit_diff_delta=ld_delta,
        io_attention_delta=io_delta,
        s1_attention_delta=s1_delta,
        name_movers=movers,
        threshold=float(threshold),
        baseline_logit_diff=float(ld_clean),
        baseline_io_attention=float(io_clean),
        baseline_s1_attention=float(s1_clean),
        differences=per_prompt["differences"],
    )
