"""Export a circuit result in the MIB circuit track's submission format.

The MIB leaderboard takes one folder per task and model, named ``<task>_<model>`` (``ioi_gpt2``),
holding one ``.json`` (or ``.pt``) file of importance scores for every edge; MIB then applies its
own top-k selection at each edge fraction (hannamw/MIB-circuit-track ``README.md``, "Submitting
to the MIB Leaderboard", commit b759df3). The JSON is EAP-IG's ``Graph.to_json`` (hannamw/EAP-IG
``src/eap/graph.py`` at 7af394a, read back by MIB's ``Graph.from_json``):

* ``cfg``: ``n_layers``, ``n_heads``, ``parallel_attn_mlp``, ``d_model`` (an int: the loader
  allocates per-neuron tensors of that width);
* ``nodes``: node name → ``{"in_graph": bool}`` (``input``, ``a{l}.h{h}``, ``m{l}``, ``logits``);
* ``edges``: edge name (``a0.h1->a2.h3<q>``) → ``{"score": float, "in_graph": bool}``.

Circuit-atlas's edge and node names and counts are EAP-IG's (:mod:`circuit_atlas.graph`) and its
scores have MIB's sign (``loss=True``: positive = the edge supports the task). ``in_graph`` is the
result's minimal faithful circuit; MIB ignores it for importance-score submissions.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from circuit_atlas.errors import MibError

__all__ = ["IMPORTANCES_FILE", "mib_folder_name", "mib_submission", "write_mib_submission"]

IMPORTANCES_FILE = "importances.json"
"""File name of the scores in each folder (what MIB's ``run_attribution.py`` writes)."""

_LAYER = re.compile(r"^(?:m(\d+)|a(\d+)\.h(\d+))$")


def mib_folder_name(task: str, model: str) -> str:
    """``<task>_<model>``, with underscores in the task written as hyphens (as MIB does).

    Raises:
        MibError: If the model name holds an underscore (the folder name would be ambiguous).
    """
    if "_" in model or not model:
        raise MibError(f"model name {model!r} must be non-empty and have no underscore; MIB "
                       "splits folder names at the underscore")
    return f"{task.replace('_', '-')}_{model}"


def mib_submission(result: Any, *, d_model: int | None = None) -> dict:
    """A :class:`~circuit_atlas.result.CircuitResult` as MIB's importance-score JSON.

    Args:
        result: The circuit result (its node and edge names, scores and circuit).
        d_model: Residual width; default ``result.settings["graph"]["d_model"]``.

    Returns:
        ``{"cfg", "nodes", "edges"}`` as described in the module docstring.

    Raises:
        MibError: When ``d_model`` is unknown, or a score is not finite.
    """
    import math

    width = d_model if d_model is not None else (result.settings.get("graph") or {}).get(
        "d_model")
    if not isinstance(width, int) or width <= 0:
        raise MibError(f"d_model {width!r} is not a positive int; pass d_model=")
    layers = heads = 0
    for name in result.node_names:
        if m := _LAYER.match(name):
            layer = int(m.group(1) or m.group(2))
            layers = max(layers, layer + 1)
            if m.group(3) is not None:
                heads = max(heads, int(m.group(3)) + 1)
    scores = result.scores.detach().float().cpu().tolist()
    for name, s in zip(result.edge_names, scores, strict=True):
        if not math.isfinite(s):
            raise MibError(f"edge {name!r} has score {s!r}; MIB needs finite scores")
    cfg = {"n_layers": layers, "n_heads": heads,
           "parallel_attn_mlp": "a0.h0->m0" not in set(result.edge_names), "d_model": width}
    nodes = {name: {"in_graph": bool(m)}
             for name, m in zip(result.node_names, result.node_in_circuit.tolist(), strict=True)}
    edges = {name: {"score": float(s), "in_graph": bool(m)}
             for name, s, m in zip(result.edge_names, scores, result.in_circuit.tolist(),
                                   strict=True)}
    return {"cfg": cfg, "nodes": nodes, "edges": edges}


def write_mib_submission(results: Sequence[tuple[str, Any]], out: str | os.PathLike[str]
                         ) -> list[Path]:
    """Write ``out/<task>_<model>/importances.json`` for each ``(model name, result)``.

    Args:
        results: Pairs of a model name (no underscore; MIB's are ``gpt2``, ``qwen2.5`` …) and a
            :class:`~circuit_atlas.result.CircuitResult` (its ``task`` names the folder).
        out: The submission directory (created).

    Returns:
        The files written.

    Raises:
        MibError: For a bad model name, two results for the same folder, or a bad result.
    """
    root = Path(out)
    folders = [mib_folder_name(r.task, model) for model, r in results]
    for folder in folders:
        if folders.count(folder) > 1:
            raise MibError(f"two results for the MIB folder {folder!r}")
    written = []
    for folder, (_, result) in zip(folders, results, strict=True):
        payload = mib_submission(result)
        target = root / folder / IMPORTANCES_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(target)
        written.append(target)
    return written
