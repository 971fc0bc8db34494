"""Analytic memory of attribution and circuit evaluation for every Pythia size (no weights).

The buffers that grow with the graph are computed from the architecture alone:

* weights: parameters × bytes per element;
* recorded activations: clean and corrupted forward-slot outputs, ``n_forward × b × p × d``
  each (model dtype), plus their difference in float32 for attribution;
* scores: the ``n_forward × n_backward`` float32 slot matrix;
* gradient pass: per layer the shared LayerNorm input and the MLP slot input are kept
  (``2 × b × p × d``, float32), and one layer's ``3H × b × p × d`` per-slot gradients exist at a
  time during backward (``_SlotFanout``);
* circuit evaluation: ``n_forward × b × p × d`` differences per circuit in one pass, plus the
  cached corrupted run, plus the ``n_forward × n_backward`` keep matrix per circuit;
* the edge table: ``n_edges`` × (score float32 + flag + two int64 indices).

Usage: ``python benchmarks/memory_model.py [--batch 5 --pos 21 --dtype-bytes 2]``.
"""

from __future__ import annotations

import argparse

from circuit_atlas.graph import Graph
from circuit_atlas.models.adapters import spec_from_hf_config
from circuit_atlas.models.pythia import get_pythia, pythia_config

SIZES = ["pythia-70m", "pythia-160m", "pythia-410m", "pythia-1.4b", "pythia-2.8b", "pythia-12b"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--pos", type=int, default=21)
    parser.add_argument("--dtype-bytes", type=int, default=2)
    args = parser.parse_args()
    b, p, e = args.batch, args.pos, args.dtype_bytes
    gb = 2**30
    print(f"batch {b}, {p} positions, {e}-byte activations (GiB)")
    print(
        "| model | nodes | edges | weights | attribution buffers | one circuit in flight"
        " | edge table |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in SIZES:
        cfg = pythia_config(name)
        g = Graph.from_spec(spec_from_hf_config(cfg))
        d = cfg.hidden_size
        slots = g.n_forward * b * p * d
        weights = get_pythia(name).n_params * e
        attribution = (
            2 * slots * e  # clean + corrupted records
            + slots * 4  # float32 difference
            + g.n_forward * g.n_backward * 4  # scores
            + cfg.num_hidden_layers * 2 * b * p * d * 4
            + 3 * cfg.num_attention_heads * b * p * d * 4
        )
        circuit = 2 * slots * e + g.n_forward * g.n_backward * e
        table = g.n_edges * (4 + 1 + 8 + 8)
        print(
            f"| {name} | {g.n_nodes:,} | {g.n_edges:,} | {weights / gb:.2f} | "
            f"{attribution / gb:.2f} | {circuit / gb:.2f} | {table / gb:.3f} |"
        )


if __name__ == "__main__":
    main()
