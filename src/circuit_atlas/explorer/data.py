"""What the explorer draws, extracted from the results store as one compact JSON document.

:func:`explorer_data` reads the store tables documented in docs/store.md (through
:class:`~circuit_atlas.report_frames.ReportFrames`, which reads only in-circuit edges) and keeps
only what the page draws:

- per (model, task, checkpoint) the circuit's in-circuit edges — parent, child port (the child
  with its ``<q|k|v>`` suffix, so ``parent + "->" + port`` is the EAP-IG edge name) and signed
  score — at most ``max_edges`` of them, the largest by |score| (the rest is counted, not sent);
  node and port names go into one string table and edges refer to it by index;
- per circuit, the roles of its heads (:func:`head_roles`), ordered by the task's priority;
- per (model, task) the curves beside the graph: the clean task metric, faithfulness, circuit
  size (nodes and edges) and the edge Jaccard with the previous checkpoint — the same numbers
  and the same faithful-circuit restriction as the report's Figures 1, 3 and 5.

Scores are sent as the shortest decimal that reads back as the stored float32, so the page's
edges equal the store's exactly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from circuit_atlas import analyses
from circuit_atlas.components.algorithm.figures import ROLE_COLORS, ROLE_LABELS
from circuit_atlas.components.algorithm.roles import ROLES
from circuit_atlas.errors import AnalysisError
from circuit_atlas.figures import SIGN_COLORS
from circuit_atlas.report_frames import ReportFrames

__all__ = [
    "DEFAULT_MAX_EDGES",
    "EXPLORER_FORMAT",
    "ROLE_ORDER",
    "circuit_key",
    "explorer_data",
    "head_roles",
]

EXPLORER_FORMAT = "circuit-atlas-explorer/1"
"""Name and version of the embedded JSON document (bump on an incompatible change)."""

DEFAULT_MAX_EDGES = 2000
"""Edges drawn per circuit at most: a larger circuit is drawn by its top edges by |score| and the
page says so. Cytoscape.js redraws 2,000 edges in well under a second in headless Chromium."""

COMPONENT_ROLES: tuple[str, ...] = ("successor", "induction")
"""Roles read from the whole-model ``component_scores`` (score above the mean over heads)."""

ROLE_ORDER: dict[str, tuple[str, ...]] = {
    "greater-than": (*COMPONENT_ROLES, *ROLES),
    "default": (*ROLES, *COMPONENT_ROLES),
}
"""Priority of roles per task: the first role of a head colours its node. Greater-Than puts the
successor and induction heads first (as its fingerprint does, a head that is both being a
successor head); every other task the IOI algorithm's order (name mover, copy suppression,
negative name mover, negative copy suppression, S-inhibition, tertiary — Figure 4A's rule)."""

_EXTRA_LABELS = {"successor": "successor", "induction": "induction"}
_EXTRA_COLORS = {"successor": "#17becf", "induction": "#1f3b8c"}
_PORT = re.compile(r"<[qkv]>$")


def circuit_key(model: str, task: str, step: int) -> str:
    """The key of one circuit in the document's ``circuits`` mapping: ``model|task|step``."""
    return f"{model}|{task}|{int(step)}"


def _f32(value: Any) -> float | None:
    """The shortest decimal that reads back as the same float32 (None for NaN/None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    as32 = np.float32(value)
    if not np.isfinite(as32):
        return None
    return float(np.format_float_positional(as32, unique=True, trim="-"))


def _num(value: Any, digits: int = 6) -> float | None:
    """A float rounded to ``digits`` significant digits for the curves (None for NaN/None)."""
    if value is None or pd.isna(value):
        return None
    return float(f"{float(value):.{digits}g}")


def _successor_thresholds(units: pd.DataFrame) -> dict[str, float | None]:
    """unit_id → the study's ``successor_threshold`` (None: above the mean over heads)."""
    out: dict[str, float | None] = {}
    if units.empty or not {"unit_id", "settings"} <= set(units.columns):
        return out
    for unit_id, text in zip(units["unit_id"], units["settings"], strict=True):
        try:
            settings = json.loads(text) if isinstance(text, str) else {}
            algorithm = settings.get("algorithm") or {}
            if isinstance(algorithm, str):
                algorithm = json.loads(algorithm)
            out[unit_id] = algorithm.get("successor_threshold")
        except (json.JSONDecodeError, AttributeError):
            out[unit_id] = None
    return out


