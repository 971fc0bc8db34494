"""Checkpoint schedules: which training steps a study analyses.

A schedule turns a description into a sorted, duplicate-free list of checkpoint steps, every one
validated against the steps that really exist. Descriptions are:

* a **name** from :data:`NAMED_SCHEDULES` (the ``get_ckpts`` schedules of
  curt-tigges/circuits-over-time, PAPER.md §1, plus ``final``);
* a **dict** with a ``kind`` from :data:`SCHEDULE_KINDS`: ``{"kind": "linear", "start": 1000,
  "stop": 143000, "n": 20}``, ``{"kind": "log", ...}``, ``{"kind": "custom", "steps": [...]}`` or
  ``{"kind": "named", "name": "sparse"}``;
* an explicit **list** of steps (same as ``custom``).

The valid steps default to Pythia's 154 checkpoints; pass a local suite's steps
(:func:`circuit_atlas.models.sources.list_suite_checkpoints`) to resolve a schedule for it. The
fixed ``get_ckpts`` lists name Pythia steps, so on a suite with other steps they fail validation
with a message naming the nearest valid steps; ``all``, ``final``, ``linear``, ``log`` and
``custom`` adapt to any step list.
"""

from __future__ import annotations

import logging
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from circuit_atlas.errors import ConfigError, UnknownNameError
from circuit_atlas.models.pythia import PYTHIA_FINAL_STEP, PYTHIA_STEPS
from circuit_atlas.models.steps import (
    as_int,
    nearest_step,
    neighbour_steps,
    sorted_steps,
    validate_step,
)

__all__ = [
    "NAMED_SCHEDULES",
    "SCHEDULE_KINDS",
    "NamedSchedule",
    "custom",
    "linear",
    "log",
    "named",
    "nearest_step",
    "neighbour_steps",
    "resolve_schedule",
    "validate_step",
]

logger = logging.getLogger(__name__)

ScheduleSpec = str | Mapping[str, Any] | Sequence[int] | int
"""What :func:`resolve_schedule` accepts: a name, a ``{"kind": ...}`` dict, or explicit steps."""


# --- validation (the step primitives are in circuit_atlas.models.steps) ---------------------


def _finish(steps: Sequence[int], valid_steps: Sequence[int], model: str) -> list[int]:
    unique = sorted(set(validate_step(s, valid_steps, model=model) for s in steps))
    if not unique:
        raise ConfigError("the checkpoint schedule is empty")
    return unique


# --- named schedules (data) ------------------------------------------------------------------


@dataclass(frozen=True)
class NamedSchedule:
    """A schedule registered by name.

    Attributes:
        name: Registry key.
        description: What it selects and where it comes from.
        build: Maps the sorted valid steps to the schedule's raw steps (possibly with duplicates,
            exactly as defined at the source; :func:`resolve_schedule` sorts, deduplicates and
            validates them).
    """

    name: str
    description: str
    build: Callable[[Sequence[int]], list[int]]

    def raw(self, valid_steps: Sequence[int] = PYTHIA_STEPS) -> list[int]:
        """Return the steps as defined at the source (unsorted, duplicates kept)."""
        return list(self.build(sorted_steps(valid_steps)))


def _fixed(steps: Sequence[int]) -> Callable[[Sequence[int]], list[int]]:
    frozen = tuple(steps)
    return lambda _valid: list(frozen)


def _thousands(first: int, last: int) -> list[int]:
    return [k * 1000 for k in range(first, last + 1)]


_EXP_PLUS_DETAIL = (
    [2**i for i in range(10)]
    + _thousands(1, 15)
    + list(range(15_000, 65_001, 5_000))
    + list(range(70_000, 140_001, 10_000))
)
_LATE_START_EXP_PLUS_DETAIL = _EXP_PLUS_DETAIL[10:]
_SPARSE = (
    [256, 512]
    + _thousands(1, 9)
    + list(range(10_000, 45_001, 5_000))
    + list(range(50_000, 90_001, 10_000))
    + [100_000, 120_000, 140_000, PYTHIA_FINAL_STEP]
)
_EXPONENTIAL = [round(2**i / 1000) * 1000 if 2**i > 1000 else 2**i for i in range(18)]

