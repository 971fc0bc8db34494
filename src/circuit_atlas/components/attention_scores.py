"""Induction, duplicate-token and previous-token scores of every attention head (PAPER.md §4).

Source followed: ``get_induction_scores`` in ``utils/component_evaluation.py`` of
curt-tigges/circuits-over-time (the paper's code). It draws ``batch = 2`` sequences of
``seq_len = 100`` tokens uniform in ``[100, 20000)``, repeats each one (length 200, no BOS), runs
the model once and, for every head, averages the attention pattern along one diagonal of the
``(query, key)`` matrix over the whole diagonal and the batch
(``pattern.diagonal(offset=k, dim1=-1, dim2=-2)`` on TransformerLens' ``hook_pattern``, which
is ``(batch, head, query, key)``, so the diagonal holds ``pattern[q = i + k, key = i]``):

- induction: ``k = seq_len - 1`` (query ``i + seq_len`` attends to key ``i + 1``, the token after
  the earlier copy of the current token);
- duplicate-token: ``k = seq_len`` (query ``i + seq_len`` attends to key ``i``, the earlier copy);
- previous-token: ``k = 1``.

Query range (as in the reference, on purpose): every entry of the diagonal of the
``2·seq_len`` pattern is averaged. For the previous-token score that is every query
``1 … 2·seq_len − 1`` (``2·seq_len − 1`` entries, both halves); for the duplicate-token score the
``seq_len`` queries of the second half; for the induction score ``seq_len + 1`` entries: the
``seq_len`` second-half queries plus query ``seq_len − 1`` → key 0 (the last token of the first
copy looking at the first token), which is not an induction step but is on the same diagonal in
the reference. TransformerLens' ``head_detector`` instead scores ``Σ(pattern · mask) / Σ pattern``
over a detection mask; we do not follow it.

Deviations: the reference draws its tokens unseeded (``torch.randint`` on the global RNG), so its
scores carry sampling noise between checkpoints; we draw them from a private generator seeded with
``seed`` (the global RNG is untouched), so every checkpoint of a run sees the same sequences. Token
ids are drawn from ``[low, min(high, vocab))``, so tiny vocabularies need an explicit range.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuit_atlas.components.hooked import trace

__all__ = ["ATTENTION_SCORES", "attention_scores", "diagonal_scores", "repeated_tokens"]

ATTENTION_SCORES: tuple[str, ...] = ("induction", "duplicate_token", "previous_token")
"""Keys of :func:`attention_scores`' result, in order."""


def repeated_tokens(
    vocab_size: int,
    *,
    seq_len: int = 100,
    batch: int = 2,
    low: int = 100,
    high: int = 20000,
    seed: int = 0,
) -> Tensor:
    """The repeated random sequences the attention scores are read on.

    Args:
        vocab_size: Rows of the model's embedding; ids are drawn below ``min(high, vocab_size)``.
        seq_len: Tokens per random half (the paper: 100).
        batch: Number of sequences (the paper: 2).
        low: Smallest token id drawn (the paper: 100).
        high: Token ids are drawn below ``min(high, vocab_size)`` (the paper: 20000).
        seed: Seed of a private ``torch.Generator`` (the paper's draw was unseeded).

    Returns:
        ``(batch, 2·seq_len)`` int64: each row is a uniform random sequence followed by itself.

    Raises:
        ValueError: If ``seq_len`` < 2, ``batch`` < 1, ``low`` < 0, or the id range
            ``[low, min(high, vocab_size))`` is empty.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if low < 0:
        raise ValueError(f"low must be >= 0, got {low}")
    top = min(high, vocab_size)
    if top <= low:
        raise ValueError(
            f"token range [low={low}, min(high={high}, vocab={vocab_size})) is empty; "
            "pass a smaller low (and high) for a small vocabulary"
        )
    gen = torch.Generator().manual_seed(seed)
    half = torch.randint(low, top, (batch, seq_len), generator=gen)  # (b, seq_len)
    return half.repeat(1, 2)  # (b, 2·seq_len)


def diagonal_scores(patterns: Tensor, seq_len: int) -> dict[str, Tensor]:
    """Mean attention along the induction, duplicate-token and previous-token diagonals.

    Args:
        patterns: ``(L, h, b, p, p)`` attention probabilities (query, key) on repeated sequences,
            ``p = 2·seq_len``.
        seq_len: Length of one random half.

    Returns:
        ``{"induction", "duplicate_token", "previous_token"}`` → ``(L, h)`` float32 on the CPU:
        the mean over the batch and over every entry ``pattern[q, q − k]`` of the whole diagonal
        with offset ``k`` = ``seq_len − 1``, ``seq_len`` and 1 respectively (see the module
        docstring for the query ranges this implies).

    Raises:
        ValueError: If ``patterns`` is not 5-D with square ``(2·seq_len, 2·seq_len)`` matrices.
    """
    if patterns.dim() != 5 or patterns.shape[-2:] != (2 * seq_len, 2 * seq_len):
        raise ValueError(
            f"patterns must be (layers, heads, batch, {2 * seq_len}, {2 * seq_len}) for "
            f"seq_len={seq_len}, got shape {tuple(patterns.shape)}"
        )
    offsets = {"induction": seq_len - 1, "duplicate_token": seq_len, "previous_token": 1}
    out = {}
    for name in ATTENTION_SCORES:
        # offset -k below the main diagonal: entries pattern[..., i + k, i]
        diag = patterns.diagonal(offset=-offsets[name], dim1=-2, dim2=-1)  # (L, h, b, p - k)
        out[name] = diag.float().mean(dim=(-2, -1)).cpu()
    return out


@torch.no_grad()
def attention_scores(
    model,
    *,
    seq_len: int = 100,
    batch: int = 2,
    low: int = 100,
    high: int = 20000,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Induction, duplicate-token and previous-token scores of every head (PAPER.md §4).

    One batched forward over :func:`repeated_tokens` records every head's attention pattern
    (:func:`~circuit_atlas.components.hooked.trace`); :func:`diagonal_scores` averages them.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        seq_len: Tokens per random half (the paper: 100; the sequences have ``2·seq_len``).
        batch: Number of sequences (the paper: 2).
        low: Smallest token id drawn (the paper: 100).
        high: Ids are drawn below ``min(high, vocab)`` (the paper: 20000).
        seed: Seed of the token draw (the paper's draw was unseeded).

    Returns:
        ``{"induction", "duplicate_token", "previous_token"}`` → ``(n_layers, n_heads)``
        float32 CPU tensors of mean attention probabilities in [0, 1]. The paper counts a head
        as induction (duplicate-token) when its score exceeds the mean over all heads.

    Raises:
        ValueError: For ``seq_len`` < 2, ``batch`` < 1, ``low`` < 0, or an empty id range
            ``[low, min(high, vocab))`` (e.g. the default ``low=100`` with a 64-token vocab).
    """
    tokens = repeated_tokens(
        model.spec.vocab_size, seq_len=seq_len, batch=batch, low=low, high=high, seed=seed
    )
    patterns = trace(model, tokens, record=("patterns",)).patterns  # (L, h, b, p, p)
    return diagonal_scores(patterns, seq_len)
