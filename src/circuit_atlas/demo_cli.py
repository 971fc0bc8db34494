"""The ``circuit-atlas demo`` command (a thin wrapper over :func:`circuit_atlas.demo.run_demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuit_atlas.demo import run_demo
from circuit_atlas.errors import CircuitAtlasError

__all__ = ["demo_command", "register"]


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Demo directory.")] = Path("demo"),
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data directory, searched before $CIRCUIT_ATLAS_DATA, the cache, "
                    "../shared/data."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="The reduced CI preset (about 3 minutes).")
    ] = False,
    preset: Annotated[
        str, typer.Option(help="Preset: full (15 min on 2 cores) or quick.")
    ] = "full",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    threads: Annotated[
        int | None,
        typer.Option(help="torch threads (default: torch's; 1 is faster on a busy machine)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Training seed instead of the preset's 0 (use a new --out)."),
    ] = None,
) -> None:
    """Train a small suite on the real corpus, run the full study, write the HTML report."""
    try:
        result = run_demo(
            out,
            preset="quick" if quick else preset,
            data_dir=data_dir,
            progress=progress,
            threads=threads,
            seed=seed,
        )
    except CircuitAtlasError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    for verdict in result.verdicts:
        typer.echo(verdict.sentence())
    typer.echo(
        f"report: {result.report} (train {result.seconds['train']:.0f} s, study "
        f"{result.seconds['study']:.0f} s, total {result.seconds['total']:.0f} s)"
    )


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo_command)
