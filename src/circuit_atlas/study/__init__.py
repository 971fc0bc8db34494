"""Studies: a typed study file, its units of work, the runner and its executors.

``config`` parses and validates the study file; ``units`` expands it into units (one
(model, checkpoint) each); ``runner`` computes a unit and commits it to the
:class:`~circuit_atlas.store.ResultsStore`; ``executors`` run units locally or on Ray; ``cache``
evicts downloaded checkpoints under a disk budget; ``status`` and ``export`` read a store back;
``cli`` holds the ``run``/``status``/``report``/``export`` commands.

Typical use::

    from circuit_atlas.store import ResultsStore
    from circuit_atlas.study import load_study, plan_units, run_study

    study = load_study("examples/local_suite.toml")
    summary = run_study(plan_units(study), ResultsStore("results/local-suite", create=True))
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Engine": "runner",
    "RunSummary": "runner",
    "StudyConfig": "config",
    "Unit": "units",
    "compute_unit": "runner",
    "estimate_cost": "units",
    "load_study": "load",
    "parse_study": "config",
    "plan_units": "units",
    "run_study": "runner",
    "run_unit": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the public names lazily, so that ``import circuit_atlas.cli`` stays light."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'circuit_atlas.study' has no attribute {name!r}")
    return getattr(importlib.import_module(f"circuit_atlas.study.{_EXPORTS[name]}"), name)
