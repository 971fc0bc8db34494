"""Checkpoint steps: validating a step against the steps a model suite really has.

The primitives every step-taking function uses: :func:`validate_step` (with an error naming the
nearest valid steps), :func:`neighbour_steps`, :func:`nearest_step`. They take the valid steps
explicitly and know no suite, so :mod:`circuit_atlas.models.pythia` (the registry) and
:mod:`circuit_atlas.models.schedules` (which defaults to Pythia's steps) both build on them.
"""

from __future__ import annotations

import bisect
import numbers
from collections.abc import Sequence
from typing import Any

from circuit_atlas.errors import InvalidCheckpointError

__all__ = ["as_int", "nearest_step", "neighbour_steps", "sorted_steps", "validate_step"]


def sorted_steps(valid_steps: Sequence[int]) -> list[int]:
    """Return the valid steps as sorted, unique ints.

    Raises:
        InvalidCheckpointError: If there are none.
    """
    steps = sorted(set(int(s) for s in valid_steps))
    if not steps:
        raise InvalidCheckpointError("the list of valid checkpoint steps is empty")
    return steps


def neighbour_steps(step: int, valid_steps: Sequence[int]) -> list[int]:
    """Return the closest valid steps below and above ``step`` (one or two values, ascending)."""
    steps = sorted_steps(valid_steps)
    i = bisect.bisect_left(steps, step)
    if i < len(steps) and steps[i] == step:
        return [step]
    return steps[max(i - 1, 0) : i + 1] if 0 < i < len(steps) else [steps[min(i, len(steps) - 1)]]


def validate_step(step: Any, valid_steps: Sequence[int], *, model: str = "the suite") -> int:
    """Check that ``step`` is a real checkpoint.

    Args:
        step: The training step to check (an integer; integral floats and digit strings are
            accepted for configs).
        valid_steps: The checkpoint steps that exist (Pythia's: ``PYTHIA_STEPS``).
        model: What to call the model suite in the error message.

    Returns:
        The step as an ``int``.

    Raises:
        InvalidCheckpointError: If ``step`` is not an integer or not a valid checkpoint; the
            message names the step and its valid neighbours, e.g. ``step 1500 is not a checkpoint
            of pythia-70m; nearest valid steps: 1000, 2000``.
    """
    value = as_int(step)
    if value is None:
        raise InvalidCheckpointError(f"step {step!r} of {model} is not an integer")
    steps = sorted_steps(valid_steps)
    i = bisect.bisect_left(steps, value)
    if i < len(steps) and steps[i] == value:
        return value
    near = neighbour_steps(value, steps)
    label = "nearest valid step" if len(near) == 1 else "nearest valid steps"
    raise InvalidCheckpointError(
        f"step {step!r} is not a checkpoint of {model}; {label}: {', '.join(map(str, near))}"
    )


def as_int(value: Any) -> int | None:
    """Return ``value`` as an int if it is integral, else None.

    Integral means an int, an integral float or a digit string; ``True``/``False`` are not steps.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def nearest_step(
    target: float, valid_steps: Sequence[int], *, lo: int | None = None, hi: int | None = None
) -> int:
    """Snap ``target`` to the nearest valid step (the lower one on a tie).

    Args:
        target: Any real-valued step.
        valid_steps: The checkpoint steps that exist.
        lo: Only consider steps ``>= lo``.
        hi: Only consider steps ``<= hi``.

    Raises:
        InvalidCheckpointError: If no valid step lies in ``[lo, hi]``.
    """
    steps = [
        s for s in sorted_steps(valid_steps) if (lo is None or s >= lo) and (hi is None or s <= hi)
    ]
    if not steps:
        raise InvalidCheckpointError(f"no checkpoint step lies between {lo} and {hi}")
    i = bisect.bisect_left(steps, target)
    candidates = steps[max(i - 1, 0) : i + 1]
    return min(candidates, key=lambda s: (abs(s - target), s))
