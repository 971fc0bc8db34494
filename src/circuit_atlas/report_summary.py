"""The report's summary: what emerged, when, in which sizes, with intervals; heads; Figure 4.

Shown at the top of the page, before the contents. Every fact is computed from the store by the
same analyses as the section it links to, never restated from elsewhere:

* per task, the models it emerged in (smallest first, :func:`~circuit_atlas.analyses.model_order`)
  with the step and tokens seen of the emergence point — the very table of the "Emergence
  points" section (:func:`~circuit_atlas.analyses.emergence_table`, passed in by
  :func:`~circuit_atlas.report.write_report`) — and the models it did not emerge in, with the
  reason the "Tasks that did not emerge" section gives;
* the final clean metric of each model with its bootstrap interval over prompts
  (:func:`~circuit_atlas.analyses.metric_intervals`, the same resamples, seed and level as
  Figure 1's bands, so the numbers match the plotted table) where the store has per-prompt
  metrics;
* the highest-scoring head of each component type at each model's last checkpoint (the
  ``component_scores`` table, as the components section's last table);
* how many Figure 4 B–D points are defined (:func:`~circuit_atlas.analyses.algorithm_series`).

A missing table is said in words.
"""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd

from circuit_atlas import analyses, figures
from circuit_atlas.figures import format_count
from circuit_atlas.report_algorithm import REASONS
from circuit_atlas.report_frames import ReportFrames, ReportOptions, esc, has_columns, html_table

__all__ = ["format_count", "summary_section"]

def _link(anchor: str, text: str) -> str:
    return f'<a href="#{anchor}">{esc(text)}</a>'


