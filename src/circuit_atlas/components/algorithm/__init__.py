"""The IOI algorithm over training and scale: Figure 4 B–D, fingerprints, self-repair (PAPER.md §5).

The paper's third claim is that the heads of a circuit change over training while the algorithm
persists: in IOI, direct-effect heads (name movers, copy suppression) are driven by S-inhibition
heads, which read induction and duplicate-token heads. This sub-package measures it for one
loaded checkpoint:

- :func:`ioi_algorithm` — the decomposition (:mod:`.decompose`): path-patching effects, the
  heads of each role (:mod:`.roles`), the % effect of each panel (:func:`pct_effect`) and the
  self-repair experiment (:mod:`.self_repair`);
- :func:`fingerprint` — the share of a task's effect carried by each role and
  :func:`fingerprint_similarity` between two checkpoints or sizes (:mod:`.fingerprint`);
- :func:`algorithm_tables` — the rows of the store's ``algorithm``, ``algorithm_heads``,
  ``fingerprints``, ``self_repair`` and ``self_repair_heads`` tables for one unit
  (:mod:`.rows`).

Definitions, sources and deliberate differences: ``docs/algorithm.md``.
"""

from circuit_atlas.components.algorithm.decompose import (
    IOIAlgorithm,
    circuit_heads,
    compute_head_scores,
    ioi_algorithm,
)
from circuit_atlas.components.algorithm.fingerprint import (
    FINGERPRINT_ROLES,
    Fingerprint,
    fingerprint,
    fingerprint_similarity,
    greater_than_node_roles,
    ioi_node_roles,
    node_attributions,
)
from circuit_atlas.components.algorithm.roles import (
    DENOMINATORS,
    PANELS,
    REASONS,
    ROLES,
    AlgorithmSettings,
    Denominator,
    HeadScores,
    Panel,
    PctEffect,
    Reason,
    Role,
    direct_roles,
    pct_effect,
    primary_roles,
    tertiary_heads,
)
from circuit_atlas.components.algorithm.rows import algorithm_tables, head_names
from circuit_atlas.components.algorithm.self_repair import (
    SelfRepair,
    direct_logit_attribution,
    self_repair,
)

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
    "primary_roles",
    "self_repair",
    "tertiary_heads",
]
