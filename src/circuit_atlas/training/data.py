"""Training data: the corpus as one token stream, and deterministic batches drawn from it.

The corpus (one ``.txt`` file, a directory of them, or a list of files) is tokenized once into a
single stream, files in name (or list) order separated by ``<|endoftext|>``, and cached in the
suite (``data/``). The stream is cut into blocks of :data:`BLOCK` tokens; every
``val_every``-th block is held out for validation. The batch of step ``s`` depends only on
``(seed, s)`` — never on what ran before — so a resumed run sees exactly the batches an
uninterrupted one would (Pythia's data order is
likewise a fixed function of the step).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from circuit_atlas.errors import DataNotFoundError

__all__ = [
    "BLOCK",
    "BatchSampler",
    "CorpusSource",
    "CorpusText",
    "TokenStream",
    "corpus_files",
    "corpus_source",
    "describe_corpus",
    "load_or_tokenize",
    "read_corpus",
    "step_rng",
]

logger = logging.getLogger(__name__)

CorpusSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
"""A corpus: a ``.txt`` file, a directory of them, or a sequence of files."""

BLOCK = 2048
"""Tokens per block of the train/validation split."""

_ENCODE_LINES = 4096  # lines per encode_batch call


def corpus_files(corpus: CorpusSource) -> list[Path]:
    """Return the corpus text files: ``corpus`` itself, the ``*.txt`` files in it, or the list.

    Args:
        corpus: A ``.txt`` file, a directory of them (sorted by name), or a sequence of files
            (kept in its order, e.g. :func:`circuit_atlas.data.corpus_paths`).

    Raises:
        DataNotFoundError: If ``corpus`` (or a listed file) does not exist, or a directory holds
            no ``.txt`` file.
    """
    if not isinstance(corpus, (str, os.PathLike)):
        files = [Path(f).expanduser() for f in corpus]
        for file in files:
            if not file.is_file():
                raise DataNotFoundError(f"corpus file {str(file)!r} does not exist")
        if not files:
            raise DataNotFoundError("the corpus is an empty list of files")
        return files
    path = Path(corpus).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
        if files:
            return files
        raise DataNotFoundError(f"corpus directory {str(path)!r} holds no .txt file")
    raise DataNotFoundError(f"corpus {str(path)!r} does not exist")


def corpus_source(corpus: CorpusSource) -> str | list[str]:
    """How the manifest records ``corpus``: one absolute path, or the list of absolute paths."""
    if isinstance(corpus, (str, os.PathLike)):
        return str(Path(corpus).expanduser().resolve())
    return [str(Path(f).expanduser().resolve()) for f in corpus]


@dataclass(frozen=True)
class CorpusText:
    """One corpus file as read for training.

    Attributes:
        name: File name.
        text: The text used (the whole file, or its first part under a byte budget).
        file_bytes: Size of the whole file in bytes.
        sha256: SHA-256 of the whole file.
    """

    name: str
    text: str
    file_bytes: int
    sha256: str


def read_corpus(files: Sequence[Path], max_bytes: int | None = None) -> list[CorpusText]:
    """Read the corpus files, optionally only the first ``max_bytes`` bytes in all.

    Under a budget every file contributes the same fraction of itself (its first
    ``max_bytes × size / total`` bytes, cut at a line end), so every source stays represented.

    Args:
        files: Corpus files (in stream order).
        max_bytes: Byte budget over all files; None reads everything.
    """
    raw = [f.read_bytes() for f in files]
    total = sum(len(r) for r in raw) or 1
    share = 1.0 if max_bytes is None else min(1.0, max_bytes / total)
    out = []
    for f, data in zip(files, raw, strict=True):
        used = data if share >= 1.0 else data[: int(len(data) * share)]
        if share < 1.0 and b"\n" in used:
            used = used[: used.rindex(b"\n") + 1]
        text = used.decode("utf-8", errors="replace")
        out.append(CorpusText(f.name, text, len(data), hashlib.sha256(data).hexdigest()))
    return out


def describe_corpus(texts: Sequence[CorpusText]) -> list[dict[str, Any]]:
    """Provenance of each corpus file: name, size and sha256, characters used (manifest)."""
    return [
        {"name": t.name, "bytes": t.file_bytes, "sha256": t.sha256, "chars_used": len(t.text)}
        for t in texts
    ]


def step_rng(*key: int) -> np.random.Generator:
    """A numpy generator determined only by the integers ``key`` (e.g. seed, step, stream)."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


@dataclass(frozen=True)
class TokenStream:
    """The tokenized corpus, split into training and validation tokens.

    Attributes:
        train: ``(n_train,)`` int32 token ids.
        val: ``(n_val,)`` int32 token ids (every ``val_every``-th block).
    """

    train: np.ndarray
    val: np.ndarray

    @property
    def n_tokens(self) -> int:
        """Tokens in both splits."""
        return int(self.train.size + self.val.size)


def _tokenize(
    texts: Sequence[CorpusText],
    tokenizer: Any,
    eos_id: int,
    on_file: Callable[[int, int, str], None] | None,
) -> np.ndarray:
    backend = tokenizer.backend_tokenizer
    pieces: list[np.ndarray] = []
    for index, corpus_text in enumerate(texts):
        if on_file is not None:
            on_file(index, len(texts), corpus_text.name)
        lines = corpus_text.text.splitlines(keepends=True)
        for start in range(0, len(lines), _ENCODE_LINES):
            chunk = lines[start : start + _ENCODE_LINES]
            encoded = backend.encode_batch(chunk, add_special_tokens=False)
            pieces.extend(np.asarray(e.ids, dtype=np.int32) for e in encoded if e.ids)
        pieces.append(np.asarray([eos_id], dtype=np.int32))
    if on_file is not None:
        on_file(len(texts), len(texts), "done")
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)


