"""The results store's table schemas and their versions (documented in ``docs/store.md``).

:data:`TABLES` maps every table to its Arrow schema at :data:`SCHEMA_VERSION`;
:data:`TABLES_BY_VERSION` says which tables a unit of each readable version holds (a version-2
unit has no algorithm tables) and :data:`ADDED_COLUMNS` which columns a version added to an
existing table (:func:`table_schema` gives a table's schema at a version). :func:`_conform` turns
a unit's rows into a table of exactly its schema. Re-exported by :mod:`circuit_atlas.store`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from circuit_atlas.errors import StoreError

__all__ = [
    "ADDED_COLUMNS",
    "ALGORITHM_CI_COLUMNS",
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "TABLES",
    "TABLES_BY_VERSION",
    "table_schema",
]

SCHEMA_VERSION = 9
"""Version of the table schemas this circuit-atlas writes (3 added the algorithm tables, 4 the
``units.weights_fingerprint`` column, 5 ``units.seed`` and ``units.base_model``, 6 the
``prompt_metrics`` table, 7 the MIB tables ``mib`` and ``mib_curves``, 8 ``units.suite`` and
``units.tokens_per_step``, 9 the bootstrap interval columns of ``algorithm``)."""

READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 9)
"""Schema versions this circuit-atlas reads; a store or unit of another version is refused.
A version-2 unit has no algorithm tables: they read as empty for it; a unit older than version 4
has no ``weights_fingerprint``, one older than 5 no ``seed`` and ``base_model``: they read as
null (the analyses then take ``base_model`` to be ``model``); a unit older than 6 has no
``prompt_metrics`` table: it reads as empty for it (no bootstrap intervals for that unit); one
older than 7 has no MIB tables: they read as empty for it; one older than 8 has no ``suite`` and
``tokens_per_step``: they read as null (:func:`circuit_atlas.analyses.suites.suite_map` then
derives the suite from ``source_kind``, ``model`` and ``size``); one older than 9 has no
interval columns in ``algorithm`` (:data:`ALGORITHM_CI_COLUMNS`): they read as null (no interval
for that unit's Figure 4 points)."""

_I64, _F64, _STR, _BOOL = pa.int64(), pa.float64(), pa.string(), pa.bool_()

ALGORITHM_CI_COLUMNS: tuple[str, ...] = ("pct_effect_ci_low", "pct_effect_ci_high", "ci_reason",
                                         "n_examples", "ci_n_resamples", "ci_n_valid", "ci_seed",
                                         "ci_level")
"""The ``algorithm`` table's bootstrap interval columns (schema v9; docs/uncertainty.md)."""


def _schema(*columns: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in columns])


_KEYS = (("unit_id", _STR), ("model", _STR), ("params", _I64), ("step", _I64),
         ("tokens_seen", _I64), ("task", _STR))
_SHORT_KEYS = (("unit_id", _STR), ("model", _STR), ("step", _I64), ("task", _STR))
_BEHAVIOUR = ("accuracy", "rank0", "prob_mass", "logit_diff", "prob_diff")
_ROLES = ("name_mover", "copy_suppression", "negative_name_mover", "negative_copy_suppression",
          "s_inhibition", "tertiary")  # circuit_atlas.components.algorithm.ROLES (no torch here)

