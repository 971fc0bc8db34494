"""The ``circuit-atlas`` command line: thin wrappers over the library.

Each command parses its flags, calls one library entry point, prints a short summary and
writes its results; the work itself lives in the library modules. Commands are registered on
``app`` (the console script ``circuit-atlas``).
"""

from __future__ import annotations

import typer

from circuit_atlas.circuit_cli import register as _register_circuit_command
from circuit_atlas.data_cli import register as _register_data_commands
from circuit_atlas.demo_cli import register as _register_demo_command
from circuit_atlas.explorer.cli import register as _register_explore_command
from circuit_atlas.study.cli import register as _register_study_commands
from circuit_atlas.training.cli import register as _register_training_commands

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Find and track LLM circuits across training checkpoints and model scale.",
)


@app.callback()
def _root() -> None:
    """Find and track LLM circuits across training checkpoints and model scale."""


_register_circuit_command(app)  # circuit (circuit_atlas.circuit_cli)
_register_study_commands(app)  # run, status, report, export (circuit_atlas.study.cli)
_register_training_commands(app)  # train (circuit_atlas.training.cli)
_register_demo_command(app)  # demo (circuit_atlas.demo_cli)
_register_data_commands(app)  # data fetch | verify | where (circuit_atlas.data_cli)
_register_explore_command(app)  # explore (circuit_atlas.explorer.cli)


def main() -> None:
    """Run the command line (``python -m circuit_atlas.cli``)."""
    app()


if __name__ == "__main__":
    main()
