"""One self-contained HTML report of a study: figures, tables, circuit diagrams, config, versions.

:func:`write_report` reads the store's tables (``docs/store.md``) — from a
:class:`~circuit_atlas.store.ResultsStore`, its directory, or a mapping of DataFrames — runs the
analyses of :mod:`circuit_atlas.analyses`, draws the figures of :mod:`circuit_atlas.figures` and
writes a single HTML file. Images are embedded as base64 PNG data URIs and the styles are inline,
so the file opens offline (no external JavaScript, CSS, fonts or images). Missing data is stated
in the page rather than raised: a task whose faithfulness is undefined, a model with a single
checkpoint, an empty table.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import circuit_atlas
from circuit_atlas import analyses, figures
from circuit_atlas import report_suites as suites
from circuit_atlas import report_uncertainty as uncertainty
from circuit_atlas.report_frames import (
    ReportFrames,
    ReportOptions,
    esc,
    has_columns,
    html_table,
    png_image,
)
from circuit_atlas.report_summary import summary_section

__all__ = ["SECTIONS", "ReportFrames", "ReportOptions", "write_report"]

logger = logging.getLogger(__name__)

SECTIONS: dict[str, str] = {
    "notes": "Notes",
    "integrity": "Checkpoint integrity",
    "performance": "Task performance (Figure 1)",
    "emergence": "Emergence points",
    "not-emerged": "Tasks that did not emerge",
    "circuit-size": "Circuit size over training",
    "stability": "Circuit stability (Figure 5)",
    "seeds": "Seeds: run-to-run spread",
    "scaling": "Circuit size versus model scale",
    "faithfulness": "Faithfulness",
    "mib": "MIB circuit metrics (CPR, CMD) over training",
    "diagrams": "Circuit diagrams",
    "components": "Component scores over training (Figures 2–3)",
    "algorithm": "The IOI algorithm over training (Figure 4 B–D)",
    "algorithm-circuit": "The IOI circuit by role (Figure 4A)",
    "algorithm-stability": "Heads change, the algorithm stays: fingerprint similarity",
    "self-repair": "Self-repair and backup name movers",
    "config": "Study configuration",
    "versions": "Versions",
}
"""Section id → heading, in page order (ids are the HTML anchors)."""

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1280px;padding:0 24px 48px;color:#222;line-height:1.45}
h1{margin-top:24px}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:36px}
img{max-width:100%;height:auto;border:1px solid #eee}img.figure{display:block;margin:8px 0}
div.table{overflow-x:auto;max-width:100%}
table.data{border-collapse:collapse;font-size:14px;margin:8px 0}
table.data th,table.data td{border:1px solid #ddd;padding:3px 8px;text-align:right}
table.data th{background:#f3f3f3}table.data td{white-space:nowrap}
table.data td:last-child{white-space:normal}
table.data tbody tr:nth-child(even){background:#fafafa}
pre{background:#f7f7f7;padding:10px;overflow-x:auto;font-size:12px}
.muted{color:#666}.warn{color:#9a3412}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
details.table>summary{font-weight:normal;color:#1d4ed8}
#summary{background:#f6f8fa;border:1px solid #d8dee4;border-radius:6px;padding:4px 16px 8px}
#summary h2{margin-top:12px}ul.summary li{margin:4px 0}
table.summary{font-size:14px;background:#fff}
table.summary th,table.summary td{text-align:left;vertical-align:top}
table.summary tbody th{background:#fff}table.summary th .muted{font-weight:normal}
table.summary td{white-space:normal}table.summary tr.group th{background:#e8eef5}
.grid{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
nav ol{columns:2}
"""


