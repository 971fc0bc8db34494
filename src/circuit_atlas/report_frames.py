"""What a report is built from: its options, the store tables it reads, and HTML helpers.

Shared by :mod:`circuit_atlas.report` (the page) and :mod:`circuit_atlas.report_algorithm` (its
IOI-algorithm sections), which both import this module and not each other's.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from circuit_atlas import analyses, figures
from circuit_atlas.analyses.emergence import Baseline
from circuit_atlas.errors import AnalysisError

__all__ = [
    "COLLAPSE_ROWS",
    "FIGURE_PX_PER_INCH",
    "GRID_MIN_PX",
    "GRID_PX_PER_INCH",
    "TABLES",
    "ReportFrames",
    "ReportOptions",
    "esc",
    "has_columns",
    "html_table",
    "png_image",
]

TABLES: tuple[str, ...] = ("units", "task_metrics", "circuits", "edges", "nodes", "curves",
                           "component_scores", "component_heads", "algorithm", "algorithm_heads",
                           "fingerprints", "self_repair", "self_repair_heads", "prompt_metrics",
                           "mib")
"""Store tables the report reads (``faithfulness`` is accepted as another name of ``curves``)."""

COLLAPSE_ROWS = 15
"""A table with more rows than this is collapsed into ``<details>`` (:func:`html_table`)."""

FIGURE_PX_PER_INCH = 160
"""Display scale of a main figure: CSS pixels per figure inch, capped at the content width.

