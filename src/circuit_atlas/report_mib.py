"""The report's MIB section: CPR and CMD of every stored circuit over training.

A small table (one row per model and checkpoint, one CPR and one CMD column per task) built
from the store's ``mib`` table (:mod:`circuit_atlas.mib`, docs/mib.md). Studies run without
``[circuit] mib = true`` have no rows, and the section says so.
"""

from __future__ import annotations

import pandas as pd

from circuit_atlas.report_frames import ReportFrames, has_columns, html_table

__all__ = ["mib_section", "mib_table"]


def mib_table(mib: pd.DataFrame) -> pd.DataFrame:
    """CPR and CMD by (model, step, tokens_seen), one ``<task> CPR`` / ``<task> CMD`` column each.

    Args:
        mib: The store's ``mib`` table.

    Returns:
        One row per model and step (sorted), undefined values as NaN; empty for an empty input.
    """
    if not has_columns(mib, "model", "step", "task", "cpr", "cmd"):
        return pd.DataFrame()
    index = ["model", "step"] + (["tokens_seen"] if "tokens_seen" in mib.columns else [])
    frame = mib.drop_duplicates(index + ["task"]).copy()
    frame[["cpr", "cmd"]] = frame[["cpr", "cmd"]].astype(float)
    wide = frame.set_index(index + ["task"])[["cpr", "cmd"]].unstack("task")
    tasks = sorted(mib["task"].unique())
    columns = [(metric, task) for task in tasks for metric in ("cpr", "cmd")
               if (metric, task) in wide.columns]
    wide = wide[columns]
    wide.columns = [f"{task} {metric.upper()}" for metric, task in columns]
    return wide.reset_index().sort_values(["model", "step"]).reset_index(drop=True)


def mib_section(frames: ReportFrames) -> str:
    """The section's HTML: what CPR and CMD are, then :func:`mib_table`."""
    table = mib_table(getattr(frames, "mib", pd.DataFrame()))
    if table.empty:
        return ('<p class="muted">No MIB metrics in the store (turn them on with '
                "<code>[circuit] mib = true</code>).</p>")
    return (
        "<p>The MIB circuit track's metrics of each checkpoint's edge scores (Mueller et al. "
        "2025; hannamw/MIB-circuit-track <code>evaluate_area_under_curve</code>): the "
        "normalised faithfulness (m(C) − m(∅)) / (m(M) − m(∅)) of the top-k circuits at "
        "0.1 %–100 % of the edges, integrated over the edge fraction. CPR = area under the "
        "curve of the signed scores (higher is better), CMD = area between 1 and the curve of "
        "|scores| (lower is better); — where faithfulness is undefined (docs/mib.md). No "
        "interval: each value is an area under one curve evaluated on all the prompts "
        "together, as MIB reports it (no per-prompt curve is stored to resample).</p>"
        + html_table(table)
    )