def _integrity_section(frames: ReportFrames) -> str:
    """Distinct checkpoints with identical weights (:func:`analyses.identical_weights`)."""
    if not has_columns(frames.units, "weights_fingerprint"):
        return '<p class="muted">The units carry no weights fingerprints (older store).</p>'
    groups = analyses.identical_weights(frames.units)
    n_known = int(frames.units["weights_fingerprint"].notna().sum())
    if groups.empty:
        return (f'<p class="muted">No two analysed checkpoints have identical weights '
                f"({n_known} unit(s) with a weights fingerprint).</p>")
    items = "".join(f"<li>{esc(m)}</li>" for m in groups["message"])
    return (
        '<p class="warn">Some checkpoints hold identical weights: their results are the same '
        "model analysed twice, not points of a training curve (reported for Pythia hub branches, "
        f"EleutherAI/pythia issues #195 and #205).</p><ul class=\"warn\">{items}</ul>"
        + html_table(groups[["checkpoints", "unit_ids", "weights_fingerprint"]])
    )


def _faithful_frames(frames: ReportFrames, options: ReportOptions) -> tuple[ReportFrames, str]:
    """``frames`` restricted to faithful minimal circuits, and a note on what was left out."""
    if not options.faithful_only or not has_columns(frames.circuits, "model", "task", "step",
                                             "faithfulness", "n_edges"):
        return frames, ""
    kept = analyses.faithful_circuits(frames.circuits)
    if len(kept) == len(frames.circuits):
        return frames, ""
    keys = kept[["model", "task", "step"]].drop_duplicates()

    def restrict(table: pd.DataFrame) -> pd.DataFrame:
        if not has_columns(table, "model", "task", "step"):
            return table
        return table.merge(keys, on=["model", "task", "step"], how="inner")

    dropped = frames.circuits.drop(index=kept.index)
    counts = dropped.groupby(["model", "task"]).size().rename("checkpoints left out")
    note = (
        '<p class="warn">Left out of circuit size, stability and diagrams: checkpoints without a '
        "faithful minimal circuit (faithfulness undefined — the stored circuit is the fallback "
        "size — or the threshold never reached):</p>" + html_table(counts.reset_index())
    )
    restricted = replace(
        frames, circuits=kept, edges=restrict(frames.edges), nodes=restrict(frames.nodes)
    )
    return restricted, note


def _noise_columns(task_metrics: pd.DataFrame, options: ReportOptions) -> dict:
    """emergence_table's noise settings: spread and count columns where the store has them."""
    if options.emergence_n_se is None or "clean_metric_std" not in task_metrics.columns:
        return {}
    count = "n_examples" if "n_examples" in task_metrics.columns else None
    return {"spread": "clean_metric_std", "count": count, "n_se": options.emergence_n_se}