def _split(stream: np.ndarray, val_every: int) -> TokenStream:
    n_blocks = -(-stream.size // BLOCK)
    is_val = (np.arange(n_blocks) % val_every) == val_every - 1
    block_of = np.arange(stream.size) // BLOCK
    mask = is_val[block_of]
    return TokenStream(train=stream[~mask], val=stream[mask])


def load_or_tokenize(
    texts: Sequence[CorpusText],
    tokenizer: Any,
    cache_dir: str | os.PathLike[str],
    *,
    val_every: int,
    fingerprint: str,
    on_file: Callable[[int, int, str], None] | None = None,
) -> TokenStream:
    """Tokenize the corpus, or load the cached stream with the same fingerprint.

    Args:
        texts: The corpus (:func:`read_corpus`, in stream order).
        tokenizer: The suite's ``PreTrainedTokenizerFast``.
        cache_dir: Directory of the cache (``<suite>/data``); created if missing.
        val_every: Every ``val_every``-th block of :data:`BLOCK` tokens is validation.
        fingerprint: Identifies the corpus + tokenizer; a cache with another one is rebuilt.
        on_file: Called as ``on_file(index, n_files, name)`` before each file is tokenized, and
            with ``index == n_files`` at the end.

    Returns:
        The :class:`TokenStream`.
    """
    cache = Path(cache_dir)
    tokens_path, meta_path = cache / "tokens.npy", cache / "tokens.json"
    if tokens_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fingerprint:
            return _split(np.load(tokens_path), val_every)
        logger.info("token cache %s is stale; re-tokenizing", tokens_path)
    stream = _tokenize(texts, tokenizer, int(tokenizer.eos_token_id), on_file)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / "tokens.tmp.npy"
    np.save(tmp, stream)
    os.replace(tmp, tokens_path)
    meta_path.write_text(json.dumps({"fingerprint": fingerprint, "n_tokens": int(stream.size)}))
    return _split(stream, val_every)


RowSource = Callable[[int, int, int], list[int]]
"""``(step, row, seq_len) -> token ids`` of one templated (curriculum) row."""


class BatchSampler:
    """Deterministic training batches: corpus windows mixed with curriculum rows.

    The batch of step ``s`` has ``batch_size`` rows of ``seq_len`` tokens: the first
    ``batch_size - n_curriculum`` are windows of the training stream at offsets drawn from
    :func:`step_rng` ``(seed, s, 0)``; the rest come from ``curriculum(s, row, seq_len)``.
    The rows are then shuffled with the same generator.

    Args:
        stream: The token stream.
        batch_size: Rows per batch.
        seq_len: Tokens per row.
        seed: Run seed.
        curriculum: Source of templated rows, or None.
        n_curriculum: Rows per batch taken from ``curriculum``.
    """

    def __init__(
        self,
        stream: TokenStream,
        *,
        batch_size: int,
        seq_len: int,
        seed: int,
        curriculum: RowSource | None = None,
        n_curriculum: int = 0,
    ) -> None:
        if stream.train.size <= seq_len:
            raise DataNotFoundError(
                f"corpus has {stream.train.size} training tokens, fewer than seq_len {seq_len}"
            )
        if n_curriculum and curriculum is None:
            raise ValueError("n_curriculum > 0 needs a curriculum row source")
        self.stream = stream
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.curriculum = curriculum
        self.n_curriculum = min(n_curriculum, batch_size)
        self._train = torch.from_numpy(stream.train.astype(np.int64))

    def batch(self, step: int) -> Tensor:
        """Return the ``(batch_size, seq_len)`` int64 batch of ``step``."""
        rng = step_rng(self.seed, step, 0)
        n_text = self.batch_size - self.n_curriculum
        offsets = rng.integers(0, self._train.numel() - self.seq_len, size=n_text)
        rows = [self._train[o : o + self.seq_len] for o in offsets.tolist()]
        for r in range(self.n_curriculum):
            ids = self.curriculum(step, r, self.seq_len)  # type: ignore[misc]
            rows.append(torch.tensor(ids[: self.seq_len], dtype=torch.int64))
        order = rng.permutation(self.batch_size)
        return torch.stack([rows[i] for i in order.tolist()])

    def validation(self, n_batches: int) -> list[Tensor]:
        """Return ``n_batches`` fixed ``(batch_size, seq_len)`` batches of held-out text.

        Windows are evenly spaced over the validation tokens (no randomness), so every
        checkpoint of every size is scored on the same tokens. Empty when there is too little
        held-out text.
        """
        val = torch.from_numpy(self.stream.val.astype(np.int64))
        count = n_batches * self.batch_size
        if n_batches < 1 or val.numel() <= self.seq_len:
            return []
        starts = np.linspace(0, val.numel() - self.seq_len - 1, num=count).astype(np.int64)
        rows = torch.stack([val[s : s + self.seq_len] for s in starts.tolist()])
        return list(rows.split(self.batch_size))
