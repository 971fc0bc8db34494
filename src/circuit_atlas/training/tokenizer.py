"""Tokenizers for locally trained suites: a small corpus BPE, or Pythia's own.

``bpe`` (the default) is a byte-level BPE in the style of GPT-2 / GPT-NeoX, trained on the corpus
with Hugging Face ``tokenizers`` and saved into the suite. Two deliberate differences from
GPT-NeoX, both so that the paper's tasks work with a vocabulary of a few thousand tokens:

* numbers are pre-split into chunks of at most two digits (``" 1732"`` → ``" 17"``, ``"32"``),
  which is how GPT-NeoX tokenizes most years of the Greater-Than task, and guarantees the 100
  two-digit tokens the task's metric reads;
* every *required* string (the words the evaluation prompts and the curriculum use, with their
  leading space, the two-digit tokens, the pronouns) is made a single token. When BPE training
  did not merge one, merges are appended at the lowest priority until it is one token
  (:func:`force_single_tokens`). This only adds tokens; it never changes how text that does not
  contain those strings is split. The forced strings are recorded in the suite manifest.

``pythia`` is the GPT-NeoX-20B tokenizer from the data directory (50,277 ids, padded to 50,304
rows as in Pythia). It keeps every task's real token ids but makes the unembedding of a small
model about ten times more expensive on CPU (see ``docs/training.md``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuit_atlas.errors import ConfigError

__all__ = [
    "EOS_TOKEN",
    "PAD_TOKEN",
    "PRETOKENIZE_PATTERN",
    "BuiltTokenizer",
    "build_tokenizer",
    "force_single_tokens",
    "load_tokenizer",
    "train_bpe",
    "wrap_tokenizer",
]

logger = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
"""End-of-text token (id 0, also used as BOS), as in GPT-NeoX."""

PAD_TOKEN = "<|padding|>"
"""Padding token (id 1), as in GPT-NeoX."""

PRETOKENIZE_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}{1,2}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
)
"""GPT-2's pre-tokenization regex with numbers split into chunks of at most two digits."""

_MAX_FORCE_ROUNDS = 8


@dataclass(frozen=True)
class BuiltTokenizer:
    """A tokenizer built for a suite, with what the manifest records about it.

    Attributes:
        tokenizer: A ``transformers.PreTrainedTokenizerFast`` (EOS/BOS ``<|endoftext|>`` = 0,
            PAD ``<|padding|>`` = 1, no special tokens added on encode).
        model_vocab_size: Rows of the model's embedding/unembedding (>= ``len(tokenizer)``).
        info: Manifest entry: ``kind``, ``vocab_size``, ``pretokenize``, ``forced`` (strings
            that needed appended merges), ``required`` (how many strings were required).
    """

    tokenizer: Any
    model_vocab_size: int
    info: dict[str, Any] = field(default_factory=dict)


def _bare_bpe() -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(texts: Iterable[str], vocab_size: int) -> Any:
    """Train a byte-level BPE (:data:`PRETOKENIZE_PATTERN`) on texts.

    Args:
        texts: The training text (e.g. one string per corpus file).
        vocab_size: Target vocabulary (256 byte tokens + 2 special tokens + merges).

    Returns:
        A ``tokenizers.Tokenizer`` with ``<|endoftext|>`` = 0 and ``<|padding|>`` = 1.
    """
    from tokenizers import pre_tokenizers, trainers

    tok = _bare_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def lines() -> Iterable[list[str]]:
        for text in texts:
            chunk = text.splitlines(keepends=True)
            for start in range(0, len(chunk), 4096):
                yield chunk[start : start + 4096]

    tok.train_from_iterator(lines(), trainer)
    return tok


def _pieces(tok: Any, text: str) -> list[str]:
    return tok.encode(text, add_special_tokens=False).tokens


