"""The report's sections on the IOI algorithm: Figure 4, fingerprints, self-repair.

Definitions in docs/algorithm.md. Called by :func:`circuit_atlas.report.write_report`; each
function takes the report's frames and options and returns an HTML fragment. Undefined values
are gaps in the figures and the reason is stated in a table next to them.
"""

from __future__ import annotations

import pandas as pd

from circuit_atlas import analyses
from circuit_atlas.report_frames import (
    ReportFrames,
    ReportOptions,
    esc,
    has_columns,
    html_table,
    png_image,
)

__all__ = ["REASONS", "algorithm_section", "role_circuit_section", "self_repair_section",
           "stability_section"]  # fmt: skip

REASONS = {
    "gap_too_small": "the clean–corrupted logit difference is within noise",
    "no_faithful_circuit": "no faithful IOI circuit (the % is relative to its heads)",
    "no_name_movers": "no name mover (copy score > 10 % and negative direct effect)",
    "no_pure_s_inhibition": "no S-inhibition head that is not also a CS head",
    "total_effect_too_small": "the summed effect of the denominator heads is ~0",
    "no_attribution": "no circuit attribution for the task in this unit",
    "zero_attribution": "every attribution is 0",
}
"""Reason code → what it means, for the page."""


def _explain(frame: pd.DataFrame, column: str = "reason") -> pd.DataFrame:
    return frame.assign(meaning=frame[column].map(lambda r: REASONS.get(str(r), str(r))))


def algorithm_section(frames: ReportFrames, options: ReportOptions) -> str:
    """Figure 4 B–D over tokens seen, one line per model, with the undefined points explained."""
    from circuit_atlas.components.algorithm.figures import algorithm_figure

    algo = frames.algorithm
    if not has_columns(algo, "model", "task", "panel", "step", "tokens_seen", "pct_effect"):
        return '<p class="muted">No IOI algorithm decomposition in the store (the unit analysis ' \
               "<code>algorithm</code> with the <code>ioi</code> task).</p>"
    series = analyses.algorithm_series(algo)
    params = frames.units if has_columns(frames.units, "model", "params") else None
    denominators = ", ".join(sorted(set(algo["denominator"].dropna()))) or "?"
    parts = [
        "<p>Per checkpoint, the % of each path-patching effect carried by the heads of one role "
        "(PAPER.md §5): B — direct effects into the final residual stream, carried by name "
        "movers, negative name movers, copy-suppression and negative copy-suppression heads; "
        "C — effects through the name movers' queries, carried by the S-inhibition heads; D — "
        "effects through the pure S-inhibition heads' values, carried by induction and "
        f"duplicate-token heads. Denominator: <code>{esc(denominators)}</code> (Σ effect of "
        "the IOI circuit's heads, or of all heads; docs/algorithm.md). Gaps are undefined "
        f"points (table below). {_interval_caption(series)}</p>",
        png_image(algorithm_figure(series, params=params), options.dpi, "Figure 4 B-D"),
    ]
    with_ci = series[series["ci_low"].notna()]
    if not with_ci.empty:
        cols = [c for c in ("model", "panel", "step", "tokens_seen", "pct_effect", "ci_low",
                            "ci_high", "n_examples") if c in with_ci.columns]  # fmt: skip
        parts.append(f"<details><summary>The plotted values and intervals ({len(with_ci)} rows)"
                     "</summary>" + html_table(with_ci[cols], max_rows=None) + "</details>")
    undefined = series[series["pct_effect"].isna()]
    if not undefined.empty:
        counts = (undefined.groupby(["model", "panel", "reason"], dropna=False)["step"]
                  .agg(checkpoints="count", steps=lambda s: ", ".join(map(str, sorted(s))))
                  .reset_index())  # fmt: skip
        parts += ["<h3>Undefined points</h3>", html_table(_explain(counts))]
    else:
        parts.append("<p>Every point is defined.</p>")
    last = series[series["step"] == series.groupby("model")["step"].transform("max")]
    wide = last.pivot_table(index=["model", "step"], columns="panel", values="pct_effect",
                            aggfunc="first", dropna=False).reset_index()  # fmt: skip
    wide.columns.name = None
    parts += ["<h3>% effect at each model's last checkpoint</h3>", html_table(wide)]
    return "".join(parts)


