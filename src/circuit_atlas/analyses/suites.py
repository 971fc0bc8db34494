"""Suites as an axis of a study: which suite each model comes from, and tokens seen across suites.

A study may hold models of several checkpoint suites (Pythia and OLMo, a hub suite and an
own-trained one; docs/suites.md). Their steps are not comparable — an OLMo-1B step is about
4M tokens, a Pythia step 2,097,152 — so analyses that compare suites do so on tokens seen. The
``units`` table records each unit's ``suite`` and ``tokens_per_step`` (schema v8):

* :func:`suite_map` gives every model its suite and tokens per step (derived for older units);
* :func:`with_suites` adds them to any table with a ``model`` column and fills a missing
  ``tokens_seen`` as ``step × tokens_per_step`` of the row's own model;
* :func:`match_tokens_seen` pairs each checkpoint of one suite (or model) with the nearest
  checkpoint in tokens seen of another, and reports the mismatch;
* :func:`emergence_by_suite` summarises emergence points (:func:`~circuit_atlas.analyses.
  emergence.emergence_table` rows) per suite on the tokens-seen axis.

The per-suite size-versus-scale correlation is
:func:`~circuit_atlas.analyses.scaling.size_scale_correlation_by_suite`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from circuit_atlas.analyses._frames import require_columns, sort_series
from circuit_atlas.errors import AnalysisError

__all__ = [
    "POOLED_SUITE",
    "SUITE_COLUMNS",
    "UNRECORDED_SUITE",
    "emergence_by_suite",
    "match_tokens_seen",
    "suite_map",
    "with_suites",
]

SUITE_COLUMNS: tuple[str, ...] = ("model", "suite", "tokens_per_step")
"""Columns of :func:`suite_map`."""

UNRECORDED_SUITE = "unrecorded"
"""The suite of a model whose units neither record nor let one derive it (or that has no
units)."""

POOLED_SUITE = "all suites (pooled)"
"""The ``suite`` label of a row computed over the models of every suite together."""

_SEED_SUFFIX = re.compile(r"-seed\d+$")


def _derived_suite(row: pd.Series) -> str:
    """The suite of a unit written before schema v8 (no ``suite`` column), from its other keys.

    ``pythia`` for a Pythia unit, ``local`` for explicit local checkpoints; for a hub or local
    suite, the model name (its ``base_model``, else the name less a ``-seed<N>`` suffix) less its
    ``-<size>`` suffix (models are named ``<suite>-<size>``); else :data:`UNRECORDED_SUITE`.
    """
    kind = row.get("source_kind")
    if kind == "pythia":
        return "pythia"
    if kind == "local":
        return "local"
    size = row.get("size")
    base = row.get("base_model")
    names = [str(base)] if isinstance(base, str) and base else []
    names.append(_SEED_SUFFIX.sub("", str(row["model"])))
    for name in names:
        if (isinstance(size, str) and size and name.endswith(f"-{size}")
                and len(name) > len(size) + 1):
            return name[: -len(size) - 1]
    return UNRECORDED_SUITE


def _constant_ratio(group: pd.DataFrame) -> float:
    """tokens_seen / step when it is the same integer at every checkpoint with step > 0."""
    if not {"tokens_seen", "step"} <= set(group.columns):
        return np.nan
    steps = pd.to_numeric(group["step"], errors="coerce")
    tokens = pd.to_numeric(group["tokens_seen"], errors="coerce")
    keep = (steps > 0) & tokens.notna()
    if not keep.any():
        return np.nan
    ratios = (tokens[keep] / steps[keep]).unique()
    if len(ratios) != 1 or ratios[0] != round(ratios[0]) or ratios[0] <= 0:
        return np.nan
    return float(ratios[0])


def suite_map(units: pd.DataFrame) -> pd.DataFrame:
    """Model → ``suite`` and ``tokens_per_step``, from the ``units`` table.

    A unit written before schema v8 has a null ``suite`` and ``tokens_per_step``: its suite is
    derived (``pythia`` for ``source_kind = "pythia"``, ``local`` for ``"local"``, else the
    ``<suite>`` of its ``<suite>-<size>`` model name, else :data:`UNRECORDED_SUITE`) and its
    tokens per step is ``tokens_seen / step`` when that is the same integer at every checkpoint
    of the model with step > 0 (else null).

    Args:
        units: The ``units`` table (``model``; ``suite`` and ``tokens_per_step`` from schema
            v8; ``source_kind``, ``size``, ``base_model``, ``step``, ``tokens_seen`` for the
            derivation).

    Returns:
        One row per model: ``model``, ``suite`` (a string) and ``tokens_per_step`` (nullable
        integer, tokens per optimiser step), sorted by model size.

    Raises:
        AnalysisError: If ``model`` is missing, or a model's units name two suites or two
            tokens per step.
    """
    require_columns(units, ["model"], "units")
    if units.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c != "tokens_per_step" else "Int64")
                             for c in SUITE_COLUMNS})
    frame = units.copy()
    recorded = frame["suite"] if "suite" in frame.columns else pd.Series(None, index=frame.index)
    frame["suite"] = [s if isinstance(s, str) and s else _derived_suite(row)
                      for s, (_, row) in zip(recorded, frame.iterrows(), strict=True)]
    if "tokens_per_step" not in frame.columns:
        frame["tokens_per_step"] = np.nan
    frame["tokens_per_step"] = pd.to_numeric(frame["tokens_per_step"], errors="coerce")
    rows = []
    for model, group in frame.groupby("model", sort=False):
        suites = sorted(set(group["suite"]))
        if len(suites) > 1:
            raise AnalysisError(f"units: model {model!r} has units of several suites {suites}")
        per_step = sorted(set(group["tokens_per_step"].dropna()))
        if len(per_step) > 1:
            raise AnalysisError(f"units: model {model!r} has several tokens per step "
                                f"{[int(p) for p in per_step]}")
        value = per_step[0] if per_step else _constant_ratio(group)
        params = group["params"].max() if "params" in group.columns else np.nan
        rows.append({"model": model, "suite": suites[0], "tokens_per_step": value,
                     "params": params})
    out = sort_series(pd.DataFrame(rows), extra=())
    out["tokens_per_step"] = pd.array(out["tokens_per_step"].round(), dtype="Int64")
    return out[list(SUITE_COLUMNS)]


def with_suites(frame: pd.DataFrame, units: pd.DataFrame | None, *,
                what: str = "frame") -> pd.DataFrame:
    """``frame`` with each row's ``suite`` and ``tokens_per_step``, and its tokens seen filled.

    Args:
        frame: Any table with a ``model`` column (``task_metrics``, ``circuits``, an analysis'
            output). An existing ``suite`` or ``tokens_per_step`` column is replaced.
        units: The ``units`` table (None or empty: every model is :data:`UNRECORDED_SUITE`).
        what: The table's name, for error messages.

    Returns:
        A new frame with ``suite`` (before ``model``) and ``tokens_per_step``. Where ``frame``
        has ``step`` and a row's ``tokens_seen`` is missing (or the column is absent), it is
        ``step × tokens_per_step`` of the row's own model (tokens); rows without a known tokens
        per step keep NaN. Recorded tokens seen are never changed.

    Raises:
        AnalysisError: If ``model`` is missing or :func:`suite_map` fails.
    """
    require_columns(frame, ["model"], what)
    known = (suite_map(units) if units is not None and not units.empty and "model" in units
             else pd.DataFrame({c: pd.Series(dtype=object) for c in SUITE_COLUMNS}))
    out = frame.drop(columns=["suite", "tokens_per_step"], errors="ignore").merge(
        known, on="model", how="left")
    out["suite"] = out["suite"].where(out["suite"].notna(), UNRECORDED_SUITE).astype(object)
    per_step = pd.to_numeric(out["tokens_per_step"], errors="coerce").astype("Float64")
    out["tokens_per_step"] = per_step.round().astype("Int64")
    if "step" in out.columns:
        steps = pd.to_numeric(out["step"], errors="coerce").astype(float)
        filled = steps * per_step.to_numpy(dtype=float, na_value=np.nan)
        if "tokens_seen" in out.columns:
            recorded = pd.to_numeric(out["tokens_seen"], errors="coerce").astype(float)
            out["tokens_seen"] = recorded.where(recorded.notna(), filled)
        else:
            out["tokens_seen"] = filled
    columns = ["suite", *[c for c in out.columns if c != "suite"]]
    return out[columns]


def _checkpoints(frame: pd.DataFrame, on: str, name: str, by: Sequence[str],
                 values: Sequence[str]) -> pd.DataFrame:
    chosen = frame[frame[on] == name]
    if chosen.empty:
        raise AnalysisError(f"match_tokens_seen: no {on} {name!r}; the frame has "
                            f"{sorted(map(str, frame[on].dropna().unique()))}")
    chosen = chosen.dropna(subset=["tokens_seen", "step"])
    if chosen.empty:
        raise AnalysisError(f"match_tokens_seen: {on} {name!r} has no checkpoint with a known "
                            "tokens_seen")
    keys = ["suite", "model", *by, "step"]
    agg = {"tokens_seen": ("tokens_seen", "max"), **{v: (v, "mean") for v in values}}
    return chosen.groupby(keys, sort=False, dropna=False).agg(**agg).reset_index()


def match_tokens_seen(
    frame: pd.DataFrame,
    left: str,
    right: str,
    *,
    on: Literal["suite", "model"] = "suite",
    by: Sequence[str] = (),
    values: Sequence[str] = (),
    max_relative_mismatch: float | None = None,
) -> pd.DataFrame:
    """Pair each checkpoint of ``left`` with the nearest checkpoint in tokens seen of ``right``.

    "Matched tokens seen": for a checkpoint of a left model that has seen T_l tokens, the
    checkpoint of each right model whose tokens seen T_r is nearest, |T_r − T_l| smallest (ties:
    the earlier step). Steps are never compared across suites — their tokens per step differ.
    A right checkpoint may be the match of several left ones when the right suite is sparser.

    Args:
        frame: A table with ``model``, ``step``, ``tokens_seen`` and ``suite`` (the output of
            :func:`with_suites`), e.g. ``task_metrics`` or ``circuits`` with suites attached.
        left: The suite (or, with ``on="model"``, the model) whose checkpoints are matched.
        right: The suite (or model) to match them in.
        on: Whether ``left`` and ``right`` name suites or models.
        by: Columns within which to match (e.g. ``("task",)``): a checkpoint is matched only to
            right checkpoints of the same ``by`` values.
        values: Columns to carry along as ``left_<v>`` and ``right_<v>`` (mean per checkpoint),
            e.g. ``clean_metric`` to compare a metric at matched tokens.
        max_relative_mismatch: When given, pairs whose ``relative_mismatch`` exceeds it are
            dropped (e.g. 0.1: at most 10% apart).

    Returns:
        One row per left checkpoint × right model (× ``by``): ``left_suite``, ``left_model``,
        ``by`` columns, ``left_step``, ``left_tokens_seen``, ``right_suite``, ``right_model``,
        ``right_step``, ``right_tokens_seen``, ``tokens_mismatch`` (T_r − T_l, tokens),
        ``relative_mismatch`` (|T_r − T_l| / T_l; 0 when both are 0, inf when only T_l is 0) and
        the ``values`` pairs. Checkpoints without a known tokens seen are skipped.

    Raises:
        AnalysisError: If a column is missing, ``on`` is not ``suite`` or ``model``, ``left``
            or ``right`` is not in the frame or has no checkpoint with tokens seen, or
            ``max_relative_mismatch`` is negative.
    """
    if on not in ("suite", "model"):
        raise AnalysisError(f"on must be 'suite' or 'model', got {on!r}")
    if max_relative_mismatch is not None and not max_relative_mismatch >= 0:
        raise AnalysisError(f"max_relative_mismatch must be >= 0, got {max_relative_mismatch!r}")
    by, values = list(by), list(values)
    require_columns(frame, ["suite", "model", "step", "tokens_seen", *by, *values], "frame")
    data = frame.assign(tokens_seen=pd.to_numeric(frame["tokens_seen"], errors="coerce"))
    lhs = _checkpoints(data, on, left, by, values)
    rhs = _checkpoints(data, on, right, by, values)
    rows = []
    for _, a in lhs.iterrows():
        same = rhs
        for column in by:
            same = same[same[column] == a[column]]
        for model, group in same.groupby("model", sort=False):
            gap = (group["tokens_seen"] - a["tokens_seen"]).abs()
            nearest = group.assign(_gap=gap).sort_values(["_gap", "step"], kind="stable").iloc[0]
            t_l, t_r = float(a["tokens_seen"]), float(nearest["tokens_seen"])
            mismatch = t_r - t_l
            relative = abs(mismatch) / t_l if t_l else (0.0 if mismatch == 0 else np.inf)
            row = {"left_suite": a["suite"], "left_model": a["model"],
                   **{c: a[c] for c in by}, "left_step": int(a["step"]),
                   "left_tokens_seen": t_l, "right_suite": nearest["suite"],
                   "right_model": model, "right_step": int(nearest["step"]),
                   "right_tokens_seen": t_r, "tokens_mismatch": mismatch,
                   "relative_mismatch": relative}
            for v in values:
                row[f"left_{v}"], row[f"right_{v}"] = a[v], nearest[v]
            rows.append(row)
    columns = ["left_suite", "left_model", *by, "left_step", "left_tokens_seen", "right_suite",
               "right_model", "right_step", "right_tokens_seen", "tokens_mismatch",
               "relative_mismatch", *[f"{s}_{v}" for v in values for s in ("left", "right")]]
    out = pd.DataFrame(rows, columns=columns)
    if max_relative_mismatch is not None:
        out = out[out["relative_mismatch"] <= max_relative_mismatch]
    return out.sort_values(["left_model", *by, "left_step", "right_model"],
                           kind="stable").reset_index(drop=True)


def emergence_by_suite(emergence: pd.DataFrame) -> pd.DataFrame:
    """Emergence points summarised per suite, on the tokens-seen axis.

    Args:
        emergence: :func:`~circuit_atlas.analyses.emergence.emergence_table` rows with a
            ``suite`` column (its ``frame`` passed through :func:`with_suites`, ``by`` including
            ``suite``, or the table itself passed through :func:`with_suites`).

    Returns:
        One row per suite × task × quantity: ``n_models``, ``n_emerged``, and the ``min``,
        ``median`` and ``max`` of ``tokens_seen`` (tokens) and of ``step`` (steps, of that
        suite's own step size) over the models where it emerged (NaN where none did, or where
        their tokens seen are unknown), sorted by suite, task and quantity.

    Raises:
        AnalysisError: If a column is missing.
    """
    keys = ["suite", "task", *(["quantity"] if "quantity" in emergence.columns else [])]
    require_columns(emergence, [*keys, "model", "emerged", "step", "tokens_seen"], "emergence")
    rows = []
    for key, group in emergence.groupby(keys, sort=True):
        emerged = group[group["emerged"].astype(bool)]
        row = dict(zip(keys, key, strict=True))
        row.update(n_models=int(group["model"].nunique()),
                   n_emerged=int(emerged["model"].nunique()))
        for column in ("tokens_seen", "step"):
            found = pd.to_numeric(emerged[column], errors="coerce").dropna()
            for stat in ("min", "median", "max"):
                row[f"{column}_{stat}"] = getattr(found, stat)() if len(found) else np.nan
        rows.append(row)
    columns = [*keys, "n_models", "n_emerged"] + [
        f"{c}_{s}" for c in ("tokens_seen", "step") for s in ("min", "median", "max")]
    return pd.DataFrame(rows, columns=columns)
