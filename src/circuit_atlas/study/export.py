"""Export a results store: every table as CSV or Parquet, EAP-IG graph JSON per (unit, task).

Or, with format ``mib``, the MIB circuit track's submission folders, one set per checkpoint.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq

from circuit_atlas.errors import StoreError
from circuit_atlas.store import TABLES, ResultsStore

__all__ = ["EXPORT_FORMATS", "ExportFormat", "eap_json", "export_store"]

ExportFormat = Literal["csv", "parquet", "eap-json", "mib"]
"""What ``circuit-atlas export`` writes."""

EXPORT_FORMATS: tuple[str, ...] = ("csv", "parquet", "eap-json", "mib")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def export_store(store: ResultsStore, out_dir: str | os.PathLike[str], fmt: ExportFormat, *,
                 tables: Sequence[str] | None = None) -> list[Path]:
    """Write the store's tables (``csv``/``parquet``) or one EAP-IG JSON per (unit, task).

    Args:
        store: The results store.
        out_dir: Output directory (created).
        fmt: ``csv`` or ``parquet`` (one file per table, every unit), ``eap-json``
            (``<model>/<task>/step<step>.json``, see :func:`eap_json`) or ``mib``
            (``step<step>/<task>_<model>/importances.json``, MIB's submission format:
            :mod:`circuit_atlas.mib_export`; underscores in model names become hyphens).
        tables: Tables to write for csv/parquet (default: all).

    Returns:
        The files written.

    Raises:
        StoreError: For an unknown format or table name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "eap-json":
        return _export_eap(store, out)
    if fmt == "mib":
        return _export_mib(store, out)
    if fmt not in ("csv", "parquet"):
        raise StoreError(f"unknown export format {fmt!r}; valid formats: {EXPORT_FORMATS}")
    names = list(tables or TABLES)
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        raise StoreError(f"unknown table(s) {unknown}; the store has {sorted(TABLES)}")
    written = []
    con = store.connect()
    try:
        for name in names:
            path = out / f"{name}.{fmt}"
            options = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet"
            target = str(path).replace("'", "''")
            columns = ", ".join(f'"{c}"' for c in TABLES[name].names)
            con.execute(f"COPY (SELECT {columns} FROM {name} ORDER BY unit_id) TO '{target}' "
                        f"({options})")
            written.append(path)
    finally:
        con.close()
    return written


def eap_json(store: ResultsStore, unit_id: str, task: str) -> dict:
    """Return the EAP-IG graph JSON of one (unit, task).

    The format is that of EAP-IG's ``Graph.to_json`` (hannamw/EAP-IG) and of
    ``CircuitResult.to_eap_json()``: ``cfg`` (``n_layers``, ``n_heads``, ``d_model``,
    ``parallel_attn_mlp``), ``nodes`` (name → in_graph) and ``edges`` (name →
    ``{"score", "in_graph"}``), in graph order.

    Raises:
        StoreError: If the unit is not committed or has no edges for ``task``.
    """
    if not store.has_unit(unit_id):
        raise StoreError(f"unit {unit_id!r} is not in the store {str(store.root)!r}")
    folder = store.units_dir / unit_id
    units = pq.read_table(folder / "units.parquet").to_pylist()
    spec = json.loads(units[0]["spec"]) if units else {}
    edges = pq.read_table(folder / "edges.parquet", filters=[("task", "=", task)])
    nodes = pq.read_table(folder / "nodes.parquet", filters=[("task", "=", task)])
    if edges.num_rows == 0:
        raise StoreError(f"unit {unit_id!r} has no edges for task {task!r}")
    cfg = {"n_layers": spec.get("n_layers"), "n_heads": spec.get("n_heads"),
           "d_model": spec.get("d_model"), "parallel_attn_mlp": spec.get("parallel_residual")}
    return {
        "cfg": cfg,
        "nodes": dict(zip(nodes.column("node").to_pylist(),
                          nodes.column("in_circuit").to_pylist(), strict=True)),
        "edges": {name: {"score": float(score), "in_graph": bool(keep)}
                  for name, score, keep in zip(edges.column("edge").to_pylist(),
                                               edges.column("score").to_pylist(),
                                               edges.column("in_circuit").to_pylist(),
                                               strict=True)},
    }


def _export_eap(store: ResultsStore, out: Path) -> list[Path]:
    pairs = store.query("SELECT DISTINCT c.unit_id, c.model, c.step, c.task FROM circuits c "
                        "ORDER BY c.model, c.task, c.step")
    written = []
    for row in pairs.itertuples(index=False):
        step = "none" if row.step is None or row.step != row.step else int(row.step)
        path = out / _safe(row.model) / _safe(row.task) / f"step{step}.json"
        if path.exists():  # two units of one model/step/task (different settings)
            path = path.with_name(f"step{step}-{row.unit_id}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(eap_json(store, row.unit_id, row.task)))
        written.append(path)
    return written


def _export_mib(store: ResultsStore, out: Path) -> list[Path]:
    from circuit_atlas.mib_export import IMPORTANCES_FILE, mib_folder_name

    pairs = store.query("SELECT DISTINCT c.unit_id, c.model, c.step, c.task FROM circuits c "
                        "ORDER BY c.model, c.task, c.step")
    written = []
    for row in pairs.itertuples(index=False):
        step = "none" if row.step is None or row.step != row.step else int(row.step)
        graph = eap_json(store, row.unit_id, row.task)
        graph["nodes"] = {name: {"in_graph": bool(v)} for name, v in graph["nodes"].items()}
        model = re.sub(r"[^A-Za-z0-9.-]+", "-", row.model)
        path = out / f"step{step}" / mib_folder_name(row.task, model) / IMPORTANCES_FILE
        if path.exists():  # two units of one model/step/task (different settings)
            path = path.parent.with_name(f"{path.parent.name}-{row.unit_id}") / IMPORTANCES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(graph))
        written.append(path)
    return written
