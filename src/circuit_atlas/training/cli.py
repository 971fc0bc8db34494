r"""The ``circuit-atlas train`` command, a thin wrapper over the training library.

Example::

    circuit-atlas train --corpus ../shared/data/corpus --sizes tiny,small --steps 2000 \
        --out suites/demo --curriculum 0.25

The corpus defaults to the data registry's corpus files, resolved as for the tasks
(``--data-dir``, ``$CIRCUIT_ATLAS_DATA``, the cache, ``../shared/data``). Progress bars live
in :mod:`circuit_atlas.training.progress` (the entry points' layer), not in the library.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from circuit_atlas.errors import CircuitAtlasError, ConfigError
from circuit_atlas.training.memory import keep_freed_memory
from circuit_atlas.training.progress import TrainBars

__all__ = ["parse_curriculum", "register", "train"]

ALL_TASKS = "ioi,greater-than,sva,gender-pronoun"


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _weighted(spec: str) -> tuple[list[str], list[float]]:
    """``"greater-than:2,ioi"`` -> (names, weights); a missing weight is 1."""
    from circuit_atlas.errors import ConfigError

    names, weights = [], []
    for item in _split(spec):
        name, _, weight = item.partition(":")
        try:
            weights.append(float(weight) if weight else 1.0)
        except ValueError:
            raise ConfigError(
                f"curriculum weight {weight!r} of task {name!r} is not a number"
            ) from None
        names.append(name.strip())
    return names, weights


def parse_curriculum(
    fraction: float, tasks: str, shared: str = "", first: str = "", first_steps: int = 0
) -> Any:
    """Build a ``CurriculumConfig`` from the ``train`` command's curriculum options.

    The options are ``--curriculum``, ``--curriculum-tasks``, ``--share``,
    ``--curriculum-first`` and ``--curriculum-first-steps``.

    ``tasks`` is comma-separated, each optionally weighted: ``greater-than:2,ioi,sva``
    (``repeated-tokens`` adds repeated random spans); ``shared`` is a comma-separated list of
    evaluation sets the curriculum may use (``names``, ``places``, ``objects``); ``first``
    weights some of ``tasks`` for the opening ``first_steps`` steps (``ioi:9,greater-than``;
    tasks it does not name get weight 0 there).

    Raises:
        ConfigError: For a weight that is not a positive number (the message names it), or a
            task in ``first`` that is not in ``tasks``.
    """
    from circuit_atlas.errors import ConfigError
    from circuit_atlas.training import CurriculumConfig

    if not fraction:
        return CurriculumConfig()
    names, weights = _weighted(tasks)
    first_weights: tuple[float, ...] = ()
    if first_steps:
        early = dict(zip(*_weighted(first), strict=True))
        unknown = sorted(set(early) - set(names))
        if unknown:
            raise ConfigError(
                f"--curriculum-first names {unknown}, which are not in --curriculum-tasks {names}"
            )
        first_weights = tuple(early.get(n, 0.0) for n in names)
    return CurriculumConfig(
        fraction,
        tuple(names),
        tuple(weights),
        shared=_split(shared),
        first_steps=first_steps,
        first_weights=first_weights,
    )


def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Suite directory to write.")],
    corpus: Annotated[
        Path | None,
        typer.Option(help="A .txt file or a directory of them (default: the registry's corpus)."),
    ] = None,
    sizes: Annotated[
        str, typer.Option(help="Comma-separated sizes: micro, tiny, small, base, medium.")
    ] = "tiny,small",
    arch: Annotated[
        str, typer.Option(help="Architecture: gpt_neox (Pythia's), gpt2 or llama.")
    ] = "gpt_neox",
    steps: Annotated[int, typer.Option(help="Optimiser steps per size.")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 16,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence.")] = 128,
    n_even: Annotated[
        int, typer.Option(help="Evenly spaced checkpoints after the log-spaced ones.")
    ] = 8,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate (default: per size).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of init, data order and curriculum.")] = 0,
    seeds: Annotated[
        str,
        typer.Option(help="Several training runs, e.g. 0,1,2: one suite per seed in "
                     "OUT/seed<N>/ (a study lists them with `seeds = [...]`)."),
    ] = "",
    tokenizer: Annotated[str, typer.Option(help="bpe (trained on the corpus) or pythia.")] = "bpe",
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary before forced words.")] = 4096,
    curriculum: Annotated[
        float,
        typer.Option(help="Fraction of batch rows of templated task sentences (0: plain text)."),
    ] = 0.0,
    curriculum_tasks: Annotated[
        str, typer.Option(help="Tasks helped by the curriculum.")
    ] = ALL_TASKS,
    share: Annotated[
        str,
        typer.Option(
            help="Evaluation vocabulary the curriculum may use: names, places, objects "
            "(comma-separated; default none). Templates are held out either way."
        ),
    ] = "",
    curriculum_first: Annotated[
        str,
        typer.Option(
            help="Task weights of an opening phase, e.g. ioi:9,greater-than (tasks of "
            "--curriculum-tasks; unnamed ones get 0 there)."
        ),
    ] = "",
    curriculum_first_steps: Annotated[
        int, typer.Option(help="Steps of the opening phase (0: none).")
    ] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's).")] = None,
    progress: Annotated[
        bool, typer.Option(help="Show progress bars (plain lines when stderr is not a terminal).")
    ] = True,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="If another process trains into --out, wait for it instead of stopping."
        ),
    ] = False,
) -> None:
    """Train models in several sizes (Pythia's architecture, or --arch) and save a suite.

    With --seeds, trains one suite per seed (``OUT/seed<N>/``), each with its own manifest.
    Resumable: run the same command again after a kill and it continues from the last state.
    One process per suite directory at a time: a second one stops with an error naming the
    first (or waits for it with --wait).
    """
    import torch

    from circuit_atlas.data import corpus_paths
    from circuit_atlas.training import TrainConfig, train_suite

    try:
        runs = _seed_runs(out, seed, seeds)
        config = TrainConfig(
            sizes=_split(sizes),
            arch=arch,  # type: ignore[arg-type]
            steps=steps,
            batch_size=batch_size,
            seq_len=seq_len,
            n_even=n_even,
            lr=lr,
            seed=seed,
            tokenizer=tokenizer,  # type: ignore[arg-type]
            vocab_size=vocab_size,
            curriculum=parse_curriculum(
                curriculum, curriculum_tasks, share, curriculum_first, curriculum_first_steps
            ),
        )
        if threads:
            torch.set_num_threads(threads)
        keep_freed_memory()
        texts = corpus or corpus_paths(data_dir)
        manifests = []
        for run_seed, run_out in runs:
            bars = TrainBars(enabled=progress)
            try:
                manifests.append((run_out, train_suite(
                    dataclasses.replace(config, seed=run_seed), texts, run_out,
                    data_dir=data_dir, progress=bars, wait=None if wait else 0,
                    on_wait=lambda message: typer.echo(message, err=True))))
            finally:
                bars.close()
    except CircuitAtlasError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    for run_out, manifest in manifests:
        for name, record in manifest.sizes.items():
            typer.echo(
                f"{name}: {record.n_params:,} parameters, checkpoints {record.steps}, "
                f"{record.tokens_per_second:,.0f} tokens/s, {record.train_seconds:.0f} s"
            )
        typer.echo(f"suite written to {run_out}")


def _seed_runs(out: Path, seed: int, seeds: str) -> list[tuple[int, Path]]:
    """``[(seed, directory)]``: ``out`` itself, or ``out/seed<N>`` per seed of ``--seeds``.

    Raises:
        ConfigError: For a seed that is not a non-negative integer, or one listed twice.
    """
    if not seeds.strip():
        return [(seed, out)]
    parsed = []
    for item in _split(seeds):
        if not item.isdigit():
            raise ConfigError(f"--seeds: {item!r} is not a non-negative integer (got {seeds!r})")
        parsed.append(int(item))
    if len(set(parsed)) != len(parsed):
        raise ConfigError(f"--seeds {seeds!r} lists a seed twice")
    return [(s, out / f"seed{s}") for s in parsed]


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    app.command("train")(train)
