"""Bootstrap confidence intervals over prompts for the IOI algorithm shares (Figure 4 B–D).

A share is :func:`~circuit_atlas.components.algorithm.roles.pct_effect` of one panel:

    100 × Σ_{h ∈ I ∩ D} effect(h) / Σ_{h ∈ D} effect(h),

where each effect is (mean_i patched_h,i − mean_i clean_i) / (mean clean − mean corrupted).
The clean − corrupted normalisation cancels in the ratio, so the share is the ratio of two means
over prompts of per-prompt sums of path-patching differences d_h,i = patched_h,i − clean_i:

    share = 100 × mean_i(Σ_{I ∩ D} d_h,i) / mean_i(Σ_D d_h,i).

:func:`pct_effect_interval` resamples prompts with
:func:`circuit_atlas.analyses.uncertainty.bootstrap_ci` (seeded, ``N_RESAMPLES`` = 1,000
resamples, 95 % percentile interval): one redraw of prompt indices is applied to the numerator,
the denominator and the clean and corrupted metrics together (a ratio estimator, as for
faithfulness), and the statistic is the ratio of the redrawn means, never a mean of per-prompt
ratios. The heads — the roles I and the denominator heads D — are fixed at their values on all
prompts: the interval is the prompt noise of the share of *these* heads, not of the role
assignment. A redraw on which the share would be undefined (|Σ_D effect| below ``min_total``
gap units, with the gap of the redraw) is left out of the quantiles (``n_valid``).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from circuit_atlas.analyses.uncertainty import CI_LEVEL, N_RESAMPLES, bootstrap_ci
from circuit_atlas.components.algorithm.roles import DENOMINATORS, _head_set
from circuit_atlas.components.path_sweep import Head
from circuit_atlas.errors import AlgorithmError, UnknownNameError

__all__ = ["CI_REASONS", "ShareInterval", "pct_effect_interval", "share_columns"]

CI_REASONS: dict[str, str] = {
    "no_per_prompt_effects": "the per-prompt path-patching effects were not kept (a reused "
                             "S-inhibition result without them)",
    "no_valid_resample": "the share is undefined on every bootstrap resample",
    "not_computed": "no interval was computed (written before schema v9, or by an older "
                    "circuit-atlas)",
}
"""Why a *defined* share has no interval (an undefined share has none for its own reason)."""


@dataclass(frozen=True)
class ShareInterval:
    """A bootstrap interval of one panel's % effect.

    Attributes:
        low: Lower bound (%), or None without an interval.
        high: Upper bound (%), or None.
        reason: Why there is no interval (the panel's own undefined reason, or a
            :data:`CI_REASONS` key), else None.
        estimate: The share on all prompts (equals the panel's value up to rounding), or None.
        n_examples: Prompts resampled (0 without an interval).
        n_resamples: Resamples drawn.
        n_valid: Resamples on which the share was defined (the quantiles are over these).
        seed: Seed of the generator.
        level: Coverage of the percentile interval.
    """

    low: float | None
    high: float | None
    reason: str | None
    estimate: float | None = None
    n_examples: int = 0
    n_resamples: int = N_RESAMPLES
    n_valid: int = 0
    seed: int = 0
    level: float = CI_LEVEL

    @classmethod
    def none(cls, reason: str, *, n_resamples: int = N_RESAMPLES, seed: int = 0,
             level: float = CI_LEVEL) -> ShareInterval:  # fmt: skip
        """No interval, for ``reason``."""
        return cls(None, None, reason, n_resamples=n_resamples, seed=seed, level=level)


def share_columns(
    identified: Collection[Head] | Tensor,
    differences: Tensor,
    clean: Tensor,
    corrupted: Tensor,
    *,
    denominator: str = "circuit",
    circuit: Collection[Head] | None = None,
) -> np.ndarray:
    """The ``(n, 4)`` per-prompt columns the share's bootstrap resamples jointly.

    Args:
        identified: The identified heads (or an ``(L, h)`` bool mask).
        differences: ``(L, h, n)`` per-prompt patched − clean metric of each head (NaN = 0).
        clean: ``(n,)`` clean metric per prompt.
        corrupted: ``(n,)`` corrupted metric per prompt.
        denominator: ``circuit`` or ``all``.
        circuit: The circuit's heads (``circuit`` denominator).

    Returns:
        Columns Σ_{I ∩ D} d, Σ_D d, clean, corrupted (float64), one row per prompt.

    Raises:
        AlgorithmError: For mismatched shapes or a head outside the grid.
        UnknownNameError: For an unknown denominator.
    """
    if denominator not in DENOMINATORS:
        raise UnknownNameError(
            f"unknown denominator {denominator!r}; choose one of {list(DENOMINATORS)}"
        )
    if differences.dim() != 3:
        raise AlgorithmError(f"differences must be (L, h, n), got {tuple(differences.shape)}")
    shape = (int(differences.shape[0]), int(differences.shape[1]))
    n = int(differences.shape[2])
    if tuple(clean.shape) != (n,) or tuple(corrupted.shape) != (n,):
        raise AlgorithmError(f"clean and corrupted must be ({n},), got {tuple(clean.shape)} and "
                             f"{tuple(corrupted.shape)}")  # fmt: skip
    chosen = _head_set(identified, shape, "identified")
    pool = (_head_set(circuit or (), shape, "circuit") if denominator == "circuit"
            else {(a, b) for a in range(shape[0]) for b in range(shape[1])})  # fmt: skip
    d = torch.nan_to_num(differences.detach().double().cpu(), nan=0.0)
    mask = torch.zeros(shape, dtype=torch.bool)
    for h in pool:
        mask[h] = True
    part = torch.zeros(shape, dtype=torch.bool)
    for h in chosen & pool:
        part[h] = True
    return torch.stack([d[part].sum(0), d[mask].sum(0), clean.detach().double().cpu(),
                        corrupted.detach().double().cpu()], dim=1).numpy()  # fmt: skip


def _share_statistic(min_total: float):
    def statistic(sample: np.ndarray, axis: int = 1) -> np.ndarray:
        m = sample.mean(axis=axis)  # (r, 4): identified, total, clean, corrupted
        with np.errstate(divide="ignore", invalid="ignore"):
            total = m[..., 1] / (m[..., 2] - m[..., 3])  # Σ_D effect in gap units
            share = 100.0 * m[..., 0] / m[..., 1]
        ok = np.isfinite(total) & (np.abs(total) >= min_total)
        return np.where(ok, share, np.nan)

    return statistic


def pct_effect_interval(
    identified: Collection[Head] | Tensor,
    differences: Tensor,
    clean: Tensor,
    corrupted: Tensor,
    *,
    denominator: str = "circuit",
    circuit: Collection[Head] | None = None,
    min_total: float = 1e-3,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> ShareInterval:
    """Percentile bootstrap interval over prompts of one panel's % effect (module docstring).

    Call it only for a defined share (the caller knows the undefined reasons).

    Args:
        identified: The panel's identified heads (or an ``(L, h)`` bool mask).
        differences: ``(L, h, n)`` per-prompt patched − clean metric of every head, as
            :func:`~circuit_atlas.components.path_patching.path_patching_effects` reports it in
            ``baselines["differences"]``.
        clean: ``(n,)`` clean metric per prompt (``baselines["clean"]``).
        corrupted: ``(n,)`` corrupted metric per prompt.
        denominator: ``circuit`` or ``all``, as for :func:`~.roles.pct_effect`.
        circuit: The IOI circuit's heads (``circuit`` denominator; required there).
        min_total: A redraw's share is undefined (left out) when its |Σ_D effect| < this.
        n_resamples: Resamples (default 1,000).
        seed: Generator seed (default 0).
        level: Coverage (default 0.95).

    Returns:
        A :class:`ShareInterval`; without a valid resample, reason ``no_valid_resample``.

    Raises:
        AlgorithmError: For mismatched shapes, or a ``circuit`` denominator without a circuit.
    """
    if denominator == "circuit" and circuit is None:
        raise AlgorithmError("pct_effect_interval: the circuit denominator needs the circuit")
    columns = share_columns(identified, differences, clean, corrupted, denominator=denominator,
                            circuit=circuit)  # fmt: skip
    if not np.isfinite(columns).all():
        return ShareInterval.none("no_valid_resample", n_resamples=n_resamples, seed=seed,
                                  level=level)  # fmt: skip
    ci = bootstrap_ci(columns, _share_statistic(min_total), n_resamples=n_resamples, seed=seed,
                      level=level)  # fmt: skip
    estimate = ci.estimate if math.isfinite(ci.estimate) else None
    if ci.n_valid == 0:
        return ShareInterval(None, None, "no_valid_resample", estimate, len(columns),
                             n_resamples, 0, seed, level)  # fmt: skip
    return ShareInterval(ci.low + 0.0, ci.high + 0.0, None, estimate, len(columns), n_resamples,
                         ci.n_valid, seed, level)  # fmt: skip
