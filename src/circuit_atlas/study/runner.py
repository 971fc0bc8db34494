"""Compute units and commit them to the results store.

The unit of work is one (model, checkpoint): :func:`compute_unit` loads it once and runs every
task on it — task metrics on the clean and corrupted prompts, attribution and the minimal faithful
circuit with its faithfulness curve — and returns the rows of every store table. Computing has no
side effect besides the Hugging Face cache, so it can run anywhere (a Ray worker included); the
driver commits the rows with :meth:`~circuit_atlas.store.ResultsStore.write_unit`, which is atomic
and refuses duplicates. :func:`run_unit` does both for one unit; :func:`run_study` runs a list of
units through an executor with resume (committed units are skipped), run state for
``circuit-atlas status``, a log file per run and progress bars with ETAs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from circuit_atlas._faults import fault_point
from circuit_atlas.errors import StoreError, TaskDataError
from circuit_atlas.store import REPAIR_HINT, TABLES, ResultsStore
from circuit_atlas.study.cache import CachePolicy, evict_checkpoints
from circuit_atlas.study.executors import format_exception, make_executor
from circuit_atlas.study.unit_analyses import algorithm_unit_tables, component_tables
from circuit_atlas.study.units import Unit

__all__ = [
    "Engine",
    "RunSummary",
    "compute_unit",
    "default_engine",
    "execute_unit",
    "run_study",
    "run_unit",
]

logger = logging.getLogger(__name__)

Progress = Callable[[str, Unit, dict], None]
"""Progress callback: ``(event, unit, info)`` with events ``task`` (a task finished)."""


# --- the engine ----------------------------------------------------------------------------------


def _load_model(**kwargs: Any) -> Any:
    from circuit_atlas.models.sources import load_model

    return load_model(**kwargs)


def _make_dataset(name: str, tokenizer: Any, **kwargs: Any) -> Any:
    from circuit_atlas.tasks import make_dataset

    return make_dataset(name, tokenizer, **kwargs)


def _behaviour(model: Any, data: Any, **kwargs: Any) -> dict:
    from circuit_atlas.evaluation import behaviour

    return behaviour(model, data, **kwargs)


def _find_circuit(model: Any, data: Any, **kwargs: Any) -> Any:
    from circuit_atlas.search import find_circuit

    return find_circuit(model, data, **kwargs)


def _mib_metrics(model: Any, data: Any, result: Any) -> Any:
    from circuit_atlas.mib import mib_for_result

    return mib_for_result(model, data, result)


@dataclass(frozen=True)
class Engine:
    """The functions a unit calls. :func:`default_engine` is circuit-atlas's own.

    Attributes:
        load_model: ``load_model(name=, step=, path=, device=, dtype=, data_dir=, cache_dir=,
            allow_pickle=)`` returning a model with ``spec``, ``tokenizer``, ``source`` (its
            ``weights_fingerprint`` goes to the ``units`` table) and ``device``.
        make_dataset: ``make_dataset(name, tokenizer, n=, seed=, data_dir=, **options)``.
        behaviour: ``behaviour(model, data, batch_size=)`` → ``{"clean": {...}, "corrupted":
            {...}}`` of :func:`circuit_atlas.tasks.base.behaviour_metrics` dicts.
        find_circuit: ``find_circuit(model, data, method=, ig_steps=, threshold=, search=,
            ablation=, batch_size=)`` → :class:`circuit_atlas.result.CircuitResult`.
        mib_metrics: ``mib_metrics(model, data, result)`` → :class:`circuit_atlas.mib.MibScores`
            of a circuit result (:func:`circuit_atlas.mib.mib_for_result`).
    """

    load_model: Callable[..., Any] = _load_model
    make_dataset: Callable[..., Any] = _make_dataset
    behaviour: Callable[..., dict] = _behaviour
    find_circuit: Callable[..., Any] = _find_circuit
    mib_metrics: Callable[..., Any] = _mib_metrics


def default_engine() -> Engine:
    """Return circuit-atlas's engine (models, tasks, evaluation, search; imported lazily)."""
    return Engine()


# --- rows of one unit ----------------------------------------------------------------------------

