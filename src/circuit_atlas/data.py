"""Where circuit-atlas finds its data: task files, tokenizers and corpora.

The data directory is resolved, in order, from an explicit argument (``--data-dir``), the
``CIRCUIT_ATLAS_DATA`` environment variable, then ``../shared/data`` relative to the current
working directory when it exists. Nothing is ever downloaded here and nothing is copied.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from circuit_atlas.errors import DataNotFoundError

__all__ = ["DATA_ENV_VAR", "PYTHIA_TOKENIZER_FILE", "load_pythia_tokenizer", "resolve_data_dir"]

DATA_ENV_VAR = "CIRCUIT_ATLAS_DATA"
"""Environment variable naming the data directory."""

PYTHIA_TOKENIZER_FILE = "tokenizers/gpt-neox-20b-tokenizer.json"
"""Path, inside the data directory, of the GPT-NeoX-20B tokenizer that every Pythia model uses."""

_EXPECTED = "tasks/ (sva/, greater-than/, gender-pronoun/), tokenizers/, corpus/"


def _default_candidates() -> list[Path]:
    here = Path.cwd()
    return [here / ".." / "shared" / "data", here / "shared" / "data"]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data directory.

    Args:
        data_dir: An explicit directory (the CLI's ``--data-dir``); wins when given.

    Returns:
        The resolved, existing directory.

    Raises:
        DataNotFoundError: If the explicit or environment directory does not exist, or no
            default location exists. The message says what the directory must contain.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(
                f"data directory {str(path)!r} (from --data-dir) does not exist"
            )
        return path.resolve()
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(
                f"data directory {str(path)!r} (from ${DATA_ENV_VAR}) does not exist"
            )
        return path.resolve()
    for candidate in _default_candidates():
        if candidate.is_dir():
            return candidate.resolve()
    raise DataNotFoundError(
        "no data directory found: pass --data-dir, set $"
        f"{DATA_ENV_VAR}, or run from a checkout next to ../shared/data. It must contain "
        f"{_EXPECTED}; the task files come from hannamw/eap-ig-faithfulness and "
        "curt-tigges/circuits-over-time, the tokenizer is EleutherAI's 20B_tokenizer.json."
    )


def data_file(relative: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return ``relative`` inside the data directory, checking that it exists.

    Raises:
        DataNotFoundError: If the directory or the file is missing (the message names both).
    """
    root = resolve_data_dir(data_dir)
    path = root / relative
    if not path.exists():
        raise DataNotFoundError(f"{relative!r} is missing from the data directory {str(root)!r}")
    return path


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=path)
    tok.eos_token = "<|endoftext|>"
    tok.bos_token = "<|endoftext|>"
    tok.pad_token = "<|padding|>"
    return tok


def load_pythia_tokenizer(data_dir: str | os.PathLike[str] | None = None):
    """Load the GPT-NeoX-20B tokenizer (Pythia's) from the data directory, offline.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` (vocabulary of 50,277 ids; id 0 is
        ``<|endoftext|>``, id 1 ``<|padding|>``; no BOS is added automatically).

    Raises:
        DataNotFoundError: If the tokenizer file is missing.
    """
    return _load_tokenizer(str(data_file(PYTHIA_TOKENIZER_FILE, data_dir)))
