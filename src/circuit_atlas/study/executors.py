"""Executors: where units are computed.

``local`` runs them one by one in this process; ``ray`` ships them to a Ray cluster as tasks.
Both yield an :class:`Outcome` per unit as it finishes, and the driver
(:func:`circuit_atlas.study.runner.run_study`) commits it. An executor knows nothing of what a
unit computes: the driver hands it the work, a picklable callable ``work(unit, on_progress=)``
returning the unit's tables (:func:`~circuit_atlas.study.runner.execute_unit` bound to the
engine and cache), so this module does not import the runner.

**The driver writes the store; workers never do.** Workers compute the rows
(:func:`~circuit_atlas.study.runner.execute_unit`) and return them as Arrow tables through Ray's
object store, so they need no access to the results directory, only to the model source (the hub
or a shared local suite) and the data directory. Resume and failure semantics are the same for
both executors: a unit is committed atomically once, a failed unit is recorded and retried on the
next run, and on Ray a worker that dies mid-unit is retried by Ray (``max_retries``) without
duplicate rows, since nothing was written for it and a second commit of a unit is refused.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from circuit_atlas.errors import ConfigError, UnknownNameError
from circuit_atlas.study.units import Unit

__all__ = [
    "EXECUTORS",
    "LocalExecutor",
    "Outcome",
    "RayExecutor",
    "Work",
    "format_exception",
    "make_executor",
]

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """The result of one unit: its tables, or the error that stopped it.

    Attributes:
        unit: The unit.
        tables: Table name → Arrow table (None on failure).
        error: One-line error message (None on success).
        traceback: Full traceback text (None on success).
    """

    unit: Unit
    tables: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None


OnStart = Callable[[Unit], None]

Work = Callable[..., dict[str, Any]]
"""``work(unit, on_progress=None) -> {table name: Arrow table}``: computes one unit, writes
nothing. Must be picklable for Ray (a module-level function or a ``functools.partial`` of one)."""


def format_exception(exc: BaseException) -> tuple[str, str]:
    """Return ``(one-line message, full traceback)`` of an exception."""
    return f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc))


def _call(work: Work, unit: Unit) -> dict[str, Any]:
    """Run ``work`` on one unit (the Ray task; without progress callbacks)."""
    return work(unit)


class LocalExecutor:
    """Run units one after another in this process (tasks of a unit report progress)."""

    reports_tasks = True

    def run(self, units: Sequence[Unit], work: Work, on_start: OnStart,
            on_progress: Any = None) -> Iterator[Outcome]:
        """Compute each unit in order with ``work``; exceptions become failed outcomes.

        ``KeyboardInterrupt`` and other non-``Exception`` errors propagate (the run stops and the
        unit in flight is simply not committed).
        """
        for unit in units:
            on_start(unit)
            try:
                tables = work(unit, on_progress=on_progress)
            except Exception as exc:  # noqa: BLE001 - recorded as the unit's failure
                message, trace = format_exception(exc)
                yield Outcome(unit, error=message, traceback=trace)
            else:
                yield Outcome(unit, tables=tables)


class RayExecutor:
    """Run units as Ray tasks.

    Args:
        address: Ray cluster address (``auto``, ``ray://host:10001``); None starts a local Ray
            instance unless one is already initialised in this process.
        max_retries: Times Ray re-runs a unit whose worker died (system failures). Exceptions
            raised by the unit itself are not retried: they are deterministic, and are recorded
            as the unit's failure.
        num_cpus: CPUs requested per unit.
        num_gpus: GPUs requested per unit; None: 1 when the unit's device is ``cuda`` (or
            ``auto`` and the cluster has GPUs), else 0.
        max_in_flight: Units submitted at once (None: as many as the cluster can run).
        init_kwargs: Extra keyword arguments of ``ray.init``.
    """

    reports_tasks = False

    def __init__(self, address: str | None = None, max_retries: int = 2, num_cpus: float = 1,
                 num_gpus: float | None = None, max_in_flight: int | None = None,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        self.address = address
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_in_flight = max_in_flight
        self.init_kwargs = dict(init_kwargs or {})

    def _placement(self, unit: Unit, resources: dict[str, float]) -> tuple[Unit, float]:
        """Return the unit as the worker should run it and the GPUs to request for it.

        ``cuda``/``cuda:N`` requests one GPU and runs on the GPU Ray assigns (``cuda``); ``auto``
        requests one GPU when the cluster has any.

        Raises:
            ConfigError: If the unit's device is ``cuda`` but the cluster has no GPU.
        """
        device = unit.execution.device
        has_gpu = resources.get("GPU", 0) > 0
        if device.startswith("cuda"):
            if not has_gpu:
                raise ConfigError(f"device {device!r} requested but the Ray cluster has no GPU")
            unit = replace(unit, execution=replace(unit.execution, device="cuda"))
        gpus = 1.0 if device.startswith("cuda") or (device == "auto" and has_gpu) else 0.0
        return unit, gpus if self.num_gpus is None else self.num_gpus

    def run(self, units: Sequence[Unit], work: Work, on_start: OnStart,
            on_progress: Any = None) -> Iterator[Outcome]:
        """Submit ``work`` on each unit to Ray (bounded in flight); yield outcomes as they end.

        ``on_progress`` is not forwarded: workers report no per-task progress.
        """
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, **{"include_dashboard": False, **self.init_kwargs})
        try:
            resources = ray.cluster_resources()
            remote = ray.remote(_call)
            queue = list(units)
            cap = self.max_in_flight or max(1, int(resources.get("CPU", 1) // self.num_cpus))
            in_flight: dict[Any, Unit] = {}
            while queue or in_flight:
                while queue and len(in_flight) < cap:
                    unit = queue.pop(0)
                    placed, gpus = self._placement(unit, resources)
                    if gpus:
                        cap = min(cap, max(1, int(resources.get("GPU", 1) // gpus)))
                    ref = remote.options(num_cpus=self.num_cpus, num_gpus=gpus,
                                         max_retries=self.max_retries, retry_exceptions=False,
                                         name=f"unit {unit.label}").remote(work, placed)
                    in_flight[ref] = unit
                    on_start(unit)
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    unit = in_flight.pop(ref)
                    try:
                        yield Outcome(unit, tables=ray.get(ref))
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.cause if exc.cause is not None else exc
                        message, trace = format_exception(cause)
                        yield Outcome(unit, error=message, traceback=trace)
                    except ray.exceptions.RayError as exc:  # worker died after every retry
                        message, trace = format_exception(exc)
                        yield Outcome(unit, error=message, traceback=trace)
        finally:
            if started_here:
                ray.shutdown()


EXECUTORS: dict[str, Callable[..., Any]] = {"local": LocalExecutor, "ray": RayExecutor}
"""Executors by name (``--executor``)."""


def make_executor(name: str, **options: Any) -> Any:
    """Build the executor ``name`` with ``options``.

    Raises:
        UnknownNameError: For an unknown executor name (the message lists the valid ones).
        TypeError: For an option the executor does not take.
    """
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}"
        ) from None
    return functools.partial(factory, **options)()
