"""Cost of the MIB metrics (CPR, CMD) next to a unit's circuit search, on the demo's models.

Usage (a demo's trained suite, e.g. ``circuit-atlas demo --out DIR`` wrote ``DIR/suite``)::

    PYTHONPATH=src python benchmarks/mib_cost.py DIR/suite --steps 250 1250

For each size of the suite, each listed step and each of the demo's four tasks (the full
preset's sizes: ioi 70, the others 100 examples; EAP-IG with 30 steps; fast search; batch 64,
as the demo's study) it runs :func:`circuit_atlas.search.find_circuit` and then
:func:`circuit_atlas.mib.mib_for_result`, and prints both wall times and their ratio as one
JSON line per (model, step, task), then the totals.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TASK_N = {"ioi": 70, "greater-than": 100, "gender-pronoun": 100, "sva": 100}


def main() -> None:
    """Run the measurement and print JSON lines."""
    from circuit_atlas.mib import mib_for_result
    from circuit_atlas.models.sources import load_model
    from circuit_atlas.search import find_circuit
    from circuit_atlas.tasks import make_dataset

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suite", type=Path)
    parser.add_argument("--sizes", nargs="+", default=["micro", "tiny", "small"])
    parser.add_argument("--steps", nargs="+", type=int, default=[1250])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--ig-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    total = {"circuit_s": 0.0, "search_s": 0.0, "mib_s": 0.0}
    for size in args.sizes:
        for step in args.steps:
            model = load_model(size, path=args.suite, step=step, device="cpu",
                               data_dir=args.data_dir)
            for task, n in TASK_N.items():
                data = make_dataset(task, model.tokenizer, n=n, data_dir=args.data_dir)
                t = time.perf_counter()
                res = find_circuit(model, data, ig_steps=args.ig_steps,
                                   batch_size=args.batch_size)
                circuit_s = time.perf_counter() - t
                t = time.perf_counter()
                mib = mib_for_result(model, data, res)
                mib_s = time.perf_counter() - t
                row = {"model": size, "step": step, "task": task, "edges": len(res.edge_names),
                       "circuit_s": round(circuit_s, 3),
                       "search_s": round(res.timings["search"], 3), "mib_s": round(mib_s, 3),
                       "mib_circuits": mib.circuits,
                       "search_circuits": res.settings["search_stats"]["circuits"],
                       "ratio_to_circuit": round(mib_s / circuit_s, 4),
                       "cpr": mib.cpr, "cmd": mib.cmd}
                print(json.dumps(row), flush=True)
                total["circuit_s"] += circuit_s
                total["search_s"] += res.timings["search"]
                total["mib_s"] += mib_s
    total["ratio_to_circuit"] = total["mib_s"] / total["circuit_s"]
    total["ratio_to_search"] = total["mib_s"] / total["search_s"]
    print(json.dumps({"total": {k: round(v, 4) for k, v in total.items()}}), flush=True)


if __name__ == "__main__":
    main()
