"""The IOI algorithm over training and scale: Figure 4 B–D, fingerprints, self-repair (PAPER.md §5).

The paper's third claim is that the heads of a circuit change over training while the algorithm
persists: in IOI, direct-effect heads (name movers, copy suppression) are driven by S-inhibition
heads, which read induction and duplicate-token heads. This sub-package measures it for one
loaded checkpoint:

- :func:`ioi_algorithm` — the decomposition (:mod:`.decompose`): path-patching effects, the
  heads of each role (:mod:`.roles`), the % effect of each panel (:func:`pct_effect`), its
  bootstrap interval over prompts (:func:`pct_effect_interval`, :mod:`.intervals`) and the
  self-repair experiment (:mod:`.repair`);
- :func:`fingerprint` — the share of a task's effect carried by each role and
  :func:`fingerprint_similarity` between two checkpoints or sizes (:mod:`.fingerprints`);
- :func:`algorithm_tables` — the rows of the store's ``algorithm``, ``algorithm_heads``,
  ``fingerprints``, ``self_repair`` and ``self_repair_heads`` tables for one unit
  (:mod:`.rows`).

Names are imported lazily. Definitions, sources and deliberate differences:
``docs/algorithm.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {  # public name -> the sub-module defining it
    "AlgorithmSettings": "roles",
    "DENOMINATORS": "roles",
    "Denominator": "roles",
    "FINGERPRINT_ROLES": "fingerprints",
    "Fingerprint": "fingerprints",
    "HeadScores": "roles",
    "IOIAlgorithm": "decompose",
    "PANELS": "roles",
    "Panel": "roles",
    "PctEffect": "roles",
    "REASONS": "roles",
    "ROLES": "roles",
    "Reason": "roles",
    "Role": "roles",
    "SelfRepair": "repair",
    "ShareInterval": "intervals",
    "algorithm_tables": "rows",
    "circuit_heads": "decompose",
    "compute_head_scores": "decompose",
    "direct_logit_attribution": "repair",
    "direct_roles": "roles",
    "fingerprint": "fingerprints",
    "fingerprint_similarity": "fingerprints",
    "greater_than_node_roles": "fingerprints",
    "head_names": "rows",
    "ioi_algorithm": "decompose",
    "ioi_node_roles": "fingerprints",
    "node_attributions": "fingerprints",
    "pct_effect": "roles",
    "pct_effect_interval": "intervals",
    "primary_roles": "roles",
    "self_repair": "repair",
    "tertiary_heads": "roles",
}

__all__ = [
    "DENOMINATORS",
    "FINGERPRINT_ROLES",
    "PANELS",
    "REASONS",
    "ROLES",
    "AlgorithmSettings",
    "Denominator",
    "Fingerprint",
    "HeadScores",
    "IOIAlgorithm",
    "Panel",
    "PctEffect",
    "Reason",
    "Role",
    "SelfRepair",
    "ShareInterval",
    "algorithm_tables",
    "circuit_heads",
    "compute_head_scores",
    "direct_logit_attribution",
    "direct_roles",
    "fingerprint",
    "fingerprint_similarity",
    "greater_than_node_roles",
    "head_names",
    "ioi_algorithm",
    "ioi_node_roles",
    "node_attributions",
    "pct_effect",
    "pct_effect_interval",
    "primary_roles",
    "self_repair",
    "tertiary_heads",
]


def __getattr__(name: str) -> Any:
    """Import public names on first use (the figures need no torch)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
