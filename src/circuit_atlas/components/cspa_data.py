"""Corpus windows, function tokens and semantic neighbours for the CSPA score.

Data helpers of :func:`~circuit_atlas.components.cspa.cspa_scores` (PAPER.md §4 "Copy
suppression (CSPA)"; McDougall et al. 2023). Reproduces the token lists and data preparation of
callummcdougall/SERI-MATS-2023-Streamlit-pages ``transformer_lens/rs/callum2/cspa/`` (as vendored
by curt-tigges/circuits-over-time ``utils/cspa_functions.py``, ``utils/cspa_main.py``):
``FUNCTION_STR_TOKS``, ``get_equivalency_toks`` (``cspa_semantic_similarity.py``) and
``process_webtext``.

Deviations: (1) the semantic dict ``cspa_semantic_dict_full.pkl`` is not published; the
reference never reads it when ``K_semantic == 1`` (the paper's setting, the source token alone).
For ``K_semantic > 1`` :func:`semantic_neighbours` rebuilds its "mini version" from any HF
tokenizer (capitalisation, leading space, plural ``s``; no super-/substrings), padding with −1
(no direction) instead of the ``'======'`` token; without a tokenizer only the token itself.
(2) Function words: the reference's strings that are one token of the model's tokenizer; none
without one. (3) Data: :func:`corpus_tokens` samples seeded windows at line starts of a local
corpus, BOS first, instead of OpenWebText document starts.

Shapes: ``V`` vocabulary, ``k`` semantic neighbours, ``m`` function tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from circuit_atlas.errors import ComponentDataError
from circuit_atlas.training.data import CorpusSource, corpus_files

__all__ = ["FUNCTION_STRINGS", "corpus_tokens", "function_token_ids", "semantic_neighbours"]

_SPACED = (
    "a the an to of in that for it with as was The are by have this will they their which about "
    "In like them some when It what its only how most This these very much those such But You If "
    "take As For They That When To almost With However These By takes While whose Of THE From "
    "aren perhaps whatever Like Their Those Its Thus Such Much Between meanwhile nevertheless at "
    "now you your once and all He her my ' \""
)
_UNSPACED = (
    "The It the But As When That To With While By with However Of Those Their Its to 's you your "
    "Now . , ? ! ' \" <|endoftext|>"
)
FUNCTION_STRINGS: tuple[str, ...] = (
    tuple(chr(c) for c in range(32))
    + ("\x7f",)
    + tuple(" " + w for w in _SPACED.split())
    + tuple(_UNSPACED.split())
)
"""Sources never selected by the QK part: control characters, frequent function words and
punctuation, ``<|endoftext|>`` (the reference's ``FUNCTION_STR_TOKS``)."""


def corpus_tokens(
    corpus: CorpusSource,
    tokenizer: Any,
    *,
    n_sequences: int,
    seq_len: int,
    seed: int,
    prepend_bos: bool = True,
) -> Tensor:
    """Sample seeded token windows from a text corpus (the paper's OpenWebText stand-in).

    Each window starts at the beginning of a random line of a random file (files weighted by
    size); BOS (``<|endoftext|>`` for Pythia) is prepended like the reference's
    ``process_webtext``, which takes document starts with TransformerLens' default BOS.

    Args:
        corpus: A ``.txt`` file, a directory of them, or a list of files.
        tokenizer: A HF tokenizer (``encode`` and ``bos_token_id``/``eos_token_id``).
        n_sequences: Windows to draw.
        seq_len: Tokens per window, BOS included.
        seed: Seed of the draw (the paper uses 6).
        prepend_bos: Put the BOS token first.

    Returns:
        ``(n_sequences, seq_len)`` int64 token ids.

    Raises:
        DataNotFoundError: If the corpus path does not exist or holds no ``.txt`` file.
        ValueError: For non-positive sizes.
        ComponentDataError: For an empty corpus, a tokenizer without BOS/EOS id, or a corpus too
            small to give windows of ``seq_len`` tokens (the message names the path).
    """
    if n_sequences < 1 or seq_len < 2:
        raise ValueError(f"need n_sequences >= 1 and seq_len >= 2, got {n_sequences}, {seq_len}")
    files = corpus_files(corpus)
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    sizes = np.array([len(t) for t in texts], dtype=np.float64)
    if sizes.sum() == 0:
        raise ComponentDataError(f"corpus {str(corpus)!r} is empty")
    bos: list[int] = []
    if prepend_bos:
        bos_id = getattr(tokenizer, "bos_token_id", None)
        bos_id = getattr(tokenizer, "eos_token_id", None) if bos_id is None else bos_id
        if bos_id is None:
            raise ComponentDataError(
                "prepend_bos=True but the tokenizer has no bos_token_id/eos_token_id"
            )
        bos = [int(bos_id)]
    need = seq_len - len(bos)
    rng = np.random.default_rng(seed)
    out = np.empty((n_sequences, seq_len), dtype=np.int64)
    max_tries = 50 * n_sequences + 100
    row = tries = 0
    while row < n_sequences:
        tries += 1
        if tries > max_tries:
            raise ComponentDataError(
                f"corpus {str(corpus)!r} is too small: found {row} of {n_sequences} windows of "
                f"{seq_len} tokens after {max_tries} draws"
            )
        text = texts[int(rng.choice(len(texts), p=sizes / sizes.sum()))]
        start = text.find("\n", int(rng.integers(0, max(len(text), 1)))) + 1
        if start <= 0:
            continue
        while start < len(text) and text[start].isspace():
            start += 1
        ids = _encode(tokenizer, text[start : start + 16 * need + 64])
        if len(ids) >= need:
            out[row] = bos + ids[:need]
            row += 1
    return torch.from_numpy(out)


def _encode(tokenizer: Any, text: str) -> list[int]:
    enc = tokenizer.encode(text, add_special_tokens=False)
    return list(getattr(enc, "ids", enc))  # a ``tokenizers.Encoding`` or a list of ids


def function_token_ids(tokenizer: Any | None) -> Tensor:
    """Ids of the :data:`FUNCTION_STRINGS` that are one token of ``tokenizer``.

    Returns:
        ``(m,)`` int64, sorted and unique; empty when ``tokenizer`` is None.
    """
    if tokenizer is None:
        return torch.empty(0, dtype=torch.long)
    ids = {enc[0] for s in FUNCTION_STRINGS if len(enc := _encode(tokenizer, s)) == 1}
    return torch.tensor(sorted(ids), dtype=torch.long)


def semantic_neighbours(tokenizer: Any | None, vocab_size: int, k: int) -> Tensor:
    """Each token's ``k`` most related tokens (itself first), from surface forms only.

    Replaces the reference's ``cspa_semantic_dict_full.pkl`` (not published) by its "mini
    version" (``get_equivalency_toks(full_version=False)`` in ``cspa_semantic_similarity.py``):
    the stripped lower-case word and its plural (or singular, without a final ``s``),
    capitalised and upper-cased, with and without a leading space — whichever of those strings
    is a single token — ordered: the token, its space variant, plural with space, plural without
    space, then the rest. A string is a token when it is the decoding of one id (the first such
    id wins; ids decoding to the replacement character are skipped).

    Args:
        tokenizer: A HF tokenizer (``batch_decode``/``decode``), or None (token itself only).
        vocab_size: Rows of the model's unembedding (ids beyond the tokenizer have no variants).
        k: Neighbours per token, the token itself included.

    Returns:
        ``(vocab_size, k)`` int64; column 0 is the token itself, −1 pads rows with fewer.

    Raises:
        ValueError: If ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    table = torch.full((vocab_size, k), -1, dtype=torch.long)
    table[:, 0] = torch.arange(vocab_size)
    if tokenizer is None or k == 1:
        return table
    n = min(vocab_size, len(tokenizer))
    strings = tokenizer.batch_decode([[i] for i in range(n)])
    index: dict[str, int] = {}
    for i, s in enumerate(strings):
        if s and "\ufffd" not in s:
            index.setdefault(s, i)
    for i, s in enumerate(strings):
        if not s or "\ufffd" in s:
            continue
        row = [i] + [j for j in _variant_ids(s, index) if j != i]
        row = list(dict.fromkeys(row))[:k]
        table[i, : len(row)] = torch.tensor(row)
    return table


def _variant_ids(s: str, index: dict[str, int]) -> list[int]:
    """Single-token variants of ``s`` in the reference's order (see :func:`semantic_neighbours`)."""
    word = s.strip(" ").lower()
    if not word:
        return []
    forms = [word, word[:-1] if word.endswith("s") else word + "s"]
    forms = forms + [f.capitalize() for f in forms] + [f.upper() for f in forms]
    forms = forms + [" " + f for f in forms]
    found = [index[f] for f in dict.fromkeys(forms) if f in index]
    space = s[1:] if s.startswith(" ") else " " + s
    plural = s[:-1] if s.endswith("s") else s + "s"
    first = [space, " " + plural.lstrip(" "), plural.lstrip(" ")]
    front = [index[f] for f in first if f in index and index[f] in found]
    return list(dict.fromkeys(front + found))
