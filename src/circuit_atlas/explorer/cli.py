"""``circuit-atlas explore``: write the interactive circuit explorer of a results store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuit_atlas.errors import CircuitAtlasError
from circuit_atlas.explorer.data import DEFAULT_MAX_EDGES

__all__ = ["explore", "register"]


def explore(
    results: Annotated[Path, typer.Argument(help="Results directory.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file (default: <results>/reports/explorer.html).")] = None,  # noqa: E501
    max_edges: Annotated[int, typer.Option(help="Most edges drawn per circuit (the largest by |score|).")] = DEFAULT_MAX_EDGES,  # noqa: E501
    title: Annotated[str, typer.Option(help="Page title.")] = "circuit-atlas explorer",
) -> None:
    """Write the interactive circuit explorer: one self-contained HTML file that opens offline."""
    from circuit_atlas.explorer.page import write_explorer
    from circuit_atlas.store import ResultsStore

    try:
        store = ResultsStore(results)
        out = output or store.root / "reports" / "explorer.html"
        path = write_explorer(store, out, max_edges=max_edges, title=title)
    except CircuitAtlasError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"explorer written to {path} ({path.stat().st_size} bytes)")


def register(app: typer.Typer) -> None:
    """Add ``explore`` to a Typer app."""
    app.command()(explore)