At 160 a two-panel figure (7.2 in) spans about the page's 1,232 px content width and 10 pt text
shows at about 22 px, whatever ``ReportOptions.dpi`` the PNG was rendered at."""

GRID_PX_PER_INCH = 115
"""Display scale of a small multiple in a ``grid`` (circuit diagrams), at least
:data:`GRID_MIN_PX` wide: two diagrams of a small model fit side by side."""

GRID_MIN_PX = 560
"""Narrowest a small multiple is shown (CSS pixels)."""


@dataclass(frozen=True)
class ReportOptions:
    """What the report computes and how it draws it.

    Attributes:
        emergence_frac: Fraction of the final value that counts as emerged (0.8).
        emergence_baseline: ``zero`` (x / x_final) or ``initial`` ((x − x_0)/(x_final − x_0)).
        emergence_tolerance: Allowed dip below the fraction after emergence.
        size_emergence_baseline: Baseline of the circuit-size emergence (``initial`` by default:
            a size is never 0, so progress from zero says little).
        min_final_metric: A task whose final clean metric is not above this never emerges
            (0: the model must end up preferring the right answer).
        emergence_n_se: A task metric counts as emerged only if its rise from the first to the
            last checkpoint exceeds the first checkpoint's spread across examples and this many
            standard errors (None: no noise check).
        drop_steps_at_most: Drop steps ≤ this from Figure 1 (paper: 100; None keeps all).
        mean_size_min_step: Average circuit sizes over steps ≥ this (paper: 1000); if a model ×
            task has no such step, every step is used and the page says so.
        faithful_only: Circuit size and stability use only checkpoints whose circuit is a
            faithful minimal circuit (:func:`~circuit_atlas.analyses.faithful_circuits`); the
            fallback circuits stored where faithfulness is undefined are left out and counted.
        jaccard_checkpoints: Restrict the Jaccard analysis to these steps (e.g.
            ``analyses.PAPER_JACCARD_CHECKPOINTS``); None uses every analysed step.
        diagrams_per_series: Circuit diagrams per model × task (evenly spaced checkpoints, the
            first and last included); None draws every checkpoint.
        component_frac: Figure 2's threshold (fraction of the model's maximum score).
        component_rule: Figure 2's head choice (``most_in_circuit`` or ``earliest_crossing``).
        bootstrap_resamples: Resamples of the bootstrap intervals over prompts (1,000;
            docs/uncertainty.md).
        bootstrap_seed: Seed of the bootstrap generator (the same for every point).
        ci_level: Coverage of the bootstrap intervals (0.95, percentile method).
        dpi: Resolution of the embedded PNGs, in pixels per figure inch (their sharpness; the
            size they are shown at is set by ``report_frames.FIGURE_PX_PER_INCH``).
    """

    emergence_frac: float = 0.8
    emergence_baseline: Baseline = "zero"
    emergence_tolerance: float = 0.0
    size_emergence_baseline: Baseline = "initial"
    min_final_metric: float | None = 0.0
    emergence_n_se: float | None = 3.0
    drop_steps_at_most: int | None = None
    mean_size_min_step: int | None = analyses.PAPER_MEAN_SIZE_MIN_STEP
    faithful_only: bool = True
    jaccard_checkpoints: tuple[int, ...] | None = None
    diagrams_per_series: int | None = 4
    component_frac: float = analyses.PAPER_FIG2_FRACTION
    component_rule: analyses.SelectionRule = "most_in_circuit"
    bootstrap_resamples: int = analyses.N_RESAMPLES
    bootstrap_seed: int = 0
    ci_level: float = analyses.CI_LEVEL
    dpi: int = FIGURE_PX_PER_INCH


@dataclass(frozen=True)
class ReportFrames:
    """The store tables a report is built from; a missing table is an empty frame."""

    units: pd.DataFrame = field(default_factory=pd.DataFrame)
    task_metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    circuits: pd.DataFrame = field(default_factory=pd.DataFrame)
    edges: pd.DataFrame = field(default_factory=pd.DataFrame)
    nodes: pd.DataFrame = field(default_factory=pd.DataFrame)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    component_scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    component_heads: pd.DataFrame = field(default_factory=pd.DataFrame)
    algorithm: pd.DataFrame = field(default_factory=pd.DataFrame)
    algorithm_heads: pd.DataFrame = field(default_factory=pd.DataFrame)
    fingerprints: pd.DataFrame = field(default_factory=pd.DataFrame)
    self_repair: pd.DataFrame = field(default_factory=pd.DataFrame)
    self_repair_heads: pd.DataFrame = field(default_factory=pd.DataFrame)
    prompt_metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    mib: pd.DataFrame = field(default_factory=pd.DataFrame)

    @classmethod
    def load(cls, source: Any) -> ReportFrames:
        """Read the tables from a store, a store directory, a mapping of frames, or frames.

        From a store only in-circuit edges are read (the report never needs the others).

        Args:
            source: A :class:`ReportFrames`; a mapping table name → DataFrame; an object with
                ``table(name)`` and ``query(sql)`` (a ``ResultsStore``); or a store directory.

        Raises:
            AnalysisError: If ``source`` is none of these.
            circuit_atlas.errors.StoreError: If the directory is not a valid store.
        """
        if isinstance(source, ReportFrames):
            return source
        if isinstance(source, (str, os.PathLike)):
            from circuit_atlas.store import ResultsStore

            source = ResultsStore(source)
        if isinstance(source, Mapping):
            given = {("curves" if k == "faithfulness" else k): v for k, v in source.items()}
            unknown = sorted(set(given) - set(TABLES))
            if unknown:
                raise AnalysisError(f"unknown table(s) {unknown}; expected some of {TABLES}")
            return cls(**{k: v for k, v in given.items() if v is not None})
        if hasattr(source, "table") and hasattr(source, "query"):
            tables = {name: source.table(name) for name in TABLES if name != "edges"}
            tables["edges"] = source.query("SELECT * FROM edges WHERE in_circuit")
            return cls(**tables)
        raise AnalysisError(
            f"cannot read report data from {type(source).__name__}: pass a ResultsStore, its "
            "directory, or a mapping of table name -> DataFrame"
        )


def esc(value: Any) -> str:
    """HTML-escape ``value`` (quotes included)."""
    return html.escape(str(value), quote=True)


def html_table(frame: pd.DataFrame, *, empty: str = "No data.",
               max_rows: int | None = COLLAPSE_ROWS) -> str:
    """A DataFrame as an HTML table (steps as integers, missing values as —), or ``empty``.

    Args:
        frame: The table.
        empty: Sentence shown instead of an empty table.
        max_rows: A table with more rows is shown collapsed, whole, inside ``<details>`` whose
            summary line gives its numbers of rows and columns (a click opens it); None never
            collapses (for a table that already sits in its own ``<details>``).

    Returns:
        The HTML fragment.
    """
    if frame is None or frame.empty:
        return f'<p class="muted">{esc(empty)}</p>'
    shown = frame.copy()
    for column in shown.columns:
        if column in ("step", "step_from", "step_to", "n_checkpoints", "n_models", "params"):
            numbers = pd.to_numeric(shown[column], errors="coerce")
            shown[column] = [f"{int(v)}" if pd.notna(v) else "—" for v in numbers]
    table = shown.to_html(
        index=False, escape=True, na_rep="—", border=0, classes="data",
        float_format=lambda x: f"{x:.4g}",
    )  # fmt: skip
    table = f'<div class="table">{table}</div>'
    if max_rows is None or len(shown) <= max_rows:
        return table
    return (f'<details class="table"><summary>Table: {len(shown)} rows × {len(shown.columns)} '
            f"columns (click to show)</summary>{table}</details>")


def png_image(figure, dpi: int, alt: str, *, grid: bool = False) -> str:
    """A Matplotlib figure as an inline base64 PNG ``<img>``; the figure is cleared.

    Args:
        figure: The figure.
        dpi: Resolution of the PNG (its sharpness; not its size on the page).
        alt: The image's alternative text.
        grid: A small multiple shown in a ``grid`` (:data:`GRID_PX_PER_INCH`) rather than a
            main figure (:data:`FIGURE_PX_PER_INCH`).

    Returns:
        The ``<img>`` element; its ``width`` is the figure's width in inches times the display
        scale (the page's CSS caps it at the content width and keeps the aspect ratio).
    """
    inches = float(figure.get_size_inches()[0])
    width = (max(GRID_MIN_PX, round(inches * GRID_PX_PER_INCH)) if grid
             else round(inches * FIGURE_PX_PER_INCH))
    data = figures.figure_to_png(figure, dpi=dpi)
    figure.clear()
    kind = "small" if grid else "figure"
    return (f'<img class="{kind}" width="{width}" alt="{esc(alt)}" '
            f'src="data:image/png;base64,{data}">')


def has_columns(frame: pd.DataFrame, *columns: str) -> bool:
    """Whether ``frame`` is non-empty and has every one of ``columns``."""
    return not frame.empty and all(c in frame.columns for c in columns)
