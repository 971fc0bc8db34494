"""The ``circuit-atlas data`` commands: ``fetch``, ``verify`` and ``where`` (thin wrappers).

::

    circuit-atlas data fetch                      # download the registry into the cache
    circuit-atlas data fetch --from ../shared/data  # offline: import a local copy, hash-checked
    circuit-atlas data verify                     # check the cache (or DIR) against the registry
    circuit-atlas data where                      # where each file is read from

The work is in :mod:`circuit_atlas.data`; these print one line per file and exit 1 when a
check fails, 2 on an error (a wrong hash, no network), like the other commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuit_atlas.errors import CircuitAtlasError

__all__ = ["data_app", "fetch_command", "register", "verify_command", "where_command"]

data_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Fetch, verify and locate the task data, tokenizer and corpus (the data registry).",
)

_DATA_DIR_HELP = (
    "Data directory: read first, and where fetch writes (default: $CIRCUIT_ATLAS_DATA, "
    "then the cache)."
)


def _fail(exc: CircuitAtlasError) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def _selected(groups: list[str] | None):
    from circuit_atlas.data import select

    return select(groups=groups or None)


@data_app.command("fetch")
def fetch_command(
    source: Annotated[
        Path | None,
        typer.Option("--from", help="Import this local copy of a data directory instead of "
                     "downloading (every hash is checked first)."),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help=_DATA_DIR_HELP)] = None,
    group: Annotated[
        list[str] | None, typer.Option(help="Only this group: tasks, tokenizer, corpus.")
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(help="Base URL of a mirror laid out like a data directory (default: each "
                     "file's pinned source)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per download.")] = True,
) -> None:
    """Download every registry file (or import a local copy), checking each sha256."""
    from circuit_atlas.data import data_home, fetch, import_from

    def report(result) -> None:
        typer.echo(f"{result.action:>10}  {result.entry.name}")

    try:
        files = _selected(group)
        home = data_home(data_dir)
        typer.echo(f"data home: {home.path} ({home.origin})")
        if source is not None:
            results = import_from(source, files, data_dir=data_dir, on_file=report)
        else:
            results = fetch(files, data_dir=data_dir, mirror=mirror, progressbar=progress,
                            on_file=report)  # fmt: skip
    except CircuitAtlasError as exc:
        raise _fail(exc) from None
    size = sum(r.entry.size for r in results)
    typer.echo(f"{len(results)} file(s), {size / 1e6:.1f} MB, verified in {home.path}")


@data_app.command("verify")
def verify_command(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Directory to check (default: the data home, i.e. the cache)."),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help=_DATA_DIR_HELP)] = None,
    group: Annotated[
        list[str] | None, typer.Option(help="Only this group: tasks, tokenizer, corpus.")
    ] = None,
) -> None:
    """Check a data directory against the registry; exit 1 if a file is missing or wrong."""
    from circuit_atlas.data import data_home, verify

    try:
        root = directory if directory is not None else data_home(data_dir).path
        statuses = verify(root, _selected(group))
    except CircuitAtlasError as exc:
        raise _fail(exc) from None
    typer.echo(f"checking {root}")
    for s in statuses:
        line = f"{s.status:>8}  {s.entry.name}"
        if s.status == "bad":
            line += f"  (expected sha256 {s.entry.sha256}, got {s.actual})"
        typer.echo(line)
    bad = [s for s in statuses if s.status != "ok"]
    if bad:
        typer.echo(f"{len(bad)} of {len(statuses)} file(s) missing or wrong; run "
                   "`circuit-atlas data fetch` (or `--from DIR` offline)", err=True)  # fmt: skip
        raise typer.Exit(code=1)
    typer.echo(f"all {len(statuses)} file(s) verified")


@data_app.command("where")
def where_command(
    data_dir: Annotated[Path | None, typer.Option(help=_DATA_DIR_HELP)] = None,
) -> None:
    """Show the resolution order and where each registry file is read from."""
    from circuit_atlas.data import REGISTRY, locate, search_path

    typer.echo("resolution order:")
    for i, location in enumerate(search_path(data_dir), 1):
        typer.echo(f"  {i}. {location.describe()}")
    missing = 0
    for entry in REGISTRY:
        try:
            found = locate(entry.name, data_dir)
        except CircuitAtlasError as exc:
            typer.echo(f"{entry.name}: WRONG FILE: {exc}")
            missing += 1
            continue
        if found is None:
            typer.echo(f"{entry.name}: missing (from {entry.source.url})")
            missing += 1
        else:
            typer.echo(f"{entry.name}: {found[0]} [{found[1].origin}]")
    if missing:
        typer.echo(f"{missing} file(s) unavailable: run `circuit-atlas data fetch` (or "
                   "`circuit-atlas data fetch --from DIR` offline)", err=True)  # fmt: skip
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group (``fetch``, ``verify``, ``where``) to a Typer app."""
    app.add_typer(data_app, name="data")