def _number(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "—"


def _source(frames: ReportFrames) -> pd.DataFrame:
    """The first of units, circuits, task metrics that names models (empty when none does)."""
    return next(
        (f for f in (frames.units, frames.circuits, frames.task_metrics)
         if has_columns(f, "model")),
        pd.DataFrame(),
    )  # fmt: skip


def _model_label(model: str, params: pd.Series) -> str:
    size = params.get(model) if params is not None else None
    return f"{model} ({format_count(size)})" if size is not None and pd.notna(size) else model


def _models_line(per_model: pd.DataFrame, tasks: list[str]) -> str:
    """One sentence: the models smallest first, their checkpoints and steps, the tasks."""
    names = [
        f"{r['model']} ({format_count(r['params'])} params)"
        if "params" in per_model.columns and pd.notna(r["params"]) else str(r["model"])
        for _, r in per_model.iterrows()
    ]  # fmt: skip
    counts = per_model["n_checkpoints"]
    checkpoints = (
        f"{int(counts.iloc[0])} checkpoint(s) each" if counts.nunique() == 1
        else f"{int(counts.min())}–{int(counts.max())} checkpoints per model"
    )  # fmt: skip
    first, last = per_model["first_step"].min(), per_model["last_step"].max()
    steps = f", steps {int(first):,}–{int(last):,}" if pd.notna(first) and pd.notna(last) else ""
    return (
        f"{len(per_model)} model(s), smallest first: {esc(', '.join(names))}; {checkpoints}"
        f"{steps}. Tasks: {esc(', '.join(tasks) or 'none')}."
    )


def _final_intervals(frames: ReportFrames, options: ReportOptions) -> pd.DataFrame:
    """Bootstrap interval of the clean metric at each model × task's last checkpoint."""
    metrics, prompts = frames.task_metrics, frames.prompt_metrics
    if not has_columns(metrics, "model", "task", "step", "clean_metric") or not has_columns(
            prompts, "model", "task", "step", "run", "example", "metric"):  # fmt: skip
        return pd.DataFrame(columns=["model", "task", "step", "ci_low", "ci_high"])
    defined = metrics[pd.to_numeric(metrics["clean_metric"], errors="coerce").notna()]
    last = defined.groupby(["model", "task"], as_index=False)["step"].max()
    chosen = prompts.merge(last, on=["model", "task", "step"], how="inner")
    if chosen.empty:
        return pd.DataFrame(columns=["model", "task", "step", "ci_low", "ci_high"])
    return analyses.metric_intervals(chosen, run="clean", n_resamples=options.bootstrap_resamples,
                                     seed=options.bootstrap_seed, level=options.ci_level)


def _rows_by_task(emergence: pd.DataFrame, rank: dict[str, int]) -> dict[str, pd.DataFrame]:
    """The emergence table split by task (sorted by name), each part smallest model first."""
    ordered = emergence.assign(_rank=emergence["model"].map(rank).fillna(len(rank)))
    ordered = ordered.sort_values(["_rank", "model"], kind="stable")
    return {task: ordered[ordered["task"] == task] for task in sorted(emergence["task"].unique())}


def _task_rows(frames: ReportFrames, by_task: dict[str, pd.DataFrame], models: list[str],
               options: ReportOptions) -> tuple[list[str], bool]:
    """The table rows of the tasks (one cell per model), and whether any has an interval."""
    intervals = _final_intervals(frames, options).set_index(["model", "task"])
    kinds = (frames.task_metrics.dropna(subset=["metric_kind"]).drop_duplicates("task")
             .set_index("task")["metric_kind"]
             if has_columns(frames.task_metrics, "task", "metric_kind") else pd.Series())
    out, any_interval = [], False
    for task, rows in by_task.items():
        label = figures.METRIC_LABELS.get(kinds.get(task), "clean metric")
        cells = []
        for model in models:
            found = rows[rows["model"] == model]
            if found.empty:
                cells.append(f'<td data-model="{esc(model)}">—</td>')
                continue
            r = found.iloc[0]
            if r["emerged"]:
                when = f"step {int(r['step']):,}" + (
                    f" ({format_count(r['tokens_seen'])} tokens)"
                    if pd.notna(r["tokens_seen"]) else "")  # fmt: skip
            else:
                when = '<span class="warn">did not emerge</span>'
            final = f"final {_number(float(r['final_value']))}"
            if (model, task) in intervals.index:
                ci = intervals.loc[(model, task)]
                final += f" [{_number(float(ci['ci_low']))}, {_number(float(ci['ci_high']))}]"
                any_interval = True
            cells.append(f'<td data-model="{esc(model)}">{when}<br>{final}</td>')
        n_emerged = int(rows["emerged"].sum())
        out.append(
            f'<tr data-task="{esc(task)}"><th>{esc(task)}<br><span class="muted">{esc(label)}; '
            f"emerged in {n_emerged} of {len(rows)}</span></th>{''.join(cells)}</tr>"
        )
    return out, any_interval


def _not_emerged_item(by_task: dict[str, pd.DataFrame], params: pd.Series | None) -> str:
    """Per task, the models it did not emerge in and why; empty when all emerged everywhere."""
    parts = []
    for task, rows in by_task.items():
        missing = rows[~rows["emerged"]]
        if missing.empty:
            continue
        reasons = "; ".join(f"{_model_label(r['model'], params)}: {r['reason']}"
                            for _, r in missing.iterrows())  # fmt: skip
        where = ("in any model" if len(missing) == len(rows)
                 else f"in {len(missing)} of {len(rows)} models")
        parts.append(f'<li data-task="{esc(task)}"><b>{esc(task)}</b> did not emerge {where} — '
                     f"{esc(reasons)}</li>")
    if not parts:
        return ""
    return ("Did not emerge (" + _link("not-emerged", "Tasks that did not emerge") + "):<ul>"
            + "".join(parts) + "</ul>")


def _best_heads(frames: ReportFrames) -> pd.DataFrame:
    """Per model and component, the highest-scoring head at the model's last checkpoint."""
    scores = frames.component_scores
    if not has_columns(scores, "model", "step", "component", "layer", "head", "score"):
        return pd.DataFrame()
    scores = scores.dropna(subset=["score"])
    last = scores[scores["step"] == scores.groupby("model")["step"].transform("max")]
    if last.empty:
        return pd.DataFrame()
    return last.loc[last.groupby(["model", "component"])["score"].idxmax()]


def _component_rows(best: pd.DataFrame, models: list[str]) -> list[str]:
    """One table row per component type: each model's best head and its score."""
    out = []
    for component in sorted(best["component"].unique()):
        part = best[best["component"] == component].set_index("model")
        cells = "".join(
            f'<td data-model="{esc(m)}">a{int(part.loc[m, "layer"])}.h{int(part.loc[m, "head"])}'
            f" ({part.loc[m, 'score']:.3g})</td>" if m in part.index
            else f'<td data-model="{esc(m)}">—</td>'
            for m in models
        )  # fmt: skip
        out.append(f'<tr data-component="{esc(component)}"><th>'
                   f"{esc(component.replace('_', ' '))}</th>{cells}</tr>")
    return out


def _suites(frames: ReportFrames) -> dict[str, str]:
    """Model → suite when the store holds more than one suite (else empty: nothing to tell)."""
    if not has_columns(frames.units, "model") or frames.units.empty:
        return {}
    suites = analyses.suite_map(frames.units).set_index("model")["suite"]
    return suites.to_dict() if suites.nunique() > 1 else {}


def _summary_table(frames: ReportFrames, by_task: dict[str, pd.DataFrame], best: pd.DataFrame,
                   models: list[str], params: pd.Series | None,
                   options: ReportOptions) -> tuple[str, bool]:
    """The compact table: tasks, then component heads, one column per model.

    With several suites in the store, each model's column header also names its suite.
    """
    task_rows, any_interval = _task_rows(frames, by_task, models, options)
    span = len(models) + 1
    rows = []
    if task_rows:
        rows.append(
            f'<tr class="group"><th colspan="{span}">Task metric: emergence step (tokens seen) '
            "and final value"
            + (f" [{options.ci_level:.0%} bootstrap CI over prompts]" if any_interval else "")
            + " — " + _link("emergence", "Emergence points") + ", "
            + _link("performance", "Figure 1") + "</th></tr>"
        )
        rows += task_rows
    if not best.empty:
        rows.append(
            f'<tr class="group"><th colspan="{span}">Highest-scoring head of each component type '
            "at the model's last checkpoint (score) — " + _link("components", "Figures 2–3")
            + "</th></tr>"
        )
        rows += _component_rows(best, models)
    if not rows:
        return "", any_interval
    suites = _suites(frames)
    header = "".join(
        f"<th>{esc(_model_label(m, params))}"
        + (f'<br><span class="muted">suite {esc(suites[m])}</span>' if m in suites else "")
        + "</th>" for m in models)
    return (f'<div class="table"><table class="data summary"><thead><tr><th></th>{header}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>", any_interval)


def _algorithm_item(frames: ReportFrames) -> str:
    """Whether Figure 4 B–D has defined values, and why not where it has none."""
    where = " (" + _link("algorithm", "Figure 4 B–D") + ")."
    algo = frames.algorithm
    if not has_columns(algo, "model", "task", "panel", "step", "tokens_seen", "pct_effect",
                       "reason"):  # fmt: skip
        return "Figure 4 (the IOI algorithm): no algorithm decomposition in the store" + where
    series = analyses.algorithm_series(algo)
    defined = series["pct_effect"].notna()
    text = f"Figure 4 B–D: {int(defined.sum())} of {len(series)} points defined"
    reasons = Counter(str(r) for r in series.loc[~defined, "reason"])
    if reasons:
        text += "; undefined: " + "; ".join(
            f"{REASONS.get(r, r)} ({n})" for r, n in reasons.most_common())
    return esc(text) + where


def _per_model(source: pd.DataFrame) -> pd.DataFrame:
    stats = {"n_checkpoints": ("step", "nunique"), "first_step": ("step", "min"),
             "last_step": ("step", "max")}  # fmt: skip
    if "params" in source.columns:
        stats = {"params": ("params", "max"), **stats}
    per_model = source.groupby("model").agg(**stats)
    return per_model.reindex(analyses.model_order(source)).reset_index()


def summary_section(frames: ReportFrames, metric_emergence: pd.DataFrame,
                    options: ReportOptions) -> str:
    """The summary at the top of the report (module docstring), as HTML.

    Args:
        frames: Every table of the store.
        metric_emergence: The emergence table of the clean task metric that the "Emergence
            points" section shows (:func:`~circuit_atlas.analyses.emergence_table`).
        options: The report's options (emergence rule, bootstrap settings).

    Returns:
        A sentence on the models and tasks; one compact table, a column per model (smallest
        first) and a row per task and per component type; a few lines on what did not emerge,
        Figure 4 and the intervals, each linking to its section; the checkpoints per model
        (collapsed) and warnings. For a store without results, one sentence saying so.
    """
    source = _source(frames)
    if source.empty:
        return '<p class="warn">The store holds no results: there is nothing to summarise.</p>'
    per_model = _per_model(source)
    order = per_model["model"].tolist()
    params = per_model.set_index("model")["params"] if "params" in per_model.columns else None
    rank = {m: i for i, m in enumerate(order)}
    by_task = _rows_by_task(metric_emergence, rank) if not metric_emergence.empty else {}
    best = _best_heads(frames)
    shown = set(metric_emergence.get("model", [])) | set(best.get("model", []))
    models = [m for m in order if m in shown] + sorted(shown - set(order))
    table, any_interval = _summary_table(frames, by_task, best, models, params, options)
    items = []
    if not by_task:
        items.append("No task metrics in the store: emergence was not assessed ("
                     + _link("emergence", "Emergence points") + ").")
    elif (missing := _not_emerged_item(by_task, params)):
        items.append(missing)
    if best.empty:
        items.append("No component scores in the store ("
                     + _link("components", "Figures 2–3") + ").")
    items.append(_algorithm_item(frames))
    if by_task:
        items.append(
            f"Intervals: {options.ci_level:.0%} percentile bootstrap over prompts at each "
            f"model's last checkpoint ({options.bootstrap_resamples} resamples, seed "
            f"{options.bootstrap_seed}; as Figure 1's bands)." if any_interval
            else "No intervals: the store has no per-prompt metrics for the last checkpoints.")
    tasks = sorted(set(frames.task_metrics.get("task", [])) | set(frames.circuits.get("task", [])))
    notes = ""
    single = per_model.loc[per_model["n_checkpoints"] < 2, "model"].tolist()
    if single:
        notes += (f'<p class="warn">Only one checkpoint for: {esc(", ".join(single))} — no '
                  "stability or emergence over training can be measured for them.</p>")
    if has_columns(frames.units, "weights_fingerprint"):
        duplicates = analyses.identical_weights(frames.units)
        if not duplicates.empty:
            notes += (f'<p class="warn">{len(duplicates)} group(s) of checkpoints hold identical '
                      'weights; see <a href="#integrity">Checkpoint integrity</a>.</p>')
    progress = ("its final value" if options.emergence_baseline == "zero"
                else f"its progress to the final value (baseline: {options.emergence_baseline})")
    return (
        f"<p>{_models_line(per_model, tasks)} A task has emerged at the first checkpoint from "
        f"which its clean metric keeps ≥ {options.emergence_frac:g} of {esc(progress)}.</p>"
        + table + '<ul class="summary">' + "".join(f"<li>{item}</li>" for item in items)
        + "</ul>" + notes
        + "<details><summary>Checkpoints per model</summary>"
        + html_table(per_model, max_rows=None) + "</details>"
    )
