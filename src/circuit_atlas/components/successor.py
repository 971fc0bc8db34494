"""Successor-head scores from weights alone (Gould et al. 2023; PAPER.md §4).

A successor head increments ordinal tokens: attending to " Monday" it raises " Tuesday". Its score
reads the head's *effective OV circuit* ``W_U · OV_head · MLP0(W_E)`` on ordinal sequences: a
pair ``(tok_i → tok_{i+1})`` succeeds when, among the target tokens of that sequence type, the
successor gets the largest logit; the score is the accuracy over all valid pairs. No forward
pass over data is run.

Source followed: ``get_new_successor_head_scores_over_time.py`` of curt-tigges/circuits-over-time
(the paper's code; the model is loaded in TransformerLens with ``fold_ln=False``,
``center_writing_weights=False``, ``center_unembed=False``). Read off that script:

- **effective embedding** = ``blocks[0].mlp(W_E)``: TransformerLens' MLP module alone, i.e.
  ``W_out · act(W_E · W_in + b_in) + b_out`` on the *raw* embedding rows. No LayerNorm (neither
  the MLP's ``ln2`` nor anything else), no residual ``W_E +``, no attention layer 0.
- **OV** = ``attn.OV`` = ``W_V · W_O`` of the head: no ``b_V``, no ``b_O``, no ``ln1`` weights
  (nothing is folded).
- **unembedding** = raw ``W_U`` columns of the sequence tokens: no final LayerNorm, no bias.
- **targets**: for each sequence type, the set of target tokens of its valid pairs (the
  successors that occur; for a non-cyclic type its first item is not a target). A pair succeeds
  when ``logit[successor] == max`` over that set, so ties count as successes (a head whose OV is
  exactly zero scores 1).
- **cyclic types** (days, Mon–Sun, months, Jan–Dec) end with their first item again, so the wrap
  pair (" Sunday" → " Monday") is scored; the others are not wrapped.
- **validity**: an item counts only if it is a single token (``tokenizer(s,
  add_special_tokens=False)``); a pair needs both items valid, and no pair is formed across a
  dropped item.
- **variants**: each type, its inverted-capitalisation version (first letter's case flipped,
  the direction chosen from the first item), and both with a leading space; letters and Roman
  numerals get no inverted version.

Gould et al. state the effective OV circuit as ``W_U · W_OV · MLP0(W_E)``; their own code was not
in the search index, so where exactly they place LayerNorms is not checked here. We reproduce the
circuits-over-time computation above.

Deviations, on purpose:

- The reference's Roman-numeral list has ``XVII`` twice and no ``XVIII`` (pairs XVII → XVII and
  XVII → XIX); we use I … XX.
- The reference's inverted-capitalisation variant of the digits is identical to the digits
  themselves (``"1".upper() == "1"``), so every digit pair was scored twice; we drop variants
  identical to an earlier one (30 sequence types instead of 32). With Pythia's tokenizer this
  leaves 635 valid pairs (398 of them digits) where the reference scored about 1,030 (796
  digits), so digits weigh less in our accuracy.
- The reference ran the model in bfloat16; we compute in float32 for half-precision models and
  in the model's dtype otherwise.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from circuit_atlas.errors import ComponentDataError
from circuit_atlas.models.patchable import upcast
from circuit_atlas.tasks._common import single_token_ids

__all__ = [
    "GAP",
    "ORDINAL_SEQUENCES",
    "successor_pairs",
    "successor_scores",
    "successor_sequences",
]

logger = logging.getLogger(__name__)

GAP = -1
"""Marks an item of :func:`successor_sequences` that is not a single token: no pair crosses it."""

_BASE: tuple[tuple[str, bool, bool, tuple[str, ...]], ...] = (
    # (name, cyclic, gets an inverted-capitalisation variant, items)
    ("numbers_1_200", False, True, tuple(str(i) for i in range(1, 201))),
    (
        "number_words_1_20",
        False,
        True,
        tuple(
            "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen twenty".split()
        ),
    ),
    (
        "cardinal_words_1_10",
        False,
        True,
        tuple("first second third fourth fifth sixth seventh eighth ninth tenth".split()),
    ),
    ("days", True, True, tuple("Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split())),
    ("days_short", True, True, tuple("Mon Tue Wed Thu Fri Sat Sun".split())),
    (
        "months",
        True,
        True,
        tuple(
            "January February March April May June July August September October November "
            "December".split()
        ),
    ),
    ("months_short", True, True, tuple("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())),
    ("letters", False, False, tuple(string.ascii_uppercase)),
    (
        "numerals",
        False,
        False,
        tuple("I II III IV V VI VII VIII IX X XI XII XIII XIV XV XVI XVII XVIII XIX XX".split()),
    ),
)


def _invert_capital(items: tuple[str, ...]) -> tuple[str, ...]:
    """Flip the case of each item's first character; the direction is set by the first item."""
    if "A" <= items[0][0] <= "Z":
        return tuple(s[0].lower() + s[1:] for s in items)
    return tuple(s[0].upper() + s[1:] for s in items)


