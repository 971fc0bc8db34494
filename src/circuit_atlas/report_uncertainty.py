"""The report's intervals: bands on Figure 1 and the faithfulness curves, and the seed section.

Every plotted curve point gets one band (docs/uncertainty.md):

* a model trained once: the percentile bootstrap interval over prompts
  (:func:`~circuit_atlas.analyses.uncertainty.bootstrap_ci`; ``ReportOptions.bootstrap_*``)
  from the per-prompt metrics of the ``prompt_metrics`` table;
* a base model with several seeds: the curve is the mean over seeds, the band the min–max over
  seeds (three seeds give too few values for a standard deviation to mean much);
* no band where neither exists (units older than schema v6, an undefined faithfulness), and
  the caption says so.

The seed section puts the spread of emergence points over seeds and the Jaccard between
seeds at the same step next to the Jaccard between consecutive steps of one seed
(:mod:`circuit_atlas.analyses.seeds`).
"""

from __future__ import annotations

import pandas as pd

from circuit_atlas import analyses
from circuit_atlas.analyses._frames import sort_series
from circuit_atlas.report_frames import ReportFrames, ReportOptions, esc, has_columns, html_table

__all__ = ["BAND_KINDS", "NO_BAND_SETS", "band_caption", "curve_bands", "curve_table",
           "faithfulness_bands", "performance_bands", "seeds_section"]

BAND_KINDS: dict[str, str] = {
    "bootstrap": "bootstrap CI over prompts",
    "seeds": "min–max over seeds (line: mean over seeds)",
    "none": "no interval",
}
"""The ``band`` column of :func:`curve_bands` → what the shaded band around a point is."""

NO_BAND_SETS = ("No interval: a circuit is one set of edges and nodes per checkpoint, found on "
                "all the prompts together, not a mean over prompts; its run-to-run spread is in "
                "the Seeds section when the study has seeds.")
"""Caption sentence of the figures of circuit sets (size, Jaccard), which have no band."""

_CURVE = ["model", "params", "task", "step", "tokens_seen", "value", "ci_low", "ci_high", "band",
          "n_seeds"]


def _multi_seed(units: pd.DataFrame) -> pd.DataFrame:
    """:func:`~circuit_atlas.analyses.seed_map` rows of base models with two or more seeds."""
    if not has_columns(units, "model"):
        return pd.DataFrame(columns=list(analyses.SEED_COLUMNS))
    seeds = analyses.seed_map(units)
    counts = seeds.groupby("base_model")["model"].transform("nunique")
    return seeds[counts >= 2]


def curve_bands(points: pd.DataFrame, intervals: pd.DataFrame, units: pd.DataFrame
                ) -> pd.DataFrame:
    """One value and one band per plotted point: bootstrap, seed min–max, or none.

    Args:
        points: ``model``, ``task``, ``step``, ``tokens_seen``, ``value`` (and ``params``), one
            row per model × task × step.
        intervals: ``model``, ``task``, ``step``, ``ci_low``, ``ci_high`` (bootstrap intervals
            of the same value; may be empty).
        units: The ``units`` table (seeds); may be empty.

    Returns:
        Columns ``model`` (the base model where several seeds are averaged), ``params``,
        ``task``, ``step``, ``tokens_seen``, ``value``, ``ci_low``, ``ci_high``, ``band`` (a key
        of :data:`BAND_KINDS`) and ``n_seeds``.
    """
    points = points.dropna(subset=["value"])
    if "params" not in points.columns:
        points = points.assign(params=pd.NA)
    multi = _multi_seed(units)
    seeded = points[points["model"].isin(set(multi["model"]))]
    single = points[~points["model"].isin(set(multi["model"]))]
    if not intervals.empty:
        single = single.merge(intervals[["model", "task", "step", "ci_low", "ci_high"]],
                              on=["model", "task", "step"], how="left")
    else:
        single = single.assign(ci_low=float("nan"), ci_high=float("nan"))
    single = single.assign(band=lambda f: f["ci_low"].notna().map({True: "bootstrap",
                                                                   False: "none"}),
                           n_seeds=1)  # fmt: skip
    parts = [single[_CURVE]]
    if not seeded.empty:
        spread = analyses.across_seeds(seeded, "value", units)
        params = seeded.merge(multi, on="model").groupby("base_model")["params"].max()
        parts.append(spread.assign(
            value=spread["mean"], ci_low=spread["min"], ci_high=spread["max"],
            band=lambda f: (f["n_seeds"] >= 2).map({True: "seeds", False: "none"}),
            params=spread["model"].map(params))[_CURVE])
    out = pd.concat([p for p in parts if not p.empty], ignore_index=True) \
        if any(not p.empty for p in parts) else pd.DataFrame(columns=_CURVE)
    out.loc[out["band"] == "none", ["ci_low", "ci_high"]] = float("nan")
    return sort_series(out[_CURVE], extra=("step",))