TABLES: dict[str, pa.Schema] = {
    "units": _schema(
        ("unit_id", _STR), ("model", _STR), ("source_kind", _STR), ("size", _STR),
        ("params", _I64), ("step", _I64), ("tokens_seen", _I64), ("path", _STR),
        ("settings", _STR), ("spec", _STR), ("versions", _STR), ("timings", _STR),
        ("duration_s", _F64), ("status", _STR), ("errors", _STR), ("device", _STR),
        ("host", _STR), ("finished_at", pa.timestamp("us", tz="UTC")),
        ("weights_fingerprint", _STR), ("seed", _I64), ("base_model", _STR),
        ("suite", _STR), ("tokens_per_step", _I64),
    ),
    "task_metrics": _schema(
        *_KEYS, ("metric_kind", _STR), ("clean_metric", _F64), ("corrupted_metric", _F64),
        ("clean_metric_std", _F64), ("corrupted_metric_std", _F64),
        *((name, _F64) for name in _BEHAVIOUR),
        *((f"corrupted_{name}", _F64) for name in _BEHAVIOUR),
        ("n_examples", _I64),
    ),
    "circuits": _schema(
        *_KEYS, ("n_edges", _I64), ("n_nodes", _I64), ("n_edges_total", _I64),
        ("n_nodes_total", _I64), ("faithfulness", _F64), ("faithfulness_normalized", _F64),
        ("threshold", _F64), ("search", _STR), ("method", _STR), ("ig_steps", _I64),
        ("ablation", _STR), ("clean_metric", _F64), ("corrupted_metric", _F64),
        ("empty_metric", _F64),
    ),
    "edges": _schema(
        *_SHORT_KEYS, ("edge", _STR), ("parent", _STR), ("child", _STR),
        ("score", pa.float32()), ("in_circuit", _BOOL),
    ),
    "nodes": _schema(*_SHORT_KEYS, ("node", _STR), ("in_circuit", _BOOL)),
    "curves": _schema(
        *_SHORT_KEYS, ("n_requested", _I64), ("n_edges", _I64), ("n_nodes", _I64),
        ("metric", _F64), ("faithfulness", _F64), ("faithfulness_normalized", _F64),
    ),
    "component_scores": _schema(
        *_KEYS[:-1], ("component", _STR), ("layer", _I64), ("head", _I64), ("score", _F64),
    ),
    "component_heads": _schema(
        *_SHORT_KEYS, ("component", _STR), ("layer", _I64), ("head", _I64), ("node", _STR),
        ("score", _F64), ("is_component", _BOOL), ("in_circuit", _BOOL),
    ),
    "algorithm": _schema(
        *_KEYS, ("panel", _STR), ("pct_effect", _F64), ("reason", _STR), ("denominator", _STR),
        ("identified_effect", _F64), ("total_effect", _F64), ("n_identified", _I64),
        ("n_denominator", _I64), ("heads", _STR), ("clean_logit_diff", _F64),
        ("corrupted_logit_diff", _F64), ("pct_effect_ci_low", _F64),
        ("pct_effect_ci_high", _F64), ("ci_reason", _STR), ("n_examples", _I64),
        ("ci_n_resamples", _I64), ("ci_n_valid", _I64), ("ci_seed", _I64), ("ci_level", _F64),
    ),
    "algorithm_heads": _schema(
        *_SHORT_KEYS, ("layer", _I64), ("head", _I64), ("node", _STR), ("role", _STR),
        *((f"is_{role}", _BOOL) for role in _ROLES), ("direct_effect", _F64),
        ("s_inhibition_effect", _F64), ("tertiary_effect", _F64), ("in_circuit", _BOOL),
    ),
    "prompt_metrics": _schema(
        *_SHORT_KEYS, ("run", _STR), ("example", _I64), ("metric", _F64),
    ),
    "fingerprints": _schema(
        *_KEYS, ("role", _STR), ("share", _F64), ("attribution", _F64), ("reason", _STR),
    ),
    "self_repair": _schema(
        *_KEYS, ("n_ablated", _I64), ("ablated", _STR), ("clean_logit_diff", _F64),
        ("ablated_logit_diff", _F64), ("logit_diff_change", _F64),
        ("logit_diff_change_pct", _F64), ("backup_heads", _STR), ("reason", _STR),
    ),
    "self_repair_heads": _schema(
        *_SHORT_KEYS, ("layer", _I64), ("head", _I64), ("node", _STR), ("clean_dla", _F64),
        ("ablated_dla", _F64), ("dla_change", _F64), ("ablated", _BOOL), ("backup", _BOOL),
    ),
    "mib": _schema(
        *_KEYS, ("cpr", _F64), ("cmd", _F64), ("clean_metric", _F64), ("empty_metric", _F64),
        ("n_fractions", _I64), ("circuits", _I64), ("seconds", _F64), ("ablation", _STR),
    ),
    "mib_curves": _schema(
        *_SHORT_KEYS, ("absolute", _BOOL), ("fraction", _F64), ("n_requested", _I64),
        ("n_edges", _I64), ("metric", _F64), ("faithfulness", _F64),
    ),
}
"""Every table of the store and its Arrow schema (documented in ``docs/store.md``)."""