_BEHAVIOUR = ("accuracy", "rank0", "prob_mass", "logit_diff", "prob_diff")
_QKV = re.compile(r"<[qkv]>$")


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _metric_row(keys: dict, task: str, data: Any, result: dict) -> dict:
    clean, corrupted = result["clean"], result["corrupted"]
    row = {**keys, "task": task, "metric_kind": data.metric,
           "clean_metric": float(clean["metric"]), "corrupted_metric": float(corrupted["metric"]),
           "clean_metric_std": _float(clean.get("metric_std")),
           "corrupted_metric_std": _float(corrupted.get("metric_std")), "n_examples": len(data)}
    for name in _BEHAVIOUR:
        row[name] = _float(clean.get(name))
        row[f"corrupted_{name}"] = _float(corrupted.get(name))
    return row


PROMPT_RUNS: tuple[str, ...] = ("clean", "corrupted", "empty", "circuit")
"""The runs whose per-prompt task metric goes to the ``prompt_metrics`` table: the model on the
clean and on the corrupted prompts (from the behaviour), and the empty and the found circuit on
the clean prompts (from the circuit search)."""


def _prompt_rows(short: dict, task: str, behaviour: dict | None, res: Any) -> pa.Table:
    """The ``prompt_metrics`` rows of one task: one per run in :data:`PROMPT_RUNS` × example.

    A run whose per-example values the engine did not return (an engine without them, or a
    task without the analysis) has no rows.
    """
    values: dict[str, list[float]] = {}
    behaviour = behaviour or (getattr(res, "settings", None) or {}).get("behaviour") or {}
    for side in ("clean", "corrupted"):
        if behaviour.get(side, {}).get("metric_values") is not None:
            values[side] = list(behaviour[side]["metric_values"])
    for run, listed in (getattr(res, "example_metrics", None) or {}).items():
        values[run] = list(listed)
    runs = [r for r in PROMPT_RUNS if r in values]
    n = [len(values[r]) for r in runs]
    schema = TABLES["prompt_metrics"]
    column = lambda key, total: pa.array([short[key]] * total,  # noqa: E731
                                         type=schema.field(key).type)
    total = sum(n)
    return pa.table({
        **{key: column(key, total) for key in ("unit_id", "model", "step")},
        "task": pa.array([task] * total, pa.string()),
        "run": pa.array([r for r, k in zip(runs, n, strict=True) for _ in range(k)], pa.string()),
        "example": pa.array([i for k in n for i in range(k)], pa.int64()),
        "metric": pa.array([float(v) for r in runs for v in values[r]], pa.float64()),
    }, schema=schema)


def _circuit_tables(keys: dict, short: dict, task: str, res: Any, unit: Unit) -> dict[str, Any]:
    s = unit.settings
    circuit = {
        **keys, "task": task, "n_edges": int(res.n_edges), "n_nodes": int(res.n_nodes),
        "n_edges_total": len(res.edge_names), "n_nodes_total": len(res.node_names),
        "faithfulness": _float(res.faithfulness),
        "faithfulness_normalized": _float(res.faithfulness_normalized),
        "threshold": s.threshold, "search": s.search, "method": s.method,
        "ig_steps": s.ig_steps, "ablation": s.ablation,
        "clean_metric": _float(res.clean_metric), "corrupted_metric": _float(res.corrupted_metric),
        "empty_metric": _float(res.empty_metric),
    }
    n_e, n_n = len(res.edge_names), len(res.node_names)

    def repeat(values: dict, n: int) -> dict:
        return {k: pa.array([v] * n, type=TABLES["edges"].field(k).type) for k, v in values.items()}

    edges = pa.table({
        **repeat({**short, "task": task}, n_e),
        "edge": pa.array(res.edge_names, pa.string()),
        "parent": pa.array(res.edge_parent, pa.string()),
        "child": pa.array([_QKV.sub("", c) for c in res.edge_child], pa.string()),
        "score": pa.array(res.scores.detach().float().cpu().numpy(), pa.float32()),
        "in_circuit": pa.array(res.in_circuit.detach().cpu().numpy().astype(bool)),
    })
    nodes = pa.table({
        **repeat({**short, "task": task}, n_n),
        "node": pa.array(res.node_names, pa.string()),
        "in_circuit": pa.array(res.node_in_circuit.detach().cpu().numpy().astype(bool)),
    })
    curves = [{**short, "task": task, "n_requested": int(p["n_requested"]),
               "n_edges": int(p["n_edges"]), "n_nodes": int(p["n_nodes"]),
               "metric": _float(p.get("metric")), "faithfulness": _float(p.get("faithfulness")),
               "faithfulness_normalized": _float(p.get("faithfulness_normalized"))}
              for p in res.curve]
    return {"circuits": [circuit], "edges": edges, "nodes": nodes, "curves": curves}


