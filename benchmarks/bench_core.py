"""Benchmark the core on Pythia-shaped random models (issue 3, part 8).

Measures, on random weights with the real architecture shape (no download):
EAP, EAP-IG-inputs (m = 30), one circuit evaluation, the minimal-circuit search, and peak
resident memory. Work: 64 prompts × 16 tokens, logit-difference metric, fp32, batch 64.

Usage:
    python benchmarks/bench_core.py --model pythia-70m [--device cpu] [--dtype float32]
    python benchmarks/bench_core.py --model pythia-160m --skip-search
    python benchmarks/bench_core.py --model gpt2 --skip-search   # GPT-2 small's shape (adapter)

Prints one JSON line per measurement; copy the figures into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="pythia-70m", help="a Pythia name, or gpt2 (small)")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--pos", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ig-steps", type=int, default=30)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-ig", action="store_true")
    args = parser.parse_args()

    from transformers import GPTNeoXForCausalLM

    from circuit_atlas.attribution import attribute
    from circuit_atlas.evaluation import evaluate_circuits
    from circuit_atlas.models.neox import PatchableGPTNeoX
    from circuit_atlas.models.pythia import pythia_config
    from circuit_atlas.tasks.base import TaskDataset

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    if args.model == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        from circuit_atlas.models.adapters import from_hf

        hf = GPT2LMHeadModel(GPT2Config()).eval()  # GPT-2 small's shape, random weights
        model = from_hf(hf).to(device=device, dtype=dtype)
    else:
        hf = GPTNeoXForCausalLM(pythia_config(args.model)).eval()
        model = PatchableGPTNeoX.from_hf(hf).to(device=device, dtype=dtype)
    del hf
    g = model.graph
    v = model.spec.vocab_size
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(2, v, (args.n, args.pos), generator=gen)
    corrupted = clean.clone()
    corrupted[:, args.pos // 2] = torch.randint(2, v, (args.n,), generator=gen)
    # Give the random model a real clean-vs-corrupted gap: the answer is the clean run's top
    # token and the wrong answer the corrupted run's, so faithfulness is defined and the search
    # runs as it would on a trained model.
    corrupted = torch.randint(2, v, (args.n, args.pos), generator=gen)
    positions = torch.full((args.n,), args.pos - 1)
    with torch.no_grad():
        top_clean = model.run(clean.to(device), positions.to(device)).argmax(-1).cpu()
        corr_logits = model.run(corrupted.to(device), positions.to(device)).cpu()
    corr_logits[torch.arange(args.n), top_clean] = -float("inf")
    data = TaskDataset(
        "bench",
        clean,
        corrupted,
        torch.full((args.n,), args.pos),
        top_clean,
        corr_logits.argmax(-1),
        "logit_diff",
    )
    info = {
        "model": args.model,
        "nodes": g.n_nodes,
        "edges": g.n_edges,
        "device": str(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor(),
    }
    print(json.dumps({"setup": info}))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(name, fn, repeat=1, warm=True):
        if warm:
            fn()  # warm-up
        sync()
        t = time.perf_counter()
        for _ in range(repeat):
            out = fn()
        sync()
        dt = (time.perf_counter() - t) / repeat
        print(json.dumps({name: round(dt, 3), "peak_rss_gb": round(_peak_rss_gb(), 3)}), flush=True)
        return out

    scores = timed(
        "EAP_s", lambda: attribute(model, g, data, method="EAP", batch_size=args.batch_size)
    )
    mask = torch.zeros(g.n_edges, dtype=torch.bool)
    mask[scores.abs().argsort(descending=True)[:200]] = True
    timed(
        "circuit_eval_s",
        lambda: evaluate_circuits(model, g, data, mask, batch_size=args.batch_size),
        3,
    )
    masks = mask.repeat(16, 1)
    timed(
        "circuit_eval_16_batched_s",
        lambda: evaluate_circuits(model, g, data, masks, batch_size=args.batch_size),
    )
    ig_scores = scores
    if not args.skip_ig:
        ig_scores = timed(
            "EAP_IG_inputs_s",
            lambda: attribute(
                model,
                g,
                data,
                method="EAP-IG-inputs",
                ig_steps=args.ig_steps,
                batch_size=args.batch_size,
            ),
            warm=False,
        )
    if not args.skip_search:
        from circuit_atlas.search import find_circuit

        # The search on the EAP-IG scores above (attribution is timed separately).
        for search in ("fast", "paper"):
            res = timed(
                f"search_{search}_s",
                lambda s=search: find_circuit(
                    model,
                    data,
                    scores=ig_scores,
                    search=s,
                    batch_size=args.batch_size,
                ),
                warm=False,
            )
            print(
                json.dumps(
                    {
                        f"search_{search}": {
                            "n_edges": res.n_edges,
                            "n_nodes": res.n_nodes,
                            "faithfulness": res.faithfulness,
                            "timings": res.timings,
                            "search_stats": res.settings.get("search_stats"),
                        }
                    }
                )
            )
    if device.type == "cuda":
        print(json.dumps({"cuda_peak_gb": torch.cuda.max_memory_allocated() / 2**30}))
    print(json.dumps({"peak_rss_gb": round(_peak_rss_gb(), 3)}))


if __name__ == "__main__":
    main()
