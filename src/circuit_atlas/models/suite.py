"""Local training suites: ``<suite>/<size>/step{N}/`` HF checkpoint directories.

A suite (written by the trainer, or by hand) is a directory with one sub-directory per model size,
each holding ``step{N}`` checkpoint directories in HF format (``config.json`` +
``model.safetensors``), and optionally a ``suite.json`` manifest at the root. A tokenizer may sit
in the checkpoint, the size directory or the suite root.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from circuit_atlas.errors import ModelSourceError

__all__ = [
    "SUITE_MANIFEST",
    "list_suite_checkpoints",
    "list_suite_sizes",
    "read_suite_manifest",
    "scan_steps",
    "suite_tokens_per_step",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

SUITE_MANIFEST = "suite.json"
"""File name of a local suite's optional manifest, at the suite root."""

STEP_DIR = re.compile(r"step(\d+)")
"""Name pattern of a checkpoint directory."""


def read_suite_manifest(suite_dir: PathLike) -> dict[str, Any] | None:
    """Read ``<suite_dir>/suite.json`` if present.

    The manifest (written by the trainer) is a JSON object; the keys read here are
    ``tokens_per_step`` (int, optional) and ``sizes``: ``{size: {"steps": [...],
    "tokens_per_step": int}}`` (all optional). Other keys are kept for the caller.

    Raises:
        ModelSourceError: If the file exists but is not a JSON object.
    """
    path = Path(suite_dir) / SUITE_MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelSourceError(f"suite manifest {str(path)!r} is unreadable: {err}") from err
    if not isinstance(manifest, dict):
        raise ModelSourceError(f"suite manifest {str(path)!r} is not a JSON object")
    return manifest


def scan_steps(size_dir: PathLike) -> list[int]:
    """Return the ``step{N}`` sub-directories (with a ``config.json``) of a directory, sorted."""
    size_dir = Path(size_dir)
    steps = []
    for child in size_dir.iterdir() if size_dir.is_dir() else ():
        match = STEP_DIR.fullmatch(child.name)
        if match and (child / "config.json").is_file():
            steps.append(int(match.group(1)))
    return sorted(steps)


def list_suite_sizes(suite_dir: PathLike) -> list[str]:
    """Return the sizes of a local suite: sub-directories holding ``step{N}`` checkpoints.

    Raises:
        ModelSourceError: If ``suite_dir`` is not a directory.
    """
    root = Path(suite_dir)
    if not root.is_dir():
        raise ModelSourceError(f"suite directory {str(root)!r} does not exist")
    return sorted(child.name for child in root.iterdir() if scan_steps(child))


def list_suite_checkpoints(suite_dir: PathLike, size: str) -> list[int]:
    """Return the checkpoint steps of one size of a local suite, ascending.

    A checkpoint is a ``<suite_dir>/<size>/step{N}/`` directory with a ``config.json``. Steps
    listed in the manifest but missing on disk are logged and left out.

    Raises:
        ModelSourceError: If the suite or size directory is missing or holds no checkpoint (the
            message lists the sizes that exist).
    """
    root = Path(suite_dir)
    steps = scan_steps(root / size)
    if not steps:
        sizes = list_suite_sizes(root)
        raise ModelSourceError(
            f"suite {str(root)!r} has no checkpoints for size {size!r}; sizes: {sizes or 'none'}"
        )
    listed = ((read_suite_manifest(root) or {}).get("sizes") or {}).get(size, {}).get("steps")
    if listed is not None and sorted(set(listed)) != steps:
        logger.warning(
            "suite %s size %s: manifest steps differ from the step directories on disk", root, size
        )
    return steps


def suite_tokens_per_step(suite_dir: PathLike, size: str) -> int | None:
    """Return the manifest's tokens per step for ``size`` (or the suite-wide value), or None."""
    manifest = read_suite_manifest(suite_dir) or {}
    entry = (manifest.get("sizes") or {}).get(size) or {}
    value = entry.get("tokens_per_step", manifest.get("tokens_per_step"))
    return int(value) if value is not None else None