def _interval_caption(series: pd.DataFrame) -> str:
    """What the Figure 4 bars are, and which defined points have none and why."""
    from circuit_atlas.components.algorithm.intervals import CI_REASONS

    defined = series[series["pct_effect"].notna()]
    with_ci = defined[defined["ci_low"].notna()]
    parts = []
    if not with_ci.empty:
        resamples = ", ".join(str(int(r)) for r in sorted(set(with_ci["ci_n_resamples"].dropna())))
        seeds = ", ".join(str(int(r)) for r in sorted(set(with_ci["ci_seed"].dropna())))
        parts.append(
            "Vertical bars: 95 % percentile bootstrap interval over prompts, computed when the "
            f"unit ran ({resamples or '?'} resamples of the IOI prompts with replacement, seed "
            f"{seeds or '?'}); each resample recomputes the share as the ratio of its mean "
            "summed effect of the role's heads to its mean summed effect of the denominator "
            "heads (numerator and denominator on the same prompts), with the heads of each "
            "role fixed (docs/uncertainty.md).")
    lacking = defined[defined["ci_low"].isna()]
    if not lacking.empty:
        why = []
        for reason, part in lacking.groupby(lacking["ci_reason"].fillna("not_computed")):
            what = ", ".join(sorted({f"{m}/{p}" for m, p in zip(part["model"], part["panel"],
                                                                  strict=True)}))  # fmt: skip
            why.append(f"{esc(what)}: {esc(CI_REASONS.get(str(reason), str(reason)))}")
        parts.append("No interval at " + "; ".join(why) + ".")
    if defined.empty:
        parts.append("No interval: no share is defined.")
    return " ".join(parts)


def role_circuit_section(frames: ReportFrames, options: ReportOptions) -> str:
    """Figure 4A: each model's IOI circuit at its last checkpoint, heads coloured by role.

    ``frames`` should hold only faithful minimal circuits (the report's restricted frames).
    """
    from circuit_atlas.components.algorithm.figures import role_diagram
    from circuit_atlas.figures import _unit_shapes

    heads, edges = frames.algorithm_heads, frames.edges
    if not has_columns(heads, "model", "step", "node", "role") or not has_columns(
            edges, "model", "task", "step", "parent", "child", "score"):  # fmt: skip
        return '<p class="muted">No IOI circuit with head roles in the store.</p>'
    edges = edges[(edges["task"] == "ioi") & edges["in_circuit"].astype(bool)]
    shapes = _unit_shapes(frames.units)
    parts, rows = [], []
    for model in analyses.model_order(heads):
        steps = set(heads.loc[heads["model"] == model, "step"]) & set(
            edges.loc[edges["model"] == model, "step"])  # fmt: skip
        final = heads.loc[heads["model"] == model, "step"].max()
        if not steps:
            rows.append({"model": model, "drawn step": None, "last step": final,
                         "note": "no faithful IOI circuit at any checkpoint"})
            continue
        step = max(steps)
        mine = heads[(heads["model"] == model) & (heads["step"] == step)]
        roles = dict(zip(mine["node"], mine["role"].where(mine["role"].notna(), None),
                         strict=True))  # fmt: skip
        part = edges[(edges["model"] == model) & (edges["step"] == step)]
        unit = part["unit_id"].iloc[0] if "unit_id" in part.columns else None
        n_layers, n_heads = shapes.get(unit, (None, None))
        figure = role_diagram(part, roles, n_layers=n_layers, n_heads=n_heads,
                              title=f"{model} · ioi · step {step} · {len(part)} edges")
        parts.append(png_image(figure, options.dpi, f"{model} IOI circuit by role", grid=True))
        named = mine[mine["role"].notna()]
        rows.append({"model": model, "drawn step": step, "last step": final,
                     "note": "" if step == final else "the last checkpoint has no faithful "
                     "circuit; the latest faithful one is drawn",
                     **{role: ", ".join(named.loc[named["role"] == role, "node"])
                        for role in sorted(set(named["role"]))}})  # fmt: skip
    return (
        "<p>The IOI circuit (in-circuit edges, as in the circuit diagrams) of each model's last "
        "checkpoint with a faithful circuit; heads are coloured by their role in the algorithm "
        "(first role in the order name mover, copy suppression, negative name mover, negative "
        "copy suppression, S-inhibition, tertiary). Roles are whole-model: a head with a role "
        "need not be in the circuit.</p>"
        f'<div class="grid">{"".join(parts)}</div>' + html_table(pd.DataFrame(rows))
    )


