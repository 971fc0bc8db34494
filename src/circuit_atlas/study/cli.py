"""The study commands of ``circuit-atlas``: ``run``, ``status``, ``report`` and ``export``.

They are thin: each parses flags, calls the library (:mod:`circuit_atlas.study.runner`,
:mod:`~circuit_atlas.study.status`, :mod:`circuit_atlas.report`,
:mod:`~circuit_atlas.study.export`) and prints a summary. :func:`register` adds them to the
top-level Typer app.

The results directory is, in order: ``--results``, ``$CIRCUIT_ATLAS_RESULTS``, the study file's
``results`` key, then ``results/<study name>`` under the current directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from circuit_atlas.errors import CircuitAtlasError, OutputPathError, StoreError
from circuit_atlas.study.config import RESULTS_ENV_VAR

__all__ = ["RESULTS_ENV_VAR", "export", "register", "report", "run", "status"]


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def run(
    study_file: Annotated[Path, typer.Argument(help="Study file (.toml or .yaml).")],
    results: Annotated[Path | None, typer.Option("--results", "-r", help="Results directory (default: $CIRCUIT_ATLAS_RESULTS, the study's `results`, ./results/<name>).")] = None,  # noqa: E501
    executor: Annotated[str, typer.Option(help="Executor: local or ray.")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (e.g. auto).")] = None,
    max_retries: Annotated[int, typer.Option(help="Ray: retries of a unit whose worker died.")] = 2,
    keep_checkpoints: Annotated[bool, typer.Option("--keep-checkpoints", help="Never evict downloaded checkpoints.")] = False,  # noqa: E501
    cache_budget: Annotated[float, typer.Option(help="GB of hub-cached checkpoints to keep; older ones are evicted after each unit (0: evict each one after use).")] = 0.0,  # noqa: E501
    device: Annotated[str | None, typer.Option(help="Override the study's device.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the batch size.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Hugging Face cache dir.")] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Load checkpoints whose only weights are pickled (pytorch_model.bin); unpickling can execute code. Also [run] allow_pickle in the study file.")] = False,  # noqa: E501
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and its cost only.")] = False,  # noqa: E501
    progress: Annotated[bool, typer.Option(help="Show progress bars (plain lines when stderr is not a terminal).")] = True,  # noqa: E501
    wait: Annotated[bool, typer.Option("--wait", help="If another run holds the results store, wait for it to finish instead of stopping.")] = False,  # noqa: E501
    repair: Annotated[bool, typer.Option("--repair", help="Move damaged units and foreign files of the results store to <results>/damaged/ (nothing is deleted) and recompute those units.")] = False,  # noqa: E501
) -> None:
    """Run a study: every (model, checkpoint) unit not yet in the results store.

    One run per results store at a time: a second one stops with an error naming the first
    (or waits for it with --wait).
    """
    from circuit_atlas.models.configs import resolve_device
    from circuit_atlas.paths import check_output_dir
    from circuit_atlas.store import ResultsStore
    from circuit_atlas.study.cache import CachePolicy
    from circuit_atlas.study.config import results_root
    from circuit_atlas.study.load import load_study
    from circuit_atlas.study.runner import run_study
    from circuit_atlas.study.units import estimate_cost, plan_units

    try:
        study = load_study(study_file)
        root = results_root(study, results)
        units = plan_units(study, device=device, batch_size=batch_size,
                           data_dir=None if data_dir is None else str(data_dir.resolve()),
                           cache_dir=None if cache_dir is None else str(cache_dir.resolve()),
                           allow_pickle=allow_pickle, revisions_dir=root / "revisions")
        cost = estimate_cost(units)
        typer.echo(f"study {study.name}: {cost['units']} units, {cost['task_runs']} task runs, "
                   f"{cost['download_gb']:.1f} GB of hub checkpoints to download")
        if dry_run:
            for model, row in cost["per_model"].items():
                typer.echo(f"  {model}: {row['units']} units, {row['task_runs']} task runs, "
                           f"{row['download_gb']:.1f} GB")
            return
        if executor == "local":  # Ray workers have their own devices
            for name in sorted({u.execution.device for u in units} - {"auto"}):
                resolve_device(name)  # a device this machine lacks: refused before any work
        check_output_dir(root, "results directory")
        store = ResultsStore(root, create=True, check=not repair)
        repos = tuple(sorted({u.checkpoint.repo_id for u in units if u.checkpoint.repo_id}))
        cache = CachePolicy(keep=keep_checkpoints, budget_gb=cache_budget, repos=repos,
                            cache_dir=units[0].execution.cache_dir if units else None)
        options = {"address": address, "max_retries": max_retries} if executor == "ray" else {}
        summary = run_study(units, store, executor=executor, executor_options=options,
                            cache=cache, study_name=study.name,
                            config_text=Path(study_file).read_text(encoding="utf-8"),
                            progress=progress, wait=None if wait else 0,
                            on_wait=lambda message: typer.echo(message, err=True),
                            repair=repair)
    except CircuitAtlasError as exc:
        raise _fail(exc) from None
    for path in summary.set_aside:
        typer.echo(f"set aside damaged entry: {path}")
    typer.echo(f"results in {store.root}: {summary.done} units done, {summary.skipped} already "
               f"there, {len(summary.failed)} failed in {_duration(summary.seconds)} "
               f"(log: {summary.log_file})")
    for unit_id, error in summary.failed.items():
        typer.echo(f"  failed {unit_id}: {error}", err=True)
    if summary.failed:
        raise typer.Exit(code=1)


def status(
    results: Annotated[Path, typer.Argument(help="Results directory.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every unit in flight or failed.")] = False,  # noqa: E501
) -> None:
    """Show what is done, running and failed in a results directory, with an ETA.

    Also warns about distinct checkpoints (steps, models) whose weights are identical. A damaged
    store (a truncated Parquet file, a unit without its marker, a foreign file, a unit of
    another schema version) exits with code 2, listing every damaged entry and how to repair.
    """
    from circuit_atlas.store import REPAIR_HINT, ResultsStore
    from circuit_atlas.store_repair import store_problems
    from circuit_atlas.study.status import study_status

    try:
        store = ResultsStore(results, check=False)
        problems = store_problems(store)
        if problems:
            for problem in problems:
                typer.echo(f"damaged: {problem.message}", err=True)
            typer.echo(REPAIR_HINT.format(root=store.root), err=True)
            raise typer.Exit(code=2)
        st = study_status(store)
    except CircuitAtlasError as exc:
        raise _fail(exc) from None
    head = f"study {st.study}" if st.study else "results"
    typer.echo(f"{head}: {st.done}/{st.planned or st.done} units done, {len(st.running)} running, "
               f"{len(st.failed)} failed, {len(st.interrupted)} interrupted, {st.pending} pending")
    if st.driver:
        typer.echo(f"in use by process {st.driver.get('pid')} on {st.driver.get('host')} "
                   f"(`{st.driver.get('command')}`, since {st.driver.get('since')})")
    per_unit = _duration(st.seconds_per_unit) if st.seconds_per_unit is not None else "unknown"
    typer.echo(f"time per unit: {per_unit}; ETA: {_duration(st.eta_seconds)}")
    if st.partial:
        typer.echo(f"{st.partial} unit(s) are partial (a task could not run; see units.errors)")
    for group in st.identical_weights:
        typer.secho(f"warning: {group['message']}; units {group['unit_ids']} analysed the same "
                    "checkpoint twice", fg=typer.colors.YELLOW)
    for model, row in st.per_model.items():
        typer.echo(f"  {model}: {row['done']}/{row['planned']} done, {row['failed']} failed")
    groups = (("running", st.running), ("interrupted", st.interrupted), ("failed", st.failed))
    for label, records in groups:
        for unit_id, record in list(records.items())[: None if verbose else 10]:
            detail = record.get("error") or record.get("started_at", "")
            typer.echo(f"  {label} {unit_id} {record.get('model')}@{record.get('step')}: {detail}")


def report(
    results: Annotated[Path, typer.Argument(help="Results directory.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file (default: <results>/reports/report.html).")] = None,  # noqa: E501
    title: Annotated[str, typer.Option(help="Page title.")] = "circuit-atlas report",
) -> None:
    """Write the study's self-contained HTML report."""
    from circuit_atlas.paths import check_output_dir
    from circuit_atlas.report import write_report
    from circuit_atlas.store import REPAIR_HINT, ResultsStore
    from circuit_atlas.store_repair import store_problems

    try:
        store = ResultsStore(results)
        problems = store_problems(store)  # down to the Parquet footers
        if problems:
            raise StoreError(f"results store {str(store.root)!r} is damaged: "
                             f"{'; '.join(p.message for p in problems)}. "
                             f"{REPAIR_HINT.format(root=store.root)}")
        plan = store.read_plan() or {}
        out = output or store.root / "reports" / "report.html"
        if out.is_dir():
            raise OutputPathError(f"--output {str(out)!r} is a directory; give an HTML file")
        check_output_dir(out.parent, "the directory of --output")
        path = write_report(store, out, config_text=plan.get("config_text"),
                            title=f"{title}: {plan['study']}" if plan.get("study") else title)
    except CircuitAtlasError as exc:
        raise _fail(exc) from None
    typer.echo(f"report written to {path}")


def export(
    results: Annotated[Path, typer.Argument(help="Results directory.")],
    format: Annotated[str, typer.Option("--format", "-f", help="csv, parquet, eap-json, mib.")] = "csv",  # noqa: E501
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output directory (default: <results>/exports/<format>).")] = None,  # noqa: E501
    table: Annotated[list[str] | None, typer.Option(help="Table(s) to export (csv/parquet).")] = None,  # noqa: E501
) -> None:
    """Export the results as CSV or Parquet tables, or EAP-IG graph JSON per (unit, task)."""
    from circuit_atlas.paths import check_output_dir
    from circuit_atlas.store import ResultsStore
    from circuit_atlas.study.export import export_store

    try:
        store = ResultsStore(results)
        out = output or store.root / "exports" / format
        check_output_dir(out, "--output")
        written = export_store(store, out, format, tables=table)  # type: ignore[arg-type]
    except CircuitAtlasError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({"written": len(written), "directory": str(out)}))


def register(app: typer.Typer) -> None:
    """Add ``run``, ``status``, ``report`` and ``export`` to a Typer app."""
    for command in (run, status, report, export):
        app.command(command.__name__)(command)
