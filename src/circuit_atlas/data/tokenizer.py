"""Pythia's tokenizer read offline from the data registry (the fallback of hub models)."""

from __future__ import annotations

import functools
import os

from circuit_atlas.data.registry import PYTHIA_TOKENIZER_FILE
from circuit_atlas.data.resolve import data_file

__all__ = ["load_pythia_tokenizer"]


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=path)
    tok.eos_token = "<|endoftext|>"
    tok.bos_token = "<|endoftext|>"
    tok.pad_token = "<|padding|>"
    return tok


def load_pythia_tokenizer(data_dir: str | os.PathLike[str] | None = None):
    """Load the GPT-NeoX-20B tokenizer (Pythia's) from the data registry, offline.

    A Pythia model loaded from the Hugging Face hub brings its own copy of the same tokenizer;
    this is the copy for local checkpoints and offline machines
    (registry name ``tokenizers/gpt-neox-20b-tokenizer.json``, EleutherAI's
    ``20B_tokenizer.json`` as pinned in BlinkDL/ChatRWKV).

    Args:
        data_dir: The explicit data directory, searched first (see
            :func:`circuit_atlas.data.resolve.search_path`).

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` (vocabulary of 50,277 ids; id 0 is
        ``<|endoftext|>``, id 1 ``<|padding|>``; no BOS is added automatically). The same
        object is returned for the same file.

    Raises:
        DataNotFoundError: If the tokenizer file is in no data location (the message gives the
            command that fetches it).
        DataIntegrityError: If the copy found has the wrong sha256.
    """
    return _load_tokenizer(str(data_file(PYTHIA_TOKENIZER_FILE, data_dir)))