def force_single_tokens(tok: Any, strings: Iterable[str]) -> tuple[Any, list[str]]:
    """Make every string in ``strings`` a single token by appending BPE merges.

    For a string that encodes to pieces ``p1 … pk``, the merges ``(p1, p2)``, ``(p1p2, p3)``, …
    are appended at the lowest priority, so they only act once every learned merge is done:
    tokenization of text without the string is unchanged, and strings made single earlier stay
    single. Repeated until every string is one token.

    Args:
        tok: A ``tokenizers.Tokenizer`` with a BPE model.
        strings: Strings exactly as they appear in text (e.g. ``" Mary"`` with its space).

    Returns:
        ``(new tokenizer, forced strings)``; the forced strings are those that needed merges.

    Raises:
        ConfigError: If a string still is not a single token after the merges (e.g. it crosses
            a pre-tokenization boundary, like ``"a b"``); the message names it.
    """
    from tokenizers import Tokenizer

    wanted = list(dict.fromkeys(strings))
    forced: list[str] = []
    for _ in range(_MAX_FORCE_ROUNDS):
        missing = [s for s in wanted if len(_pieces(tok, s)) != 1]
        if not missing:
            return tok, forced
        state = json.loads(tok.to_str())
        model = state["model"]
        vocab: dict[str, int] = model["vocab"]
        merges = model["merges"]
        as_strings = bool(merges) and isinstance(merges[0], str)
        known = {tuple(m.split(" ", 1)) if as_strings else tuple(m) for m in merges}
        for text in missing:
            pieces = _pieces(tok, text)
            left = pieces[0]
            for right in pieces[1:]:
                merged = left + right
                if (left, right) not in known:
                    known.add((left, right))
                    merges.append(f"{left} {right}" if as_strings else [left, right])
                if merged not in vocab:
                    vocab[merged] = len(vocab)
                left = merged
            if text not in forced:
                forced.append(text)
        tok = Tokenizer.from_str(json.dumps(state))
    still = [s for s in wanted if len(_pieces(tok, s)) != 1]
    if still:
        raise ConfigError(f"cannot make these strings single tokens: {still[:10]!r}")
    return tok, forced


def wrap_tokenizer(tok: Any) -> Any:
    """Wrap a ``tokenizers.Tokenizer`` as a ``transformers.PreTrainedTokenizerFast``.

    The wrapper has EOS = BOS = ``<|endoftext|>`` and PAD = ``<|padding|>`` and adds no special
    tokens when encoding (like Pythia's tokenizer).
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=2048,
    )


def load_tokenizer(directory: str | os.PathLike[str]) -> Any:
    """Load a suite tokenizer saved with ``save_pretrained`` (offline).

    Raises:
        ConfigError: If ``directory`` holds no ``tokenizer.json``.
    """
    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"no tokenizer.json in {str(directory)!r}")
    from tokenizers import Tokenizer

    return wrap_tokenizer(Tokenizer.from_file(str(path)))


def _build_bpe(
    texts: Sequence[Any], vocab_size: int, required: Sequence[str], data_dir: Any
) -> BuiltTokenizer:
    tok, forced = force_single_tokens(train_bpe([t.text for t in texts], vocab_size), required)
    logger.info("BPE: %d merges trained, %d required strings forced", vocab_size, len(forced))
    wrapped = wrap_tokenizer(tok)
    info = {
        "kind": "bpe",
        "vocab_size": len(wrapped),
        "trained_vocab_size": vocab_size,
        "pretokenize": PRETOKENIZE_PATTERN,
        "required": len(required),
        "forced": forced,
        "trained_on": [t.name for t in texts],
    }
    return BuiltTokenizer(wrapped, len(wrapped), info)


def _build_pythia(
    texts: Sequence[Any], vocab_size: int, required: Sequence[str], data_dir: Any
) -> BuiltTokenizer:
    from circuit_atlas.data import PYTHIA_TOKENIZER_FILE, data_file

    path = data_file(PYTHIA_TOKENIZER_FILE, data_dir)
    from tokenizers import Tokenizer

    wrapped = wrap_tokenizer(Tokenizer.from_file(str(path)))
    not_single = [s for s in required if len(_pieces(wrapped.backend_tokenizer, s)) != 1]
    rows = -(-len(wrapped) // 128) * 128  # Pythia pads the embedding to a multiple of 128
    info = {
        "kind": "pythia",
        "vocab_size": len(wrapped),
        "file": PYTHIA_TOKENIZER_FILE,
        "required": len(required),
        "not_single_tokens": not_single,
    }
    return BuiltTokenizer(wrapped, rows, info)


_BUILDERS: Mapping[str, Callable[..., BuiltTokenizer]] = {
    "bpe": _build_bpe,
    "pythia": _build_pythia,
}


def build_tokenizer(
    kind: str,
    texts: Sequence[Any],
    *,
    vocab_size: int,
    required: Sequence[str] = (),
    data_dir: str | os.PathLike[str] | None = None,
) -> BuiltTokenizer:
    """Build the tokenizer of a suite.

    Args:
        kind: ``bpe`` (train on ``files``) or ``pythia`` (load from the data directory).
        texts: The corpus, :class:`~circuit_atlas.training.data.CorpusText` items (``bpe``).
        vocab_size: BPE vocabulary target before forced strings (ignored for ``pythia``).
        required: Strings that must be single tokens (forced for ``bpe``; for ``pythia`` the
            ones that are not are only recorded).
        data_dir: Data directory for ``pythia`` (resolved as for the tasks).

    Returns:
        The :class:`BuiltTokenizer`.

    Raises:
        ConfigError: If ``kind`` is unknown.
    """
    try:
        builder = _BUILDERS[kind]
    except KeyError:
        known = ", ".join(_BUILDERS)
        raise ConfigError(f"unknown tokenizer kind {kind!r}; known: {known}") from None
    return builder(list(texts), vocab_size, list(required), data_dir)
