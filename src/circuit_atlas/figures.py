"""Matplotlib figures in the paper's style, drawn from the analyses' tidy frames.

Every function returns a :class:`matplotlib.figure.Figure` rendered by the Agg canvas. No pyplot
state, rcParams or global style is touched (importing this module changes nothing), so figures can
be built in threads and in headless processes. The paper's conventions (PAPER.md §2.5, §6): tokens
seen on a log-scaled x axis, one line per model, models coloured by size on a sequential palette.
Points with zero tokens (step 0) cannot sit on a log axis and are left out of the curves.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from circuit_atlas.analyses._frames import attach_tokens, model_order

__all__ = [
    "SIGN_COLORS",
    "circuit_diagram",
    "circuit_diagrams",
    "circuit_size_figure",
    "faithfulness_figure",
    "figure_to_png",
    "format_count",
    "jaccard_figure",
    "model_colors",
    "performance_figure",
    "spread_steps",
]

METRIC_LABELS: dict[str, str] = {
    "logit_diff": "logit difference",
    "prob_diff": "probability difference",
}
"""Axis label of each ``metric_kind``."""

SIGN_COLORS: dict[bool, str] = {True: "#2166ac", False: "#b2182b"}
"""Edge colour by the sign of its attribution score: positive → blue, negative → red."""

_NODE = re.compile(r"^(?:a(?P<layer>\d+)\.h(?P<head>\d+)|m(?P<mlp>\d+)|input|logits)$")


def _new_figure(n_panels: int, n_rows: int = 1, *, width: float = 3.6, height: float = 2.8):
    """A constrained-layout figure with ``n_rows`` × ``n_panels`` axes (always a 2-D array)."""
    figure = Figure(figsize=(max(width * n_panels, 4.5), height * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, max(n_panels, 1), squeeze=False)
    return figure, axes


def _panel_grid(n_panels: int, *, max_columns: int = 3, width: float = 3.6,
                height: float = 2.8) -> tuple[Figure, list]:
    """A figure with ``n_panels`` axes wrapped into rows of at most ``max_columns``.

    The rows are balanced (four panels: two rows of two) and unused axes are removed, so wide
    studies (many tasks or component types) keep panels readable on the page.

    Returns:
        The figure and its axes, in reading order.
    """
    n = max(n_panels, 1)
    rows = math.ceil(n / max_columns)
    columns = math.ceil(n / rows)
    figure, axes = _new_figure(columns, rows, width=width, height=height)
    flat = list(axes.flat)
    for axis in flat[n:]:
        axis.remove()
    return figure, flat[:n]


def model_colors(frame: pd.DataFrame) -> dict[str, tuple[float, float, float, float]]:
    """Colour of each model, by log parameter count on the viridis palette (small = dark).

    Args:
        frame: Any table with ``model`` and, ideally, ``params``.

    Returns:
        Model name → RGBA; models without a parameter count are spread by name order.
    """
    models = model_order(frame)
    palette = colormaps["viridis"]
    if not models:
        return {}
    params = frame.groupby("model")["params"].max() if "params" in frame.columns else None
    logs = np.array(
        [
            np.log10(float(params[m])) if params is not None and pd.notna(params[m]) else np.nan
            for m in models
        ]
    )
    if np.isfinite(logs).sum() >= 2 and np.nanmax(logs) > np.nanmin(logs):
        scaled = (logs - np.nanmin(logs)) / (np.nanmax(logs) - np.nanmin(logs))
    else:
        scaled = np.full(len(models), np.nan)
    by_rank = np.linspace(0.0, 1.0, len(models)) if len(models) > 1 else np.zeros(1)
    scaled = np.where(np.isfinite(scaled), scaled, by_rank)
    return {m: palette(0.05 + 0.85 * s) for m, s in zip(models, scaled, strict=True)}


def _legend(figure: Figure, colors: Mapping[str, object], title: str = "model") -> None:
    handles = [Line2D([], [], color=c, lw=2, label=m) for m, c in colors.items()]
    if handles:
        figure.legend(handles=handles, title=title, loc="outside right center", fontsize=8)


def format_count(value: float) -> str:
    """A count in three significant digits with a K/M/B/T suffix (``614K``, ``8.39B``).

    Used for token counts and parameter counts in tick labels and the report's summary; a value
    that is not finite is ``—``.
    """
    value = float(value)
    if not math.isfinite(value):
        return "—"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _short_count(value: float, _position=None) -> str:
    return format_count(value)


def _log_tokens(axis, label: str = "tokens seen") -> None:
    x0, x1 = axis.dataLim.intervalx
    if not (math.isfinite(x0) and math.isfinite(x1) and x0 > 0 and x1 > 0):
        axis.set_xlim(1.0, 10.0)  # nothing finite was drawn (e.g. every value undefined)
    axis.set_xscale("log")
    x0, x1 = axis.dataLim.intervalx
    if x0 > 0 and x1 > 0 and math.isfinite(x0) and math.isfinite(x1):
        powers = math.floor(math.log10(x1)) - math.ceil(math.log10(x0)) + 1
        if powers >= 2:  # labelled decades: minor labels (2×10⁴, 3×10⁴, …) would crowd
            axis.xaxis.set_minor_formatter(NullFormatter())
        else:  # under two decades: a few short labels (400K, 500K, …) instead of 4 × 10⁵, …
            axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.xaxis.set_major_formatter(FuncFormatter(_short_count))
            axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel(label)
    axis.grid(True, which="major", alpha=0.3, lw=0.5)


def _positive_tokens(frame: pd.DataFrame, column: str = "tokens_seen") -> pd.DataFrame:
    values = pd.to_numeric(frame[column], errors="coerce")
    return frame[values > 0]


def _band(axis, bands: pd.DataFrame | None, model: str, task: str, color) -> bool:
    """Shade ``[ci_low, ci_high]`` of one model × task over tokens; whether anything was drawn."""
    if bands is None or bands.empty:
        return False
    part = _positive_tokens(bands[(bands["model"] == model) & (bands["task"] == task)])
    part = part.dropna(subset=["ci_low", "ci_high"]).sort_values("tokens_seen")
    if part.empty:
        return False
    axis.fill_between(part["tokens_seen"].astype(float), part["ci_low"].astype(float),
                      part["ci_high"].astype(float), color=color, alpha=0.2, lw=0,
                      label="_band")  # fmt: skip
    return True


def _empty_panel(axis, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])


def performance_figure(
    performance: pd.DataFrame,
    *,
    metric: str = "clean_metric",
    emergence: pd.DataFrame | None = None,
    bands: pd.DataFrame | None = None,
) -> Figure:
    """Figure 1: a task metric over training tokens, one panel per task, one line per model.

    Args:
        performance: Output of :func:`~circuit_atlas.analyses.task_performance`.
        metric: Which ``metric`` rows to draw (``clean_metric``: the paper's curve).
        emergence: Optional :func:`~circuit_atlas.analyses.emergence_table` output for this
            metric; emerged rows are marked with a star on their model's curve (rows of models
            that are not drawn are skipped).
        bands: Optional intervals shaded around each model's curve: ``model``, ``task``,
            ``tokens_seen``, ``ci_low``, ``ci_high`` (e.g. bootstrap intervals over prompts,
            :func:`~circuit_atlas.analyses.metric_intervals`, or the min–max over seeds).

    Returns:
        The figure.
    """
    rows = _positive_tokens(performance[performance["metric"] == metric])
    tasks = sorted(rows["task"].unique())
    colors = model_colors(performance)
    figure, panels = _panel_grid(len(tasks))
    for axis, task in zip(panels, tasks, strict=False):
        part = rows[rows["task"] == task]
        for model, color in colors.items():
            series = part[part["model"] == model].sort_values("step")
            if not series.empty:
                axis.plot(series["tokens_seen"], series["value"], color=color, lw=1.5, marker=".")
                _band(axis, bands, model, task, color)
        if emergence is not None and not emergence.empty:
            marks = emergence[(emergence["task"] == task) & emergence["emerged"]]
            for _, mark in marks.iterrows():
                if mark["tokens_seen"] > 0 and mark["model"] in colors:
                    axis.plot(
                        mark["tokens_seen"], mark["value_at_emergence"], marker="*", ms=13,
                        color=colors.get(mark["model"], "black"), mec="black", mew=0.6, zorder=5,
                    )  # fmt: skip
        kinds = part["metric_kind"].dropna().unique()
        label = METRIC_LABELS.get(kinds[0], metric) if len(kinds) == 1 else metric
        axis.axhline(0.0, color="grey", lw=0.6, ls="--")
        axis.set_title(task)
        axis.set_ylabel(label)
        _log_tokens(axis)
    if not tasks:
        _empty_panel(panels[0], f"no {metric} data with tokens > 0")
    _legend(figure, colors)
    return figure


def circuit_size_figure(sizes: pd.DataFrame) -> Figure:
    """Circuit size over training: nodes (top row) and edges (bottom row), one panel per task.

    Args:
        sizes: Output of :func:`~circuit_atlas.analyses.circuit_size`.

    Returns:
        The figure.
    """
    rows = _positive_tokens(sizes)
    tasks = sorted(rows["task"].unique())
    colors = model_colors(sizes)
    figure, axes = _new_figure(len(tasks), 2)
    for col, task in enumerate(tasks):
        part = rows[rows["task"] == task]
        for row, (measure, label) in enumerate((("n_nodes", "nodes"), ("n_edges", "edges"))):
            axis = axes[row][col]
            for model, color in colors.items():
                series = part[part["model"] == model].sort_values("step")
                if not series.empty:
                    axis.plot(series["tokens_seen"], series[measure], color=color, marker=".")
            axis.set_title(f"{task}: circuit {label}")
            axis.set_ylabel(f"{label} in circuit")
            _log_tokens(axis)
    if not tasks:
        _empty_panel(axes[0][0], "no circuit sizes with tokens > 0")
    _legend(figure, colors)
    return figure


def jaccard_figure(
    similarities: Mapping[str, pd.DataFrame],
    tokens: pd.DataFrame,
    *,
    params: pd.DataFrame | None = None,
) -> Figure:
    """Figure 5: EWMA Jaccard similarity between consecutive circuits, per task.

    The smoothed series is a bold line; the raw Jaccard values are faint dots. x is the tokens
    seen at the earlier checkpoint of each pair (the paper's ``checkpoint_1``).

    Args:
        similarities: Row label (e.g. ``"edges"``, ``"nodes"``) → output of
            :func:`~circuit_atlas.analyses.jaccard_over_time`; one row of panels each.
        tokens: Output of :func:`~circuit_atlas.analyses.step_tokens` (model, step → tokens).
        params: Any frame with ``model`` and ``params``, to colour models by size.

    Returns:
        The figure.
    """
    frames = {k: attach_tokens(v, tokens, step_column="step_from", out_column="tokens_from")
              for k, v in similarities.items()}  # fmt: skip
    tasks = sorted({t for f in frames.values() for t in f["task"].unique()})
    colors = model_colors(params if params is not None else pd.concat(frames.values()))
    figure, axes = _new_figure(len(tasks), max(len(frames), 1))
    for row, (label, frame) in enumerate(frames.items()):
        rows = _positive_tokens(frame, "tokens_from")
        for col, task in enumerate(tasks):
            axis = axes[row][col]
            part = rows[rows["task"] == task]
            for model, color in colors.items():
                series = part[part["model"] == model].sort_values("step_from")
                if series.empty:
                    continue
                x = series["tokens_from"]
                axis.plot(x, series["jaccard"], ls="none", marker=".", color=color, alpha=0.35)
                axis.plot(x, series["jaccard_ewma"], color=color, lw=1.8)
            axis.set_ylim(-0.02, 1.02)
            axis.set_title(f"{task}: {label}")
            axis.set_ylabel("EWMA Jaccard (α = 0.5)")
            _log_tokens(axis, "tokens seen (earlier checkpoint)")
    if not tasks:
        _empty_panel(axes[0][0], "fewer than two analysed checkpoints per model")
    _legend(figure, colors)
    return figure


def faithfulness_figure(
    circuits: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    *,
    threshold: float | None = None,
    bands: pd.DataFrame | None = None,
) -> Figure:
    """Faithfulness over training (top) and versus circuit size (bottom), one column per task.

    The top row is the faithfulness of each checkpoint's selected circuit; the bottom row is the
    faithfulness-versus-edges curve of each model's last analysed checkpoint.

    Args:
        circuits: Output of :func:`~circuit_atlas.analyses.circuit_size` (with
            ``faithfulness``; NaN = undefined, left out).
        curves: The store's ``curves`` table (``n_edges``, ``faithfulness`` per evaluated
            size), or None to draw the top row only.
        threshold: Faithfulness target drawn as a dashed line (e.g. 0.8).
        bands: Optional intervals shaded around the top row's curves: ``model``, ``task``,
            ``tokens_seen``, ``ci_low``, ``ci_high`` (e.g.
            :func:`~circuit_atlas.analyses.faithfulness_intervals`, or the min–max over seeds).
            The y axis spans the curves (and [0, 1]), not the bands: the interval of a ratio
            whose denominator is near 0 is clipped at the panel's edge.

    Returns:
        The figure.
    """
    tasks = sorted(circuits["task"].unique())
    colors = model_colors(circuits)
    has_curves = curves is not None and not curves.empty
    figure, axes = _new_figure(len(tasks), 2 if has_curves else 1)
    rows = _positive_tokens(circuits.dropna(subset=["faithfulness"]))
    for col, task in enumerate(tasks):
        axis = axes[0][col]
        part = rows[rows["task"] == task]
        for model, color in colors.items():
            series = part[part["model"] == model].sort_values("step")
            if not series.empty:
                axis.plot(series["tokens_seen"], series["faithfulness"], color=color, marker=".")
                _band(axis, bands, model, task, color)
        if part.empty:
            _empty_panel(axis, "faithfulness undefined\n(clean metric 0) or no data")
        else:
            _log_tokens(axis)
            values = part["faithfulness"].astype(float)
            low, high = min(0.0, values.min()), max(1.0, values.max())
            margin = 0.08 * (high - low)
            axis.set_ylim(low - margin, high + margin)  # a ratio's band can be unbounded
        axis.set_title(f"{task}:\nfaithfulness of the circuit")
        axis.set_ylabel("faithfulness")
        if has_curves:
            _final_curves(axes[1][col], curves[curves["task"] == task], colors)
    for row in axes:
        for axis in row:
            if threshold is not None and axis.has_data():
                axis.axhline(threshold, color="grey", lw=0.8, ls="--")
    if not tasks:
        _empty_panel(axes[0][0], "no circuits")
    _legend(figure, colors)
    return figure


def _final_curves(axis, curves: pd.DataFrame, colors: Mapping[str, object]) -> None:
    drawn = False
    for model, color in colors.items():
        part = curves[curves["model"] == model].dropna(subset=["faithfulness"])
        if part.empty:
            continue
        last = part[part["step"] == part["step"].max()].sort_values("n_edges")
        axis.plot(last["n_edges"], last["faithfulness"], color=color, marker=".", lw=1.2)
        drawn = True
    if not drawn:
        _empty_panel(axis, "no faithfulness curve")
        return
    axis.set_xscale("log")
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel("edges in circuit (after pruning)")
    axis.set_ylabel("faithfulness (last checkpoint)")
    axis.grid(True, alpha=0.3, lw=0.5)


def _node_position(name: str, n_heads: int, n_layers: int) -> tuple[float, float] | None:
    """Layered layout: input at the bottom, then per layer its heads and its MLP, logits on top."""
    match = _NODE.match(name)
    if match is None:
        return None
    if name == "input":
        return 0.5, 0.0
    if name == "logits":
        return 0.5, 2.0 * n_layers + 1.0
    if match["mlp"] is not None:
        return 1.06, 2.0 * int(match["mlp"]) + 2.0
    x = (int(match["head"]) + 0.5) / max(n_heads, 1)
    return x, 2.0 * int(match["layer"]) + 1.0


def circuit_diagram(
    edges: pd.DataFrame,
    *,
    n_layers: int | None = None,
    n_heads: int | None = None,
    title: str = "",
    node_colors: Mapping[str, object] | None = None,
    node_legend: Mapping[str, object] | None = None,
) -> Figure:
    """Draw one circuit as a layered graph, input at the bottom and logits at the top.

    Heads and MLPs sit by layer (each layer's heads in a row, its MLP just above); edges are
    coloured by the sign of their score and drawn as wide as |score| (relative to the largest).
    Nodes are grey unless ``node_colors`` gives them a colour (e.g. by role, Figure 4A).

    Args:
        edges: The in-circuit rows of the ``edges`` table for one (unit, task): ``edge``,
            ``parent``, ``child`` (node names; a ``<q|k|v>`` suffix is ignored) and ``score``.
        n_layers: Layers of the model (inferred from the node names when None).
        n_heads: Heads per layer (inferred when None).
        title: Panel title.
        node_colors: Node name → matplotlib colour (others grey).
        node_legend: Legend label → colour of the node colours (drawn as markers).

    Returns:
        The figure (an "empty circuit" panel when there is no edge).
    """
    parents = edges["parent"].astype(str).tolist()
    children = [re.sub(r"<[qkv]>$", "", c) for c in edges["child"].astype(str)]
    names = set(parents) | set(children)
    matches = [m for m in map(_NODE.match, names) if m is not None]
    layers = [int(m["layer"] or m["mlp"]) for m in matches if (m["layer"] or m["mlp"])]
    heads = [int(m["head"]) for m in matches if m["head"] is not None]
    n_layers = n_layers or (max(layers) + 1 if layers else 1)
    n_heads = n_heads or (max(heads) + 1 if heads else 1)
    height = min(2.0 + 0.32 * (2 * n_layers + 2), 14.0)
    figure = Figure(figsize=(max(4.5, min(0.28 * n_heads + 3.0, 14.0)), height))
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1.0 - 0.35 / height)
    axis.set_title(title, fontsize=9)
    axis.set_axis_off()
    position = {n: _node_position(n, n_heads, n_layers) for n in names}
    position = {n: p for n, p in position.items() if p is not None}
    if edges.empty or not position:
        _empty_panel(axis, "empty circuit")
        return figure
    scores = edges["score"].astype(float).to_numpy()
    top = float(np.nanmax(np.abs(scores))) or 1.0
    segments, colors, widths = [], [], []
    for parent, child, score in zip(parents, children, scores, strict=True):
        if parent in position and child in position:
            segments.append([position[parent], position[child]])
            colors.append(SIGN_COLORS[bool(score >= 0)])
            widths.append(0.3 + 3.2 * abs(score) / top)
    axis.add_collection(LineCollection(segments, colors=colors, linewidths=widths, alpha=0.55))
    colored = node_colors or {}
    for name, (x, y) in position.items():
        shape = "s" if name.startswith("m") else ("D" if name in ("input", "logits") else "o")
        big = name in colored
        axis.plot(x, y, marker=shape, ms=9 if big else 7, color=colored.get(name, "#444444"),
                  mec="black" if big else "white", zorder=3)  # fmt: skip
        if len(position) <= 80:
            axis.annotate(name, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=6)
    for layer in range(n_layers):
        axis.text(-0.04, 2.0 * layer + 1.0, f"L{layer}", ha="right", va="center", fontsize=6,
                  color="grey")  # fmt: skip
    axis.set_xlim(-0.1, 1.2)
    axis.set_ylim(-0.8, 2.0 * n_layers + 1.8)
    legend = [Line2D([], [], color=c, lw=2, label=("positive" if s else "negative") + " score")
              for s, c in SIGN_COLORS.items()]  # fmt: skip
    legend += [Line2D([], [], ls="none", marker="o", ms=6, color=c, mec="black", label=label)
               for label, c in (node_legend or {}).items()]  # fmt: skip
    axis.legend(handles=legend, loc="upper right", fontsize=6, frameon=False)
    return figure


def _unit_shapes(units: pd.DataFrame | None) -> dict[str, tuple[int | None, int | None]]:
    """unit_id → (n_layers, n_heads) from the ``spec`` JSON column of the ``units`` table."""
    if units is None or not {"unit_id", "spec"} <= set(units.columns):
        return {}
    out: dict[str, tuple[int | None, int | None]] = {}
    for unit_id, spec in zip(units["unit_id"], units["spec"], strict=True):
        try:
            data = json.loads(spec) if isinstance(spec, str) else {}
        except json.JSONDecodeError:
            data = {}
        out[unit_id] = (data.get("n_layers"), data.get("n_heads"))
    return out


def spread_steps(steps: Sequence[int], k: int | None) -> list[int]:
    """At most ``k`` of ``steps``, evenly spaced, the first and last included (all when None)."""
    ordered = sorted(steps)
    if k is None or len(ordered) <= k:
        return ordered
    index = np.unique(np.round(np.linspace(0, len(ordered) - 1, max(k, 1))).astype(int))
    return [ordered[i] for i in index]


def circuit_diagrams(
    edges: pd.DataFrame, *, units: pd.DataFrame | None = None, per_series: int | None = 4
) -> Iterator[tuple[str, str, int, Figure]]:
    """Yield a :func:`circuit_diagram` per model × task × chosen checkpoint.

    Args:
        edges: The ``edges`` table (only in-circuit rows are drawn), with ``unit_id``.
        units: The ``units`` table; its ``spec`` JSON gives each unit's layers and heads.
        per_series: Checkpoints drawn per model × task (see :func:`spread_steps`).

    Yields:
        ``(model, task, step, figure)``, models by size, then tasks and steps in order.
    """
    inside = edges[edges["in_circuit"].astype(bool)]
    shapes = _unit_shapes(units)
    models = model_order(units if units is not None and not units.empty else inside)
    for model in models + sorted(set(inside["model"]) - set(models)):
        mine = inside[inside["model"] == model]
        for task in sorted(mine["task"].unique()):
            part = mine[mine["task"] == task]
            for step in spread_steps(part["step"].unique().tolist(), per_series):
                rows = part[part["step"] == step]
                unit = rows["unit_id"].iloc[0] if "unit_id" in rows.columns else None
                n_layers, n_heads = shapes.get(unit, (None, None))
                title = f"{model} · {task} · step {step} · {len(rows)} edges"
                yield (
                    model,
                    task,
                    int(step),
                    circuit_diagram(rows, n_layers=n_layers, n_heads=n_heads, title=title),
                )


def figure_to_png(figure: Figure, *, dpi: int = 110) -> str:
    """Render ``figure`` with Agg and return it as base64-encoded PNG text (for a data URI).

    Args:
        figure: A figure from this module.
        dpi: Resolution in dots per inch.

    Returns:
        The PNG bytes, base64-encoded as ASCII.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")
