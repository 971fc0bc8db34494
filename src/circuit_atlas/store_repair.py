"""A damaged results store: list what is damaged, and set it aside without deleting anything.

:class:`~circuit_atlas.store.ResultsStore` refuses to open a store holding a foreign entry, a
unit without its ``_COMMITTED`` marker, a file whose size differs from its marker (a truncated
Parquet file), an unreadable Parquet footer, or a unit of a schema version it cannot read
(results are never mixed with those). :func:`store_problems` lists every such entry at once
(``circuit-atlas status`` prints them); :func:`set_aside` moves them to
``<store>/damaged/<time>/`` (``circuit-atlas run --repair``), after which the store opens and
the next run recomputes exactly the units that were moved. Valid units are never touched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from circuit_atlas.errors import StoreError
from circuit_atlas.store import _TOP_LEVEL, DAMAGED, ResultsStore

__all__ = ["StoreProblem", "set_aside", "store_problems"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreProblem:
    """One damaged or foreign entry of a results store.

    Attributes:
        path: The entry (a unit directory, or a foreign file or directory).
        message: What is wrong with it.
        unit_id: The unit it held (None for a foreign entry that is not a unit directory).
    """

    path: Path
    message: str
    unit_id: str | None = None


def store_problems(store: ResultsStore) -> list[StoreProblem]:
    """Every damaged or foreign entry of ``store``, checked down to the Parquet footers.

    Args:
        store: The store, opened with ``check=False``.

    Returns:
        The problems, top-level entries first, then the units by id; empty for a sound store.
    """
    problems = [StoreProblem(entry, f"foreign entry {str(entry)!r} in the results store")
                for entry in sorted(store.root.iterdir()) if entry.name not in _TOP_LEVEL]
    if not store.units_dir.is_dir():
        return problems
    store._markers = {}
    for entry in sorted(store.units_dir.iterdir()):
        try:
            marker = store._check_unit_dir(entry)
            store._verify_unit(entry.name, marker)
        except StoreError as exc:
            store._markers.pop(entry.name, None)
            unit = entry.name if entry.is_dir() else None
            problems.append(StoreProblem(entry, str(exc), unit))
    return problems


def set_aside(store: ResultsStore, problems: list[StoreProblem] | None = None) -> list[Path]:
    """Move every damaged or foreign entry to ``<store>/damaged/<UTC time>/`` (a rename each).

    Call it while holding the store's lock (:meth:`~circuit_atlas.store.ResultsStore.lock`).

    Args:
        store: The store, opened with ``check=False``.
        problems: What to move (default: :func:`store_problems`).

    Returns:
        The new paths of the moved entries (their paths relative to the store are kept).
    """
    problems = store_problems(store) if problems is None else problems
    if not problems:
        return []
    target = store.root / DAMAGED / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
    moved = []
    for problem in problems:
        destination = target / problem.path.relative_to(store.root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.rename(problem.path, destination)
        logger.warning("moved %s to %s: %s", problem.path, destination, problem.message)
        moved.append(destination)
    store._markers = {}
    store.check()
    return moved