def _bootstrap_kwargs(options: ReportOptions) -> dict:
    return dict(n_resamples=options.bootstrap_resamples, seed=options.bootstrap_seed,
                level=options.ci_level)


def performance_bands(frames: ReportFrames, perf: pd.DataFrame,
                      options: ReportOptions) -> pd.DataFrame:
    """Figure 1's points (``clean_metric`` rows of ``perf``) with their bands.

    See :func:`curve_bands`; the bootstrap is of the clean run's mean metric.
    """
    points = perf[perf["metric"] == "clean_metric"]
    intervals = pd.DataFrame()
    if has_columns(frames.prompt_metrics, "model", "task", "step", "run", "example", "metric"):
        intervals = analyses.metric_intervals(frames.prompt_metrics, run="clean",
                                              **_bootstrap_kwargs(options))
    return curve_bands(points, intervals, frames.units)


def faithfulness_bands(frames: ReportFrames, sizes: pd.DataFrame,
                       options: ReportOptions) -> pd.DataFrame:
    """The faithfulness-over-training points of ``sizes`` with their bands (ratio kind)."""
    points = sizes.rename(columns={"faithfulness": "value"})
    intervals = pd.DataFrame()
    if has_columns(frames.prompt_metrics, "model", "task", "step", "run", "example", "metric"):
        intervals = analyses.faithfulness_intervals(
            frames.prompt_metrics, kind="ratio", defined=frames.circuits,
            **_bootstrap_kwargs(options))  # fmt: skip
    return curve_bands(points[[c for c in ("model", "params", "task", "step", "tokens_seen",
                                           "value") if c in points.columns]],
                       intervals, frames.units)  # fmt: skip


def band_caption(curve: pd.DataFrame, options: ReportOptions, what: str) -> str:
    """A sentence per kind of band drawn in a figure, and why points lack one."""
    if curve.empty:
        return "No interval: there is no defined value to draw."
    kinds = set(curve["band"])
    parts = []
    if "bootstrap" in kinds:
        parts.append(
            f"Shaded: {options.ci_level:.0%} percentile bootstrap interval over prompts "
            f"({options.bootstrap_resamples} resamples of the prompts with replacement, seed "
            f"{options.bootstrap_seed}; {what}).")
    if "seeds" in kinds:
        parts.append("For a model with several training seeds the line is the mean over seeds "
                     "and the shaded band the min–max over seeds (not a confidence interval; "
                     "per-seed emergence is in the Seeds section).")
    if "none" in kinds:
        lacking = curve[curve["band"] == "none"]
        parts.append(
            "No interval at " + esc(", ".join(sorted(f"{m}/{t}" for m, t in set(
                zip(lacking["model"], lacking["task"], strict=True))))) +
            ": those units store no per-prompt metrics (written before results schema v6, or "
            "by an engine that does not return them), or a single seed.")
    return " ".join(parts)


def curve_table(curve: pd.DataFrame) -> str:
    """The plotted values and bands as a collapsible table (the figure's data)."""
    shown = curve.assign(band=curve["band"].map(BAND_KINDS))
    return (f"<details><summary>The plotted values and intervals ({len(shown)} rows)</summary>"
            + html_table(shown.drop(columns=["params"]), max_rows=None) + "</details>")