NAMED_SCHEDULES: Mapping[str, NamedSchedule] = types.MappingProxyType(
    {
        s.name: s
        for s in (
            NamedSchedule("all", "every valid checkpoint (Pythia: all 154)", list),
            NamedSchedule("final", "the last valid checkpoint only", lambda v: [v[-1]]),
            NamedSchedule(
                "default",
                "[10000, 143000]: get_ckpts' fallback schedule",
                _fixed([10_000, PYTHIA_FINAL_STEP]),
            ),
            NamedSchedule(
                "exp_plus_detail",
                "2^0…2^9, 1k…15k by 1k, 15k…65k by 5k, 70k…140k by 10k (44 raw, 43 unique)",
                _fixed(_EXP_PLUS_DETAIL),
            ),
            NamedSchedule(
                "late_start_exp_plus_detail",
                "exp_plus_detail without the 2^i steps: the 33 steps >= 1k (also the Jaccard "
                "plots' checkpoint set)",
                _fixed(_LATE_START_EXP_PLUS_DETAIL),
            ),
            NamedSchedule(
                "late_start_all",
                "1k…143k every 1k (143 steps; get_ckpts 'linear'; PAPER.md §1)",
                _fixed(_thousands(1, 143)),
            ),
            NamedSchedule(
                "late_start_all_4k",
                "4k…143k every 1k (the latest get_ckpts 'late_start_all')",
                _fixed(_thousands(4, 143)),
            ),
            NamedSchedule(
                "late_start_all_256",
                "[256, 512] then 1k…143k every 1k",
                _fixed([256, 512] + _thousands(1, 143)),
            ),
            NamedSchedule(
                "sparse",
                "[256, 512], 1k…9k, 10k…45k by 5k, 50k…90k by 10k, 100k, 120k, 140k, 143k (28)",
                _fixed(_SPARSE),
            ),
            NamedSchedule(
                "exponential",
                "2^i for i < 18, rounded to thousands above 1000 (get_ckpts 'exponential')",
                _fixed(_EXPONENTIAL),
            ),
        )
    }
)
"""Named schedules. Sources: ``get_ckpts`` in circuits-over-time (PAPER.md §1)."""


# --- parametric schedules --------------------------------------------------------------------


def _positive_int(value: Any, key: str) -> int:
    number = as_int(value)
    if number is None or number < 1:
        raise ConfigError(f"schedule key {key!r} must be a positive integer, got {value!r}")
    return number


def _bounds(start: Any, stop: Any, steps: list[int]) -> tuple[int, int]:
    lo = steps[0] if start is None else as_int(start)
    hi = steps[-1] if stop is None else as_int(stop)
    if lo is None or hi is None or lo > hi or lo < 0:
        raise ConfigError(
            f"schedule range start={start!r}, stop={stop!r} is not 0 <= start <= stop"
        )
    return lo, hi


def linear(
    start: int | None,
    stop: int | None,
    n: int,
    valid_steps: Sequence[int] = PYTHIA_STEPS,
    *,
    model: str = "Pythia",
) -> list[int]:
    """Return ``n`` evenly spaced steps from ``start`` to ``stop``, snapped to valid checkpoints.

    Each of ``numpy.linspace(start, stop, n)`` is snapped to the nearest valid step inside
    ``[start, stop]``; duplicates are dropped, so fewer than ``n`` steps can come back.

    Args:
        start: First step (the first valid step when None).
        stop: Last step (the last valid step when None).
        n: Number of points.
        valid_steps: The checkpoint steps that exist.
        model: Suite name for error messages.

    Raises:
        ConfigError: For ``n < 1`` or ``start > stop``.
        InvalidCheckpointError: If no valid step lies in ``[start, stop]``.
    """
    steps = sorted_steps(valid_steps)
    lo, hi = _bounds(start, stop, steps)
    n = _positive_int(n, "n")
    targets = [lo + (hi - lo) * k / (n - 1) for k in range(n)] if n > 1 else [lo]
    return _finish([nearest_step(t, steps, lo=lo, hi=hi) for t in targets], steps, model)


def log(
    start: int | None,
    stop: int | None,
    n: int,
    valid_steps: Sequence[int] = PYTHIA_STEPS,
    *,
    model: str = "Pythia",
) -> list[int]:
    """Return ``n`` log-spaced steps from ``start`` to ``stop``, snapped to valid checkpoints.

    The targets are ``start · (stop/start)^(k/(n-1))``; each is snapped to the nearest valid step
    inside ``[start, stop]`` and duplicates are dropped (early, dense checkpoints absorb many).

    Args:
        start: First step, at least 1 (the first positive valid step when None).
        stop: Last step (the last valid step when None).
        n: Number of points.
        valid_steps: The checkpoint steps that exist.
        model: Suite name for error messages.

    Raises:
        ConfigError: For ``n < 1``, ``start < 1`` or ``start > stop``.
        InvalidCheckpointError: If no valid step lies in ``[start, stop]``.
    """
    steps = sorted_steps(valid_steps)
    positive = [s for s in steps if s > 0]
    if start is None and not positive:
        raise ConfigError("a log schedule needs a positive checkpoint step")
    lo, hi = _bounds(positive[0] if start is None else start, stop, steps)
    if lo < 1:
        raise ConfigError(f"a log schedule needs start >= 1, got {start!r}; add 0 with 'custom'")
    n = _positive_int(n, "n")
    ratio = math.log(hi / lo)
    targets = [lo * math.exp(ratio * k / (n - 1)) for k in range(n)] if n > 1 else [lo]
    return _finish([nearest_step(t, steps, lo=lo, hi=hi) for t in targets], steps, model)


