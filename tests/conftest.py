"""Shared fixtures: the real data (through the project's own resolution) and Pythia's tokenizer.

Tests that need the registry's real files (task data, the Pythia tokenizer, the demo corpus) take
the ``data_dir`` fixture or call :func:`require_data`; where no data location holds them (a fresh
clone without ``../shared/data`` and an empty cache) they skip with a reason that names the
command that provides them. Nothing here downloads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

SKIP_REASON = (
    "real data not available: run `circuit-atlas data fetch` (or `circuit-atlas data fetch "
    "--from DIR` with a local copy) to enable this test"
)
"""Why a test that needs the real data skipped, and the command that enables it."""


def require_data(names: Iterable[str] | None = None) -> Path:
    """The data directory holding verified copies of ``names`` (default: the whole registry).

    Resolved as the library resolves it (``$CIRCUIT_ATLAS_DATA``, the cache, ``../shared/data``);
    skips the calling test with :data:`SKIP_REASON` when no location holds them. A location that
    holds a *wrong* copy fails the test (DataIntegrityError), it does not skip.
    """
    from circuit_atlas.data import resolve_data_dir
    from circuit_atlas.errors import DataNotFoundError

    try:
        return resolve_data_dir(names=names)
    except DataNotFoundError:
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """A data directory with every registry file, verified (skips when there is none)."""
    return require_data()


@pytest.fixture(scope="session")
def pythia_tokenizer(data_dir: Path):
    """The GPT-NeoX-20B tokenizer of every Pythia model, from the data directory."""
    from circuit_atlas.data import load_pythia_tokenizer

    return load_pythia_tokenizer(data_dir)
