"""Checks of output paths, made before any work starts and without creating anything."""

from __future__ import annotations

import os
from pathlib import Path

from circuit_atlas.errors import OutputPathError

__all__ = ["check_output_dir"]


def check_output_dir(path: str | os.PathLike[str], what: str = "output directory") -> Path:
    """Check that ``path`` is a directory, or can be created as one, and that it is writable.

    Nothing is created. The command that calls this can then fail on an output path before
    loading a model or training for hours.

    Args:
        path: The directory a command will write (it may not exist yet).
        what: How the message names it (``"--out"``, ``"results directory"``).

    Returns:
        ``path`` as an absolute ``Path``.

    Raises:
        OutputPathError: If ``path`` or one of its ancestors is a file, or the directory that
            would hold it is not writable by this user (the message names the path).
    """
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{what} {str(target)!r} is a file, not a directory")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{what} {str(target)!r} cannot be created: {str(existing)!r} "
                              "is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {str(target)!r} is not writable: no write permission "
                              f"on {str(existing)!r}")
    return target