def stability_section(frames: ReportFrames, circuits: ReportFrames,
                      options: ReportOptions) -> str:  # fmt: skip
    """Fingerprint similarity next to the circuit Jaccard, stability table, cross-size table."""
    from circuit_atlas.components.algorithm.figures import fingerprint_stability_figure

    fps = frames.fingerprints
    if not has_columns(fps, "model", "task", "step", "tokens_seen", "role", "share", "reason"):
        return '<p class="muted">No algorithm fingerprints in the store.</p>'
    previous = analyses.fingerprint_similarity_over_time(fps, reference="previous")
    final = analyses.fingerprint_similarity_over_time(fps, reference="final")
    jaccard = None
    if has_columns(circuits.nodes, "model", "task", "step", "node", "in_circuit"):
        keyed = has_columns(circuits.circuits, "model", "task", "step")
        steps = circuits.circuits if keyed else None
        jaccard = analyses.node_jaccard(circuits.nodes, all_steps=steps)
    tokens = analyses.step_tokens(frames.units, frames.circuits, frames.task_metrics, fps)
    params = frames.units if has_columns(frames.units, "model", "params") else None
    figure = fingerprint_stability_figure(jaccard, previous, final, tokens, params=params)
    table = analyses.fingerprint_table(fps)
    undefined = table[table["shares"].isna()]
    parts = [
        "<p>The fingerprint of a checkpoint is the share of the task's total-effect attribution "
        "(Σ|EAP-IG score| of each node's outgoing edges) carried by each role — IOI: the "
        "algorithm's roles, MLPs and other heads; Greater-Than: successor heads, induction "
        "heads, MLPs and other heads. Similarity = 1 − ½ Σ|p − q| (1: same profile). Left: the "
        "heads of the circuit (node Jaccard, Figure 5); right: the algorithm.</p>",
        png_image(figure, options.dpi, "fingerprint similarity next to circuit Jaccard"),
        "<h3>Stability of the algorithm (similarity to the final checkpoint ≥ 0.9)</h3>",
        html_table(analyses.algorithm_stability(final), empty="No defined fingerprints."),
        "<h3>Across sizes at matched tokens seen</h3>",
        html_table(analyses.cross_size_table(analyses.fingerprint_similarity_across_sizes(fps)),
               empty="Fewer than two models with fingerprints of the same task."),
    ]
    if not undefined.empty:
        counts = (undefined.groupby(["model", "task", "reason"])["step"]
                  .agg(checkpoints="count", steps=lambda s: ", ".join(map(str, sorted(s))))
                  .reset_index())  # fmt: skip
        parts += ["<h3>Undefined fingerprints (gaps)</h3>", html_table(_explain(counts))]
    defined = table[table["shares"].notna()]
    if not defined.empty:
        last = defined[defined["step"] == defined.groupby(["model", "task"])["step"]
                       .transform("max")]  # fmt: skip
        wide = pd.DataFrame([{"model": r["model"], "task": r["task"], "step": r["step"],
                              **r["shares"]} for _, r in last.iterrows()])  # fmt: skip
        parts += ["<h3>Fingerprint at each model's last defined checkpoint</h3>", html_table(wide)]
    return "".join(parts)


def self_repair_section(frames: ReportFrames, options: ReportOptions) -> str:
    """Self-repair: ablating the strong name movers, and which heads take over."""
    repair = frames.self_repair
    if not has_columns(repair, "model", "step", "n_ablated", "ablated", "logit_diff_change"):
        return '<p class="muted">No self-repair results in the store.</p>'
    done = repair[repair["n_ablated"] > 0]
    cols = ["model", "step", "ablated", "clean_logit_diff", "ablated_logit_diff",
            "logit_diff_change", "logit_diff_change_pct", "backup_heads"]  # fmt: skip
    none = repair[repair["n_ablated"] == 0].groupby("model").size().rename("checkpoints")
    parts = [
        "<p>Name movers with copy score ≥ 75 % are zero-ablated on the clean IOI prompts "
        "(utils/backup_analysis.py); the logit difference changes by ablated − clean, and a head "
        "whose direct logit attribution rises by at least 10 % of what the ablated heads "
        "contributed is a backup name mover.</p>",
        html_table(done[[c for c in cols if c in done.columns]].sort_values(["model", "step"]),
               empty="No checkpoint has a name mover with copy score ≥ 75 %."),
    ]
    if len(none):
        parts += ["<p class=\"muted\">Checkpoints without such a name mover (nothing ablated):"
                  "</p>", html_table(none.reset_index())]
    return "".join(parts)
