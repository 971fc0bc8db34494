"""Models: where checkpoints come from, what they look like, and the patchable forward.

* :mod:`~circuit_atlas.models.pythia` — the Pythia registry (sizes, parameter counts, the 154
  checkpoint steps, tokens per step).
* :mod:`~circuit_atlas.models.hub_suites` — the registry of hub checkpoint suites
  (:data:`HUB_SUITES`: Pythia/PolyPythias, OLMo, OLMo 2, Stanford CRFM GPT-2, SmolLM2, Amber) and
  :mod:`~circuit_atlas.models.revisions`, how a branch name maps to a step and where the branch
  list comes from (docs/suites.md).
* :mod:`~circuit_atlas.models.schedules` — named and parametric checkpoint schedules.
* :mod:`~circuit_atlas.models.sources` — :func:`load_model` from the hub, a local directory, a
  local suite, or a random initialisation; :mod:`~circuit_atlas.models.configs` and
  :mod:`~circuit_atlas.models.suite` hold its config and suite helpers.
* :mod:`~circuit_atlas.models.integrity` — weights fingerprints, hub sha256 checks and the
  pickle guard used by :func:`load_model`.
* :mod:`~circuit_atlas.models.spec` — :class:`ModelSpec`, the architecture hyper-parameters.
* :mod:`~circuit_atlas.models.protocol` — :class:`PatchableModel`, what the rest of the package
  may use of a model; :mod:`~circuit_atlas.models.patchable` — :class:`PatchableTransformer`,
  the one patchable forward that implements it.
* :mod:`~circuit_atlas.models.adapters` — the registry :data:`ADAPTERS` by HF ``model_type``:
  :mod:`~circuit_atlas.models.neox` (:class:`PatchableGPTNeoX`),
  :mod:`~circuit_atlas.models.gpt2` (:class:`PatchableGPT2`) and
  :mod:`~circuit_atlas.models.llama` (:class:`PatchableLlama`: Llama, Qwen2, OLMo). The torch
  classes are imported lazily.
"""

from __future__ import annotations

from typing import Any

from circuit_atlas.models.configs import (
    DTYPES,
    hf_config,
    neox_config,
    random_hf_model,
    resolve_device,
    resolve_dtype,
    save_random_checkpoint,
    tiny_config,
)
from circuit_atlas.models.hub_suites import (
    HUB_SUITES,
    HubModel,
    HubSuite,
    get_hub_suite,
    list_hub_models,
    resolve_hub_model,
)
from circuit_atlas.models.pythia import (
    PYTHIA_ARCHITECTURES,
    PYTHIA_FINAL_STEP,
    PYTHIA_MODELS,
    PYTHIA_SIZES,
    PYTHIA_STEPS,
    TOKENS_PER_STEP,
    PythiaArchitecture,
    PythiaModel,
    count_parameters,
    get_pythia,
    list_pythia_models,
    pythia_config,
    pythia_spec,
    steps_to_tokens,
)
from circuit_atlas.models.revisions import (
    REVISION_SCHEMES,
    HubCheckpoint,
    RevisionList,
    RevisionScheme,
    list_repo_revisions,
)
from circuit_atlas.models.schedules import (
    NAMED_SCHEDULES,
    SCHEDULE_KINDS,
    NamedSchedule,
    nearest_step,
    resolve_schedule,
    validate_step,
)
from circuit_atlas.models.sources import LoadedHF, ModelSource, load_hf_model, load_model
from circuit_atlas.models.spec import ModelSpec
from circuit_atlas.models.suite import (
    SUITE_MANIFEST,
    list_suite_checkpoints,
    list_suite_sizes,
    read_suite_manifest,
)

__all__ = [
    "ADAPTERS",
    "DTYPES",
    "HUB_SUITES",
    "NAMED_SCHEDULES",
    "PYTHIA_ARCHITECTURES",
    "PYTHIA_FINAL_STEP",
    "PYTHIA_MODELS",
    "PYTHIA_SIZES",
    "PYTHIA_STEPS",
    "REVISION_SCHEMES",
    "SCHEDULE_KINDS",
    "SUITE_MANIFEST",
    "TOKENS_PER_STEP",
    "Adapter",
    "HubCheckpoint",
    "HubModel",
    "HubSuite",
    "LoadedHF",
    "ModelSource",
    "ModelSpec",
    "NamedSchedule",
    "PatchableGPT2",
    "PatchableGPTNeoX",
    "PatchableLlama",
    "PatchableModel",
    "PatchableTransformer",
    "PythiaArchitecture",
    "PythiaModel",
    "RevisionList",
    "RevisionScheme",
    "count_parameters",
    "from_hf",
    "get_adapter",
    "get_hub_suite",
    "get_pythia",
    "list_hub_models",
    "hf_config",
    "list_pythia_models",
    "list_repo_revisions",
    "list_suite_checkpoints",
    "list_suite_sizes",
    "load_hf_model",
    "load_model",
    "nearest_step",
    "neox_config",
    "pythia_config",
    "pythia_spec",
    "random_hf_model",
    "read_suite_manifest",
    "resolve_device",
    "resolve_dtype",
    "resolve_hub_model",
    "resolve_schedule",
    "save_random_checkpoint",
    "steps_to_tokens",
    "supported_model_types",
    "tiny_config",
    "validate_step",
]


_LAZY = {
    "ADAPTERS": "circuit_atlas.models.adapters",
    "Adapter": "circuit_atlas.models.adapters",
    "from_hf": "circuit_atlas.models.adapters",
    "get_adapter": "circuit_atlas.models.adapters",
    "supported_model_types": "circuit_atlas.models.adapters",
    "PatchableGPT2": "circuit_atlas.models.gpt2",
    "PatchableGPTNeoX": "circuit_atlas.models.neox",
    "PatchableLlama": "circuit_atlas.models.llama",
    "PatchableModel": "circuit_atlas.models.protocol",
    "PatchableTransformer": "circuit_atlas.models.patchable",
}


def __getattr__(name: str) -> Any:
    """Import the torch-backed names on first use (they pull in the graph machinery)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
