"""The ``circuit-atlas circuit`` command: one model, one task, its minimal faithful circuit.

Thin wrapper: load the model (:func:`circuit_atlas.models.sources.load_model`), build the task
(:func:`circuit_atlas.tasks.make_dataset`), run :func:`circuit_atlas.search.find_circuit`,
print the behaviour and the circuit, and write the result directory
(:meth:`circuit_atlas.result.CircuitResult.save`, plus ``eap_graph.json`` in EAP-IG's format).
:func:`register` adds the command to the top-level Typer app.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Annotated

import typer

from circuit_atlas.errors import CircuitAtlasError, ModelSourceError

__all__ = ["EAP_JSON_FILE", "MIB_JSON_FILE", "circuit", "export_mib", "register"]

EAP_JSON_FILE = "eap_graph.json"
"""The circuit in hannamw/EAP-IG's graph JSON format, next to the result files."""

MIB_JSON_FILE = "mib.json"
"""CPR, CMD and their two faithfulness curves (:mod:`circuit_atlas.mib`), next to the result."""


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _label(model: str | None, step: int | None, model_path: Path | None, task: str) -> str:
    """``<model>-step<N>-<task>`` (hub) or ``[<parent>-]<dir>-<task>`` (local directory)."""
    if model_path is not None:
        path = model_path.resolve()
        is_step = re.fullmatch(r"step\d+", path.name) is not None
        parts = [path.parent.name, path.name] if is_step else [path.name]
    else:
        parts = [model or "model"] + ([f"step{step}"] if step is not None else [])
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join([*parts, task]))


