"""Benchmark the component scores and the IOI algorithm of one unit on a Pythia-shaped random model.

Measures each score family of :func:`circuit_atlas.components.score_heads` with the paper's
settings (induction 2 × 100 repeated tokens; successor over the ordinal sequences; copy score and
S-inhibition on 70 IOI prompts; CSPA on 17 × 61 corpus tokens with the mean over 100 windows,
layers ≥ 2), with the real Pythia tokenizer and the real corpus, on random weights with the real
architecture shape (no download). Random weights have no name movers by the paper's rule, so
S-inhibition is timed with two fixed late-layer heads as name movers.

The IOI algorithm decomposition (issue 10; ``--algorithm-only`` skips the component scores) is
timed stage by stage, as a unit runs it when its roles exist: the direct effects of every head
(B), S-inhibition through two fixed name movers (C; reused from the component scores when the
name movers agree), the tertiary sweep into the values of two fixed S-inhibition heads at every
position (D), and the self-repair run with two heads ablated (its clean run is B's).

Usage:
    python benchmarks/bench_components.py --model pythia-70m [--device cpu] [--threads 2]
        [--skip-cspa] [--algorithm-only]

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
    parser.add_argument("--model", default="pythia-70m")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--skip-cspa", action="store_true")
    parser.add_argument("--algorithm-only", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import GPTNeoXForCausalLM

    from circuit_atlas.components.algorithm import self_repair
    from circuit_atlas.components.attention_scores import attention_scores
    from circuit_atlas.components.copy_score import copy_score_pair
    from circuit_atlas.components.cspa import corpus_tokens, cspa_scores
    from circuit_atlas.components.path_patching import direct_effects, path_patching_effects
    from circuit_atlas.components.path_sweep import RunCache
    from circuit_atlas.components.s_inhibition import s_inhibition_heads
    from circuit_atlas.components.successor import successor_scores
    from circuit_atlas.data import corpus_paths, load_pythia_tokenizer, resolve_data_dir
    from circuit_atlas.models.neox import PatchableGPTNeoX
    from circuit_atlas.models.pythia import pythia_config
    from circuit_atlas.tasks.ioi import make_ioi

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    data_dir = resolve_data_dir(args.data_dir)
    tokenizer = load_pythia_tokenizer(data_dir)
    torch.manual_seed(0)
    hf = GPTNeoXForCausalLM(pythia_config(args.model)).eval()
    model = PatchableGPTNeoX.from_hf(hf, tokenizer=tokenizer).to(device=device, dtype=dtype)
    del hf
    spec = model.spec
    meta = {"model": args.model, "device": str(device), "dtype": args.dtype,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__}  # fmt: skip

    def timed(name: str, fn, **extra):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        print(json.dumps({**meta, "what": name, "seconds": round(seconds, 3),
                          "peak_rss_gb": round(_peak_rss_gb(), 3), **extra}), flush=True)
        return out

    ioi = make_ioi(tokenizer, n=70, seed=42)
    movers = [(spec.n_layers - 2, 0), (spec.n_layers - 1, 1)]
    s2i = [(spec.n_layers // 2, 0), (spec.n_layers // 2 + 1, 1)]
    values: dict = {}
    cache = RunCache()  # as in a unit: every sweep on the IOI prompts shares the recorded runs
    timed("algorithm B: direct effects, cold (records the clean and corrupted runs)",
          lambda: direct_effects(model, ioi, baselines=values, cache=cache))  # fmt: skip
    timed("algorithm B: direct effects, runs already recorded (after the component scores)",
          lambda: direct_effects(model, ioi, cache=cache))  # fmt: skip
    timed("algorithm C: S-inhibition (2 name movers; skipped when the component's agree)",
          lambda: s_inhibition_heads(model, ioi, movers, cache=cache),
          name_movers=movers)  # fmt: skip
    timed("algorithm D: tertiary (every head -> values of 2 S2I heads, every position)",
          lambda: path_patching_effects(model, ioi, [(a, b, "v") for a, b in s2i],
                                        receiver_positions="all", cache=cache),
          s2i_heads=s2i)  # fmt: skip
    copy = torch.zeros(spec.n_layers, spec.n_heads)
    for head in movers:
        copy[head] = 1.0
    clean = (values["clean_resid"], values["clean_heads"])  # reused from B, as in a unit
    timed("algorithm: self-repair (2 heads ablated; clean run reused)",
          lambda: self_repair(model, ioi, copy, clean=clean))  # fmt: skip
    if args.algorithm_only:
        return
    timed("attention (induction, duplicate, previous)", lambda: attention_scores(model))
    timed("successor (weights only)", lambda: successor_scores(model, tokenizer))
    timed("copy score and negative copy score (one set of logits)",
          lambda: copy_score_pair(model, ioi))
    timed("S-inhibition (2 name movers)", lambda: s_inhibition_heads(model, ioi, movers),
          name_movers=movers)  # fmt: skip
    if not args.skip_cspa:
        tokens = corpus_tokens(corpus_paths(data_dir), tokenizer, n_sequences=100, seq_len=61,
                               seed=0)  # fmt: skip
        layers = list(range(min(2, spec.n_layers - 1), spec.n_layers))
        timed("CSPA (layers >= 2)", lambda: cspa_scores(model, tokens[:17], mean_tokens=tokens,
                                                         layers=layers),
              heads=len(layers) * spec.n_heads)  # fmt: skip


if __name__ == "__main__":
    main()