def _mib_tables(keys: dict, short: dict, task: str, scores: Any) -> dict[str, list]:
    signed, absolute = scores.signed, scores.absolute
    row = {**keys, "task": task, "cpr": _float(scores.cpr), "cmd": _float(scores.cmd),
           "clean_metric": _float(signed.clean_metric), "empty_metric": _float(signed.empty_metric),
           "n_fractions": len(signed.fractions), "circuits": int(scores.circuits),
           "seconds": float(scores.seconds), "ablation": scores.ablation}
    curves = [{**short, "task": task, "absolute": bool(p["absolute"]),
               "fraction": float(p["fraction"]), "n_requested": int(p["n_requested"]),
               "n_edges": int(p["n_edges"]), "metric": float(p["metric"]),
               "faithfulness": _float(p["faithfulness"])}
              for curve in (signed, absolute) for p in curve.rows()]
    return {"mib": [row], "mib_curves": curves}


def _versions() -> dict[str, str]:
    import torch
    import transformers

    from circuit_atlas import __version__

    return {"circuit_atlas": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def _concat(name: str, parts: list) -> pa.Table:
    """Concatenate Arrow tables and lists of row dicts into one table of ``name``'s schema."""
    schema = TABLES[name]
    tables = [p.select(schema.names).cast(schema) if isinstance(p, pa.Table)
              else pa.Table.from_pylist(p, schema=schema) for p in parts]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def compute_unit(unit: Unit, engine: Engine | None = None, *,
                 on_progress: Progress | None = None) -> dict[str, pa.Table]:
    """Load the unit's checkpoint once and run every task and analysis on it.

    Args:
        unit: The unit.
        engine: The functions to call (default: :func:`default_engine`).
        on_progress: Called with ``("task", unit, {"task": name, "seconds": s})`` after each task.

    Returns:
        Table name → Arrow table with the store's schema, ready for
        :meth:`~circuit_atlas.store.ResultsStore.write_unit`. A task whose data cannot be built
        for this model (:class:`~circuit_atlas.errors.TaskDataError`) is recorded in the unit's
        ``errors`` and its status is ``partial``; any other error propagates (the unit fails and
        is retried on the next run). The global torch RNG and thread count are restored.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if unit.execution.threads:
                torch.set_num_threads(unit.execution.threads)
            return _compute(unit, engine or default_engine(), on_progress)
    finally:
        torch.set_num_threads(threads)


def _compute(unit: Unit, engine: Engine, on_progress: Progress | None) -> dict[str, pa.Table]:
    import torch

    ex, ckpt, settings = unit.execution, unit.checkpoint, unit.settings
    started = time.perf_counter()
    timings: dict[str, float] = {}
    model = engine.load_model(**ckpt.load_kwargs(),
                              device=None if ex.device == "auto" else ex.device,
                              dtype=settings.precision, data_dir=ex.data_dir,
                              cache_dir=ex.cache_dir, allow_pickle=ex.allow_pickle)
    timings["load"] = time.perf_counter() - started
    source = dict(getattr(model, "source", None) or {})
    params = source.get("params") or ckpt.params
    tokens = ckpt.tokens_seen if ckpt.tokens_seen is not None else source.get("tokens")
    short = {"unit_id": unit.unit_id, "model": ckpt.model, "step": ckpt.step}
    keys = {**short, "params": params, "tokens_seen": tokens}
    parts: dict[str, list] = {name: [] for name in TABLES}
    errors: dict[str, str] = {}
    versions = _versions()
    circuit_edges: dict[str, tuple[list[str], list[str]] | None] = {}
    circuit_results: dict[str, Any] = {}
    behaviours: dict[str, dict] = {}
    for task in settings.tasks:
        t0 = time.perf_counter()
        try:
            data = engine.make_dataset(task.name, model.tokenizer, n=task.n, seed=task.seed,
                                       data_dir=ex.data_dir, **task.options_dict())
        except TaskDataError as exc:
            logger.warning("unit %s: task %s skipped: %s", unit.label, task.name, exc)
            errors[task.name] = str(exc)
            continue
        result = None
        if "behaviour" in settings.analyses:
            result = engine.behaviour(model, data, batch_size=ex.batch_size)
            parts["task_metrics"].append([_metric_row(keys, task.name, data, result)])
            behaviours[task.name] = {**result, "n": len(data)}
            timings[f"{task.name}.behaviour"] = time.perf_counter() - t0
        if "circuit" in settings.analyses:
            t1 = time.perf_counter()
            res = engine.find_circuit(model, data, method=settings.method,
                                      ig_steps=settings.ig_steps, threshold=settings.threshold,
                                      search=settings.search, ablation=settings.ablation,
                                      batch_size=ex.batch_size, baseline=result)
            for name, rows in _circuit_tables(keys, short, task.name, res, unit).items():
                parts[name].append(rows)
            if settings.mib:
                t2 = time.perf_counter()
                for name, rows in _mib_tables(keys, short, task.name,
                                              engine.mib_metrics(model, data, res)).items():
                    parts[name].append(rows)
                timings[f"{task.name}.mib"] = time.perf_counter() - t2
            circuit_results[task.name] = res
            inside = res.in_circuit.detach().cpu().numpy().astype(bool)
            faithful = (res.faithfulness is not None and res.faithfulness >= settings.threshold
                        and int(res.n_edges) > 0)  # fmt: skip
            circuit_edges[task.name] = (
                [p for p, k in zip(res.edge_parent, inside, strict=True) if k],
                [c for c, k in zip(res.edge_child, inside, strict=True) if k],
            ) if faithful else None  # a fallback circuit says nothing about the heads
            versions.update({k: str(v) for k, v in (getattr(res, "versions", None) or {}).items()})
            timings[f"{task.name}.circuit"] = time.perf_counter() - t1
        parts["prompt_metrics"].append(
            _prompt_rows(short, task.name, result, circuit_results.get(task.name)))
        logger.info("unit %s: task %s done in %.1fs", unit.label, task.name,
                    time.perf_counter() - t0)
        if on_progress is not None:
            on_progress("task", unit, {"task": task.name, "seconds": time.perf_counter() - t0})
    artifacts: dict[str, Any] = {}  # what the components analysis leaves for the algorithm
    for analysis in ("components", "algorithm"):
        if analysis not in settings.analyses:
            continue
        t0 = time.perf_counter()
        if analysis == "components":
            tables = component_tables(model, unit, keys, short, circuit_edges, errors, timings,
                                      artifacts)  # fmt: skip
        else:
            tables = algorithm_unit_tables(model, unit, keys, short, circuit_results, behaviours,
                                           artifacts, errors, timings)  # fmt: skip
        for name, rows in tables.items():
            parts[name].append(rows)
        timings[analysis] = time.perf_counter() - t0
        if on_progress is not None:
            on_progress("task", unit, {"task": analysis, "seconds": time.perf_counter() - t0})
    device = str(getattr(model, "device", ex.device))
    spec = model.spec.to_dict() if hasattr(model, "spec") else {}
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    timings["total"] = time.perf_counter() - started
    parts["units"].append([{
        **keys, "source_kind": ckpt.kind, "size": ckpt.size,
        "path": source.get("path") or (ckpt.path if ckpt.kind == "local" else None),
        "settings": json.dumps(asdict(settings), sort_keys=True),
        "spec": json.dumps(spec, sort_keys=True), "versions": json.dumps(versions, sort_keys=True),
        "timings": json.dumps({k: round(v, 4) for k, v in timings.items()}, sort_keys=True),
        "duration_s": timings["total"], "status": "partial" if errors else "complete",
        "errors": json.dumps(errors, sort_keys=True), "device": device,
        "host": socket.gethostname(), "finished_at": datetime.now(timezone.utc),
        "weights_fingerprint": source.get("weights_fingerprint"),
        "seed": ckpt.seed, "base_model": ckpt.base_model or ckpt.model,
        "suite": ckpt.suite, "tokens_per_step": ckpt.tokens_per_step,
    }])
    return {name: _concat(name, items) for name, items in parts.items()}


def execute_unit(unit: Unit, engine: Engine | None = None, cache: CachePolicy | None = None,
                 on_progress: Progress | None = None) -> dict[str, pa.Table]:
    """Compute a unit (:func:`compute_unit`), then evict its hub checkpoint under ``cache``.

    This is what executors run on workers: it reads and downloads but never writes the store.
    """
    try:
        return compute_unit(unit, engine, on_progress=on_progress)
    finally:
        ckpt = unit.checkpoint
        if cache is not None and ckpt.kind in ("pythia", "hub") and ckpt.repo_id:
            evict_checkpoints(cache, just_used=(ckpt.repo_id, f"step{ckpt.step}"))


def run_unit(unit: Unit, store: ResultsStore, engine: Engine | None = None, *,
             cache: CachePolicy | None = None, on_progress: Progress | None = None) -> bool:
    """Compute one unit and commit it, unless it is already in the store.

    Returns:
        True if the unit was computed and committed, False if it was already there.
    """
    if store.has_unit(unit.unit_id):
        return False
    tables = execute_unit(unit, engine, cache, on_progress)
    return store.write_unit(unit.unit_id, tables)


# --- a whole study -------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What one :func:`run_study` call did.

    Attributes:
        run_id: Id of the run (names its log file ``runs/<run_id>.log``).
        planned: Units in the plan.
        skipped: Units already committed before the run.
        done: Units computed and committed by this run.
        failed: ``unit_id`` → error message for units that failed.
        seconds: Wall-clock duration of the run.
        log_file: Path of the run's log file.
        set_aside: Damaged entries moved to ``damaged/`` by ``repair`` (their new paths).
    """

    run_id: str
    planned: int
    skipped: int = 0
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    log_file: str = ""
    set_aside: list[str] = field(default_factory=list)


def _plan_record(units: Sequence[Unit], run_id: str, executor: str, name: str | None,
                 config_text: str | None) -> dict:
    return {
        "run_id": run_id, "study": name, "executor": executor, "config_text": config_text,
        "started_at": datetime.now(timezone.utc).isoformat(),
        "units": [{"unit_id": u.unit_id, "model": u.checkpoint.model, "step": u.checkpoint.step,
                   "tasks": [t.name for t in u.settings.tasks]} for u in units],
    }


def run_study(units: Sequence[Unit], store: ResultsStore, *, executor: str = "local",
              executor_options: dict[str, Any] | None = None, engine: Engine | None = None,
              cache: CachePolicy | None = None, study_name: str | None = None,
              config_text: str | None = None, progress: bool = False,
              wait: float | None = 0, on_wait: Callable[[str], None] | None = None,
              repair: bool = False) -> RunSummary:
    """Run every unit not yet in the store, committing each as it finishes.

    Args:
        units: The planned units (:func:`~circuit_atlas.study.units.plan_units`).
        store: The results store.
        executor: A name from :data:`circuit_atlas.study.executors.EXECUTORS`.
        executor_options: Keyword arguments of the executor (Ray: ``address``, ``max_retries``).
        engine: The engine (default: circuit-atlas's).
        cache: Checkpoint cache policy (None: keep every download).
        study_name: Recorded in ``plan.json`` and the run record.
        config_text: The study file's text, recorded in ``plan.json`` (shown by the report).
        progress: Show progress bars (overall units with ETA; tasks of the unit in flight);
            plain lines, one per unit, when stderr is not a terminal.
        wait: Seconds to wait for another run holding the store's lock (0: refuse at once;
            None: no limit). See :meth:`~circuit_atlas.store.ResultsStore.lock`.
        on_wait: Called with a message naming the other run before waiting for it.
        repair: First move every damaged or foreign entry of the store to ``damaged/``
            (:func:`circuit_atlas.store_repair.set_aside`; open the store with
            ``check=False``), so that the units they held are recomputed.

    Returns:
        A :class:`RunSummary`. Failed units are recorded in ``state/failed/`` and retried by the
        next run; a killed run loses at most the units in flight.

    Raises:
        LockedError: If another process is running on this store (and ``wait`` ran out);
            nothing has been written.
        StoreError: If the store holds a damaged or foreign entry and ``repair`` is False (the
            message lists them and how to repair); nothing has been written.
    """
    with store.lock(wait=wait, on_wait=on_wait):
        fault_point("run.locked")
        from circuit_atlas.store_repair import set_aside, store_problems

        problems = store_problems(store)  # down to the Parquet footers: never mix damage in
        if problems and not repair:
            listed = "; ".join(p.message for p in problems)
            raise StoreError(f"results store {str(store.root)!r} is damaged: {listed}. "
                             f"{REPAIR_HINT.format(root=store.root)}")
        moved = [str(p) for p in set_aside(store, problems)] if repair else []
        summary = _run_locked(units, store, executor=executor, executor_options=executor_options,
                           engine=engine, cache=cache, study_name=study_name,
                           config_text=config_text, progress=progress)
        summary.set_aside = moved
        return summary


def _run_locked(units: Sequence[Unit], store: ResultsStore, *, executor: str,
                executor_options: dict[str, Any] | None, engine: Engine | None,
                cache: CachePolicy | None, study_name: str | None, config_text: str | None,
                progress: bool) -> RunSummary:
    from circuit_atlas.study.progress import ProgressBars

    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    log_path = store.runs_dir() / f"{run_id}.log"
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("circuit_atlas")
    old_level = package_logger.level
    package_logger.addHandler(handler)
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    summary = RunSummary(run_id, len(units), log_file=str(log_path))
    started = time.perf_counter()
    try:
        store.write_plan(_plan_record(units, run_id, executor, study_name, config_text))
        for unit_id, record in store.read_state()["running"].items():
            if record.get("interrupted"):
                store.clear_state(unit_id)
        done_ids = store.unit_ids()
        pending = [u for u in units if u.unit_id not in done_ids]
        summary.skipped = len(units) - len(pending)
        logger.info("run %s: %d units planned, %d already done, %d to run with %s",
                    run_id, len(units), summary.skipped, len(pending), executor)
        runner = make_executor(executor, **(executor_options or {}))
        bars = ProgressBars(len(units), summary.skipped, enabled=progress,
                            unit_bars=runner.reports_tasks)

        def on_start(unit: Unit) -> None:
            store.mark_state(unit.unit_id, "running", {
                "pid": os.getpid(), "host": socket.gethostname(), "run_id": run_id,
                "model": unit.checkpoint.model, "step": unit.checkpoint.step,
                "started_at": datetime.now(timezone.utc).isoformat()})
            bars.start(unit)

        work = functools.partial(execute_unit, engine=engine or default_engine(), cache=cache)
        for outcome in runner.run(pending, work, on_start,
                                  bars.on_progress if runner.reports_tasks else None):
            unit = outcome.unit
            if outcome.error is None:
                try:
                    fault_point("unit.computed")
                    store.write_unit(unit.unit_id, outcome.tables)
                    fault_point("unit.committed")
                except Exception as exc:  # noqa: BLE001 - the unit fails, the run goes on
                    outcome.error, outcome.traceback = format_exception(exc)
            if outcome.error is None:
                store.clear_state(unit.unit_id)
                summary.done += 1
                logger.info("unit %s (%s) committed", unit.label, unit.unit_id)
            else:
                store.mark_state(unit.unit_id, "failed", {
                    "error": outcome.error, "traceback": outcome.traceback, "run_id": run_id,
                    "model": unit.checkpoint.model, "step": unit.checkpoint.step,
                    "failed_at": datetime.now(timezone.utc).isoformat()})
                summary.failed[unit.unit_id] = outcome.error
                logger.error("unit %s (%s) failed: %s", unit.label, unit.unit_id, outcome.error)
            bars.finish(unit, ok=outcome.error is None)
        bars.close()
    finally:
        summary.seconds = time.perf_counter() - started
        record = {**asdict(summary), "executor": executor, "study": study_name,
                  "finished_at": datetime.now(timezone.utc).isoformat()}
        (store.runs_dir() / f"{run_id}.json").write_text(json.dumps(record, indent=2) + "\n")
        package_logger.removeHandler(handler)
        package_logger.setLevel(old_level)
        handler.close()
    return summary