def _build() -> Mapping[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name, cyclic, invertible, items in _BASE:
        seen: list[tuple[str, ...]] = []
        for invert in (False, True) if invertible else (False,):
            for space in (False, True):
                variant = _invert_capital(items) if invert else items
                if space:
                    variant = tuple(" " + s for s in variant)
                if variant in seen:  # e.g. the inverted capitalisation of digits
                    continue
                seen.append(variant)
                key = f"{'inverted_capital_' if invert else ''}{'space_' if space else ''}{name}"
                out[key] = variant + (variant[0],) if cyclic else variant
    return MappingProxyType(out)


ORDINAL_SEQUENCES: Mapping[str, tuple[str, ...]] = _build()
"""The 30 ordinal sequence types as strings, name → items; cyclic ones end with their first
item again. Names follow the reference (``space_days``, ``inverted_capital_space_months``, ...)."""


def successor_sequences(tokenizer: Any) -> list[list[int]]:
    """Token ids of the ordinal sequences, one list per type of :data:`ORDINAL_SEQUENCES`.

    Items that are not a single token for ``tokenizer`` (encoded without special tokens) become
    :data:`GAP`, so no pair is formed across them; they are reported in one ``logging`` warning.

    Args:
        tokenizer: Any Hugging Face tokenizer.

    Returns:
        One list per sequence type, in the order of :data:`ORDINAL_SEQUENCES` (same length as
        its items; a cyclic type ends with its first item's id again).
    """
    out: list[list[int]] = []
    dropped: list[str] = []
    for name, items in ORDINAL_SEQUENCES.items():
        ids = single_token_ids(tokenizer, list(items))
        out.append([GAP if i is None else int(i) for i in ids])
        dropped += [f"{name}:{s!r}" for s, i in zip(items, ids, strict=True) if i is None]
    if dropped:
        more = f", ... and {len(dropped) - 12} more" if len(dropped) > 12 else ""
        shown = ", ".join(dropped[:12]) + more
        logger.warning(
            "successor sequences: %d item(s) are not single tokens and form no pair: %s",
            len(dropped),
            shown,
        )
    return out


def successor_pairs(sequences: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor, Tensor]:
    """The valid (input → successor) pairs of ``sequences`` and each pair's candidate targets.

    Args:
        sequences: Token-id lists; consecutive items form a pair unless one is :data:`GAP`.

    Returns:
        ``(inputs, targets, candidates)``: ``(P,)`` int64 input and successor ids, and
        ``(P, C)`` int64 candidate ids, row k holding the distinct targets of pair k's sequence
        padded with pair k's own target (``C`` = the largest candidate set).

    Raises:
        ComponentDataError: If there is no valid pair (a ValueError).
    """
    inputs: list[int] = []
    targets: list[int] = []
    cand_rows: list[list[int]] = []
    for seq in sequences:
        pairs = [(a, b) for a, b in zip(seq[:-1], seq[1:], strict=True) if GAP not in (a, b)]
        cands = sorted({b for _, b in pairs})
        for a, b in pairs:
            inputs.append(a)
            targets.append(b)
            cand_rows.append(cands)
    if not inputs:
        raise ComponentDataError(
            "the successor sequences hold no valid (input, successor) pair: no two consecutive "
            "ordinal items are single tokens for this tokenizer"
        )
    width = max(len(c) for c in cand_rows)
    padded = [c + [t] * (width - len(c)) for c, t in zip(cand_rows, targets, strict=True)]
    return torch.tensor(inputs), torch.tensor(targets), torch.tensor(padded)


def _mlp0_raw(model, x: Tensor) -> Tensor:
    """TransformerLens' ``blocks[0].mlp(x)``: MLP 0 on ``x`` without its LayerNorm, ``(..., d)``."""
    return model.mlp_raw(0, x)


@torch.no_grad()
def successor_scores(
    model, tokenizer: Any = None, *, sequences: Sequence[Sequence[int]] | None = None
) -> Tensor:
    """Successor score of every head from its effective OV circuit (PAPER.md §4).

    For head ``(l, h)`` the logits of input token ``a`` on token ``t`` are
    ``MLP0(W_E[a]) · W_V[l, h] · W_O[l, h] · W_U[:, t]`` (see the module docstring for what is and
    is not included). A pair succeeds when its successor's logit equals the maximum over its
    sequence type's targets. All heads of a layer are scored in one batch and only the columns
    of ``W_U`` of the sequence tokens are used, so nothing of vocabulary size per head is built.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        tokenizer: The model's tokenizer for :func:`successor_sequences`; defaults to
            ``model.tokenizer``. Unused when ``sequences`` is given.
        sequences: Explicit token-id sequences (each consecutive pair is an (input, successor)
            pair; :data:`GAP` breaks a sequence; a cyclic one repeats its first id at the end).
            Each sequence is one type: its candidates are its own targets.

    Returns:
        ``(n_layers, n_heads)`` float32 CPU accuracies in [0, 1] (the paper's scale).

    Raises:
        ComponentDataError: If neither ``sequences`` nor a tokenizer (argument or
            ``model.tokenizer``) is available, or if no valid pair exists (a ValueError).
        ValueError: If a token id is outside ``[0, vocab)``.
    """
    if sequences is None:
        tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ComponentDataError(
                "successor_scores needs the model's tokenizer (model.tokenizer is None): pass "
                "tokenizer= or explicit sequences="
            )
        sequences = successor_sequences(tokenizer)
    vocab = model.spec.vocab_size
    for seq in sequences:
        bad = [t for t in seq if t != GAP and not 0 <= t < vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {vocab})")
    inputs, targets, cands = successor_pairs(sequences)
    tokens, cols = torch.unique(torch.cat([inputs, cands.flatten()]), return_inverse=True)
    in_col = cols[: len(inputs)]  # (P,) column of each pair's input among `tokens`
    cand_col = cols[len(inputs) :].view(cands.shape)  # (P, C)
    tgt_col = torch.searchsorted(tokens, targets)  # (P,); tokens is sorted and holds every target

    dev = model.device
    emb = _mlp0_raw(model, upcast(model.embedding[tokens.to(dev)]))  # (T, d) effective emb.
    w_u = upcast(model.unembedding[:, tokens.to(dev)])  # (d, T)
    in_col, cand_col, tgt_col = in_col.to(dev), cand_col.to(dev), tgt_col.to(dev)
    out = torch.empty(model.spec.n_layers, model.spec.n_heads)
    for layer in range(model.spec.n_layers):
        w_v, _, w_o = model.ov(layer)
        w_v = upcast(w_v)  # (h, d, e)
        w_ou = torch.matmul(upcast(w_o), w_u)  # (h, e, T): W_O · W_U
        logits = torch.matmul(torch.matmul(emb, w_v), w_ou)  # (h, T, T): input x target
        target = logits[:, in_col, tgt_col]  # (h, P)
        best = logits[:, in_col[:, None], cand_col].amax(-1)  # (h, P): max over candidates
        out[layer] = (target == best).float().mean(-1).cpu()
    return out