_MIB_TABLES = ("mib", "mib_curves")  # added by version 7
_V6_TABLES = tuple(name for name in TABLES if name not in _MIB_TABLES)
_V5_TABLES = tuple(name for name in _V6_TABLES if name != "prompt_metrics")

TABLES_BY_VERSION: dict[int, tuple[str, ...]] = {
    2: ("units", "task_metrics", "circuits", "edges", "nodes", "curves", "component_scores",
        "component_heads"),
    3: _V5_TABLES,
    4: _V5_TABLES,
    5: _V5_TABLES,
    6: _V6_TABLES,
    7: tuple(TABLES),
    8: tuple(TABLES),
    9: tuple(TABLES),
}
"""The tables a unit of each readable schema version holds."""

ADDED_COLUMNS: dict[int, dict[str, tuple[str, ...]]] = {
    4: {"units": ("weights_fingerprint",)},
    5: {"units": ("seed", "base_model")},
    8: {"units": ("suite", "tokens_per_step")},
    9: {"algorithm": ALGORITHM_CI_COLUMNS},
}
"""Schema version → table → the columns that version added to a table older units already had
(they read as null for the older units)."""


def table_schema(name: str, version: int) -> pa.Schema:
    """Return the Arrow schema of table ``name`` as a unit of schema ``version`` wrote it.

    That is :data:`TABLES` ``[name]`` without the columns added after ``version``
    (:data:`ADDED_COLUMNS`).
    """
    later = {column for v, tables in ADDED_COLUMNS.items() if v > version
             for column in tables.get(name, ())}  # fmt: skip
    schema = TABLES[name]
    for column in later:
        schema = schema.remove(schema.get_field_index(column))
    return schema


def _conform(name: str, data: Any, unit_id: str) -> pa.Table:
    """Return ``data`` as an Arrow table with exactly the schema of table ``name``."""
    schema = TABLES[name]
    if data is None:
        return schema.empty_table()
    if isinstance(data, list):
        columns = sorted({key for row in data for key in row}) if data else schema.names
    elif isinstance(data, pd.DataFrame):
        columns = list(data.columns)
    elif isinstance(data, pa.Table):
        columns = data.column_names
    else:
        raise StoreError(f"table {name!r}: expected a DataFrame, Arrow table or list of rows, "
                         f"got {type(data).__name__}")
    missing = sorted(set(schema.names) - set(columns))
    extra = sorted(set(columns) - set(schema.names))
    if missing or extra:
        raise StoreError(f"table {name!r} of unit {unit_id!r}: missing columns {missing}, "
                         f"unknown columns {extra} (schema v{SCHEMA_VERSION}, docs/store.md)")
    try:
        if isinstance(data, list):
            table = pa.Table.from_pylist(data, schema=schema)
        elif isinstance(data, pd.DataFrame):
            table = pa.Table.from_pandas(data[schema.names], schema=schema, preserve_index=False)
        else:
            table = data.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise StoreError(
            f"table {name!r} of unit {unit_id!r} does not fit its schema: {exc}"
        ) from exc
    ids = set(table.column("unit_id").to_pylist())
    if ids - {unit_id}:
        raise StoreError(f"table {name!r}: rows of unit(s) {sorted(ids - {unit_id})} written "
                         f"under unit {unit_id!r}")
    return table.replace_schema_metadata(None)
