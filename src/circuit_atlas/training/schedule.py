"""Checkpoint and learning-rate schedules of a training run.

Pythia saves checkpoints at steps 0, 1, 2, 4, …, 512 (log-spaced) and then every 1000 steps up to
143000 (PAPER.md §1). :func:`checkpoint_steps` reproduces that shape for any run length: powers of
two below the even spacing, then ``n_even`` evenly spaced steps ending at the last step.
:func:`learning_rate` is Pythia's schedule: linear warm-up, then cosine decay to a floor.
"""

from __future__ import annotations

import math

from circuit_atlas.errors import ConfigError

__all__ = ["checkpoint_steps", "learning_rate"]


def checkpoint_steps(total_steps: int, n_even: int) -> list[int]:
    """Return the Pythia-style checkpoint steps of a run, ascending and unique.

    The evenly spaced part is ``round(i × total_steps / n_even)`` for ``i = 1 … n_even``; the
    log-spaced part is step 0 and every power of two strictly below the first even step. With
    ``total_steps = 143000`` and ``n_even = 143`` this is exactly Pythia's 154 checkpoints.

    Args:
        total_steps: Optimiser steps of the run (>= 1); always the last checkpoint.
        n_even: Number of evenly spaced checkpoints (1 … ``total_steps``).

    Returns:
        Sorted steps, starting at 0 and ending at ``total_steps``.

    Raises:
        ConfigError: If ``total_steps`` < 1 or ``n_even`` is outside [1, ``total_steps``].
    """
    if total_steps < 1:
        raise ConfigError(f"total_steps must be >= 1, got {total_steps}")
    if not 1 <= n_even <= total_steps:
        raise ConfigError(f"n_even must be in [1, {total_steps}], got {n_even}")
    even = [round(i * total_steps / n_even) for i in range(1, n_even + 1)]
    log = [0]
    power = 1
    while power < even[0]:
        log.append(power)
        power *= 2
    return sorted(set(log + even))


def learning_rate(
    step: int, total_steps: int, peak: float, *, warmup_frac: float, min_ratio: float
) -> float:
    """Learning rate of the update that produces step ``step + 1`` from step ``step``.

    Linear warm-up from ``peak / warmup`` to ``peak`` over ``warmup = max(1, round(warmup_frac ×
    total_steps))`` updates, then cosine decay from ``peak`` to ``min_ratio × peak`` at the last
    update (GPT-NeoX / Pythia's ``cosine`` schedule with a 10% floor).

    Args:
        step: Updates already taken (0-based).
        total_steps: Updates in the run.
        peak: Peak learning rate.
        warmup_frac: Fraction of the updates spent warming up.
        min_ratio: Final learning rate as a fraction of ``peak``.

    Returns:
        The learning rate (same unit as ``peak``).
    """
    warmup = max(1, round(warmup_frac * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total_steps - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak * (min_ratio + (1.0 - min_ratio) * cosine)
