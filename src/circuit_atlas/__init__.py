"""circuit-atlas: find and track LLM circuits across training checkpoints and model scale.

The public API follows the data flow (see ``docs/architecture.md``)::

    import circuit_atlas as ca

    model = ca.load_model("pythia-160m", step=143000)          # or path=..., config=...
    data = ca.make_dataset("ioi", model.tokenizer)             # clean/corrupted + metric
    scores = ca.attribute(model, None, data, method="EAP-IG-inputs", ig_steps=30)
    result = ca.find_circuit(model, data)                      # minimal faithful circuit
    print(result.summary())
    algo = ca.ioi_algorithm(model, data)                       # Figure 4: the IOI algorithm

Names are imported lazily, so ``import circuit_atlas`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CircuitEvaluator": "circuit_atlas.evaluation",
    "CircuitResult": "circuit_atlas.result",
    "Graph": "circuit_atlas.graph",
    "ModelSpec": "circuit_atlas.models.spec",
    "PatchableGPTNeoX": "circuit_atlas.models.neox",
    "PatchableModel": "circuit_atlas.models.protocol",
    "ResultsStore": "circuit_atlas.store",
    "TaskDataset": "circuit_atlas.tasks.base",
    "attribute": "circuit_atlas.attribution",
    "behaviour": "circuit_atlas.evaluation",
    "evaluate_circuits": "circuit_atlas.evaluation",
    "find_circuit": "circuit_atlas.search",
    "ioi_algorithm": "circuit_atlas.components.algorithm",
    "list_tasks": "circuit_atlas.tasks",
    "load_model": "circuit_atlas.models.sources",
    "load_study": "circuit_atlas.study",
    "make_dataset": "circuit_atlas.tasks",
    "resolve_schedule": "circuit_atlas.models.schedules",
    "run_study": "circuit_atlas.study",
    "write_report": "circuit_atlas.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'circuit_atlas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