def custom(
    steps: Sequence[int], valid_steps: Sequence[int] = PYTHIA_STEPS, *, model: str = "Pythia"
) -> list[int]:
    """Validate an explicit list of steps; return them sorted and deduplicated.

    Raises:
        InvalidCheckpointError: Naming the first step that is not a checkpoint.
        ConfigError: If the list is empty.
    """
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise ConfigError(f"custom schedule steps must be a list of integers, got {steps!r}")
    return _finish(list(steps), valid_steps, model)


def named(
    name: str, valid_steps: Sequence[int] = PYTHIA_STEPS, *, model: str = "Pythia"
) -> list[int]:
    """Resolve a schedule from :data:`NAMED_SCHEDULES`.

    Raises:
        UnknownNameError: For an unknown name (the message lists the valid names).
        InvalidCheckpointError: If the schedule names a step that ``valid_steps`` lacks.
    """
    try:
        schedule = NAMED_SCHEDULES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown checkpoint schedule {name!r}; valid names: {', '.join(NAMED_SCHEDULES)}"
        ) from None
    return _finish(schedule.raw(valid_steps), valid_steps, model)


def _from_dict(
    spec: Mapping[str, Any],
    valid_steps: Sequence[int],
    model: str,
    build: Callable[..., list[int]],
    keys: tuple[str, ...],
) -> list[int]:
    unknown = set(spec) - set(keys) - {"kind"}
    if unknown:
        raise ConfigError(
            f"schedule kind {spec.get('kind')!r} got unknown keys {sorted(unknown)}; "
            f"allowed: {list(keys)}"
        )
    missing = [k for k in keys if k not in spec and k not in ("start", "stop")]
    if missing:
        raise ConfigError(f"schedule kind {spec.get('kind')!r} is missing keys {missing}")
    args = [spec.get(k) for k in keys]
    return build(*args, valid_steps, model=model)


SCHEDULE_KINDS: Mapping[str, tuple[Callable[..., list[int]], tuple[str, ...]]] = (
    types.MappingProxyType(
        {
            "linear": (linear, ("start", "stop", "n")),
            "log": (log, ("start", "stop", "n")),
            "custom": (custom, ("steps",)),
            "named": (named, ("name",)),
        }
    )
)
"""Dict schedule kinds: the builder and the keys it takes (``start``/``stop`` are optional)."""


def resolve_schedule(
    spec: ScheduleSpec, valid_steps: Sequence[int] = PYTHIA_STEPS, *, model: str = "Pythia"
) -> list[int]:
    """Resolve any schedule description into sorted, unique, validated checkpoint steps.

    Args:
        spec: A name (``"exp_plus_detail"``), a dict with a ``kind`` (``{"kind": "linear",
            "start": 1000, "stop": 143000, "n": 20}``), a list of steps, or a single step.
        valid_steps: The checkpoint steps that exist (Pythia's 154 by default, or a local
            suite's steps).
        model: Suite name used in error messages.

    Returns:
        The steps, ascending, without duplicates.

    Raises:
        UnknownNameError: For an unknown schedule name or kind.
        ConfigError: For a malformed dict (missing or unknown keys, bad values) or an empty list.
        InvalidCheckpointError: If a step is not a checkpoint (the message names its neighbours).
    """
    if isinstance(spec, str):
        return named(spec, valid_steps, model=model)
    if isinstance(spec, Mapping):
        kind = spec.get("kind")
        if kind not in SCHEDULE_KINDS:
            raise UnknownNameError(
                f"unknown schedule kind {kind!r}; valid kinds: {', '.join(SCHEDULE_KINDS)}"
            )
        build, keys = SCHEDULE_KINDS[kind]
        return _from_dict(spec, valid_steps, model, build, keys)
    if as_int(spec) is not None:
        return custom([spec], valid_steps, model=model)  # type: ignore[list-item]
    return custom(spec, valid_steps, model=model)  # type: ignore[arg-type]