def seeds_section(frames: ReportFrames, metric_emergence: pd.DataFrame,
                  circuits: ReportFrames) -> str:
    """Spread of emergence points over seeds, and Jaccard between seeds next to over steps.

    Args:
        frames: Every table.
        metric_emergence: Per-seed-model emergence of the task metric
            (:func:`~circuit_atlas.analyses.emergence_table`).
        circuits: The frames restricted to faithful circuits (as the stability section); when
            no seeded model has one, every stored circuit is used and the page says so.

    Returns:
        The section's HTML.
    """
    multi = _multi_seed(frames.units)
    if multi.empty:
        return ('<p class="muted">One training run per model: no spread across seeds. A study '
                "with <code>seeds = [0, 1, 2]</code> (docs/study.md) shows it here.</p>")
    parts = [
        "<p>Base models with several seeds: "
        + esc(", ".join(f"{b} ({n} seeds)" for b, n in
                        multi.groupby("base_model")["model"].nunique().items()))
        + ".</p>",
    ]
    seeded_models = set(multi["model"])
    if not metric_emergence.empty:
        spread = analyses.emergence_across_seeds(
            metric_emergence[metric_emergence["model"].isin(seeded_models)], frames.units)
        parts += ["<h3>Emergence of the task metric across seeds</h3>",
                  "<p>Per base model and task: how many seeds emerged, and the mean, standard "
                  "deviation (over seeds, ddof = 1), min and max of the emergence step and "
                  "tokens seen over the seeds that emerged.</p>", html_table(spread)]
    note = ""
    faithful = set(circuits.circuits["model"]) if has_columns(circuits.circuits, "model") \
        else set()
    if not faithful & seeded_models and has_columns(frames.circuits, "model"):
        circuits = frames
        note = ('<p class="warn">No seed has a faithful circuit at any checkpoint: the Jaccard '
                "below is over every stored circuit, the fallback circuits of undefined "
                "faithfulness included (they say little about a mechanism).</p>")
    rows = []
    for label, table, item in (("edges", circuits.edges, "edge"), ("nodes", circuits.nodes,
                                                                   "node")):
        if not has_columns(table, "model", "task", "step", item, "in_circuit"):
            continue
        steps = circuits.circuits if has_columns(circuits.circuits, "model", "task", "step") \
            else None
        jac = analyses.seed_jaccard(table[table["model"].isin(seeded_models)], frames.units,
                                    item=item, all_steps=None if steps is None else
                                    steps[steps["model"].isin(seeded_models)])  # fmt: skip
        rows.append(jac.assign(set=label))
    if rows:
        jac = pd.concat(rows, ignore_index=True)
        summary = jac.groupby(["set", "model", "task"], sort=False).agg(
            seed_jaccard=("seed_jaccard", "mean"), step_jaccard=("step_jaccard", "mean"),
            checkpoints=("step", "count")).reset_index()
        parts += [
            "<h3>Seed-vs-step Jaccard</h3>",
            "<p><code>seed_jaccard</code>: Jaccard similarity of the in-circuit sets of two "
            "seeds at the same step (mean over seed pairs; min and max over pairs). "
            "<code>step_jaccard</code>: Jaccard between a seed's circuit and its circuit at the "
            "previous analysed step (mean over seeds). A change between steps no larger than "
            "the difference between seeds is within run-to-run noise.</p>", note,
            html_table(summary), f"<details><summary>Per step ({len(jac)} rows)</summary>",
            html_table(jac[["set", "model", "task", "step", "n_seeds", "n_pairs",
                            "seed_jaccard", "seed_jaccard_min", "seed_jaccard_max",
                            "step_jaccard", "step_jaccard_std"]], max_rows=None),
            "</details>",
        ]
    else:
        parts.append('<p class="muted">No stored circuits: no seed-vs-step Jaccard.</p>')
    return "".join(parts)
