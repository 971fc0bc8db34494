"""Is the algorithm the same over training and scale? Figure 4 B–D and fingerprint similarity.

Pure functions over the store's ``algorithm`` and ``fingerprints`` tables (docs/store.md;
definitions in docs/algorithm.md):

- :func:`algorithm_series` — the % effect of each Figure 4 panel per model and checkpoint, with
  the reason where it is undefined;
- :func:`fingerprint_similarity_over_time` — the similarity ``1 − ½ Σ|p − q|`` of each
  checkpoint's fingerprint to the previous analysed checkpoint's or to the final one's;
- :func:`fingerprint_similarity_across_sizes` — the similarity between two models' fingerprints at
  matched tokens seen;
- :func:`cross_size_table` and :func:`algorithm_stability` — their summaries ("stable from step
  X on, similarity ≥ 0.9").
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
import pandas as pd

from circuit_atlas.analyses._frames import model_order, require_columns, sort_series
from circuit_atlas.analyses.stability import Reference
from circuit_atlas.errors import AnalysisError

__all__ = [
    "algorithm_series",
    "algorithm_stability",
    "cross_size_table",
    "fingerprint_similarity_across_sizes",
    "fingerprint_similarity_over_time",
    "fingerprint_table",
    "share_similarity",
]


def share_similarity(a: dict[str, float] | None, b: dict[str, float] | None) -> float:
    """``1 − ½ Σ_r |a_r − b_r|`` of two role → share maps (NaN when either is undefined).

    The same definition as
    :func:`circuit_atlas.components.algorithm.fingerprint_similarity`, for frames (no torch).
    """
    if a is None or b is None:
        return math.nan
    roles = set(a) | set(b)
    return 1.0 - 0.5 * sum(abs(a.get(r, 0.0) - b.get(r, 0.0)) for r in roles)


def algorithm_series(algorithm: pd.DataFrame) -> pd.DataFrame:
    """The Figure 4 B–D series: % effect per model, task, panel and checkpoint.

    Args:
        algorithm: The ``algorithm`` table.

    Returns:
        Columns ``model``, ``params``, ``task``, ``panel``, ``step``, ``tokens_seen``,
        ``pct_effect`` (NaN = undefined), ``reason``, ``heads``, ``n_identified``, and the
        bootstrap interval ``ci_low``, ``ci_high`` (NaN without one: undefined share, or a unit
        older than schema v9) with ``ci_reason`` (why a defined share has none; ``not_computed``
        for older units), ``n_examples``, ``ci_n_resamples``, ``ci_seed`` where stored; sorted
        by model size, task, panel, step.

    Raises:
        AnalysisError: If a column is missing.
    """
    need = ("model", "task", "panel", "step", "tokens_seen", "pct_effect", "reason")
    require_columns(algorithm, need, "algorithm")
    cols = [c for c in ("model", "params", "task", "panel", "step", "tokens_seen", "pct_effect",
                        "reason", "heads", "n_identified", "pct_effect_ci_low",
                        "pct_effect_ci_high", "ci_reason", "n_examples", "ci_n_resamples",
                        "ci_seed") if c in algorithm.columns]  # fmt: skip
    out = algorithm[cols].copy().rename(columns={"pct_effect_ci_low": "ci_low",
                                                 "pct_effect_ci_high": "ci_high"})
    for column in ("pct_effect", "ci_low", "ci_high"):
        out[column] = pd.to_numeric(out[column], errors="coerce") if column in out.columns \
            else math.nan  # fmt: skip
    if "ci_reason" not in out.columns:
        out["ci_reason"] = None
    # A defined share without interval columns was written before schema v9.
    older = out["pct_effect"].notna() & out["ci_low"].isna() & out["ci_reason"].isna()
    out["ci_reason"] = out["ci_reason"].astype(object).where(~older, "not_computed")
    out.loc[out["pct_effect"].isna(), "ci_reason"] = None
    return sort_series(out, extra=("panel", "step"))


def fingerprint_table(fingerprints: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, step): the role → share map (None when undefined) and reason.

    Args:
        fingerprints: The ``fingerprints`` table.

    Returns:
        Columns ``model``, ``params`` (when present), ``task``, ``step``, ``tokens_seen``,
        ``shares`` (dict or None), ``reason``.

    Raises:
        AnalysisError: If a column is missing.
    """
    require_columns(fingerprints, ("model", "task", "step", "tokens_seen", "role", "share",
                                   "reason"), "fingerprints")  # fmt: skip
    rows = []
    for (model, task, step), part in fingerprints.groupby(["model", "task", "step"], sort=False):
        shares = pd.to_numeric(part["share"], errors="coerce")
        defined = shares.notna().all() and not part.empty
        reasons = part["reason"].dropna()
        row = {"model": model, "task": task, "step": int(step),
               "tokens_seen": part["tokens_seen"].iloc[0],
               "shares": dict(zip(part["role"], shares, strict=True)) if defined else None,
               "reason": None if defined else (reasons.iloc[0] if len(reasons) else "undefined")}
        if "params" in part.columns:
            row["params"] = part["params"].iloc[0]
        rows.append(row)
    cols = ["model", "params", "task", "step", "tokens_seen", "shares", "reason"]
    if "params" not in fingerprints.columns:
        cols.remove("params")
    return sort_series(pd.DataFrame(rows, columns=cols))


