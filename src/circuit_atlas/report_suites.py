"""The report's suite columns and cross-suite tables (docs/suites.md, "Comparing suites").

Every per-model table of the report says which suite each row comes from (a ``suite`` column,
:func:`circuit_atlas.analyses.suite_map`); with several suites, the scaling section shows the
size–scale correlation per suite and pooled, and the emergence section the emergence points per
suite on the tokens-seen axis. Used by :mod:`circuit_atlas.report`.
"""

from __future__ import annotations

import pandas as pd

from circuit_atlas import analyses
from circuit_atlas.report_frames import esc, has_columns, html_table

__all__ = ["emergence_suites_html", "n_suites", "scaling_html", "suite_column"]


def suite_column(table: pd.DataFrame, units: pd.DataFrame | None) -> pd.DataFrame:
    """``table`` with a ``suite`` column first (by model; tokens seen are left as they are)."""
    if table.empty or not has_columns(table, "model"):
        return table
    suites = analyses.with_suites(table[["model"]].drop_duplicates(), units)
    out = table.drop(columns=["suite"], errors="ignore").merge(
        suites[["model", "suite"]], on="model", how="left")
    return out[["suite", *[c for c in out.columns if c != "suite"]]]


def n_suites(table: pd.DataFrame) -> int:
    """How many distinct suites ``table``'s ``suite`` column holds (0 without one)."""
    return int(table["suite"].nunique()) if has_columns(table, "suite") else 0


def emergence_suites_html(metric: pd.DataFrame, size: pd.DataFrame) -> str:
    """Emergence per suite on the tokens-seen axis, when the tables hold several suites."""
    tables = [t for t in (metric, size) if not t.empty and has_columns(t, "suite")]
    if not tables or max(n_suites(t) for t in tables) < 2:
        return ""
    summary = pd.concat([analyses.emergence_by_suite(t) for t in tables], ignore_index=True)
    return (
        "<h3>Emergence by suite (tokens seen)</h3><p>Suites differ in tokens per step, so "
        "emergence points are compared in tokens seen, each row's from its own suite's "
        "checkpoints; the step columns are in each suite's own steps and are not comparable "
        "across suites. Min, median and max over the suite's models where it emerged.</p>"
        + html_table(summary)
    )


def scaling_html(means: pd.DataFrame) -> str:
    """The size–scale correlation table(s): per suite, plus pooled rows with several suites.

    Args:
        means: Mean circuit sizes with a ``suite`` column (:func:`suite_column`).
    """
    corr = analyses.size_scale_correlation_by_suite(means)
    several = n_suites(means) > 1
    per_suite = corr[~corr["pooled"].astype(bool)] if not corr.empty else corr
    counts = per_suite["n_models"] if not per_suite.empty else pd.Series(dtype=int)
    if counts.empty or counts.max() < 3:
        caution = ('<p class="warn">Fewer than three models: a correlation is ±1 or undefined '
                   "and carries no evidence.</p>")
    elif (counts < 3).any():
        few = per_suite.loc[per_suite["n_models"] < 3, "suite"].unique()
        caution = (f'<p class="warn">Fewer than three models in suite(s) {esc(", ".join(few))}: '
                   "their correlations are ±1 or undefined and carry no evidence.</p>")
    else:
        caution = ""
    intro = (
        "<p>Pearson and Spearman correlation between each model's mean circuit size in nodes "
        "and its parameter count, per task (PAPER.md §7.3, with correct parameter counts)"
        + (f", computed over each suite's models alone; the rows labelled "
           f"<i>{esc(analyses.POOLED_SUITE)}</i> pool every model of every suite, mixing scale "
           "with suite (data, tokenizer, architecture)." if several else ".")
        + "</p>"
    )
    return intro + html_table(corr.drop(columns="pooled") if not several else corr) + caution