def circuit(
    task: Annotated[str, typer.Option(help="Task: ioi, greater-than, gender-pronoun, sva or custom.")],  # noqa: E501
    out: Annotated[Path, typer.Option(help="Directory for the result; it is written to OUT/<model>-step<N>-<task>.")],  # noqa: E501
    model: Annotated[str | None, typer.Option(help="Pythia model name from the hub (e.g. pythia-160m).")] = None,  # noqa: E501
    step: Annotated[int | None, typer.Option(help="Training step of the checkpoint (default: the last).")] = None,  # noqa: E501
    model_path: Annotated[Path | None, typer.Option(help="Local Hugging Face directory: GPT-NeoX, GPT-2, Llama, Qwen2 or OLMo (instead of --model).")] = None,  # noqa: E501
    data_dir: Annotated[Path | None, typer.Option(help="Data directory, searched before $CIRCUIT_ATLAS_DATA, the cache, ../shared/data.")] = None,  # noqa: E501
    cache_dir: Annotated[Path | None, typer.Option(help="Hugging Face hub cache directory.")] = None,  # noqa: E501
    n: Annotated[int | None, typer.Option(help="Number of task examples (default: the task's).")] = None,  # noqa: E501
    seed: Annotated[int | None, typer.Option(help="Task seed (default: the task's).")] = None,
    custom_path: Annotated[Path | None, typer.Option(help="CSV/JSONL file of a custom task (with --task custom).")] = None,  # noqa: E501
    method: Annotated[str, typer.Option(help="Attribution: EAP-IG-inputs, EAP-IG-activations, EAP, clean-corrupted, exact.")] = "EAP-IG-inputs",  # noqa: E501
    ig_steps: Annotated[int, typer.Option(help="Integrated-gradient steps.")] = 30,
    threshold: Annotated[float, typer.Option(help="Faithfulness the circuit must reach.")] = 0.8,
    search: Annotated[str, typer.Option(help="Search: fast (the paper's answer, batched), paper, exhaustive.")] = "fast",  # noqa: E501
    selection: Annotated[str, typer.Option(help="Selection: greedy (the paper's) or topn.")] = "greedy",  # noqa: E501
    ablation: Annotated[str, typer.Option(help="Ablation of edges outside the circuit: patching, mean, zero.")] = "patching",  # noqa: E501
    faithfulness: Annotated[str, typer.Option(help="Faithfulness driving the search: ratio (the paper's) or normalized.")] = "ratio",  # noqa: E501
    max_edges: Annotated[int, typer.Option(help="Largest circuit size searched (edges).")] = 1600,
    batch_size: Annotated[int, typer.Option(help="Examples per forward pass.")] = 32,
    device: Annotated[str | None, typer.Option(help="Device (default: cuda if available, else cpu).")] = None,  # noqa: E501
    dtype: Annotated[str | None, typer.Option(help="Weights dtype: float32 (default), bfloat16, float16.")] = None,  # noqa: E501
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Load a checkpoint whose only weights are pickled (pytorch_model.bin); unpickling can execute code.")] = False,  # noqa: E501
    mib: Annotated[bool, typer.Option("--mib/--no-mib", help="Also compute the MIB circuit track's CPR and CMD (21 more circuits).")] = True,  # noqa: E501
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """Find the minimal faithful circuit of one checkpoint on one task."""
    from circuit_atlas.models.configs import resolve_device
    from circuit_atlas.models.sources import load_model
    from circuit_atlas.paths import check_output_dir
    from circuit_atlas.search import check_search_settings, find_circuit
    from circuit_atlas.tasks import make_dataset

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        if (model is None) == (model_path is None):
            raise ModelSourceError("give exactly one of --model NAME and --model-path DIR")
        # settings, device and output first: nothing is loaded for a run that cannot finish
        check_search_settings(ig_steps=ig_steps, threshold=threshold, max_edges=max_edges,
                              batch_size=batch_size)
        resolve_device(device)
        check_output_dir(out, "--out")
        loaded = load_model(model, step=step, path=model_path, device=device, dtype=dtype,
                            data_dir=data_dir, cache_dir=cache_dir, allow_pickle=allow_pickle)
        if loaded.tokenizer is None:
            raise ModelSourceError(f"model {model or model_path} has no tokenizer")
        options = {} if custom_path is None else {"path": str(custom_path)}
        data = make_dataset(task, loaded.tokenizer, n=n, seed=seed, data_dir=data_dir, **options)
        result = find_circuit(loaded, data, method=method, ig_steps=ig_steps,
                              threshold=threshold, search=search, selection=selection,
                              ablation=ablation, faithfulness=faithfulness,
                              batch_size=batch_size, max_edges=max_edges)
        scores = None
        if mib:
            from circuit_atlas.mib import mib_for_result

            scores = mib_for_result(loaded, data, result)
    except CircuitAtlasError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    target = out / _label(model, result.model.get("step", step), model_path, task)
    result.save(target)
    (target / EAP_JSON_FILE).write_text(json.dumps(result.to_eap_json()))
    unit = "logits" if result.metric_kind == "logit_diff" else "probability"
    stats = result.settings["search_stats"]
    typer.echo(f"task {task} ({len(data)} examples, {result.metric_kind} in {unit})")
    typer.echo(f"clean metric      {result.clean_metric:.4f}")
    typer.echo(f"corrupted metric  {result.corrupted_metric:.4f}")
    typer.echo(f"circuit: {result.n_edges} edges, {result.n_nodes} nodes "
               f"(n = {result.settings['n_requested']} requested; graph {len(result.edge_names)}"
               f" edges, {len(result.node_names)} nodes)")
    typer.echo(f"faithfulness m(C)/m(M)                {_fmt(result.faithfulness)}")
    typer.echo(f"faithfulness (m(C)-m(0))/(m(M)-m(0))  {_fmt(result.faithfulness_normalized)}")
    if result.settings.get("note"):
        typer.echo(f"note: {result.settings['note']}")
    elif not result.settings["passed"]:
        typer.echo(f"note: no circuit up to {max_edges} edges reached {threshold}; "
                   f"fallback size {max_edges}")
    typer.echo(f"{search} search: {stats['rounds']} rounds, {stats['circuits']} circuits "
               f"evaluated; {result.timings['total']:.1f} s")
    if scores is not None:
        (target / MIB_JSON_FILE).write_text(json.dumps(_mib_json(scores)))
        typer.echo(f"MIB CPR (signed scores)  {_fmt(scores.cpr)}")
        typer.echo(f"MIB CMD (|scores|)       {_fmt(scores.cmd)}")
        typer.echo(f"MIB curves: {scores.circuits} circuits; {scores.seconds:.1f} s")
    typer.echo(f"result written to {target}")


def _mib_json(scores) -> dict:
    return {"cpr": scores.cpr, "cmd": scores.cmd, "seconds": scores.seconds,
            "circuits": scores.circuits,
            "curves": {"signed": scores.signed.rows(), "absolute": scores.absolute.rows()},
            "clean_metric": scores.signed.clean_metric,
            "empty_metric": scores.signed.empty_metric}


def export_mib(
    results: Annotated[list[Path], typer.Argument(help="Result directories written by `circuit-atlas circuit`.")],  # noqa: E501
    out: Annotated[Path, typer.Option("--out", "-o", help="Submission directory: OUT/<task>_<model>/importances.json.")],  # noqa: E501
    model_name: Annotated[str | None, typer.Option(help="Model name of the folders (no underscore; default: the result's model, else its directory).")] = None,  # noqa: E501
) -> None:
    """Export circuit results in the MIB circuit track's submission format (edge scores)."""
    from circuit_atlas.mib_export import write_mib_submission
    from circuit_atlas.result import CircuitResult

    try:
        pairs = []
        for directory in results:
            result = CircuitResult.load(directory)
            default = str(result.model.get("name") or directory.name)
            pairs.append((model_name or re.sub(r"[^A-Za-z0-9.-]+", "-", default), result))
        written = write_mib_submission(pairs, out)
    except (CircuitAtlasError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    for path in written:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``circuit`` and ``export-mib`` to a Typer app."""
    app.command("circuit")(circuit)
    app.command("export-mib")(export_mib)
