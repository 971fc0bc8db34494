"""Figure 4 of the paper and the stability of the algorithm: lines over tokens, role diagrams.

Same conventions as :mod:`circuit_atlas.figures` (Agg canvas, no pyplot state, tokens seen on a
log axis, models coloured by size). Undefined values are NaN and break the lines (gaps); the
report states why next to each figure.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from circuit_atlas.analyses import attach_tokens
from circuit_atlas.figures import (
    _empty_panel,
    _legend,
    _log_tokens,
    _new_figure,
    _positive_tokens,
    circuit_diagram,
    model_colors,
)

__all__ = [
    "PANEL_TITLES",
    "ROLE_COLORS",
    "ROLE_LABELS",
    "algorithm_figure",
    "fingerprint_stability_figure",
    "role_diagram",
]

PANEL_TITLES: dict[str, str] = {
    "direct": "B: % effect from NM/CS heads",
    "s_inhibition": "C: % effect from S2I heads",
    "tertiary": "D: % effect from tertiary heads",
}
"""Title of each Figure 4 panel (the paper's y labels)."""

ROLE_LABELS: dict[str, str] = {
    "name_mover": "name mover",
    "copy_suppression": "copy suppression",
    "negative_name_mover": "negative name mover",
    "negative_copy_suppression": "negative copy suppression",
    "s_inhibition": "S-inhibition",
    "tertiary": "induction / duplicate (tertiary)",
}
"""Legend label of each IOI role."""

ROLE_COLORS: dict[str, str] = {
    "name_mover": "#1b9e77",
    "copy_suppression": "#d95f02",
    "negative_name_mover": "#e7298a",
    "negative_copy_suppression": "#a6761d",
    "s_inhibition": "#7570b3",
    "tertiary": "#e6ab02",
}
"""Node colour of each IOI role in the role-annotated circuit diagram."""


def algorithm_figure(series: pd.DataFrame, *, params: pd.DataFrame | None = None) -> Figure:
    """Figure 4 B–D: the % effect of each panel over tokens seen, one line per model.

    Args:
        series: :func:`~circuit_atlas.analyses.algorithm_series` output (NaN = undefined).
        params: Any frame with ``model`` and ``params`` to colour models by size.

    Returns:
        The figure: one panel per Figure 4 panel present; dashed lines at 0 and 100 %; a
        vertical bar from ``ci_low`` to ``ci_high`` at the points with a bootstrap interval
        (95 % over prompts, docs/uncertainty.md).
    """
    panels = [p for p in PANEL_TITLES if p in set(series.get("panel", []))]
    colors = model_colors(params if params is not None else series)
    figure, axes = _new_figure(max(len(panels), 1))
    rows = _positive_tokens(series) if not series.empty else series
    for axis, panel in zip(axes[0], panels, strict=False):
        part = rows[rows["panel"] == panel]
        for model, color in colors.items():
            line = part[part["model"] == model].sort_values("tokens_seen")
            if line.empty:
                continue
            axis.plot(line["tokens_seen"], line["pct_effect"], color=color, marker=".", lw=1.5)
            if {"ci_low", "ci_high"} <= set(line.columns):
                bars = line.dropna(subset=["pct_effect", "ci_low", "ci_high"])
                if not bars.empty:  # the interval as it is (it need not contain the point)
                    axis.vlines(bars["tokens_seen"].astype(float), bars["ci_low"].astype(float),
                                bars["ci_high"].astype(float), colors=color, lw=1.0,
                                alpha=0.6, label="_ci")  # fmt: skip
        for level in (0.0, 100.0):
            axis.axhline(level, color="grey", lw=0.6, ls="--")
        axis.set_title(PANEL_TITLES[panel], fontsize=10)
        axis.set_ylabel("% effect")
        _log_tokens(axis)
        if part["pct_effect"].notna().sum() == 0:
            axis.text(0.5, 0.5, "undefined at every checkpoint", ha="center", va="center",
                      transform=axis.transAxes, fontsize=8, color="#9a3412")  # fmt: skip
    if not panels:
        _empty_panel(axes[0][0], "no algorithm decomposition in the store")
    _legend(figure, colors)
    return figure


def fingerprint_stability_figure(
    jaccard: pd.DataFrame | None,
    previous: pd.DataFrame,
    final: pd.DataFrame,
    tokens: pd.DataFrame,
    *,
    params: pd.DataFrame | None = None,
) -> Figure:
    """Heads change, algorithm stays: circuit Jaccard (left) next to fingerprint similarity.

    One row per task with a fingerprint. Left: the EWMA node Jaccard of consecutive circuits
    (Figure 5). Right: fingerprint similarity to the previous checkpoint (solid) and to the final
    checkpoint (dashed); gaps where a fingerprint is undefined.

    Args:
        jaccard: :func:`~circuit_atlas.analyses.node_jaccard` output, or None.
        previous: :func:`~circuit_atlas.analyses.fingerprint_similarity_over_time` (previous).
        final: The same with ``reference="final"``.
        tokens: :func:`~circuit_atlas.analyses.step_tokens` output.
        params: Any frame with ``model`` and ``params``.

    Returns:
        The figure.
    """
    tasks = sorted(set(previous.get("task", [])) | set(final.get("task", [])))
    colors = model_colors(params if params is not None else pd.concat([previous, final]))
    figure, axes = _new_figure(2, max(len(tasks), 1), width=4.2)
    if jaccard is not None and not jaccard.empty:
        jaccard = attach_tokens(jaccard, tokens, step_column="step_from", out_column="tokens_from")
    for row, task in enumerate(tasks):
        left, right = axes[row]
        part = None if jaccard is None or jaccard.empty else jaccard[jaccard["task"] == task]
        if part is None or part.empty:
            _empty_panel(left, "no circuit Jaccard for this task")
        else:
            part = _positive_tokens(part, "tokens_from")
            for model, color in colors.items():
                line = part[part["model"] == model].sort_values("step_from")
                if not line.empty:
                    left.plot(line["tokens_from"], line["jaccard_ewma"], color=color, lw=1.8)
            left.set_ylim(-0.02, 1.02)
            _log_tokens(left, "tokens seen (earlier checkpoint)")
        left.set_title(f"{task}: circuit nodes (EWMA Jaccard)", fontsize=10)
        for frame, style in ((previous, "-"), (final, "--")):
            mine = _positive_tokens(frame[frame["task"] == task], "tokens_from")
            for model, color in colors.items():
                line = mine[mine["model"] == model].sort_values("step_from")
                if not line.empty:
                    right.plot(line["tokens_from"], line["similarity"], color=color, ls=style,
                               marker=".", lw=1.5)  # fmt: skip
        right.set_ylim(-0.02, 1.02)
        right.axhline(0.9, color="grey", lw=0.6, ls=":")
        right.set_title(f"{task}: algorithm fingerprint similarity", fontsize=10)
        right.set_ylabel("1 − ½ Σ|p − q|")
        _log_tokens(right, "tokens seen")
        styles = [Line2D([], [], color="black", ls=s, lw=1.2, label=label)
                  for s, label in (("-", "vs previous"), ("--", "vs final"))]  # fmt: skip
        right.legend(handles=styles, loc="lower right", fontsize=7, frameon=False)
        if left.has_data() and right.has_data():  # one token axis for both
            lo = min(left.get_xlim()[0], right.get_xlim()[0])
            hi = max(left.get_xlim()[1], right.get_xlim()[1])
            left.set_xlim(lo, hi)
            right.set_xlim(lo, hi)
    if not tasks:
        _empty_panel(axes[0][0], "no fingerprints in the store")
    _legend(figure, colors)
    return figure


def role_diagram(edges: pd.DataFrame, roles: Mapping[str, str | None], *,
                 n_layers: int | None = None, n_heads: int | None = None,
                 title: str = "") -> Figure:  # fmt: skip
    """Figure 4A: one IOI circuit with its heads coloured by role.

    Args:
        edges: In-circuit rows of the ``edges`` table of one (unit, task).
        roles: Node name → role (``algorithm_heads.role``; None = no role).
        n_layers: Layers of the model.
        n_heads: Heads per layer.
        title: Panel title.

    Returns:
        The :func:`~circuit_atlas.figures.circuit_diagram` figure with role colours and legend.
    """
    drawn = set(edges["parent"].astype(str)) | {
        c.split("<", 1)[0] for c in edges["child"].astype(str)}  # fmt: skip
    colors = {node: ROLE_COLORS[r] for node, r in roles.items() if r in ROLE_COLORS}
    present = {roles[n] for n in drawn if roles.get(n) in ROLE_COLORS}
    legend = {ROLE_LABELS[r]: ROLE_COLORS[r] for r in ROLE_COLORS if r in present}
    return circuit_diagram(edges, n_layers=n_layers, n_heads=n_heads, title=title,
                           node_colors=colors, node_legend=legend)  # fmt: skip
