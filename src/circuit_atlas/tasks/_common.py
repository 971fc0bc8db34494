"""Tokenizer helpers shared by the task builders (private).

Every builder works with any Hugging Face fast tokenizer, not only Pythia's: words are checked to
be single tokens *for the given tokenizer*, what does not fit is dropped and reported (a
``logging`` warning plus ``TaskDataset.dropped``), and nothing special (BOS, EOS) is ever added.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from circuit_atlas.errors import TaskDataError

logger = logging.getLogger("circuit_atlas.tasks")

_LISTED = 8
"""How many dropped items a warning spells out before summarising the rest."""


def pad_token_id(tokenizer: Any) -> int:
    """The padding id: ``tokenizer.pad_token_id`` when set, else 0."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Tokenize ``texts`` without special tokens (no BOS: the paper uses ``prepend_bos=False``)."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: skip the wrapper's per-text Python overhead
        return [e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def single_token_ids(tokenizer: Any, texts: Sequence[str]) -> list[int | None]:
    """The id of each text when it is exactly one token (and not the unknown token), else None."""
    unk = getattr(tokenizer, "unk_token_id", None)
    return [ids[0] if len(ids) == 1 and ids[0] != unk else None for ids in encode(tokenizer, texts)]


def warn_dropped(task: str, items: Sequence[str], reason: str) -> None:
    """Log one warning naming what ``task`` dropped and why (the first few items spelled out)."""
    if not items:
        return
    shown = "; ".join(items[:_LISTED])
    more = f"; ... and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    logger.warning("%s: dropped %d item(s) (%s): %s%s", task, len(items), reason, shown, more)


def keep_single_tokens(
    tokenizer: Any, words: Sequence[str], *, task: str, what: str, prefix: str = " "
) -> tuple[list[str], list[int], list[str]]:
    """Keep the words whose ``prefix + word`` is a single token for ``tokenizer``.

    Args:
        tokenizer: Any Hugging Face tokenizer.
        words: Candidate words, without the prefix.
        task: Task name, for the warning.
        what: What a word is (``"name"``, ``"verb"``), for the dropped descriptions.
        prefix: Prepended before tokenizing (a space: the word follows another word).

    Returns:
        ``(kept words, their token ids, dropped descriptions)``, e.g. ``"name ' Anderson'"``;
        the dropped ones are also reported with :func:`warn_dropped`.
    """
    ids = single_token_ids(tokenizer, [prefix + w for w in words])
    kept = [(w, i) for w, i in zip(words, ids, strict=True) if i is not None]
    dropped = [f"{what} {prefix + w!r}" for w, i in zip(words, ids, strict=True) if i is None]
    warn_dropped(task, dropped, "not a single token for this tokenizer")
    return [w for w, _ in kept], [i for _, i in kept], dropped


def require(count: int, minimum: int, *, task: str, what: str, hint: str) -> None:
    """Raise :class:`TaskDataError` when fewer than ``minimum`` ``what`` remain."""
    if count < minimum:
        raise TaskDataError(
            f"task {task!r}: only {count} {what} left for this tokenizer, need at least "
            f"{minimum} ({hint})"
        )


def pad_pairs(
    clean: Sequence[Sequence[int]], corrupted: Sequence[Sequence[int]], pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Right-pad paired token lists into ``(n, pos)`` int64 tensors.

    Returns:
        ``(clean, corrupted, lengths)``; ``lengths`` is ``(n,)`` int64.

    Raises:
        TaskDataError: If a clean prompt and its corrupted prompt differ in length (the builders
            check before calling, so this is an internal consistency check).
    """
    n = len(clean)
    lengths = torch.tensor([len(c) for c in clean], dtype=torch.int64)
    pos = int(lengths.max()) if n else 1
    out_clean = torch.full((n, pos), pad_id, dtype=torch.int64)
    out_corr = torch.full((n, pos), pad_id, dtype=torch.int64)
    for i, (c, k) in enumerate(zip(clean, corrupted, strict=True)):
        if len(c) != len(k):
            raise TaskDataError(f"example {i}: clean has {len(c)} tokens, corrupted {len(k)}")
        out_clean[i, : len(c)] = torch.tensor(c, dtype=torch.int64)
        out_corr[i, : len(k)] = torch.tensor(k, dtype=torch.int64)
    return out_clean, out_corr, lengths


def cap_n(task: str, n: int, available: int, what: str) -> int:
    """Return ``min(n, available)``, warning when ``n`` had to be capped.

    Raises:
        ValueError: If ``n`` < 1.
    """
    if n < 1:
        raise ValueError(f"task {task!r}: n must be >= 1, got {n}")
    if n > available:
        logger.warning(
            "%s: asked for %d examples but only %d %s exist; using %d",
            task,
            n,
            available,
            what,
            available,
        )
        return available
    return n


def row_order(count: int, seed: int | None) -> list[int]:
    """File order when ``seed`` is None, else a permutation seeded by ``random.Random(seed)``."""
    order = list(range(count))
    if seed is not None:
        random.Random(seed).shuffle(order)
    return order
