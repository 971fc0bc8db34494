"""Shared fixtures: the real data directory and Pythia's tokenizer (read offline)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory, ``../shared/data`` relative to the repository root."""
    path = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip(f"data directory {path} not found")
    return path


@pytest.fixture(scope="session")
def pythia_tokenizer(data_dir: Path):
    """The GPT-NeoX-20B tokenizer of every Pythia model, from the data directory."""
    from circuit_atlas.data import load_pythia_tokenizer

    return load_pythia_tokenizer(data_dir)
