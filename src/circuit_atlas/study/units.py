"""Units of work: one (model, checkpoint) with every task and setting it runs.

A :class:`Unit` is a frozen, JSON-serialisable value. Its :attr:`Unit.unit_id` is a stable hash of
the checkpoint's identity (source kind, model, size, step, local path, and — when set — the
training seed and hub revision) and of every setting that
changes results (tasks with sizes, seeds and options; attribution; circuit search; precision;
analyses). Execution settings (device, batch size, threads, directories) are carried along but
excluded from the id, so moving a study to another machine does not invalidate its results.

:func:`plan_units` expands a :class:`~circuit_atlas.study.config.StudyConfig` into units: for
each model, the union of the steps of its schedule and its per-task schedules; each unit runs the
tasks whose schedule contains its step.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from circuit_atlas.errors import CircuitAtlasError, ConfigError
from circuit_atlas.study.config import (
    HubSource,
    LocalSource,
    PythiaSource,
    StudyConfig,
    SuiteSource,
    results_root,
)

__all__ = [
    "BYTES_PER_PARAM",
    "CheckpointRef",
    "Execution",
    "LOCAL_SUITE",
    "TaskSettings",
    "Unit",
    "UnitSettings",
    "estimate_cost",
    "plan_units",
]

BYTES_PER_PARAM = {"float32": 4, "bfloat16": 2, "float16": 2}
"""Bytes per parameter of the weights in memory, by precision."""

HUB_BYTES_PER_PARAM = 2
"""Bytes per parameter of a Pythia checkpoint download (fp16 safetensors)."""

LOCAL_SUITE = "local"
"""The ``suite`` of explicit local checkpoints (a ``kind = "local"`` source)."""


@dataclass(frozen=True)
class CheckpointRef:
    """Which checkpoint a unit loads.

    Attributes:
        kind: ``pythia``, ``hub``, ``suite`` or ``local``.
        model: Display name (``pythia-70m``, ``<suite>-<size>``, or the configured name); a
            seed of a several-seed source adds ``-seed<N>`` (PolyPythias' hub names).
        size: Pythia size or suite size label, else None.
        step: Training step, if known.
        name: Pythia registry name (hub checkpoints) or the suite size, for ``load_model``.
        path: Suite root (``suite``) or checkpoint directory (``local``); None for the hub.
        params: Parameter count when known before loading (Pythia), else None.
        tokens_seen: Training tokens at ``step`` when known, else None.
        repo_id: Hub repository (Pythia, hub suites), used to evict the cached checkpoint.
        revision: Hub branch (hub suites), from the repository's branch list.
        seed: Training seed when the source lists ``seeds``, else None.
        base_model: The model name shared by every seed (``pythia-160m`` for
            ``pythia-160m-seed1``); None when the source lists no seeds.
        suite: The checkpoint suite the model belongs to: the registry name of a Pythia or hub
            source (``pythia``, ``olmo``, ...), the prefix of a local suite (the source's
            ``name``, else the ``suite.json`` name, else the directory name), ``local`` for
            explicit local checkpoints. Not part of the identity.
        tokens_per_step: Training tokens per optimiser step of the model, where the registry
            or the ``suite.json`` gives it (tokens), else None (OLMo: its tokens seen come from
            the branch names). Not part of the identity.
    """

    kind: str
    model: str
    size: str | None
    step: int | None
    name: str | None = None
    path: str | None = None
    params: int | None = None
    tokens_seen: int | None = None
    repo_id: str | None = None
    revision: str | None = None
    seed: int | None = None
    base_model: str | None = None
    suite: str | None = None
    tokens_per_step: int | None = None

    def identity(self) -> dict[str, Any]:
        """Return the fields that identify the checkpoint (hashed into the unit id).

        ``seed`` and ``revision`` are included only when set, so that the ids of units planned
        before they existed do not change.
        """
        out = {"kind": self.kind, "model": self.model, "size": self.size, "step": self.step,
               "name": self.name, "path": self.path}
        out.update({k: v for k, v in (("seed", self.seed), ("revision", self.revision))
                    if v is not None})
        return out

    def load_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments of :func:`circuit_atlas.models.sources.load_model`."""
        if self.kind == "pythia":
            return {"name": self.name, "step": self.step}
        if self.kind == "hub":
            return {"name": self.name, "step": self.step, "revision": self.revision}
        if self.kind == "suite":
            return {"name": self.name, "path": self.path, "step": self.step}
        return {"path": self.path}


@dataclass(frozen=True)
class TaskSettings:
    """One task of a unit: registered name, size, seed, and options (a JSON string)."""

    name: str
    n: int | None
    seed: int | None
    options: str = "{}"

    def options_dict(self) -> dict[str, Any]:
        """Return the options as a dict."""
        return json.loads(self.options)


@dataclass(frozen=True)
class UnitSettings:
    """Every setting of a unit that changes its results (hashed into the unit id)."""

    tasks: tuple[TaskSettings, ...]
    method: str
    ig_steps: int
    ablation: str
    threshold: float
    search: str
    precision: str
    analyses: tuple[str, ...]
    components: str = "{}"
    """The component-score settings as JSON (:class:`circuit_atlas.components.ComponentSettings`
    fields), when ``components`` or ``algorithm`` is among the analyses."""
    algorithm: str = "{}"
    """The algorithm settings as JSON (:class:`circuit_atlas.components.algorithm.
    AlgorithmSettings` fields), when ``algorithm`` is among the analyses."""
    mib: bool = False
    """Store the MIB metrics (``mib`` and ``mib_curves`` tables) with the circuits. Hashed into
    the unit id only when on, so that units planned before the option keep their ids."""

    def component_settings(self) -> Any:
        """Return the :class:`~circuit_atlas.components.ComponentSettings` of this unit."""
        from circuit_atlas.components import ComponentSettings

        values = json.loads(self.components)
        if "scores" in values:
            values["scores"] = tuple(values["scores"])
        return ComponentSettings(**values)

    def algorithm_settings(self) -> Any:
        """Return the :class:`~circuit_atlas.components.algorithm.AlgorithmSettings`."""
        from circuit_atlas.components.algorithm import AlgorithmSettings

        return AlgorithmSettings(**json.loads(self.algorithm))


@dataclass(frozen=True)
class Execution:
    """How a unit is executed; not part of its id."""

    device: str = "auto"
    batch_size: int = 32
    threads: int | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    allow_pickle: bool = False
    """Load checkpoints whose only weights are pickled (``[run] allow_pickle``)."""


@dataclass(frozen=True)
class Unit:
    """One unit of work: load one checkpoint once and run every task on it."""

    checkpoint: CheckpointRef
    settings: UnitSettings
    execution: Execution = field(default_factory=Execution)

    @property
    def unit_id(self) -> str:
        """Stable 16-hex-digit id: SHA-256 of the checkpoint identity and the settings."""
        settings = asdict(self.settings)
        for key in ("components", "algorithm"):  # keeps the ids of units without them
            if settings[key] == "{}":
                del settings[key]
        if not settings["mib"]:  # the default: ids of units planned before the option stay
            del settings["mib"]
        payload = {"checkpoint": self.checkpoint.identity(), "settings": settings}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """Human-readable ``model@step``."""
        return f"{self.checkpoint.model}@{self.checkpoint.step}"

    def to_dict(self) -> dict[str, Any]:
        """Return the unit as a JSON-serialisable dict (with its id)."""
        return {"unit_id": self.unit_id, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Unit:
        """Rebuild a unit from :meth:`to_dict` output.

        Raises:
            ConfigError: If the recorded ``unit_id`` does not match the rebuilt unit's.
        """
        settings = dict(data["settings"])
        settings["tasks"] = tuple(TaskSettings(**t) for t in settings["tasks"])
        settings["analyses"] = tuple(settings["analyses"])
        unit = cls(CheckpointRef(**data["checkpoint"]), UnitSettings(**settings),
                   Execution(**data.get("execution", {})))
        if "unit_id" in data and data["unit_id"] != unit.unit_id:
            raise ConfigError(f"unit id {data['unit_id']!r} does not match its content "
                              f"({unit.unit_id!r}); it was written by another version")
        return unit


class _Located(ConfigError):
    """A planning error tied to a location in the study file."""

    def __init__(self, message: str, loc: Sequence[int | str]) -> None:
        super().__init__(message)
        self.loc = list(loc)


def _steps_by_task(source: PythiaSource | SuiteSource, study: StudyConfig, index: int,
                   valid: Sequence[int], label: str) -> dict[str, list[int]]:
    from circuit_atlas.models.schedules import resolve_schedule

    out = {}
    for task in study.tasks:
        spec = source.task_schedules.get(task.name, source.schedule)
        key = (["task_schedules", task.name] if task.name in source.task_schedules
               else ["schedule"])
        try:
            out[task.name] = resolve_schedule(spec, valid, model=label)
        except CircuitAtlasError as exc:
            raise _Located(str(exc), ["models", index, *key]) from None
    return out


def _expand(ckpt_for_step, steps_by_task: dict[str, list[int]]) -> list[tuple[Any, tuple]]:
    steps = sorted({s for steps in steps_by_task.values() for s in steps})
    return [(ckpt_for_step(step), tuple(t for t, ts in steps_by_task.items() if step in ts))
            for step in steps]


def _pythia_units(source: PythiaSource, study: StudyConfig, index: int, revisions_dir: Path):
    from circuit_atlas.models.pythia import TOKENS_PER_STEP, get_pythia, steps_to_tokens

    out = []
    for name in source.model_names():
        try:
            entry = get_pythia(name)
        except CircuitAtlasError as exc:
            raise _Located(str(exc), ["models", index, "sizes"]) from None
        by_task = _steps_by_task(source, study, index, entry.steps, entry.name)
        out += _expand(lambda step, e=entry: CheckpointRef(
            "pythia", e.name, e.size, step, name=e.name, params=e.n_params,
            tokens_seen=steps_to_tokens(step), repo_id=e.repo_id, suite="pythia",
            tokens_per_step=TOKENS_PER_STEP), by_task)
    return out


def _hub_units(source: HubSource, study: StudyConfig, index: int, revisions_dir: Path):
    from circuit_atlas.models.hub_suites import HUB_SUITES, resolve_hub_model
    from circuit_atlas.models.pythia import get_pythia

    try:
        if source.suite.strip().lower() in HUB_SUITES:
            suite = HUB_SUITES[source.suite.strip().lower()]
            if not source.sizes:
                raise _Located(f"hub suite {suite.name!r} needs `sizes` (one of "
                               f"{', '.join(suite.sizes)})", ["models", index, "suite"])
            sizes = source.sizes
        else:
            first = resolve_hub_model(source.suite)
            if source.sizes:
                raise _Located(f"{source.suite!r} names one model; drop `sizes` or name the "
                               f"suite {first.suite.name!r}", ["models", index, "sizes"])
            suite, sizes = first.suite, [first.size]
    except _Located:
        raise
    except CircuitAtlasError as exc:
        raise _Located(str(exc), ["models", index, "suite"]) from None
    cache = study.resolve_path(study.cache_dir)
    out = []
    for size in sizes:
        for seed in source.seeds or [None]:
            try:
                hub = suite.model(size, seed)
                hub.require_adapter()
                if suite.name == "pythia":
                    entry = get_pythia(hub.name)
                    checkpoints = {c.step: c for c in hub.checkpoints()}
                else:
                    entry = None
                    checkpoints = {c.step: c for c in hub.checkpoints(
                        revisions_dir=revisions_dir, hub_cache_dir=cache)}
                if not checkpoints:
                    raise _Located(f"{hub.repo_id} has no branch named like "
                                   f"{suite.scheme.example!r}", ["models", index, "suite"])
            except _Located:
                raise
            except CircuitAtlasError as exc:
                key = "seeds" if "seed" in str(exc) and source.seeds else "suite"
                raise _Located(str(exc), ["models", index, key]) from None
            by_task = _steps_by_task(source, study, index, list(checkpoints), hub.name)
            seeded = {"seed": hub.seed, "base_model": hub.base_name} if source.seeds else {}
            out += _expand(lambda step, h=hub, e=entry, c=checkpoints, s=seeded: CheckpointRef(
                "pythia" if e is not None else "hub", h.name, h.size, step, name=h.name,
                params=None if e is None else e.n_params, tokens_seen=c[step].tokens,
                repo_id=h.repo_id, revision=None if e is not None else c[step].revision,
                suite=h.suite.name, tokens_per_step=h.tokens_per_step, **s), by_task)
    return out


def _suite_units(source: SuiteSource, study: StudyConfig, index: int, revisions_dir: Path):
    if not source.seeds:
        return _one_suite_units(source, study, index, study.resolve_path(source.path), None)
    root = study.resolve_path(source.path)
    out = []
    for seed in source.seeds:
        if not (root / f"seed{seed}").is_dir():
            found = sorted(p.name for p in root.glob("seed*") if p.is_dir())
            raise _Located(f"suite {str(root)!r} has no seed {seed} (no directory seed{seed}; "
                           f"found: {', '.join(found) or 'none'})", ["models", index, "seeds"])
        out += _one_suite_units(source, study, index, root / f"seed{seed}", seed,
                                prefix=source.name or root.name)
    return out


def _one_suite_units(source: SuiteSource, study: StudyConfig, index: int, root: Path,
                     seed: int | None, prefix: str | None = None):
    from circuit_atlas.models.suite import (
        list_suite_checkpoints,
        list_suite_sizes,
        read_suite_manifest,
        suite_tokens_per_step,
    )

    try:
        sizes = source.sizes or list_suite_sizes(root)
        manifest = read_suite_manifest(root) or {}
        valid_by_size = {size: list_suite_checkpoints(root, size) for size in sizes}
    except CircuitAtlasError as exc:
        raise _Located(str(exc), ["models", index, "sizes" if source.sizes else "path"]) from None
    if not sizes:
        raise _Located(f"suite {str(root)!r} has no sizes with checkpoints",
                       ["models", index, "path"])
    prefix = prefix or source.name or manifest.get("name") or root.name
    out = []
    for size, valid in valid_by_size.items():
        per_step = suite_tokens_per_step(root, size)
        base = f"{prefix}-{size}"
        model = base if seed is None else f"{base}-seed{seed}"
        seeded = {} if seed is None else {"seed": seed, "base_model": base}
        by_task = _steps_by_task(source, study, index, valid, f"suite {prefix} size {size}"
                                 + ("" if seed is None else f" seed {seed}"))
        out += _expand(lambda step, s=size, t=per_step, m=model, x=seeded: CheckpointRef(
            "suite", m, s, step, name=s, path=str(root),
            tokens_seen=None if t is None else step * t, suite=prefix, tokens_per_step=t, **x),
            by_task)
    return out


def _local_units(source: LocalSource, study: StudyConfig, index: int, revisions_dir: Path):
    out = []
    tasks = tuple(t.name for t in study.tasks)
    for j, ckpt in enumerate(source.checkpoints):
        path = study.resolve_path(ckpt.path)
        if not (path / "config.json").is_file():
            raise _Located(f"checkpoint directory {str(path)!r} has no config.json",
                           ["models", index, "checkpoints", j, "path"])
        out.append((CheckpointRef("local", source.name, None, ckpt.step, path=str(path),
                                  tokens_seen=ckpt.tokens_seen, suite=LOCAL_SUITE), tasks))
    return out


_PLANNERS = {"pythia": _pythia_units, "hub": _hub_units, "suite": _suite_units,
             "local": _local_units}


def plan_units(study: StudyConfig, *, device: str | None = None, batch_size: int | None = None,
               data_dir: str | None = None, cache_dir: str | None = None,
               allow_pickle: bool = False, revisions_dir: str | os.PathLike[str] | None = None
               ) -> list[Unit]:
    """Expand a study into its units, in order (model by model, step by step).

    Args:
        study: The validated study.
        device: Overrides ``run.device``.
        batch_size: Overrides ``run.batch_size``.
        data_dir: Overrides the study's ``data_dir``.
        cache_dir: Overrides the study's ``cache_dir``.
        allow_pickle: Allow pickled checkpoints even if the study's ``run.allow_pickle`` is off.
        revisions_dir: Cache of hub branch lists (default ``<results>/revisions``, see
            :func:`~circuit_atlas.study.config.results_root`); hub suites other than Pythia read
            their checkpoints from it (:func:`~circuit_atlas.models.revisions.list_repo_revisions`).

    Returns:
        The units; ids are unique (a checkpoint listed twice is planned once).

    Raises:
        ConfigError: For a schedule, size, suite or checkpoint that does not exist; the error has
            a ``loc`` attribute pointing into the study file.
    """
    task_by_name = {t.name: t for t in study.tasks}
    execution = Execution(
        device=device or study.run.device,
        batch_size=batch_size or study.run.batch_size,
        threads=study.run.threads,
        data_dir=data_dir or _str(study.resolve_path(study.data_dir)),
        cache_dir=cache_dir or _str(study.resolve_path(study.cache_dir)),
        allow_pickle=allow_pickle or study.run.allow_pickle,
    )
    revisions = Path(revisions_dir) if revisions_dir is not None else (
        results_root(study) / "revisions")
    units, seen = [], set()
    for index, source in enumerate(study.models):
        for ckpt, task_names in _PLANNERS[source.kind](source, study, index, revisions):
            tasks = tuple(
                TaskSettings(name, task_by_name[name].n, task_by_name[name].seed,
                             json.dumps(task_by_name[name].options, sort_keys=True))
                for name in task_names
            )
            settings = UnitSettings(
                tasks=tasks, method=study.attribution.method, ig_steps=study.attribution.ig_steps,
                ablation=study.attribution.ablation, threshold=study.circuit.threshold,
                search=study.circuit.search, precision=study.run.precision,
                analyses=tuple(study.analyses), components=_components_json(study),
                algorithm=_algorithm_json(study), mib=study.circuit.mib,
            )
            unit = Unit(ckpt, settings, execution)
            if unit.unit_id not in seen:
                seen.add(unit.unit_id)
                units.append(unit)
    return units


def _components_json(study: StudyConfig) -> str:
    """The study's component settings as canonical JSON ("{}" when not needed).

    The algorithm analysis reads component scores, so it needs them too.
    """
    if not {"components", "algorithm"} & set(study.analyses):
        return "{}"
    values = study.components.model_dump()
    corpus = study.resolve_path(study.components.cspa_corpus)
    values["cspa_corpus"] = None if corpus is None else str(corpus)
    return json.dumps(values, sort_keys=True)


def _algorithm_json(study: StudyConfig) -> str:
    """The study's algorithm settings as canonical JSON ("{}" when not analysed)."""
    if "algorithm" not in study.analyses:
        return "{}"
    return json.dumps(study.algorithm.model_dump(), sort_keys=True)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def estimate_cost(units: Sequence[Unit], *, seconds_per_unit: dict[str, float] | None = None
                  ) -> dict[str, Any]:
    """Estimate what a study costs: units, task runs, downloads, and (optionally) compute.

    Args:
        units: The planned units.
        seconds_per_unit: Optional measured seconds per unit by model name (e.g. from
            ``docs/benchmarks.md``); models without a value are left out of the time estimate.

    Returns:
        ``units``, ``task_runs``, ``download_gb`` (hub checkpoints only, 2 bytes per parameter,
        PAPER.md §1), ``per_model`` (units, task runs, download GB, hours when known) and
        ``hours`` (sum over models with a timing, else None).
    """
    per_model: dict[str, dict[str, Any]] = {}
    for unit in units:
        ckpt = unit.checkpoint
        row = per_model.setdefault(ckpt.model, {"units": 0, "task_runs": 0, "download_gb": 0.0,
                                                "params": ckpt.params})
        row["units"] += 1
        row["task_runs"] += len(unit.settings.tasks)
        if ckpt.kind in ("pythia", "hub") and ckpt.params:
            row["download_gb"] += ckpt.params * HUB_BYTES_PER_PARAM / 1e9
    hours = None
    for model, row in per_model.items():
        seconds = (seconds_per_unit or {}).get(model)
        row["hours"] = None if seconds is None else row["units"] * seconds / 3600
        if row["hours"] is not None:
            hours = (hours or 0.0) + row["hours"]
    return {
        "units": len(units),
        "task_runs": sum(r["task_runs"] for r in per_model.values()),
        "download_gb": sum(r["download_gb"] for r in per_model.values()),
        "per_model": per_model,
        "hours": hours,
    }