def _emergence(frames: ReportFrames, options: ReportOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    # by suite: tokens seen come from each row's own suite (docs/suites.md, Comparing suites)
    settings = dict(frac=options.emergence_frac, tolerance=options.emergence_tolerance,
                    by=("suite", "model", "task"))
    metric = pd.DataFrame()
    if has_columns(frames.task_metrics, "model", "task", "step", "clean_metric"):
        metric = analyses.emergence_table(
            analyses.with_suites(frames.task_metrics, frames.units, what="task_metrics"),
            "clean_metric", baseline=options.emergence_baseline,
            min_final=options.min_final_metric, **_noise_columns(frames.task_metrics, options),
            **settings,
        )  # fmt: skip
    size = pd.DataFrame()
    if has_columns(frames.circuits, "model", "task", "step", "n_nodes"):
        size = analyses.emergence_table(
            analyses.with_suites(frames.circuits, frames.units, what="circuits"), "n_nodes",
            baseline=options.size_emergence_baseline, **settings
        )
    return metric, size


def _performance_section(frames, options, metric_emergence) -> str:
    if not has_columns(frames.task_metrics, "model", "task", "step", "tokens_seen"):
        return '<p class="muted">No task metrics in the store.</p>'
    perf = analyses.task_performance(
        frames.task_metrics, drop_steps_at_most=options.drop_steps_at_most
    )
    curve = uncertainty.performance_bands(frames, perf, options)
    kinds = perf.drop_duplicates(["model", "task"])[["model", "task", "metric_kind"]]
    drawn = curve.merge(kinds, on=["model", "task"], how="left").assign(metric="clean_metric")
    if drawn["metric_kind"].isna().any():  # a base model: the kind of its seeds' task
        by_task = kinds.drop_duplicates("task").set_index("task")["metric_kind"]
        drawn["metric_kind"] = drawn["metric_kind"].fillna(drawn["task"].map(by_task))
    figure = figures.performance_figure(drawn, emergence=metric_emergence, bands=curve)
    dropped = (
        f" Steps ≤ {options.drop_steps_at_most} are left out, as in the paper."
        if options.drop_steps_at_most is not None
        else ""
    )
    return (
        "<p>Raw clean-prompt task metric (logit difference or probability difference, not "
        "normalised) against tokens seen; stars mark emergence points. Step 0 (0 tokens) cannot "
        f"be drawn on the log axis.{dropped} "
        + uncertainty.band_caption(curve, options, "of the mean metric")
        + "</p>" + png_image(figure, options.dpi, "task performance")
        + uncertainty.curve_table(curve)
    )


def _emergence_section(metric: pd.DataFrame, size: pd.DataFrame, options) -> str:
    rule = (
        f"First checkpoint from which the value reaches and keeps ≥ {options.emergence_frac:g} of "
        f"its progress to the final value (baseline: {options.emergence_baseline}; tolerance "
        f"{options.emergence_tolerance:g}). A task metric must end above "
        f"{options.min_final_metric} to count as emerged"
        + (
            f", and its rise from the first to the last checkpoint must exceed the first "
            f"checkpoint's spread across examples and {options.emergence_n_se:g} standard errors."
            if options.emergence_n_se is not None
            else "."
        )
    )
    cols = ["suite", "model", "task", "emerged", "step", "tokens_seen", "value_at_emergence",
            "final_value", "n_checkpoints", "reason"]  # fmt: skip
    pick = lambda f: f[[c for c in cols if c in f.columns]] if not f.empty else f  # noqa: E731
    return (
        f"<p>{esc(rule)}</p><h3>Task metric (clean_metric)</h3>"
        + html_table(pick(metric))
        + f"<h3>Circuit size (nodes; baseline: {esc(options.size_emergence_baseline)})</h3>"
        + html_table(pick(size))
        + suites.emergence_suites_html(metric, size)
    )


def _not_emerged_section(frames: ReportFrames, metric: pd.DataFrame) -> str:
    parts = []
    if metric.empty:
        parts.append('<p class="muted">No task metrics, so emergence could not be assessed.</p>')
    else:
        failed = metric[~metric["emerged"]]
        for task, group in metric.groupby("task"):
            missing = group.loc[~group["emerged"], "model"].tolist()
            verdict = (
                f"emerged in every model ({len(group)})"
                if not missing
                else f"did NOT emerge in {len(missing)} of {len(group)} model(s): "
                + ", ".join(missing)
            )
            parts.append(f"<li><b>{esc(task)}</b>: {esc(verdict)}</li>")
        parts = ["<ul>", *parts, "</ul>"]
        if not failed.empty:
            parts.append(html_table(failed[[c for c in ("suite", "model", "task", "final_value",
                                                         "reason") if c in failed.columns]]))
    if has_columns(frames.units, "model", "step", "errors"):
        errors = []
        for _, unit in frames.units.iterrows():
            try:
                failures = json.loads(unit["errors"] or "{}")
            except (TypeError, json.JSONDecodeError):
                failures = {"?": str(unit["errors"])}
            errors += [{"model": unit["model"], "step": unit["step"], "task": t, "error": e}
                       for t, e in failures.items()]  # fmt: skip
        if errors:
            parts.append("<h3>Tasks that could not be run</h3>" + html_table(pd.DataFrame(errors)))
    return "".join(parts)


def _size_section(frames: ReportFrames, options: ReportOptions) -> tuple[str, str]:
    if not has_columns(frames.circuits, "model", "task", "step", "n_nodes", "n_edges"):
        missing = '<p class="muted">No circuits in the store.</p>'
        return missing, missing
    sizes = analyses.circuit_size(frames.circuits)
    means = analyses.mean_circuit_size(frames.circuits, min_step=options.mean_size_min_step)
    means = suites.suite_column(means, frames.units)
    note = ""
    lacking = (
        sizes.groupby(["model", "task"]).size().index.difference(
            means.set_index(["model", "task"]).index
        )
    )  # fmt: skip
    if len(lacking):
        fallback = analyses.mean_circuit_size(frames.circuits, min_step=None)
        keyed = suites.suite_column(
            fallback.set_index(["model", "task"]).loc[lacking].reset_index(), frames.units)
        means = pd.concat([means, keyed], ignore_index=True)
        note = (
            f'<p class="warn">No checkpoint at step ≥ {options.mean_size_min_step} for '
            + esc(", ".join(f"{m}/{t}" for m, t in lacking))
            + ": their mean is over every checkpoint.</p>"
        )
    size_html = (
        f"<p>{uncertainty.NO_BAND_SETS}</p>"
        + png_image(figures.circuit_size_figure(sizes), options.dpi, "circuit size")
        + f"<h3>Mean circuit size (steps ≥ {options.mean_size_min_step})</h3>"
        + html_table(means)
        + note
    )
    return size_html, suites.scaling_html(means)


def _stability_section(frames: ReportFrames, options: ReportOptions) -> str:
    similarities = {}
    steps = frames.circuits if has_columns(frames.circuits, "model", "task", "step") else None
    kwargs = dict(checkpoints=options.jaccard_checkpoints, all_steps=steps)
    if has_columns(frames.edges, "model", "task", "step", "edge", "in_circuit"):
        similarities["edges"] = analyses.edge_jaccard(frames.edges, **kwargs)
    if has_columns(frames.nodes, "model", "task", "step", "node", "in_circuit"):
        similarities["nodes"] = analyses.node_jaccard(frames.nodes, **kwargs)
    similarities = {k: v for k, v in similarities.items() if not v.empty}
    if not similarities:
        return '<p class="muted">No model has two analysed checkpoints with stored circuits.</p>'
    tokens = analyses.step_tokens(frames.units, frames.circuits, frames.task_metrics)
    params = frames.circuits if has_columns(frames.circuits, "params") else frames.units
    figure = figures.jaccard_figure(similarities, tokens, params=params)
    rows = []
    for kind, frame in similarities.items():
        for (model, task), group in frame.groupby(["model", "task"], sort=False):
            ewma = group.sort_values("step_from")["jaccard_ewma"].to_numpy()
            rows.append({"set": kind, "model": model, "task": task, "pairs": len(ewma),
                         "mean": ewma.mean(), "min": ewma.min(),
                         "mean after first 5": ewma[5:].mean() if len(ewma) > 5 else np.nan,
                         "final": ewma[-1]})  # fmt: skip
    return (
        "<p>Jaccard similarity of the in-circuit edge and node sets of consecutive analysed "
        "checkpoints, smoothed with an EWMA (α = 0.5, s₀ = J₀); dots are the raw values. "
        f"{uncertainty.NO_BAND_SETS}</p>"
        + png_image(figure, options.dpi, "EWMA Jaccard")
        + "<h3>Summary of the smoothed series</h3>"
        + html_table(suites.suite_column(pd.DataFrame(rows), frames.units))
    )


def _faithfulness_section(frames: ReportFrames, options: ReportOptions) -> str:
    if not has_columns(frames.circuits, "model", "task", "step", "n_nodes", "n_edges"):
        return '<p class="muted">No circuits in the store.</p>'
    sizes = analyses.circuit_size(frames.circuits)
    threshold = (
        float(frames.circuits["threshold"].dropna().iloc[0])
        if has_columns(frames.circuits, "threshold") and frames.circuits["threshold"].notna().any()
        else None
    )
    curve = uncertainty.faithfulness_bands(frames, sizes, options)
    drawn = curve.rename(columns={"value": "faithfulness"}).merge(
        sizes.drop_duplicates(["model", "task", "step"]).drop(
            columns=["faithfulness", "params", "tokens_seen"], errors="ignore"),
        on=["model", "task", "step"], how="left")  # fmt: skip
    undrawn = sizes[sizes["faithfulness"].isna()]  # keeps a panel for an undefined task
    if has_columns(frames.units, "model"):
        base = analyses.seed_map(frames.units).set_index("model")["base_model"]
        undrawn = undrawn.assign(model=undrawn["model"].map(base).fillna(undrawn["model"]))
    drawn = pd.concat([drawn, undrawn], ignore_index=True)
    figure = figures.faithfulness_figure(drawn, frames.curves, threshold=threshold, bands=curve)
    undefined = sizes[sizes["faithfulness"].isna()]
    counts = undefined.groupby(["model", "task"]).size().rename("undefined checkpoints")
    note = (
        '<p class="warn">Faithfulness is undefined (the clean metric is 0) or missing at:</p>'
        + html_table(counts.reset_index())
        if not undefined.empty
        else "<p>Faithfulness is defined at every checkpoint.</p>"
    )
    return (
        "<p>faithfulness = metric(circuit) / metric(clean model) (PAPER.md §3.4); the dashed "
        "line is the search threshold. "
        + uncertainty.band_caption(curve, options, "the circuit run and the clean run are "
                                   "resampled jointly and the statistic is the ratio of their "
                                   "means")
        + " The y axis spans the curves: a band that leaves it (a ratio whose denominator is "
        "near 0) is clipped; its bounds are in the table below."
        + " The bottom row (faithfulness versus circuit size at the last checkpoint) has no "
        "interval: per-prompt metrics are stored for the empty and the found circuit only, not "
        "for every size of the curve.</p>"
        + png_image(figure, options.dpi, "faithfulness") + uncertainty.curve_table(curve) + note
    )


def _diagrams_section(frames: ReportFrames, options: ReportOptions) -> str:
    edges = frames.edges
    if not has_columns(edges, "model", "task", "step", "parent", "child", "score", "in_circuit"):
        return '<p class="muted">No stored edges to draw.</p>'
    blocks: dict[tuple[str, str], list[str]] = {}
    for model, task, step, figure in figures.circuit_diagrams(
        edges, units=frames.units, per_series=options.diagrams_per_series
    ):
        blocks.setdefault((model, task), []).append(
            png_image(figure, options.dpi, f"{model} {task} step {step}", grid=True)
        )
    return (
        "<p>In-circuit edges drawn by layer (input at the bottom, logits at the top; each "
        "layer's heads in a row, its MLP on the right). Blue: positive score, red: negative; "
        "width ∝ |score|. Click a model and task to open or close it.</p>"
        + "".join(
            f"<details{' open' if i == 0 else ''}><summary>{esc(m)} — {esc(t)} "
            f'({len(images)} checkpoints)</summary><div class="grid">{"".join(images)}</div>'
            "</details>"
            for i, ((m, t), images) in enumerate(blocks.items())
        )
    )


COMPONENT_PANELS: tuple[tuple[str, str], ...] = (
    ("successor", "greater-than"), ("induction", "greater-than"), ("name_mover", "ioi"),
    ("copy_suppression", "ioi"), ("negative_name_mover", "ioi"), ("s_inhibition", "ioi"),
)  # fmt: skip
"""(component, linked task) panels of Figures 2 and 3, in order (PAPER.md §4)."""


def _components_section(frames: ReportFrames, options: ReportOptions) -> str:
    from circuit_atlas.components import figures as component_figures

    heads, scores = frames.component_heads, frames.component_scores
    parts = []
    if has_columns(heads, "model", "step", "task", "component", "layer", "head", "in_circuit"):
        present = set(zip(heads["component"], heads["task"], strict=True))
        panels = [p for p in COMPONENT_PANELS if p in present]
        tokens = analyses.step_tokens(frames.units, frames.circuits, frames.task_metrics,
                                      scores)  # fmt: skip
        params = frames.units if has_columns(frames.units, "model", "params") else None
        figure = component_figures.representative_heads_figure(
            heads, tokens, panels, params=params, frac=options.component_frac,
            rule=options.component_rule,
        )  # fmt: skip
        chosen = pd.concat(
            [analyses.representative_heads(heads, component=c, task=t,
                                           frac=options.component_frac,
                                           rule=options.component_rule).assign(component=c)
             for c, t in panels], ignore_index=True,
        )  # fmt: skip
        sizes = frames.units if has_columns(frames.units, "model", "params") else heads
        largest = [m for m in analyses.model_order(sizes) if m in set(heads["model"])][-1]
        parts += [
            f"<p>Figure 2: per component type, the score of each model's representative head "
            f"over training: among heads reaching {options.component_frac:g} × the model's "
            f"maximum score and in the linked task's circuit at some checkpoint, the one chosen "
            f"by rule <code>{esc(options.component_rule)}</code> (PAPER.md §4; "
            "docs/components.md). The threshold is relative: <code>ever_component</code> says "
            "whether the head ever passes the paper's absolute rule (e.g. copy score above 10%); "
            "where it is False the model has no such component and the line shows noise. No "
            "interval: a component score is stored as one value per head and checkpoint, without "
            "its per-prompt values.</p>",
            png_image(figure, options.dpi, "component scores, representative heads"),
            html_table(chosen, empty="No in-circuit head passes the threshold."),
            f"<h3>Figure 3: the most frequently in-circuit heads of {esc(largest)}</h3>",
            png_image(component_figures.component_heads_figure(heads, tokens, largest, panels),
                   options.dpi, f"component heads of {largest}"),  # fmt: skip
        ]
    if has_columns(scores, "model", "step", "component", "score"):
        last = scores[scores["step"] == scores.groupby("model")["step"].transform("max")]
        summary = last.groupby(["model", "component"])["score"].agg(["max", "mean"])
        parts += ["<h3>Whole-model scores at each model's last checkpoint</h3>",
                  html_table(summary.reset_index())]  # fmt: skip
    if not parts:
        return '<p class="muted">No component scores in the store.</p>'
    return "".join(parts)


def _versions_section(frames: ReportFrames, versions: Mapping[str, Any] | None) -> str:
    found: dict[str, set[str]] = {}
    if has_columns(frames.units, "versions"):
        for text in frames.units["versions"].dropna().unique():
            try:
                for key, value in json.loads(text).items():
                    found.setdefault(key, set()).add(str(value))
            except (TypeError, json.JSONDecodeError, AttributeError):
                found.setdefault("unparsed", set()).add(str(text))
    rows = [{"package": k, "version": v} for k, v in (versions or {}).items()]
    rows.append({"package": "circuit_atlas (report writer)", "version": circuit_atlas.__version__})
    rows += [{"package": f"{k} (recorded with units)", "version": ", ".join(sorted(v))}
             for k, v in sorted(found.items())]  # fmt: skip
    return html_table(pd.DataFrame(rows))


def _config_section(frames: ReportFrames, config_text: str | None) -> str:
    if config_text is not None:
        return f"<pre>{esc(config_text)}</pre>"
    if has_columns(frames.units, "settings"):
        settings = frames.units["settings"].dropna().unique()
        if len(settings):
            try:
                shown = json.dumps(json.loads(settings[0]), indent=2, sort_keys=True)
            except (TypeError, json.JSONDecodeError):
                shown = str(settings[0])
            return (
                '<p class="muted">No study configuration was passed; the settings recorded with '
                f"the units follow ({len(settings)} distinct).</p><pre>{esc(shown)}</pre>"
            )
    return '<p class="muted">No study configuration was passed.</p>'


def write_report(
    store_or_frames: Any,
    out_path: str | os.PathLike[str],
    *,
    config_text: str | None = None,
    versions: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    title: str = "circuit-atlas report",
    options: ReportOptions | None = None,
) -> Path:
    """Write the study's report as one self-contained HTML file.

    Args:
        store_or_frames: A ``ResultsStore``, a store directory, a mapping table name → DataFrame
            (``units``, ``task_metrics``, ``circuits``, ``edges``, ``nodes``, ``curves`` /
            ``faithfulness``; any may be missing), or a :class:`ReportFrames`.
        out_path: The HTML file to write (its directory is created).
        config_text: The study configuration as text (TOML/YAML), shown verbatim.
        versions: Package → version to list (the versions recorded with units are added).
        notes: Free-form notes shown near the top (e.g. which tasks used a curriculum).
        title: Page title.
        options: :class:`ReportOptions` (defaults: emergence at 0.8 of the final value, etc.).

    Returns:
        The path written.

    Raises:
        AnalysisError: If ``store_or_frames`` cannot be read.
        circuit_atlas.errors.StoreError: If a store directory is invalid.
    """
    from circuit_atlas import report_algorithm as algorithm
    from circuit_atlas.report_mib import mib_section

    options = options or ReportOptions()
    frames = ReportFrames.load(store_or_frames)
    circuits, excluded = _faithful_frames(frames, options)
    metric_emergence, size_emergence = _emergence(circuits, options)
    size_html, scaling_html = _size_section(circuits, options)
    notes_html = (
        "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"
        if notes
        else '<p class="muted">No notes.</p>'
    )
    bodies = {
        "notes": notes_html,
        "integrity": _integrity_section(frames),
        "performance": _performance_section(frames, options, metric_emergence),
        "emergence": _emergence_section(metric_emergence, size_emergence, options),
        "not-emerged": _not_emerged_section(frames, metric_emergence),
        "circuit-size": excluded + size_html,
        "stability": excluded + _stability_section(circuits, options),
        "seeds": uncertainty.seeds_section(frames, metric_emergence, circuits),
        "scaling": scaling_html,
        "faithfulness": _faithfulness_section(frames, options),
        "mib": mib_section(frames),
        "diagrams": _diagrams_section(circuits, options),
        "components": _components_section(frames, options),
        "algorithm": algorithm.algorithm_section(frames, options),
        "algorithm-circuit": algorithm.role_circuit_section(circuits, options),
        "algorithm-stability": algorithm.stability_section(frames, circuits, options),
        "self-repair": algorithm.self_repair_section(frames, options),
        "config": _config_section(frames, config_text),
        "versions": _versions_section(frames, versions),
    }
    summary = summary_section(frames, metric_emergence, options)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    explorer = (  # written next to the report by `circuit-atlas explore` or the demo
        '<p><a href="explorer.html">Open the interactive circuit explorer</a> (checkpoints, '
        "sizes, roles; docs/explorer.md).</p>"
        if (Path(out_path).parent / "explorer.html").is_file() else ""
    )
    contents = "".join(f'<li><a href="#{k}">{esc(v)}</a></li>' for k, v in SECTIONS.items())
    sections = "".join(
        f'<section id="{k}"><h2>{esc(SECTIONS[k])}</h2>{bodies[k]}</section>' for k in SECTIONS
    )
    document = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="muted">Generated {generated} by circuit-atlas '
        f"{esc(circuit_atlas.__version__)}.</p>{explorer}"
        f'<section id="summary"><h2>Summary</h2>{summary}</section>'

        f"<nav><ol>{contents}</ol></nav>{sections}</body></html>\n"
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    logger.info("wrote report %s (%d bytes)", out, len(document))
    return out
