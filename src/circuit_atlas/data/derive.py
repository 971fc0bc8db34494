r"""Rebuilding a registry file from its pinned source archive (the NLTK corpora of the corpus).

Six corpus files are plain text made from NLTK's corpus archives (nltk/nltk_data at a fixed
commit). Each :data:`~circuit_atlas.data.registry.Rule` is a deterministic function from the
archive to the text; the result must have the registry's sha256, so the rule is checked on every
fetch. Rules, as a registry of values (:data:`RULES`):

- ``nltk-text``: the archive's ``*.txt`` members in sorted name order, each decoded as UTF-8
  (an invalid byte becomes U+FFFD) with ``\r\n`` and ``\r`` turned into ``\n``, joined by a
  blank line (``"\n\n"``).
- ``nltk-brown``: the Brown corpus' tagged files ``brown/c[a-r]NN`` in sorted order; every
  non-empty line is one sentence of ``word/tag`` tokens; the words are joined by spaces, then the
  space before ``. , ; : ! ?`` is removed, then two backquotes followed by a space and a space
  followed by ``''`` become ``"``; one sentence per line, with a final newline.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from circuit_atlas.data.registry import DataFile, Rule

__all__ = ["RULES", "derive", "nltk_brown", "nltk_text"]

_BROWN_FILE = re.compile(r"brown/c[a-r]\d\d")
_SPACE_BEFORE_PUNCT = re.compile(r" ([.,;:!?])")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def nltk_text(archive: zipfile.ZipFile) -> str:
    """Rule ``nltk-text``: the ``*.txt`` members, sorted, normalised, joined by a blank line."""
    names = sorted(n for n in archive.namelist() if n.endswith(".txt"))
    return "\n\n".join(_text(archive.read(n)) for n in names)


def _brown_sentence(line: str) -> str:
    words = " ".join(token.rsplit("/", 1)[0] for token in line.split())
    words = _SPACE_BEFORE_PUNCT.sub(r"\1", words)
    return words.replace("`` ", '"').replace(" ''", '"')


def nltk_brown(archive: zipfile.ZipFile) -> str:
    """Rule ``nltk-brown``: the tagged Brown files as untagged text, one sentence per line."""
    names = sorted(n for n in archive.namelist() if _BROWN_FILE.fullmatch(n))
    sentences = [
        _brown_sentence(line)
        for name in names
        for line in _text(archive.read(name)).split("\n")
        if line.strip()
    ]
    return "\n".join(sentences) + "\n"


RULES: dict[Rule, Callable[[zipfile.ZipFile], str]] = {
    "nltk-text": nltk_text,
    "nltk-brown": nltk_brown,
}
"""Each rule's function: archive -> text (written as UTF-8)."""


def derive(entry: DataFile, archive: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Rebuild ``entry`` from its source archive and write it (UTF-8) to ``out``.

    The caller checks the result's sha256 (:func:`circuit_atlas.data.resolve.verify_file`).

    Args:
        entry: A registry entry with ``derived_from`` set.
        archive: The downloaded archive (a zip file).
        out: Where to write the text.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``entry`` is not a derived file.
        zipfile.BadZipFile: If ``archive`` is not a zip file.
    """
    if entry.derived_from is None:
        raise ValueError(f"{entry.name!r} is not rebuilt from an archive")
    with zipfile.ZipFile(archive) as handle:
        text = RULES[entry.derived_from.rule](handle)
    out = Path(out)
    out.write_bytes(text.encode("utf-8"))
    return out