def _reason(a: pd.Series, b: pd.Series) -> str | None:
    for row in (a, b):
        if row["shares"] is None:
            return f"step {int(row['step'])}: {row['reason']}"
    return None


def fingerprint_similarity_over_time(
    fingerprints: pd.DataFrame,
    *,
    reference: Reference = "previous",
    checkpoints: Collection[int] | None = None,
) -> pd.DataFrame:
    """Similarity of each checkpoint's fingerprint to the previous or the final checkpoint's.

    Args:
        fingerprints: The ``fingerprints`` table.
        reference: ``previous`` (consecutive analysed checkpoints t_i → t_{i+1}) or ``final``
            (every checkpoint against the model's last analysed one).
        checkpoints: Restrict the analysed steps to these (None: all).

    Returns:
        Columns ``model``, ``task``, ``step_from``, ``step_to``, ``tokens_from``,
        ``similarity`` (NaN when either fingerprint is undefined) and ``reason`` (why, else
        None); sorted by model, task, ``step_from``.

    Raises:
        AnalysisError: For a missing column or an unknown ``reference``.
    """
    if reference not in ("previous", "final"):
        raise AnalysisError(f"reference must be 'previous' or 'final', got {reference!r}")
    table = fingerprint_table(fingerprints)
    if checkpoints is not None:
        table = table[table["step"].isin(set(checkpoints))]
    rows = []
    for (model, task), part in table.groupby(["model", "task"], sort=False):
        part = part.sort_values("step").reset_index(drop=True)
        if reference == "previous":
            pairs = list(zip(range(len(part) - 1), range(1, len(part)), strict=True))
        else:
            pairs = [(i, len(part) - 1) for i in range(len(part))]
        for i, j in pairs:
            a, b = part.iloc[i], part.iloc[j]
            rows.append({"model": model, "task": task, "step_from": int(a["step"]),
                         "step_to": int(b["step"]), "tokens_from": a["tokens_seen"],
                         "similarity": share_similarity(a["shares"], b["shares"]),
                         "reason": _reason(a, b)})  # fmt: skip
    cols = ["model", "task", "step_from", "step_to", "tokens_from", "similarity", "reason"]
    return sort_series(pd.DataFrame(rows, columns=cols), extra=("step_from",))


