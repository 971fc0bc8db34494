"""Analyses that compare circuits and behaviour across checkpoints and model sizes.

Every function is pure: it takes pandas DataFrames with the columns of the results store's tables
(``units``, ``task_metrics``, ``circuits``, ``edges``, ``nodes``, ``faithfulness``; see
``docs/store.md``) and returns a new tidy DataFrame or a number. None reads the store itself.

- :mod:`.performance` — task metric over tokens per model (Figure 1, PAPER.md §2.5).
- :mod:`.size` — circuit size in nodes and edges over training, mean size (§6, §7.3).
- :mod:`.stability` — Jaccard similarity of node/edge sets, weighted Jaccard, EWMA (§6).
- :mod:`.scaling` — correlation of mean circuit size with parameter count (§7.3).
- :mod:`.emergence` — first checkpoint that reaches and keeps a fraction of the final value.
- :mod:`.components` — which component heads to show over training (Figures 2–3, §4).
- :mod:`.algorithm` — Figure 4 B–D series and the similarity of algorithm fingerprints over
  training and across sizes (§5; docs/algorithm.md).
- :mod:`.integrity` — distinct checkpoints whose weights fingerprints are equal (duplicated
  checkpoints, e.g. hub branches holding the same weights).
- :mod:`.suites` — which suite each model comes from, tokens seen filled per suite, checkpoints
  of two suites paired at matched tokens seen, emergence per suite (per-suite size–scale
  correlation: :func:`size_scale_correlation_by_suite`).
- :mod:`.seeds` — curves and emergence points as mean ± spread over training seeds, and the
  Jaccard between seeds at one step next to the Jaccard between consecutive steps.
- :mod:`.uncertainty` — seeded percentile bootstrap intervals over prompts (task metrics and
  faithfulness, from the ``prompt_metrics`` table).
"""

from circuit_atlas.analyses._frames import attach_tokens, model_order, step_tokens
from circuit_atlas.analyses.algorithm import (
    algorithm_series,
    algorithm_stability,
    cross_size_table,
    fingerprint_similarity_across_sizes,
    fingerprint_similarity_over_time,
    fingerprint_table,
    share_similarity,
)
from circuit_atlas.analyses.components import (
    PAPER_FIG2_FRACTION,
    PAPER_FIG3_FRACTION,
    SelectionRule,
    frequent_heads,
    representative_heads,
)
from circuit_atlas.analyses.emergence import (
    BASELINES,
    Baseline,
    EmergencePoint,
    emergence_point,
    emergence_table,
)
from circuit_atlas.analyses.integrity import IDENTICAL_WEIGHTS_COLUMNS, identical_weights
from circuit_atlas.analyses.performance import (
    METRIC_COLUMNS,
    PAPER_DROP_STEPS_AT_MOST,
    task_performance,
)
from circuit_atlas.analyses.scaling import (
    pearson,
    size_scale_correlation,
    size_scale_correlation_by_suite,
    size_scale_correlation_from_circuits,
    spearman,
)
from circuit_atlas.analyses.seeds import (
    SEED_COLUMNS,
    across_seeds,
    emergence_across_seeds,
    seed_jaccard,
    seed_map,
)
from circuit_atlas.analyses.size import (
    PAPER_MEAN_SIZE_MIN_STEP,
    SizeMeasure,
    circuit_size,
    circuit_size_from_sets,
    faithful_circuits,
    mean_circuit_size,
)
from circuit_atlas.analyses.stability import (
    PAPER_EWMA_ALPHA,
    PAPER_JACCARD_CHECKPOINTS,
    Reference,
    edge_jaccard,
    ewma,
    jaccard,
    jaccard_over_time,
    node_jaccard,
    normalized_abs_scores,
    weighted_jaccard,
)
from circuit_atlas.analyses.suites import (
    POOLED_SUITE,
    SUITE_COLUMNS,
    UNRECORDED_SUITE,
    emergence_by_suite,
    match_tokens_seen,
    suite_map,
    with_suites,
)
from circuit_atlas.analyses.uncertainty import (
    CI_LEVEL,
    INTERVAL_COLUMNS,
    N_RESAMPLES,
    BootstrapCI,
    bootstrap_ci,
    faithfulness_intervals,
    metric_intervals,
)

__all__ = [
    "BASELINES",
    "CI_LEVEL",
    "IDENTICAL_WEIGHTS_COLUMNS",
    "INTERVAL_COLUMNS",
    "METRIC_COLUMNS",
    "N_RESAMPLES",
    "PAPER_DROP_STEPS_AT_MOST",
    "PAPER_EWMA_ALPHA",
    "PAPER_FIG2_FRACTION",
    "PAPER_FIG3_FRACTION",
    "PAPER_JACCARD_CHECKPOINTS",
    "PAPER_MEAN_SIZE_MIN_STEP",
    "POOLED_SUITE",
    "SEED_COLUMNS",
    "SUITE_COLUMNS",
    "UNRECORDED_SUITE",
    "Baseline",
    "BootstrapCI",
    "EmergencePoint",
    "Reference",
    "SelectionRule",
    "SizeMeasure",
    "across_seeds",
    "algorithm_series",
    "algorithm_stability",
    "attach_tokens",
    "bootstrap_ci",
    "circuit_size",
    "circuit_size_from_sets",
    "cross_size_table",
    "edge_jaccard",
    "emergence_across_seeds",
    "emergence_by_suite",
    "emergence_point",
    "emergence_table",
    "ewma",
    "faithful_circuits",
    "faithfulness_intervals",
    "fingerprint_similarity_across_sizes",
    "fingerprint_similarity_over_time",
    "fingerprint_table",
    "frequent_heads",
    "identical_weights",
    "jaccard",
    "jaccard_over_time",
    "match_tokens_seen",
    "mean_circuit_size",
    "metric_intervals",
    "model_order",
    "node_jaccard",
    "normalized_abs_scores",
    "pearson",
    "representative_heads",
    "seed_jaccard",
    "seed_map",
    "share_similarity",
    "size_scale_correlation",
    "size_scale_correlation_by_suite",
    "size_scale_correlation_from_circuits",
    "spearman",
    "step_tokens",
    "suite_map",
    "task_performance",
    "weighted_jaccard",
    "with_suites",
]