def head_roles(
    component_scores: pd.DataFrame,
    algorithm_heads: pd.DataFrame,
    units: pd.DataFrame | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Every role of every head, per unit, from the stored component and algorithm tables.

    The rules are the pipeline's and the report's:

    - IOI algorithm roles (name mover, copy suppression, negative name mover, negative copy
      suppression, S-inhibition, tertiary): the ``is_<role>`` flags of ``algorithm_heads``
      (docs/algorithm.md; the role Figure 4A colours is the first of them);
    - ``successor``: the head's ``successor`` score is above the mean over the unit's heads with
      a defined score, or above the study's ``successor_threshold`` when it sets one;
      ``induction``: its ``induction`` score is above the mean over heads (PAPER.md §4) — the
      Greater-Than fingerprint's rule
      (:func:`~circuit_atlas.components.algorithm.fingerprints.greater_than_node_roles`).

    Args:
        component_scores: The ``component_scores`` table (``unit_id``, ``component``,
            ``layer``, ``head``, ``score``); may be empty.
        algorithm_heads: The ``algorithm_heads`` table (``unit_id``, ``node`` and the
            ``is_<role>`` flags); may be empty.
        units: The ``units`` table, for each unit's ``successor_threshold`` (optional).

    Returns:
        unit_id → head node name (``a3.h5``) → its roles, IOI roles first in :data:`ROLES`
        order, then ``successor``, ``induction``; heads without a role are left out.
    """
    roles: dict[str, dict[str, list[str]]] = {}
    if not algorithm_heads.empty and {"unit_id", "node"} <= set(algorithm_heads.columns):
        flags = [r for r in ROLES if f"is_{r}" in algorithm_heads.columns]
        for row in algorithm_heads[["unit_id", "node", *[f"is_{r}" for r in flags]]].itertuples(
            index=False
        ):
            mine = [r for r, flag in zip(flags, row[2:], strict=True) if flag is True or flag == 1]
            if mine:
                roles.setdefault(row[0], {})[row[1]] = mine
    needed = {"unit_id", "component", "layer", "head", "score"}
    if component_scores.empty or not needed <= set(component_scores.columns):
        return roles
    thresholds = _successor_thresholds(units if units is not None else pd.DataFrame())
    chosen = component_scores[component_scores["component"].isin(COMPONENT_ROLES)]
    for (unit_id, component), part in chosen.groupby(["unit_id", "component"], sort=False):
        scores = pd.to_numeric(part["score"], errors="coerce").astype(float)
        defined = scores.dropna()
        cut = thresholds.get(unit_id) if component == "successor" else None
        if cut is None:
            cut = float(defined.mean()) if len(defined) else math.inf
        above = part[scores > cut]
        for layer, head in zip(above["layer"], above["head"], strict=True):
            roles.setdefault(unit_id, {}).setdefault(f"a{int(layer)}.h{int(head)}", []).append(
                component
            )
    for by_node in roles.values():  # successor before induction, after the IOI roles
        for node, mine in by_node.items():
            by_node[node] = sorted(mine, key=(*ROLES, *COMPONENT_ROLES).index)
    return roles


def _ordered(mine: Sequence[str], task: str) -> list[str]:
    order = ROLE_ORDER.get(task, ROLE_ORDER["default"])
    return sorted(mine, key=order.index)


class _Names:
    """A string table: each distinct name gets the next index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        return self.index.setdefault(name, len(self.index))

    def table(self) -> list[str]:
        return list(self.index)


def _shapes(units: pd.DataFrame) -> dict[str, tuple[int | None, int | None]]:
    shapes: dict[str, tuple[int | None, int | None]] = {}
    if units.empty or not {"model", "spec"} <= set(units.columns):
        return shapes
    for model, spec in zip(units["model"], units["spec"], strict=True):
        try:
            data = json.loads(spec) if isinstance(spec, str) else {}
        except json.JSONDecodeError:
            data = {}
        shapes.setdefault(str(model), (data.get("n_layers"), data.get("n_heads")))
    return shapes


def _series(frames: ReportFrames) -> dict[str, dict[str, list]]:
    """(model|task) → the curves beside the graph, one value per stored circuit's step."""
    circuits = frames.circuits
    out: dict[str, dict[str, list]] = {}
    metrics: dict[tuple[str, str, int], float] = {}
    if {"model", "task", "step", "clean_metric"} <= set(frames.task_metrics.columns):
        for m, t, s, v in frames.task_metrics[["model", "task", "step", "clean_metric"]].itertuples(
            index=False
        ):
            metrics[(m, t, int(s))] = v
    jaccards: dict[tuple[str, str, int], float] = {}
    faithful = analyses.faithful_circuits(circuits)
    if not faithful.empty and {"unit_id", "edge"} <= set(frames.edges.columns):
        kept = faithful[["unit_id", "task"]].drop_duplicates()
        edges = frames.edges.merge(kept, on=["unit_id", "task"])
        over_time = analyses.edge_jaccard(edges, all_steps=faithful)
        for m, t, s, j in over_time[["model", "task", "step_to", "jaccard"]].itertuples(
            index=False
        ):
            jaccards[(m, t, int(s))] = j
    faithful_keys = set(zip(faithful["unit_id"], faithful["task"], strict=True))
    for (model, task), part in circuits.groupby(["model", "task"], sort=False):
        part = part.sort_values("step")
        steps = [int(s) for s in part["step"]]
        out[f"{model}|{task}"] = {
            "step": steps,
            "tokens": [None if pd.isna(t) else int(t) for t in part["tokens_seen"]],
            "metric": [_num(metrics.get((model, task, s))) for s in steps],
            "faithfulness": [_num(v) for v in part["faithfulness"]],
            "nodes": [int(v) for v in part["n_nodes"]],
            "edges": [int(v) for v in part["n_edges"]],
            "jaccard": [_num(jaccards.get((model, task, s))) for s in steps],
            "faithful": [
                (u, task) in faithful_keys for u in part["unit_id"]
            ],
        }
    return out


def explorer_data(source: Any, *, max_edges: int = DEFAULT_MAX_EDGES) -> dict[str, Any]:
    """The explorer's JSON document for a results store.

    Args:
        source: A ``ResultsStore``, a store directory, a mapping table name → DataFrame, or a
            :class:`~circuit_atlas.report_frames.ReportFrames` (as for the report).
        max_edges: The most edges sent (and drawn) per circuit; a larger circuit keeps its
            ``max_edges`` edges of largest |score| (ties: the store's order) and records its
            full size in ``n_edges``.

    Returns:
        A JSON-serialisable mapping: ``format``, ``max_edges``, ``models`` (name, params,
        n_layers, n_heads; smallest first), ``tasks`` (name, metric_kind), ``checkpoints``
        (model → [{step, tokens}] by step), ``names`` (the string table), ``circuits``
        (:func:`circuit_key` → ``{p, c, s, n_edges, drawn, faithfulness, faithful, roles}``:
        parent indices, child-port indices, scores, the circuit's size and how many edges are
        sent, and node → roles), ``series`` (``model|task`` → curves), ``roles`` (legend) and
        ``colors``.

    Raises:
        AnalysisError: If ``max_edges`` is not a positive integer, or the store holds no
            circuit.
        circuit_atlas.errors.StoreError: If a store directory is invalid.
    """
    if isinstance(max_edges, bool) or not isinstance(max_edges, int) or max_edges < 1:
        raise AnalysisError(f"max_edges must be a positive integer, got {max_edges!r}")
    frames = ReportFrames.load(source)
    circuits = frames.circuits
    needed = ("unit_id", "model", "task", "step", "n_edges", "n_nodes", "faithfulness")
    if circuits.empty or not all(c in circuits.columns for c in needed):
        raise AnalysisError("the store holds no circuit to explore (table 'circuits' is empty)")
    circuits = circuits.dropna(subset=["step"]).copy()
    if "tokens_seen" not in circuits.columns:
        circuits["tokens_seen"] = None
    if "params" not in circuits.columns:
        circuits["params"] = None
    frames = replace(frames, circuits=circuits)
    roles = head_roles(frames.component_scores, frames.algorithm_heads, frames.units)
    faithful = analyses.faithful_circuits(circuits)
    faithful_keys = set(zip(faithful["unit_id"], faithful["task"], strict=True))
    edges = frames.edges
    if not edges.empty:
        edges = edges[edges["in_circuit"].astype(bool)]
    by_circuit = dict(list(edges.groupby(["unit_id", "task"], sort=False))) if len(edges) else {}
    names = _Names()
    out_circuits: dict[str, dict[str, Any]] = {}
    for row in circuits.itertuples(index=False):
        part = by_circuit.get((row.unit_id, row.task))
        parents: list[int] = []
        ports: list[int] = []
        scores: list[float | None] = []
        node_roles: dict[str, list[str]] = {}
        if part is not None and len(part):
            magnitude = -np.abs(part["score"].astype(float).to_numpy())
            top = part.iloc[np.argsort(magnitude, kind="stable")[:max_edges]]
            unit_roles = roles.get(row.unit_id, {})
            for edge, parent, score in zip(top["edge"], top["parent"], top["score"], strict=True):
                head, sep, port = str(edge).partition("->")
                if not sep or head != parent:
                    raise AnalysisError(
                        f"edge {edge!r} is not named '<parent>-><child>' with parent {parent!r}"
                    )
                parents.append(names(parent))
                ports.append(names(port))
                scores.append(_f32(score))
                for node in (parent, _PORT.sub("", port)):
                    if node in unit_roles and node not in node_roles:
                        node_roles[node] = _ordered(unit_roles[node], row.task)
        faith = row.faithfulness
        out_circuits[circuit_key(row.model, row.task, row.step)] = {
            "unit": row.unit_id,
            "p": parents,
            "c": ports,
            "s": scores,
            "n_edges": int(row.n_edges),
            "n_nodes": int(row.n_nodes),
            "drawn": len(parents),
            "faithfulness": None if pd.isna(faith) else _num(faith),
            "faithful": (row.unit_id, row.task) in faithful_keys,
            "roles": node_roles,
        }
    shapes = _shapes(frames.units)
    order = analyses.model_order(circuits)
    params = circuits.groupby("model")["params"].max()
    models = []
    for model in order:
        n_layers, n_heads = shapes.get(model, (None, None))
        value = params.get(model)
        models.append({"name": model, "params": None if pd.isna(value) else int(value),
                       "n_layers": n_layers, "n_heads": n_heads})  # fmt: skip
    checkpoints = {}
    for model in order:
        mine = circuits[circuits["model"] == model].drop_duplicates("step").sort_values("step")
        checkpoints[model] = [
            {"step": int(s), "tokens": None if pd.isna(t) else int(t)}
            for s, t in zip(mine["step"], mine["tokens_seen"], strict=True)
        ]
    kinds: Mapping[str, str] = {}
    if {"task", "metric_kind"} <= set(frames.task_metrics.columns):
        kinds = dict(zip(frames.task_metrics["task"], frames.task_metrics["metric_kind"],
                         strict=True))  # fmt: skip
    used = sorted({r for c in out_circuits.values() for rs in c["roles"].values() for r in rs},
                  key=(*ROLES, *COMPONENT_ROLES).index)  # fmt: skip
    labels = {**ROLE_LABELS, **_EXTRA_LABELS}
    colors = {**ROLE_COLORS, **_EXTRA_COLORS}
    return {
        "format": EXPLORER_FORMAT,
        "max_edges": max_edges,
        "models": models,
        "tasks": [{"name": t, "metric_kind": kinds.get(t)} for t in sorted(set(circuits["task"]))],
        "checkpoints": checkpoints,
        "names": names.table(),
        "circuits": out_circuits,
        "series": _series(frames),
        "roles": [{"role": r, "label": labels[r], "color": colors[r]} for r in used],
        "colors": {"positive": SIGN_COLORS[True], "negative": SIGN_COLORS[False]},
    }
