"""Shared helpers of the analyses: column checks and the order of models by size."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from circuit_atlas.errors import AnalysisError

SERIES_KEYS: tuple[str, ...] = ("model", "task")
"""Columns that identify one curve over training: a model and a task."""


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise if ``frame`` lacks any of ``columns``.

    Args:
        frame: The table an analysis was given.
        columns: Column names the analysis reads.
        what: The table's name, for the message (``"task_metrics"``, ``"edges"``, ...).

    Raises:
        AnalysisError: Naming the missing columns and the columns that are there.
    """
    if not isinstance(frame, pd.DataFrame):
        raise AnalysisError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisError(
            f"{what}: missing column(s) {missing}; the frame has {list(frame.columns)}"
        )


def check_fraction(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise unless ``value`` lies in (0, 1] (or [0, 1] when ``allow_zero``).

    Raises:
        AnalysisError: Naming the parameter and its value.
    """
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        bound = "[0, 1]" if allow_zero else "(0, 1]"
        raise AnalysisError(f"{name} must lie in {bound}, got {value!r}")


def model_order(frame: pd.DataFrame) -> list[str]:
    """Model names ordered by parameter count (then name); models without ``params`` last.

    Args:
        frame: Any table with a ``model`` column and, optionally, ``params``.

    Returns:
        The distinct model names, smallest model first.
    """
    if frame.empty or "model" not in frame.columns:
        return []
    if "params" not in frame.columns:
        return sorted(frame["model"].astype(str).unique())
    sizes = frame.groupby("model", sort=False)["params"].max()
    keyed = [(pd.isna(p), 0 if pd.isna(p) else float(p), str(m)) for m, p in sizes.items()]
    return [m for _, _, m in sorted(keyed)]


def sort_series(frame: pd.DataFrame, extra: Sequence[str] = ("step",)) -> pd.DataFrame:
    """Sort a tidy frame by model size, then task, then ``extra`` columns; reset the index."""
    rank = {m: i for i, m in enumerate(model_order(frame))}
    keys = [c for c in ("task", *extra) if c in frame.columns]
    out = frame
    if "model" in frame.columns:
        out = frame.assign(_model_rank=frame["model"].map(rank))
        keys = ["_model_rank", *keys]
    if keys:
        out = out.sort_values(keys, kind="stable")
    return out.drop(columns="_model_rank", errors="ignore").reset_index(drop=True)


def step_tokens(*frames: pd.DataFrame | None) -> pd.DataFrame:
    """The (model, step) → tokens_seen map found in any of ``frames``.

    Args:
        *frames: Tables with ``model``, ``step`` and ``tokens_seen`` columns (``units``,
            ``circuits``, ``task_metrics``); None or frames without those columns are skipped.

    Returns:
        A frame with columns ``model``, ``step``, ``tokens_seen`` and one row per (model, step).
    """
    parts = [
        f[["model", "step", "tokens_seen"]]
        for f in frames
        if f is not None and {"model", "step", "tokens_seen"} <= set(f.columns)
    ]
    if not parts:
        return pd.DataFrame({"model": [], "step": [], "tokens_seen": []})
    both = pd.concat(parts, ignore_index=True).dropna(subset=["tokens_seen"])
    return both.drop_duplicates(subset=["model", "step"]).reset_index(drop=True)


def attach_tokens(
    frame: pd.DataFrame,
    tokens: pd.DataFrame,
    *,
    step_column: str = "step",
    out_column: str = "tokens_seen",
) -> pd.DataFrame:
    """Add the tokens seen at ``frame[step_column]`` for each row's model.

    Args:
        frame: A table with ``model`` and ``step_column``.
        tokens: The output of :func:`step_tokens`.
        step_column: Which step column to convert.
        out_column: Name of the new column (NaN where the step is unknown).

    Returns:
        ``frame`` with ``out_column`` added (a new frame; the input is not modified).
    """
    lookup = tokens.rename(columns={"step": step_column, "tokens_seen": out_column})
    out = frame.drop(columns=[out_column], errors="ignore")
    return out.merge(lookup, on=["model", step_column], how="left")
