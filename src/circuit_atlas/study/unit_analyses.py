"""The per-unit analyses after the circuits: component scores and the IOI algorithm.

:func:`component_tables` gives the ``component_scores`` and ``component_heads`` rows;
:func:`algorithm_unit_tables` the ``algorithm``, ``algorithm_heads``, ``fingerprints``,
``self_repair`` and ``self_repair_heads`` rows (docs/store.md). Both run on the model the unit
already loaded and reuse what it computed: the circuits (their heads and edge scores), the
component scores, and the component analysis' IOI prompts and S-inhibition result.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

from circuit_atlas.errors import ComponentDataError, DataNotFoundError, TaskDataError
from circuit_atlas.study.units import Unit

__all__ = ["algorithm_unit_tables", "component_tables"]

logger = logging.getLogger(__name__)

_DATA_ERRORS = (TaskDataError, ComponentDataError, DataNotFoundError)

_IOI_SCORES = ("name_mover", "negative_name_mover", "copy_suppression", "induction",
               "duplicate_token")  # fmt: skip
_GT_SCORES = ("successor", "induction")


def component_tables(model: Any, unit: Unit, keys: dict, short: dict,
                     circuit_edges: dict[str, tuple[list[str], list[str]] | None],
                     errors: dict[str, str], timings: dict[str, float],
                     artifacts: dict[str, Any] | None = None) -> dict[str, list]:  # fmt: skip
    """Rows of ``component_scores`` and ``component_heads`` for one unit.

    A tokenizer that cannot build the IOI prompts or the successor sequences, a missing corpus,
    or a model without a tokenizer is recorded in ``errors["components"]`` (the unit is then
    ``partial``); the scores are all-or-nothing for a unit.

    Args:
        model: The unit's model.
        unit: The unit.
        keys: The unit's key columns with ``params`` and ``tokens_seen``.
        short: The unit's key columns ``unit_id``, ``model``, ``step``.
        circuit_edges: Task → (parents, children) of its faithful circuit's edges, or None.
        errors: Receives ``"components"`` → message on a data error.
        timings: Receives ``components.<family>`` seconds.
        artifacts: When given, receives ``"rows"`` (the score rows), ``"ioi"`` and
            ``"s_inhibition"`` (see :func:`~circuit_atlas.components.score_heads`).

    Returns:
        Table name → rows (empty when the scores could not be computed).
    """
    from circuit_atlas.components import link_to_circuit, score_heads

    settings = unit.settings.component_settings()
    times: dict[str, float] = {}
    try:
        rows = score_heads(model, settings, data_dir=unit.execution.data_dir, timings=times,
                           artifacts=artifacts)  # fmt: skip
    except _DATA_ERRORS as exc:
        logger.warning("unit %s: component scores skipped: %s", unit.label, exc)
        errors["components"] = str(exc)
        return {}
    if artifacts is not None:
        artifacts["rows"] = rows
    timings.update({f"components.{k}": v for k, v in times.items()})
    heads = [{**short, **row}
             for task, edges in circuit_edges.items()
             for row in link_to_circuit(rows, task, *(edges or (None, None)),
                                        settings)]  # fmt: skip
    scores = [{**keys, **row} for row in rows]
    return {"component_scores": scores, "component_heads": heads}


def _scores(model: Any, unit: Unit, needed: set[str], artifacts: dict[str, Any]) -> Any:
    """HeadScores from the component rows of the unit, computing the missing components."""
    from circuit_atlas.components import score_heads
    from circuit_atlas.components.algorithm import HeadScores

    rows = list(artifacts.get("rows") or [])
    have = {r["component"] for r in rows}
    missing = tuple(c for c in needed if c not in have)
    if missing:
        settings = replace(unit.settings.component_settings(), scores=missing)
        rows += score_heads(model, settings, data_dir=unit.execution.data_dir,
                            artifacts=artifacts if "ioi" not in artifacts else None)  # fmt: skip
        artifacts["rows"] = rows
    return HeadScores.from_rows(rows, model.spec.n_layers, model.spec.n_heads)


def _greater_than_fingerprint(model: Any, unit: Unit, result: Any, behaviour: dict | None,
                              settings: Any, artifacts: dict[str, Any]) -> Any:  # fmt: skip
    from circuit_atlas.components.algorithm import (
        Fingerprint,
        fingerprint,
        greater_than_node_roles,
        node_attributions,
    )
    from circuit_atlas.faithfulness import Baselines

    clean = behaviour["clean"] if behaviour else {}
    n = int(behaviour.get("n", 0)) if behaviour else 0
    std = clean.get("metric_std")
    se = float(std) / math.sqrt(n) if std is not None and n > 0 else 0.0
    gap = Baselines(float(result.clean_metric), float(result.corrupted_metric), se,
                    abs_tol=settings.gap_abs_tol, n_se=settings.gap_n_se)  # fmt: skip
    if not gap.normalized_defined:
        return Fingerprint.undefined("greater-than", "gap_too_small")
    scores = _scores(model, unit, set(_GT_SCORES), artifacts)
    roles = greater_than_node_roles(scores, result.node_names,
                                    successor_threshold=settings.successor_threshold)
    return fingerprint("greater-than", roles, node_attributions(result.edge_parent,
                                                                result.scores))  # fmt: skip


def algorithm_unit_tables(model: Any, unit: Unit, keys: dict, short: dict,
                          circuits: dict[str, Any], behaviours: dict[str, dict],
                          artifacts: dict[str, Any], errors: dict[str, str],
                          timings: dict[str, float]) -> dict[str, list]:  # fmt: skip
    """Rows of the algorithm tables for one unit (docs/algorithm.md).

    The IOI decomposition and self-repair run when the unit has the ``ioi`` task, on the
    component analysis' IOI prompts (``ioi_n``, ``ioi_seed``); the IOI fingerprint reuses the
    IOI circuit's edge scores, the Greater-Than fingerprint the Greater-Than circuit's. A data
    problem (no tokenizer, no corpus) is recorded in ``errors["algorithm"]`` (the unit is then
    ``partial``).

    Args:
        model: The unit's model.
        unit: The unit.
        keys: Key columns with ``params`` and ``tokens_seen``.
        short: Key columns ``unit_id``, ``model``, ``step``.
        circuits: Task → its :class:`~circuit_atlas.result.CircuitResult` (tasks whose circuit
            was computed).
        behaviours: Task → its behaviour result plus ``"n"`` (examples), when computed.
        artifacts: The component analysis' ``rows``, ``ioi`` and ``s_inhibition`` (possibly
            empty); missing scores are computed and added.
        errors: Receives ``"algorithm"`` → message on a data error.
        timings: Receives ``algorithm.<stage>`` seconds.

    Returns:
        Table name → rows.
    """
    from circuit_atlas.components.algorithm import (
        Fingerprint,
        algorithm_tables,
        circuit_heads,
        fingerprint,
        ioi_algorithm,
        ioi_node_roles,
        node_attributions,
    )

    settings = unit.settings.algorithm_settings()
    tasks = {t.name for t in unit.settings.tasks}
    algo, prints = None, []
    try:
        if "ioi" in tasks and "ioi" not in errors:
            from circuit_atlas.tasks.ioi import make_ioi

            scores = _scores(model, unit, set(_IOI_SCORES), artifacts)
            cs = unit.settings.component_settings()
            data = artifacts.get("ioi")
            if data is None:
                data = make_ioi(model.tokenizer, n=cs.ioi_n, seed=cs.ioi_seed)
            result = circuits.get("ioi")
            reuse = artifacts.get("s_inhibition") if settings.s_inhibition_positions == "end" \
                else None  # fmt: skip
            algo = ioi_algorithm(model, data, scores=scores, settings=settings, s_inhibition=reuse,
                                 circuit=None if result is None else circuit_heads(
                                     result, unit.settings.threshold),
                                 cache=artifacts.get("runs"))  # fmt: skip
            timings.update({f"algorithm.{k}": v for k, v in algo.timings.items()})
            if not algo.gap_defined:
                prints.append(Fingerprint.undefined("ioi", "gap_too_small"))
            elif result is None:
                prints.append(Fingerprint.undefined("ioi", "no_attribution"))
            else:
                roles = ioi_node_roles(algo.primary_roles(), result.node_names)
                prints.append(fingerprint("ioi", roles, node_attributions(result.edge_parent,
                                                                          result.scores)))
        if "greater-than" in circuits:
            t = time.perf_counter()
            prints.append(_greater_than_fingerprint(model, unit, circuits["greater-than"],
                                                    behaviours.get("greater-than"), settings,
                                                    artifacts))  # fmt: skip
            timings["algorithm.greater_than"] = time.perf_counter() - t
    except _DATA_ERRORS as exc:
        logger.warning("unit %s: algorithm skipped: %s", unit.label, exc)
        errors["algorithm"] = str(exc)
        return {}
    tables = algorithm_tables(algo, prints)
    with_keys = {"algorithm", "fingerprints", "self_repair"}
    return {name: [{**(keys if name in with_keys else short), **row} for row in rows]
            for name, rows in tables.items()}  # fmt: skip
