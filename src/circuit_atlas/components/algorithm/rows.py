"""Store rows of one unit's IOI algorithm, fingerprints and self-repair (``docs/store.md``).

:func:`algorithm_tables` turns an :class:`~circuit_atlas.components.algorithm.IOIAlgorithm` and
the unit's fingerprints into the rows of the ``algorithm``, ``algorithm_heads``,
``fingerprints``, ``self_repair`` and ``self_repair_heads`` tables, without the unit's key columns
(the runner adds ``unit_id``, ``model``, ``step`` and, where the schema has them, ``params`` and
``tokens_seen``). Undefined numbers are None, never NaN or inf.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from circuit_atlas.components.algorithm.decompose import IOIAlgorithm
from circuit_atlas.components.algorithm.fingerprints import Fingerprint
from circuit_atlas.components.algorithm.intervals import ShareInterval
from circuit_atlas.components.algorithm.roles import PANELS, ROLES
from circuit_atlas.components.path_sweep import Head

__all__ = ["algorithm_tables", "head_names"]


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def head_names(heads: Iterable[Head]) -> str:
    """``"a1.h0,a2.h3"`` for heads ``[(1, 0), (2, 3)]`` (sorted; empty string for none)."""
    return ",".join(f"a{layer}.h{head}" for layer, head in sorted(heads))


def algorithm_tables(algo: IOIAlgorithm | None, fingerprints: Sequence[Fingerprint],
                     task: str = "ioi") -> dict[str, list[dict]]:  # fmt: skip
    """Rows of the five algorithm tables for one unit.

    Args:
        algo: The IOI decomposition (None when the unit has no IOI task: only fingerprint rows).
        fingerprints: The unit's fingerprints (one per task that has one).
        task: The task name of the decomposition's rows.

    Returns:
        Table name → rows without the unit keys: ``algorithm`` (one per panel),
        ``algorithm_heads`` (one per head), ``fingerprints`` (one per task and role),
        ``self_repair`` (one, saying ``no_name_movers`` when nothing was ablated) and
        ``self_repair_heads`` (one per head, only when heads were ablated).
    """
    out: dict[str, list[dict]] = {"algorithm": [], "algorithm_heads": [], "fingerprints": [],
                                  "self_repair": [], "self_repair_heads": []}  # fmt: skip
    for fp in fingerprints:
        shares = fp.shares if fp.shares is not None else (None,) * len(fp.roles)
        out["fingerprints"] += [
            {"task": fp.task, "role": role, "share": _num(share), "attribution": _num(attr),
             "reason": fp.reason}
            for role, share, attr in zip(fp.roles, shares, fp.attribution, strict=True)
        ]  # fmt: skip
    if algo is None:
        return out
    for panel in PANELS:
        p = algo.panels[panel]
        ci = algo.intervals.get(panel) or ShareInterval.none("not_computed")
        out["algorithm"].append({
            "task": task, "panel": panel, "pct_effect": _num(p.value), "reason": p.reason,
            "denominator": p.denominator, "identified_effect": _num(p.identified),
            "total_effect": _num(p.total), "n_identified": len(p.heads),
            "n_denominator": p.n_denominator, "heads": head_names(p.heads),
            "clean_logit_diff": _num(algo.clean_logit_diff),
            "corrupted_logit_diff": _num(algo.corrupted_logit_diff),
            "pct_effect_ci_low": _num(ci.low), "pct_effect_ci_high": _num(ci.high),
            "ci_reason": ci.reason, "n_examples": algo.n_examples,
            "ci_n_resamples": ci.n_resamples, "ci_n_valid": ci.n_valid, "ci_seed": ci.seed,
            "ci_level": ci.level,
        })  # fmt: skip
    primary = algo.primary_roles()
    inside = None if algo.circuit is None else set(algo.circuit)
    n_layers, n_heads = algo.direct_effect.shape
    for layer in range(n_layers):
        for head in range(n_heads):
            h = (layer, head)
            out["algorithm_heads"].append({
                "task": task, "layer": layer, "head": head, "node": f"a{layer}.h{head}",
                "role": primary[layer][head],
                **{f"is_{r}": bool(algo.roles[r][h]) for r in ROLES},
                "direct_effect": _num(algo.direct_effect[h]),
                "s_inhibition_effect": _num(algo.s_inhibition_effect[h]),
                "tertiary_effect": _num(algo.tertiary_effect[h]),
                "in_circuit": None if inside is None else h in inside,
            })  # fmt: skip
    repair = algo.self_repair
    if repair is not None:
        out["self_repair"].append({
            "task": task, "n_ablated": len(repair.ablated), "ablated": head_names(repair.ablated),
            "clean_logit_diff": _num(repair.clean_logit_diff),
            "ablated_logit_diff": _num(repair.ablated_logit_diff),
            "logit_diff_change": _num(repair.logit_diff_change),
            "logit_diff_change_pct": _num(repair.logit_diff_change_pct),
            "backup_heads": head_names(repair.backup_heads), "reason": repair.reason,
        })  # fmt: skip
        ablated = set(repair.ablated)
        if ablated:
            out["self_repair_heads"] = [
                {"task": task, "layer": layer, "head": head, "node": f"a{layer}.h{head}",
                 "clean_dla": _num(repair.clean_dla[layer, head]),
                 "ablated_dla": _num(repair.ablated_dla[layer, head]),
                 "dla_change": _num(repair.dla_change[layer, head]),
                 "ablated": (layer, head) in ablated, "backup": bool(repair.backup[layer, head])}
                for layer in range(n_layers) for head in range(n_heads)
            ]  # fmt: skip
    return out