def fingerprint_similarity_across_sizes(fingerprints: pd.DataFrame, *,
                                        rtol: float = 0.05) -> pd.DataFrame:  # fmt: skip
    """Similarity of two models' fingerprints at matched tokens seen, for every pair of models.

    For each pair (smaller model a, larger model b) and task, each checkpoint of a is matched
    with b's checkpoint of the nearest tokens seen, kept when they differ by at most ``rtol``
    relative (Pythia sizes share steps, so they match exactly). Step-0 checkpoints (0 tokens)
    match only each other.

    Args:
        fingerprints: The ``fingerprints`` table (``params`` orders the models when present).
        rtol: Largest relative difference of tokens seen for a match.

    Returns:
        Columns ``task``, ``model_a``, ``model_b``, ``tokens_seen`` (a's), ``step_a``,
        ``step_b``, ``similarity`` (NaN when either is undefined), ``reason``.

    Raises:
        AnalysisError: For a missing column or a negative ``rtol``.
    """
    if not rtol >= 0:
        raise AnalysisError(f"rtol must be >= 0, got {rtol!r}")
    table = fingerprint_table(fingerprints).dropna(subset=["tokens_seen"])
    order = model_order(table)
    rows = []
    for task, part in table.groupby("task", sort=True):
        models = [m for m in order if m in set(part["model"])]
        for i, ma in enumerate(models):
            for mb in models[i + 1 :]:
                a = part[part["model"] == ma].sort_values("step")
                b = part[part["model"] == mb].sort_values("step")
                b_tokens = b["tokens_seen"].astype(float).to_numpy()
                for _, ra in a.iterrows():
                    ta = float(ra["tokens_seen"])
                    k = int(np.argmin(np.abs(b_tokens - ta)))
                    tb = b_tokens[k]
                    if not (tb == ta or (ta > 0 and abs(tb - ta) <= rtol * ta)):
                        continue
                    rb = b.iloc[k]
                    rows.append({"task": task, "model_a": ma, "model_b": mb, "tokens_seen": ta,
                                 "step_a": int(ra["step"]), "step_b": int(rb["step"]),
                                 "similarity": share_similarity(ra["shares"], rb["shares"]),
                                 "reason": _reason(ra, rb)})  # fmt: skip
    cols = ["task", "model_a", "model_b", "tokens_seen", "step_a", "step_b", "similarity",
            "reason"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def cross_size_table(across: pd.DataFrame) -> pd.DataFrame:
    """Summary of :func:`fingerprint_similarity_across_sizes` per task and pair of models.

    Returns:
        Columns ``task``, ``model_a``, ``model_b``, ``matched`` (checkpoints matched),
        ``defined`` (with both fingerprints defined), ``mean`` and ``min`` similarity over the
        defined ones, ``final`` (at the largest matched tokens seen with a defined value) and
        ``final_tokens``; NaN where nothing is defined.
    """
    rows = []
    for (task, ma, mb), part in across.groupby(["task", "model_a", "model_b"], sort=False):
        defined = part.dropna(subset=["similarity"]).sort_values("tokens_seen")
        rows.append({"task": task, "model_a": ma, "model_b": mb, "matched": len(part),
                     "defined": len(defined),
                     "mean": defined["similarity"].mean() if len(defined) else np.nan,
                     "min": defined["similarity"].min() if len(defined) else np.nan,
                     "final": defined["similarity"].iloc[-1] if len(defined) else np.nan,
                     "final_tokens": defined["tokens_seen"].iloc[-1] if len(defined) else np.nan})
    cols = ["task", "model_a", "model_b", "matched", "defined", "mean", "min", "final",
            "final_tokens"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def algorithm_stability(to_final: pd.DataFrame, *, threshold: float = 0.9) -> pd.DataFrame:
    """From which checkpoint on each model's fingerprint stays within ``threshold`` of its final.

    Args:
        to_final: :func:`fingerprint_similarity_over_time` with ``reference="final"``.
        threshold: The similarity that counts as "the same algorithm" (0.9).

    Returns:
        Columns ``model``, ``task``, ``stable_from_step``, ``stable_from_tokens`` (the first
        checkpoint from which every later defined similarity is ≥ ``threshold``; NaN if none),
        ``defined`` (checkpoints with a defined similarity), ``checkpoints``, ``min_after`` (the
        smallest similarity from that checkpoint on).

    Raises:
        AnalysisError: For a missing column or a threshold outside [0, 1].
    """
    if not 0 <= threshold <= 1:
        raise AnalysisError(f"threshold must lie in [0, 1], got {threshold!r}")
    require_columns(to_final, ("model", "task", "step_from", "tokens_from", "similarity"),
                    "fingerprint similarity")  # fmt: skip
    rows = []
    for (model, task), part in to_final.groupby(["model", "task"], sort=False):
        part = part.sort_values("step_from")
        defined = part.dropna(subset=["similarity"])
        values = defined["similarity"].to_numpy()
        start = None
        for i in range(len(values)):
            if (values[i:] >= threshold).all():
                start = i
                break
        rows.append({
            "model": model, "task": task,
            "stable_from_step": defined["step_from"].iloc[start] if start is not None else np.nan,
            "stable_from_tokens": defined["tokens_from"].iloc[start] if start is not None
            else np.nan,
            "defined": len(defined), "checkpoints": len(part),
            "min_after": values[start:].min() if start is not None else np.nan,
        })  # fmt: skip
    cols = ["model", "task", "stable_from_step", "stable_from_tokens", "defined", "checkpoints",
            "min_after"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)
