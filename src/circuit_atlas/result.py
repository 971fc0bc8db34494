"""The result of finding one circuit: every edge's score, the circuit, its faithfulness curve.

A :class:`CircuitResult` is what :func:`circuit_atlas.search.find_circuit` returns and what the
study runner stores. On disk (``save``/``load``) it is a directory with

* ``edges.parquet`` — one row per edge: ``edge`` (EAP-IG name), ``parent`` (node), ``child``
  (node, without the ``<q|k|v>`` suffix), ``score`` (float32), ``in_circuit`` (bool);
* ``result.json`` — everything else (nodes, metrics, curve, settings, versions, timings,
  model), written last: a directory without it is incomplete.

Both files are written to temporary names and renamed into place, so a reader never sees a
partial file. ``to_eap_json`` gives hannamw/EAP-IG's graph JSON (``Graph.to_json``):
``{"cfg": {...}, "nodes": {name: in_graph}, "edges": {name: {"score", "in_graph"}}}``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor

from circuit_atlas.errors import StoreError

__all__ = ["EDGES_FILE", "FORMAT_VERSION", "RESULT_FILE", "CircuitResult"]

EDGES_FILE = "edges.parquet"
"""Per-edge table inside a result directory."""

RESULT_FILE = "result.json"
"""Everything else inside a result directory (written last)."""

FORMAT_VERSION = 1
"""Version of the on-disk layout."""

_EDGE_COLUMNS = ("edge_names", "edge_parent", "edge_child", "scores", "in_circuit")
_TENSORS = ("scores", "in_circuit", "node_in_circuit")
_LAYER = re.compile(r"^m(\d+)$")
_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")


@dataclass
class CircuitResult:
    """A minimal faithful circuit and everything needed to interpret and reproduce it.

    Attributes:
        task: Task name (``ioi``, ``sva``, ...).
        metric_kind: ``logit_diff`` or ``prob_diff``: the unit of every metric below.
        node_names: Node names in graph order (``input``, ``a0.h0``, …, ``m0``, …, ``logits``).
        edge_names: Edge names in graph order (EAP-IG convention ``a0.h1->a2.h3<q>``).
        edge_parent: Parent node name of each edge.
        edge_child: Child node name of each edge (``<q|k|v>`` suffix removed).
        scores: ``(n_edges,)`` float32 signed attribution scores.
        in_circuit: ``(n_edges,)`` bool: the minimal faithful circuit, after pruning.
        node_in_circuit: ``(n_nodes,)`` bool: its nodes (``input``/``logits`` when connected).
        n_edges: Edges in the circuit.
        n_nodes: Nodes in the circuit (the paper's size unit).
        faithfulness: m(C)/m(M), or None when undefined.
        faithfulness_normalized: (m(C) − m(∅))/(m(M) − m(∅)), or None when undefined.
        clean_metric: m(M), the model's mean metric on clean prompts.
        corrupted_metric: The model's mean metric on corrupted prompts.
        empty_metric: m(∅), every edge ablated (equals the corrupted metric under patching).
        curve: One dict per evaluated size: ``n_requested`` (edges asked of the selection),
            ``n_edges`` / ``n_nodes`` (after pruning), ``metric``, ``faithfulness``,
            ``faithfulness_normalized``; sorted by ``n_requested``.
        example_metrics: The task metric per example (dataset order) of the ``empty`` circuit
            and of the found ``circuit``, for bootstrap intervals of faithfulness over prompts
            (empty in results written before it existed).
        settings: How the circuit was found (method, threshold, search, sizes, counts).
        versions: Library versions (python, torch, transformers, circuit_atlas).
        timings: Seconds per stage.
        model: The model source description (``model.source``).
    """

    task: str
    metric_kind: str
    node_names: list[str]
    edge_names: list[str]
    edge_parent: list[str]
    edge_child: list[str]
    scores: Tensor
    in_circuit: Tensor
    node_in_circuit: Tensor
    n_edges: int
    n_nodes: int
    faithfulness: float | None
    faithfulness_normalized: float | None
    clean_metric: float
    corrupted_metric: float
    empty_metric: float
    curve: list[dict] = field(default_factory=list)
    example_metrics: dict[str, list[float]] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.edge_names)
        for name in ("edge_parent", "edge_child"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, want {n}")
        shapes = (("scores", n), ("in_circuit", n), ("node_in_circuit", len(self.node_names)))
        for name, size in shapes:
            if tuple(getattr(self, name).shape) != (size,):
                raise ValueError(
                    f"{name} has shape {tuple(getattr(self, name).shape)}, want ({size},)"
                )

    # ----------------------------------------------------------------------------- views
    @property
    def circuit_edges(self) -> list[str]:
        """Names of the in-circuit edges, in graph order."""
        return [n for n, m in zip(self.edge_names, self.in_circuit.tolist(), strict=True) if m]

    @property
    def circuit_nodes(self) -> list[str]:
        """Names of the in-circuit nodes, in graph order."""
        return [n for n, m in zip(self.node_names, self.node_in_circuit.tolist(), strict=True) if m]

    def summary(self) -> str:
        """A few human-readable lines: behaviour, circuit size and faithfulness."""

        def fmt(x: float | None) -> str:
            return "undefined" if x is None else f"{x:.3f}"

        unit = "logits" if self.metric_kind == "logit_diff" else "probability"
        name = self.model.get("name") or self.model.get("path") or "model"
        step = self.model.get("step")
        where = f"{name}" + (f" step {step}" if step is not None else "")
        search = self.settings.get("search", "?")
        return "\n".join(
            [
                f"{where} · task {self.task} ({self.metric_kind}, {unit})",
                f"clean metric {self.clean_metric:.4f} · corrupted {self.corrupted_metric:.4f} · "
                f"empty circuit {self.empty_metric:.4f}",
                f"minimal faithful circuit ({search} search, n = "
                f"{self.settings.get('n_requested', '?')} requested): {self.n_edges} edges, "
                f"{self.n_nodes} nodes of {len(self.edge_names)} / {len(self.node_names)}",
                f"faithfulness m(C)/m(M) = {fmt(self.faithfulness)} · normalised "
                f"(m(C)−m(∅))/(m(M)−m(∅)) = {fmt(self.faithfulness_normalized)}",
            ]
        )

    def to_eap_json(self) -> dict:
        """The circuit in hannamw/EAP-IG's graph JSON format (``Graph.to_json``).

        ``cfg`` holds ``n_layers``, ``n_heads``, ``parallel_attn_mlp`` (read from the node and
        edge names) and ``d_model`` (from ``settings["graph"]``, None if absent), ``nodes`` maps
        each node name to whether it is in the circuit, and ``edges`` maps each edge name to its
        ``score`` and ``in_graph`` flag.
        """
        layers = [int(m.group(1)) for n in self.node_names if (m := _LAYER.match(n))]
        heads = [int(m.group(2)) for n in self.node_names if (m := _HEAD.match(n))]
        graph = self.settings.get("graph") or {}
        cfg = {
            "n_layers": max(layers) + 1 if layers else 0,
            "n_heads": max(heads) + 1 if heads else 0,
            "d_model": graph.get("d_model"),
            "parallel_attn_mlp": "a0.h0->m0" not in set(self.edge_names),
        }
        return {
            "cfg": cfg,
            "nodes": {
                name: bool(m)
                for name, m in zip(self.node_names, self.node_in_circuit.tolist(), strict=True)
            },
            "edges": {
                name: {"score": float(s), "in_graph": bool(m)}
                for name, s, m in zip(
                    self.edge_names, self.scores.tolist(), self.in_circuit.tolist(), strict=True
                )
            },
        }

    # ----------------------------------------------------------------------------- disk
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the result to ``directory`` (created): ``edges.parquet`` and ``result.json``.

        Each file is written to a temporary name in the directory and renamed into place;
        ``result.json`` is written last.

        Returns:
            The directory, as a ``Path``.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "edge": pa.array(self.edge_names, pa.string()),
                "parent": pa.array(self.edge_parent, pa.string()),
                "child": pa.array(self.edge_child, pa.string()),
                "score": pa.array(self.scores.detach().float().cpu().numpy(), pa.float32()),
                "in_circuit": pa.array(self.in_circuit.detach().bool().cpu().numpy(), pa.bool_()),
            }
        )
        _atomic(root / EDGES_FILE, lambda path: pq.write_table(table, path))
        meta = {
            "format_version": FORMAT_VERSION,
            "n_graph_edges": len(self.edge_names),
            "node_in_circuit": [bool(x) for x in self.node_in_circuit.tolist()],
        }
        for f in fields(self):
            if f.name not in _EDGE_COLUMNS and f.name not in _TENSORS:
                meta[f.name] = getattr(self, f.name)
        text = json.dumps(meta, indent=1, allow_nan=True, default=_json_default)
        _atomic(root / RESULT_FILE, lambda path: Path(path).write_text(text))
        return root

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> CircuitResult:
        """Read a result written by :meth:`save`.

        Raises:
            StoreError: If a file is missing, the format version is unknown, or the edge table
                does not match ``result.json`` (the message names the directory).
        """
        import pyarrow.parquet as pq

        root = Path(directory)
        for name in (RESULT_FILE, EDGES_FILE):
            if not (root / name).is_file():
                raise StoreError(f"circuit result {str(root)!r} has no {name} (incomplete write?)")
        meta = json.loads((root / RESULT_FILE).read_text())
        if meta.pop("format_version", None) != FORMAT_VERSION:
            raise StoreError(f"circuit result {str(root)!r} has an unknown format version")
        table = pq.read_table(root / EDGES_FILE).to_pydict()
        n_graph_edges = meta.pop("n_graph_edges")
        if len(table["edge"]) != n_graph_edges:
            raise StoreError(
                f"circuit result {str(root)!r}: {EDGES_FILE} has {len(table['edge'])} edges, "
                f"{RESULT_FILE} says {n_graph_edges}"
            )
        return cls(
            edge_names=table["edge"],
            edge_parent=table["parent"],
            edge_child=table["child"],
            scores=torch.tensor(table["score"], dtype=torch.float32),
            in_circuit=torch.tensor(table["in_circuit"], dtype=torch.bool),
            node_in_circuit=torch.tensor(meta.pop("node_in_circuit"), dtype=torch.bool),
            **meta,
        )


def _json_default(value):
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON: {value!r}")


def _atomic(path: Path, write) -> None:
    """Write via ``write(tmp_path)`` to a temporary file next to ``path``, then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
