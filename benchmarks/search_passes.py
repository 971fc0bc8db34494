"""Model passes of the paper's adaptive search vs the fast search, on a tiny real model.

Regenerates the numbers quoted in docs/circuits.md: a random GPT-NeoX with Pythia-70m's graph
(6 layers × 8 heads: 56 nodes, 3,580 edges; d_model 64), a toy task whose answer/wrong tokens
are the ones the corruption moves most (so that the clean–corrupted gap is real), EAP-IG
scores, then ``find_circuit`` with the paper's search parameters (threshold 0.8, start 25,
end 1600, step 25) with the paper's and the fast search. The original code makes
``original_evaluations`` calls of ``evaluate_graph``, each one corrupted and one patched
forward pass per batch. Run: ``python benchmarks/search_passes.py``.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from circuit_atlas.attribution import attribute
from circuit_atlas.evaluation import task_logits
from circuit_atlas.models.neox import PatchableGPTNeoX
from circuit_atlas.search import find_circuit
from circuit_atlas.tasks.base import TaskDataset


def toy_task(model, n: int, pos: int, seed: int, vocab: int) -> TaskDataset:
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(2, vocab, (n, pos), generator=g)
    corrupted = torch.randint(2, vocab, (n, pos), generator=g)
    zeros = torch.zeros(n, dtype=torch.long)
    data = TaskDataset("toy", clean, corrupted, torch.full((n,), pos), zeros, zeros, "logit_diff")
    diff = task_logits(model, data) - task_logits(model, data, corrupted=True)
    return dataclasses.replace(data, answer=diff.argmax(-1), wrong=diff.argmin(-1))


def main(seeds: list[int]) -> None:
    vocab = 128
    for seed in seeds:
        torch.manual_seed(seed)
        cfg = GPTNeoXConfig(
            hidden_size=64,
            num_attention_heads=8,
            num_hidden_layers=6,
            intermediate_size=256,
            vocab_size=vocab,
            max_position_embeddings=64,
        )
        hf = GPTNeoXForCausalLM(cfg).eval()
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if p.dim() > 1 and "embed" not in name:
                    p.mul_(4.0)  # far from linear, so that the curve is non-trivial
        model = PatchableGPTNeoX.from_hf(hf)
        data = toy_task(model, n=16, pos=10, seed=seed, vocab=vocab)
        scores = attribute(model, None, data, ig_steps=10)
        for search, window in (("paper", None), ("fast", None), ("fast", 0)):
            t = time.perf_counter()
            r = find_circuit(model, data, scores=scores, search=search, fast_window=window)
            s = r.settings["search_stats"]
            label = search if window is None else f"{search}/w{window}"
            print(
                f"seed {seed} {label:10s} n={r.settings['n_requested']:5d} "
                f"passed={r.settings['passed']!s:5s} edges={r.n_edges:4d} nodes={r.n_nodes:3d} "
                f"faith={r.faithfulness if r.faithfulness is None else round(r.faithfulness, 3)} "
                f"rounds={s['rounds']:3d} circuits={s['circuits']:4d} "
                f"forward_passes={s['forward_passes']:4d} (batches {s['n_batches']}) "
                f"original_evaluations={s['reference_evaluations']} "
                f"search_s={r.timings['search']:.1f} ({time.perf_counter() - t:.1f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [0, 1, 2])
