"""Side-by-side speed benchmark against the reference implementation (issue 15).

The reference is hannamw/EAP-IG (``eap``: ``attribute``, ``evaluate_graph``,
``evaluate_baseline``, ``Graph.apply_greedy``) on TransformerLens 2.18. One run of this script
measures both tools on identical weights and identical token ids:

* **EAP** and **EAP-IG-inputs** (m = 30) edge scores on random clean/corrupted pairs
  (32 prompts × 16 tokens, logit difference, batch 16), with the agreement of the two tools'
  scores (edges matched by name; both use EAP-IG's names, ``a0.h1->a2.h3<q>``);
* **one circuit evaluation** of a fixed edge set (the greedy 200 edges of circuit-atlas's EAP
  scores, pruned; the reference's own ``prune`` inside ``evaluate_graph`` then removes nothing),
  corrupted run included on both sides;
* **the whole unit** for each of the four tasks (IOI, Greater-Than, Gendered Pronoun, SVA):
  behaviour, EAP-IG-inputs attribution and the minimal faithful circuit. circuit-atlas runs
  ``find_circuit`` (default settings). The reference side runs *our* loop written with the
  reference's own functions (the reference has no search): ``evaluate_baseline``,
  ``attribute(method="EAP-IG-inputs")``, then for every circuit size ``apply_greedy(n)`` +
  ``evaluate_graph``: the empty circuit, the logged curve every 50 edges up to 1,600, and the
  paper's adaptive search (circuits-over-time ``get_faithfulness_metrics_adaptive`` with its
  binary + ±5 local search: threshold 0.8, start 25, step 25, end 1,600 — the grid of
  ``circuit_atlas.curve_search``), stopped once it has decided, each size evaluated once;
  the same outputs as ``find_circuit`` (which also reports the empty circuit and the curve
  every 50 edges);
* peak resident memory of each tool's process, and the FLOP floor of EAP-IG-inputs (below)
  against this machine's measured fp32 GEMM throughput.

Every measurement records wall-clock time (what the targets are about) and the process's CPU
time (all threads, OpenMP spin-waits included). On a shared machine the wall clock measures the
other jobs as much as the code — under ``nice -n 19`` a worker gets the cores only when others
leave them — so both tables are printed; the CPU-time ratios are the load-robust comparison.

Weights: a random GPT-NeoX of Pythia-70m's shape (6 layers, d_model 512, 8 heads, d_mlp 2048,
rotary_pct 0.25, parallel residual, untied, vocabulary 50,304; 56 nodes, 3,580 edges), seed 0,
saved with ``save_pretrained``. circuit-atlas loads it with ``circuit_atlas.load_model(path=...)``.
The reference process builds a ``GPTNeoXForCausalLM`` with its own ``transformers`` from the
same ``config.json`` fields, loads the *same* ``model.safetensors`` (strict), and converts it
with TransformerLens's own loader (``get_pretrained_model_config`` / ``get_pretrained_state_dict``
on a local directory — ``HookedTransformer.from_pretrained`` needs the hub for the config),
without weight processing (``fold_ln`` / centring / ``fold_value_biases`` off: the weights stay
literally the same; none of these changes the cost). The two tools' logits at the metric
position are compared before anything is timed.

Data: identical token ids. The four tasks' prompts are circuit-atlas's task datasets built with
the real Pythia tokenizer (first ``--unit-n`` prompts of each). Random weights have learnt no
task, so every faithfulness would be undefined (the clean metric is noise, below 2 standard
errors); as in ``bench_core.py`` the answers are re-targeted to the random model's own behaviour:
answer = the clean run's top token at the metric position, wrong = the corrupted run's top token
(other than the answer), metric = the logit difference for all four tasks (on trained weights
Greater-Than and SVA use a probability difference; the metric's cost is one softmax per prompt,
negligible here). The reference reads the same ids: ``tokenize_plus`` is replaced by a function
that returns the given ids, an attention mask from the lengths, and the lengths (the original
tokenizes strings and prepends a BOS; the ids here have none, on both sides). The reference's
hard-coded ``device='cuda'`` score buffers (``attribute.py``) are redirected to the model's
device by a shim of the ``torch`` name inside ``eap.attribute``; nothing else of the reference
is changed. Its attribution metric is −Σ logit difference over the batch (circuits-over-time's
``loss=True``, summed rather than averaged so that its scores have circuit-atlas's scale: both
then average over examples and gradient points); its evaluation metric is the per-prompt logit
difference at ``input_lengths − 1``.

FLOP floor of EAP-IG-inputs (m points, N prompts × P tokens, L layers, d_model d, MLP width f,
vocabulary V, E edges, S backward slots): m forwards at the interpolated embeddings (the k = 0
point is the corrupted run, so its activations come free) + one clean forward to record
activations, each ``N·(L·(P·2(3d² + d² + 2df) + 2dP(P+1)) + 2dV)`` FLOPs (causal attention,
full-vocabulary logits only at the metric position; the clean record run needs no logits);
m input-gradient backwards of the same cost (no weight gradients; attention backward counted
at twice its forward); the gradients summed over the m points (m·N·P·S·d adds) and one score
contraction ``2·N·P·d·E``. Seconds = FLOPs / (the best of a 2048³ fp32 GEMM's throughput
measured at the start and the end of the run, same thread count).

Design: the script is started in circuit-atlas's environment. It builds the weights and data in
a temporary directory and starts two worker processes — itself with ``--worker project``
(circuit-atlas's Python, ``PYTHONPATH=src``) and ``--worker reference`` (the reference
environment's Python, ``PYTHONPATH`` = EAP-IG's ``src``) — that load the model once and answer
one JSON command per line. Measurements alternate between the two (the first of each pair
alternates too), so a change in the shared machine's load hits both. Each worker sets the same
thread count (``--threads``, default 2). circuit-atlas never imports the reference; the
reference environment never imports circuit-atlas (the worker's imports are per role).

Reference environment (separate from the project; the commands used for docs/benchmarks.md)::

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0          # first: the CPU wheel
    /tmp/refenv/bin/pip install "transformer_lens==2.18.*" matplotlib
    # EAP-IG's source at commit 795f560 (github.com/hannamw/EAP-IG), e.g.
    git clone https://github.com/hannamw/EAP-IG /tmp/eap-ig-git
    git -C /tmp/eap-ig-git archive 795f560 | tar -x -C /tmp/eap-ig   # /tmp/eap-ig/src/eap

Run (from the repository root; the machine is shared, so nice it)::

    PYTHONPATH=src nice -n 19 python benchmarks/compare_reference.py --quick     # minutes
    PYTHONPATH=src nice -n 19 python benchmarks/compare_reference.py \\
        --ref-python /tmp/refenv/bin/python --eap-ig /tmp/eap-ig/src --out compare.json

It prints one JSON line per measurement, then a markdown table (measurement | reference |
circuit-atlas | ratio | target | met?) and the score agreement, and writes all of it to
``--out`` (default: ``compare_reference.json`` in the temporary directory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

TASKS = ("ioi", "greater-than", "gender-pronoun", "sva")
SEED = 0
PROTOCOL = "@@ "
TARGET_RATIO = 15.0
TARGET_FLOOR = 1.5
SEARCH = {"threshold": 0.8, "start": 25, "step": 25, "end": 1600, "curve_step": 50}


# ----------------------------------------------------------------------------- pure helpers
def peak_rss_gb() -> float:
    """Peak resident memory of this process, GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def forward_flops(n: int, pos: int, *, d: int, d_mlp: int, layers: int, vocab: int,
                  logits: bool = True) -> float:
    """FLOPs of one forward over ``n`` prompts × ``pos`` tokens (logits at one position each)."""
    linear = 2 * (3 * d * d + d * d + 2 * d * d_mlp)  # per token and layer: qkv, out, MLP
    attention = 2 * d * pos * (pos + 1)  # per prompt and layer: causal QKᵀ and AV
    body = n * layers * (pos * linear + attention)
    return body + (2 * n * d * vocab if logits else 0)


def ig_inputs_flop_floor(n: int, pos: int, m: int, *, d: int, d_mlp: int, layers: int,
                         vocab: int, n_edges: int, n_backward: int) -> dict:
    """The FLOP floor of EAP-IG-inputs with ``m`` points (see the module docstring)."""
    fwd = forward_flops(n, pos, d=d, d_mlp=d_mlp, layers=layers, vocab=vocab)
    record = forward_flops(n, pos, d=d, d_mlp=d_mlp, layers=layers, vocab=vocab, logits=False)
    attention = n * layers * 2 * d * pos * (pos + 1)
    bwd = fwd + attention  # input gradients: same GEMMs; attention backward twice its forward
    accumulate = m * n * pos * n_backward * d
    contraction = 2 * n * pos * d * n_edges
    parts = {"forwards": m * fwd + record, "backwards": m * bwd,
             "gradient_sums": accumulate, "contraction": contraction}
    return {**parts, "total": float(sum(parts.values()))}


def pearson(a, b) -> float:
    """Pearson correlation of two equal-length sequences of floats."""
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    return sab / math.sqrt(saa * sbb) if saa > 0 and sbb > 0 else float("nan")


def agreement(ours: dict, ref: dict, top: int = 200) -> dict:
    """Compare two ``{edge name: score}`` maps (same names): correlation and differences."""
    if set(ours) != set(ref):
        missing = sorted(set(ours) ^ set(ref))[:5]
        raise ValueError(f"edge names differ between the tools, e.g. {missing}")
    names = sorted(ours)
    a = [ours[k] for k in names]
    b = [ref[k] for k in names]
    diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
    scale = max(abs(y) for y in b) or 1.0
    top_a = set(sorted(names, key=lambda k: -abs(ours[k]))[:top])
    top_b = set(sorted(names, key=lambda k: -abs(ref[k]))[:top])
    return {"edges": len(names), "pearson": pearson(a, b), "max_abs_diff": diff,
            "max_abs_ref": scale, "max_rel_diff": diff / scale,
            f"top{top}_overlap": len(top_a & top_b) / top}


def adaptive_search(f, *, threshold=0.8, start=25, end=1600, step=25, reduction=0.5,
                    min_step=1, radius=5, near_fraction=0.75, tolerance=0.1):
    """The paper's adaptive search on a faithfulness oracle ``f(n)``, stopped once decided.

    circuits-over-time ``get_faithfulness_metrics_adaptive`` and
    ``get_faithfulness_metrics_binary_search_with_local_search`` (commit 007e53d), the
    procedure ``circuit_atlas.curve_search`` reproduces: scan from ``start`` by ``step``
    (halved near the threshold); at the first size whose faithfulness exceeds the threshold,
    a binary search with a ±``radius`` local search on [size − step, size]. The original
    then keeps scanning to ``end`` only to log the curve; this loop stops there (the caller
    logs the curve every 50 edges instead). ``f`` should memoise.

    Returns:
        ``(size, passed)``: the minimal faithful size, or ``(end, False)`` if none passed.
    """
    near = threshold * near_fraction
    seen = {}
    size, cur = start, step
    while size < end:
        score = f(size)
        seen[size] = score
        if score > threshold:
            low, high, found = max(size - cur, 1), size, None
            lo0, hi0 = low, high
            while low <= high:
                mid = (low + high) // 2
                mid_score = f(mid)
                if mid_score >= threshold:
                    found, high = mid, mid - 1
                else:
                    low = mid + 1
                if abs(mid_score - threshold) <= threshold * tolerance:
                    for offset in range(-radius, radius + 1):
                        local = mid + offset
                        if offset == 0 or not lo0 <= local <= hi0:
                            continue
                        if f(local) >= threshold and (found is None or local < found):
                            found, high = local, local - 1
                            break
            return (hi0 if found is None else found), True
        if cur < step and (score < near or score < seen[size - cur]):
            cur = max(step, int(cur / reduction))
        if score > near:
            cur = max(min_step, int(cur * reduction))
        size += cur
    return end, False


def ratio_defined(clean: float, clean_se: float, abs_tol: float = 1e-3, n_se: float = 2.0):
    """circuit-atlas's rule (``faithfulness.Baselines``): is m(C)/m(M) meaningful?"""
    return math.isfinite(clean) and abs(clean) >= max(abs_tol, n_se * clean_se)


def markdown_table(rows: list[dict]) -> str:
    """Rows of ``measurement, reference, ours, ratio, target, met`` as a markdown table."""
    lines = ["| measurement | reference | circuit-atlas | ratio | target | met? |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        met = {True: "**yes**", False: "**no**", None: "—"}[r.get("met")]
        lines.append(f"| {r['measurement']} | {r['reference']} | {r['ours']} | {r['ratio']} | "
                     f"{r['target']} | {met} |")
    return "\n".join(lines)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def gemm_gflops(threads: int, size: int = 2048, repeats: int = 5) -> dict:
    """Throughput of a large fp32 GEMM (and of one of the model's shapes), GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, (m, k, n) in {"gemm_2048": (size, size, size),
                            "gemm_256x512x2048": (256, 512, 2048)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        reps = repeats if name == "gemm_2048" else 200
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        dt = (time.perf_counter() - t) / reps
        out[name] = 2 * m * k * n / dt / 1e9
    return out


# ----------------------------------------------------------------------------- setup (project)
def setup(work: Path, args) -> dict:
    """Build the random weights and every dataset (project environment); return the shapes."""
    import dataclasses
    import logging

    import torch
    from transformers import GPTNeoXForCausalLM

    import circuit_atlas as ca
    from circuit_atlas.data import load_pythia_tokenizer
    from circuit_atlas.evaluation import task_logits
    from circuit_atlas.models.pythia import pythia_config

    torch.manual_seed(SEED)
    config = pythia_config("pythia-70m")
    GPTNeoXForCausalLM(config).eval().save_pretrained(work / "model")
    model = ca.load_model(path=work / "model", tokenizer=False, device="cpu")

    def retarget(data):
        clean = task_logits(model, data, batch_size=args.batch_size)
        corr = task_logits(model, data, corrupted=True, batch_size=args.batch_size)
        answer = clean.argmax(-1)
        corr[torch.arange(len(data)), answer] = -float("inf")
        return dataclasses.replace(data, answer=answer, wrong=corr.argmax(-1),
                                   metric="logit_diff", group_tokens=None, group_signs=None)

    def pack(data):
        return {k: getattr(data, k).clone() for k in
                ("clean", "corrupted", "lengths", "answer", "wrong")}

    g = torch.Generator().manual_seed(SEED)
    n, pos, v = args.n, args.pos, 50277  # token ids the Pythia tokenizer has
    core = ca.TaskDataset("random", torch.randint(2, v, (n, pos), generator=g),
                          torch.randint(2, v, (n, pos), generator=g), torch.full((n,), pos),
                          torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                          "logit_diff")
    datasets = {"core": pack(retarget(core))}
    logging.getLogger("circuit_atlas").setLevel(logging.ERROR)
    tok = load_pythia_tokenizer()
    for task in args.tasks:
        data = ca.make_dataset(task, tok).select(slice(0, args.unit_n))
        datasets[task] = pack(retarget(data))
    torch.save(datasets, work / "data.pt")
    spec = model.spec
    shape = {"vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
             "num_hidden_layers": config.num_hidden_layers,
             "num_attention_heads": config.num_attention_heads,
             "intermediate_size": config.intermediate_size, "hidden_act": "gelu",
             "max_position_embeddings": config.max_position_embeddings,
             "layer_norm_eps": config.layer_norm_eps, "rotary_pct": 0.25,
             "rotary_emb_base": 10000, "use_parallel_residual": True,
             "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 0}
    assert spec.d_model == shape["hidden_size"] and spec.n_layers == shape["num_hidden_layers"]
    (work / "shape.json").write_text(json.dumps(shape))
    return {"shape": shape, "n_edges": model.graph.n_edges, "n_nodes": model.graph.n_nodes,
            "n_backward": model.graph.n_backward,
            "data_shapes": {k: list(d["clean"].shape) for k, d in datasets.items()}}


# ----------------------------------------------------------------------------- workers
class ProjectSide:
    """circuit-atlas in its own process."""

    def __init__(self, work: Path, batch_size: int):
        import torch

        import circuit_atlas as ca

        self.torch, self.ca, self.bs = torch, ca, batch_size
        self.model = ca.load_model(path=work / "model", tokenizer=False, device="cpu")
        self.graph = self.model.graph
        raw = torch.load(work / "data.pt", weights_only=True)
        self.data = {k: ca.TaskDataset(k, d["clean"], d["corrupted"], d["lengths"],
                                       d["answer"], d["wrong"], "logit_diff")
                     for k, d in raw.items()}

    def names(self) -> list[str]:
        return list(self.graph.edge_names)

    def logits(self, data: str) -> list:
        from circuit_atlas.evaluation import task_logits

        return task_logits(self.model, self.data[data], batch_size=self.bs).tolist()

    def scores(self, data: str, method: str, m: int) -> dict:
        s = self.ca.attribute(self.model, None, self.data[data], method=method, ig_steps=m,
                              batch_size=self.bs)
        return dict(zip(self.graph.edge_names, s.tolist(), strict=True))

    def circuit(self, scores: dict, n: int) -> list[str]:
        """The greedy ``n`` edges of ``scores``, pruned (the fixed circuit of the benchmark)."""
        from circuit_atlas.circuit import prune, select_greedy

        s = self.torch.tensor([scores[k] for k in self.graph.edge_names])
        mask = prune(self.graph, select_greedy(self.graph, s, n))
        return [k for k, keep in zip(self.graph.edge_names, mask.tolist(), strict=True) if keep]

    def evaluate(self, data: str, edges: list[str]) -> float:
        mask = self.torch.zeros(self.graph.n_edges, dtype=self.torch.bool)
        mask[[self.graph.edge_index_by_name[k] for k in edges]] = True
        return float(self.ca.evaluate_circuits(self.model, None, self.data[data], mask,
                                               batch_size=self.bs))

    def unit(self, data: str, m: int) -> dict:
        r = self.ca.find_circuit(self.model, self.data[data], method="EAP-IG-inputs",
                                 ig_steps=m, batch_size=self.bs,
                                 threshold=SEARCH["threshold"], start=SEARCH["start"],
                                 step=SEARCH["step"], max_edges=SEARCH["end"],
                                 curve_step=SEARCH["curve_step"])
        st = r.settings["search_stats"]
        return {"n_requested": r.settings["n_requested"], "passed": r.settings["passed"],
                "n_edges": r.n_edges, "n_nodes": r.n_nodes, "faithfulness": r.faithfulness,
                "clean_metric": r.clean_metric, "circuits": st["circuits"],
                "timings": r.timings}


class _Ids:
    """Token ids of a batch with their lengths, in place of the reference's strings."""

    def __init__(self, tokens, lengths):
        self.tokens, self.lengths = tokens, lengths

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


class ReferenceSide:
    """hannamw/EAP-IG on TransformerLens in its own process (reference environment)."""

    def __init__(self, work: Path, batch_size: int):
        import eap.attribute as eap_attribute
        import eap.evaluate as eap_evaluate
        import eap.utils as eap_utils
        import torch
        import transformer_lens
        from eap.graph import Graph
        from safetensors.torch import load_file
        from transformer_lens import HookedTransformer
        from transformer_lens import loading_from_pretrained as loading
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        self.torch = torch
        shape = json.loads((work / "shape.json").read_text())
        hf = GPTNeoXForCausalLM(GPTNeoXConfig(**shape)).eval()
        state = load_file(str(work / "model" / "model.safetensors"))
        hf.load_state_dict(state, strict=True)  # the same tensors, every one of them
        local = work / "ref_hf"
        hf.config.architectures = ["GPTNeoXForCausalLM"]  # as a hub config.json says
        hf.config.save_pretrained(local)
        cfg = loading.get_pretrained_model_config(str(local), fold_ln=False, device="cpu",
                                                  dtype=torch.float32)
        sd = loading.get_pretrained_state_dict(str(local), cfg, hf, dtype=torch.float32)
        cfg.tokenizer_name = None  # token ids are given; no tokenizer is loaded
        model = HookedTransformer(cfg, tokenizer=None, move_to_device=False)
        model.load_and_process_state_dict(sd, fold_ln=False, center_writing_weights=False,
                                          center_unembed=False, fold_value_biases=False,
                                          refactor_factored_attn_matrices=False)
        model.set_use_attn_result(True)
        model.set_use_split_qkv_input(True)
        model.set_use_hook_mlp_in(True)
        model.eval()
        del hf, state, sd
        self.model, self.Graph = model, Graph
        self.attribute, self.evaluate_graph = eap_attribute.attribute, eap_evaluate.evaluate_graph
        self.evaluate_baseline = eap_evaluate.evaluate_baseline
        self.versions = {"transformer_lens": transformer_lens.__version__ if hasattr(
            transformer_lens, "__version__") else _dist_version("transformer_lens"),
            "transformers": _dist_version("transformers"), "torch": torch.__version__}

        def tokenize_plus(model, inputs, max_length=None):
            tokens = inputs.tokens
            n_pos = tokens.shape[1]
            mask = (torch.arange(n_pos)[None, :] < inputs.lengths[:, None]).long()
            return tokens, mask, inputs.lengths, n_pos

        for module in (eap_utils, eap_attribute, eap_evaluate):
            module.tokenize_plus = tokenize_plus

        class _TorchOnModelDevice:
            """``torch`` for eap.attribute, whose score buffers say ``device='cuda'``."""

            def __getattr__(self, name):
                return getattr(torch, name)

            @staticmethod
            def zeros(*size, device=None, **kw):
                return torch.zeros(*size, device=model.cfg.device if device == "cuda"
                                   else device, **kw)

        eap_attribute.torch = _TorchOnModelDevice()
        raw = torch.load(work / "data.pt", weights_only=True)
        self.loaders = {k: self._loader(d, batch_size) for k, d in raw.items()}
        self.n = {k: int(d["clean"].shape[0]) for k, d in raw.items()}
        self.graph = Graph.from_model(model)
        edges = list(self.graph.edges.values())
        self._names = [e.name for e in edges]
        self._index = tuple(torch.tensor(ix) for ix in zip(*[e.matrix_index for e in edges],
                                                            strict=True))

    @staticmethod
    def _loader(d: dict, bs: int) -> list:
        out = []
        for s in range(0, d["clean"].shape[0], bs):
            lengths = d["lengths"][s : s + bs]
            pos = int(lengths.max())
            label = (d["answer"][s : s + bs], d["wrong"][s : s + bs])
            out.append((_Ids(d["clean"][s : s + bs, :pos], lengths),
                        _Ids(d["corrupted"][s : s + bs, :pos], lengths), label))
        return out

    @staticmethod
    def metric(logits, clean_logits, input_lengths, label):
        """Per-prompt logit difference at the last real token."""
        last = logits[range(logits.shape[0]), input_lengths - 1]
        answer, wrong = label
        return last.gather(1, answer[:, None])[:, 0] - last.gather(1, wrong[:, None])[:, 0]

    @classmethod
    def loss(cls, logits, clean_logits, input_lengths, label):
        return -cls.metric(logits, clean_logits, input_lengths, label).sum()

    def names(self) -> list[str]:
        return list(self._names)

    def logits(self, data: str) -> list:
        out = []
        with self.torch.inference_mode():
            for clean, _, _ in self.loaders[data]:
                mask = (self.torch.arange(clean.tokens.shape[1])[None] <
                        clean.lengths[:, None]).long()
                lg = self.model(clean.tokens, attention_mask=mask)
                out.append(lg[range(len(clean)), clean.lengths - 1])
        return self.torch.cat(out).tolist()

    def scores(self, data: str, method: str, m: int) -> dict:
        self.attribute(self.model, self.graph, self.loaders[data], self.loss, method=method,
                       ig_steps=m if method != "EAP" else None, quiet=True)
        return dict(zip(self._names, self.graph.scores[self._index].tolist(), strict=True))

    def _set_edges(self, edges: list[str]) -> None:
        g = self.graph
        g.in_graph[:] = False
        g.nodes_in_graph[:] = False
        for k in edges:
            g.edges[k].in_graph = True

    def evaluate(self, data: str, edges: list[str]) -> float:
        self._set_edges(edges)
        before = self.graph.count_included_edges()
        r = self.evaluate_graph(self.model, self.graph, self.loaders[data], self.metric,
                                quiet=True, skip_clean=True)
        if self.graph.count_included_edges() != before:
            raise RuntimeError("the reference's prune changed the fixed circuit")
        return float(r.mean())

    def unit(self, data: str, m: int) -> dict:
        """Behaviour, EAP-IG-inputs and the minimal faithful circuit (our loop, see top)."""
        t0 = time.perf_counter()
        loader, g = self.loaders[data], self.graph
        base = self.evaluate_baseline(self.model, loader, self.metric, quiet=True)
        clean, se = float(base.mean()), float(base.std()) / math.sqrt(base.numel())
        t_attr = time.perf_counter()
        self.attribute(self.model, g, loader, self.loss, method="EAP-IG-inputs", ig_steps=m,
                       quiet=True)
        t_search = time.perf_counter()
        metrics, spent = {}, {"selection": 0.0, "evaluation": 0.0}

        def metric_of(n: int) -> float:
            if n not in metrics:
                t = time.perf_counter()
                if n == 0:
                    g.reset()
                else:
                    g.apply_greedy(n, absolute=True, reset=True, prune=True)
                spent["selection"] += time.perf_counter() - t
                t = time.perf_counter()
                metrics[n] = float(self.evaluate_graph(self.model, g, loader, self.metric,
                                                       quiet=True, skip_clean=True).mean())
                spent["evaluation"] += time.perf_counter() - t
            return metrics[n]

        for n in [0, *range(SEARCH["curve_step"], SEARCH["end"] + 1, SEARCH["curve_step"])]:
            metric_of(n)
        if ratio_defined(clean, se):
            size, passed = adaptive_search(lambda n: metric_of(n) / clean,
                                           threshold=SEARCH["threshold"],
                                           start=SEARCH["start"], end=SEARCH["end"],
                                           step=SEARCH["step"])
        else:
            size, passed = SEARCH["end"], False
        final = metric_of(size)
        g.apply_greedy(size, absolute=True, reset=True, prune=True)
        t_end = time.perf_counter()
        return {"n_requested": size, "passed": passed,
                "n_edges": int(g.count_included_edges()),
                "n_nodes": int(g.nodes_in_graph.sum()) + int(g.count_included_edges() > 0),
                # + logits, which is no forward slot (an empty circuit has no node)
                "faithfulness": final / clean, "clean_metric": clean,
                "circuits": len(metrics),
                "timings": {"behaviour": t_attr - t0, "attribution": t_search - t_attr,
                            "search": t_end - t_search, "total": t_end - t0,
                            "search_apply_greedy": spent["selection"],
                            "search_evaluate_graph": spent["evaluation"]}}


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def worker(role: str, work: Path, threads: int, batch_size: int) -> None:
    """Answer JSON commands on stdin with ``PROTOCOL``-prefixed JSON lines on stdout."""
    import torch

    torch.set_num_threads(threads)
    side = (ProjectSide if role == "project" else ReferenceSide)(work, batch_size)

    def reply(obj) -> None:
        sys.stdout.write(PROTOCOL + json.dumps(obj) + "\n")
        sys.stdout.flush()

    info = {"ready": role, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "peak_rss_gb": peak_rss_gb()}
    if role == "reference":
        info["versions"] = side.versions
    reply(info)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            op = cmd.pop("op")
            if op == "quit":
                break
            fn = getattr(side, op)
            repeats, warm = cmd.pop("repeats", 1), cmd.pop("warm", False)
            if warm:
                fn(**cmd)
            times, cpu = [], []
            for _ in range(repeats):
                t, c = time.perf_counter(), time.process_time()
                out = fn(**cmd)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            reply({"out": out, "seconds": times, "cpu_seconds": cpu,
                   "peak_rss_gb": peak_rss_gb()})
        except Exception:  # reported to the driver, which stops
            reply({"error": traceback.format_exc()})


# ----------------------------------------------------------------------------- driver
class Worker:
    """A worker process of one role, spoken to over pipes."""

    def __init__(self, role: str, python: str, pythonpath: str, work: Path, args):
        env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": str(args.threads),
               "MKL_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.role = role
        self.log = open(work / f"{role}.stderr", "w")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", role, "--work", str(work),
             "--threads", str(args.threads), "--batch-size", str(args.batch_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.ready = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL):
                obj = json.loads(line[len(PROTOCOL):])
                if "error" in obj:
                    raise RuntimeError(f"{self.role} worker failed:\n{obj['error']}")
                return obj
        self.log.flush()
        tail = Path(self.log.name).read_text()[-3000:]
        raise RuntimeError(f"{self.role} worker exited (rc {self.proc.wait()}):\n{tail}")

    def __call__(self, op: str, **kw) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        self.log.close()


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    k = len(s) // 2
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) / 2


def _fmt_f(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def _fmt_s(x: float) -> str:
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def comparison_rows(times: dict, args, result: dict, floor: dict, clock: str) -> list[dict]:
    """The table's rows from ``{measurement: (reference s, ours s)}`` of one clock."""
    rows = []

    def row(label, key):
        r, o = times[key]
        ratio = r / o
        rows.append({"measurement": label, "reference": _fmt_s(r), "ours": _fmt_s(o),
                     "ratio": f"{ratio:.1f}×", "target": f"≥ {TARGET_RATIO:.0f}×",
                     "met": ratio >= TARGET_RATIO})

    n, pos, bs, m = args.n, args.pos, args.batch_size, args.ig_steps
    row(f"EAP ({n} × {pos}, batch {bs})", "EAP")
    row(f"one circuit evaluation ({result['circuit_edges']} edges, incl. corrupted run)",
        "eval")
    row(f"EAP-IG-inputs, m = {m}", "IG")
    ig = times["IG"][1] / (args.threads if clock == "cpu" else 1)
    how = f"CPU time ÷ {args.threads} threads" if clock == "cpu" else "wall clock"
    rows.append({"measurement": f"EAP-IG-inputs, m = {m}, vs its FLOP floor "
                 f"({floor['total'] / 1e9:.0f} GFLOP at {floor['gflops_per_s']:.0f} GFLOP/s "
                 f"= {_fmt_s(floor['seconds'])}; {how})",
                 "reference": "—", "ours": _fmt_s(ig),
                 "ratio": f"{ig / floor['seconds']:.2f}× floor",
                 "target": f"≤ {TARGET_FLOOR}× floor",
                 "met": ig <= TARGET_FLOOR * floor["seconds"]})
    for task in args.tasks:
        shp = result["setup"]["data_shapes"][task]
        row(f"whole unit: {task} ({shp[0]} × {shp[1]}, EAP-IG m = {m} + minimal circuit)", task)
    if args.tasks:
        tr = sum(times[t][0] for t in args.tasks)
        to = sum(times[t][1] for t in args.tasks)
        rows.append({"measurement": f"whole unit, the {len(args.tasks)} tasks together",
                     "reference": _fmt_s(tr), "ours": _fmt_s(to), "ratio": f"{tr / to:.1f}×",
                     "target": f"≥ {TARGET_RATIO:.0f}×", "met": tr / to >= TARGET_RATIO})
    pk = result["peak_rss_gb"]
    rows.append({"measurement": "peak resident memory of the process", "reference":
                 f"{pk['reference']:.2f} GB", "ours": f"{pk['project']:.2f} GB",
                 "ratio": f"{pk['reference'] / pk['project']:.1f}×", "target": "—", "met": None})
    return rows


def driver(args) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="compare-ref-"))
    work.mkdir(parents=True, exist_ok=True)
    out_path = Path(args.out) if args.out else work / "compare_reference.json"
    import torch

    torch.set_num_threads(args.threads)
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "args": vars(args),
              "uptime_start": subprocess.run(["uptime"], capture_output=True,
                                             text=True).stdout.strip(),
              "loads": []}
    root = Path(__file__).resolve().parents[1]
    result["project_commit"] = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                              capture_output=True, text=True).stdout.strip()
    result["niceness"] = os.nice(0)
    eap_dir = Path(args.eap_ig).resolve()
    result["eap_ig"] = {"src": str(eap_dir), "commit": args.eap_ig_commit}
    print(json.dumps({"work": str(work)}), flush=True)
    t = time.perf_counter()
    result["setup"] = setup(work, args)
    result["setup"]["seconds"] = time.perf_counter() - t
    print(json.dumps({"setup": result["setup"]}), flush=True)
    result["gemm_start"] = gemm_gflops(args.threads)
    print(json.dumps({"gemm_start": result["gemm_start"]}), flush=True)

    src = str(root / "src")
    ours = Worker("project", sys.executable, src, work, args)
    ref = Worker("reference", args.ref_python, str(eap_dir), work, args)
    result["workers"] = {"project": ours.ready, "reference": ref.ready}
    print(json.dumps({"workers": result["workers"]}), flush=True)
    order = [0]

    def pair(name: str, op: str, **kw) -> tuple[dict, dict]:
        """Run one measurement on both sides, alternating which goes first."""
        sides = [("reference", ref), ("project", ours)]
        if order[0] % 2:
            sides.reverse()
        order[0] += 1
        got = {}
        for label, w in sides:
            before = _load()
            got[label] = w(op, **kw)
            result["loads"].append({"measurement": name, "side": label, "before": before,
                                    "after": _load()})
            r = got[label]
            print(json.dumps({name: label, "seconds": [round(s, 3) for s in r["seconds"]],
                              "cpu_seconds": [round(s, 3) for s in r["cpu_seconds"]],
                              "peak_rss_gb": round(r["peak_rss_gb"], 3),
                              "load": result["loads"][-1]["after"]}), flush=True)
        return got["reference"], got["project"]

    try:
        names_ref = ref("names")["out"]
        if set(names_ref) != set(ours("names")["out"]):
            raise RuntimeError("the two graphs have different edge names")
        lr, lo = ref("logits", data="core")["out"], ours("logits", data="core")["out"]
        result["logits_max_abs_diff"] = max(abs(a - b) for x, y in zip(lr, lo, strict=True)
                                            for a, b in zip(x, y, strict=True))
        print(json.dumps({"logits_max_abs_diff": result["logits_max_abs_diff"]}), flush=True)
        rep = args.repeats
        meas = {}
        meas["EAP"] = pair("EAP", "scores", data="core", method="EAP", m=1, repeats=rep,
                           warm=True)
        result["agreement_EAP"] = agreement(meas["EAP"][1]["out"], meas["EAP"][0]["out"])
        print(json.dumps({"agreement_EAP": result["agreement_EAP"]}), flush=True)
        circuit = ours("circuit", scores=meas["EAP"][1]["out"], n=args.circuit_n)["out"]
        result["circuit_edges"] = len(circuit)
        meas["eval"] = pair("circuit_eval", "evaluate", data="core", edges=circuit,
                            repeats=rep, warm=True)
        result["circuit_metric"] = {"reference": meas["eval"][0]["out"],
                                    "project": meas["eval"][1]["out"]}
        meas["IG"] = pair("EAP_IG_inputs", "scores", data="core", method="EAP-IG-inputs",
                          m=args.ig_steps)
        result["agreement_IG"] = agreement(meas["IG"][1]["out"], meas["IG"][0]["out"])
        print(json.dumps({"agreement_IG": result["agreement_IG"]}), flush=True)
        for task in args.tasks:
            meas[task] = pair(f"unit_{task}", "unit", data=task, m=args.ig_steps)
            result.setdefault("units", {})[task] = {"reference": meas[task][0]["out"],
                                                    "project": meas[task][1]["out"]}
            print(json.dumps({f"unit_{task}": result["units"][task]}), flush=True)
        result["peak_rss_gb"] = {"reference": ref("names")["peak_rss_gb"],
                                 "project": ours("names")["peak_rss_gb"]}
    finally:
        ref.close()
        ours.close()
    result["gemm_end"] = gemm_gflops(args.threads)
    result["uptime_end"] = subprocess.run(["uptime"], capture_output=True,
                                          text=True).stdout.strip()
    gflops = max(result["gemm_start"]["gemm_2048"], result["gemm_end"]["gemm_2048"])
    shape, su = result["setup"]["shape"], result["setup"]
    floor = ig_inputs_flop_floor(args.n, args.pos, args.ig_steps, d=shape["hidden_size"],
                                 d_mlp=shape["intermediate_size"],
                                 layers=shape["num_hidden_layers"], vocab=shape["vocab_size"],
                                 n_edges=su["n_edges"], n_backward=su["n_backward"])
    floor["gflops_per_s"] = gflops
    floor["seconds"] = floor["total"] / gflops / 1e9
    result["ig_floor"] = floor

    tables = {}
    for clock, field in (("wall", "seconds"), ("cpu", "cpu_seconds")):
        times = {k: (_median(v[0][field]), _median(v[1][field])) for k, v in meas.items()}
        result[f"times_{clock}"] = times
        rows = comparison_rows(times, args, result, floor, clock)
        result[f"rows_{clock}"] = rows
        tables[clock] = markdown_table(rows)
    result["table_wall"], result["table_cpu"] = tables["wall"], tables["cpu"]
    loads = [x for entry in result["loads"] for x in (*entry["before"], *entry["after"])]
    result["load_range"] = [min(loads), max(loads)] if loads else None
    out_path.write_text(json.dumps(result, indent=1))
    print("\nWall-clock time (median of the repeats):\n")
    print(tables["wall"])
    print(f"\nCPU time of the process (all {args.threads} threads; median of the repeats):\n")
    print(tables["cpu"])
    print()
    for key in ("agreement_EAP", "agreement_IG"):
        a = result[key]
        print(f"{key}: pearson {a['pearson']:.6f}, max |diff| {a['max_abs_diff']:.3g} "
              f"(max |score| {a['max_abs_ref']:.3g}, relative {a['max_rel_diff']:.2g}), "
              f"top-200 overlap {a['top200_overlap']:.3f}")
    cm = result["circuit_metric"]
    print(f"circuit metric: reference {cm['reference']:.6f}, circuit-atlas {cm['project']:.6f}; "
          f"logits max |diff| {result['logits_max_abs_diff']:.3g}")
    for task in args.tasks:
        r, o = meas[task][0]["out"], meas[task][1]["out"]
        rt = r["timings"]
        print(f"unit {task}: reference n={r['n_requested']} ({r['n_edges']} edges, "
              f"{r['circuits']} circuits, faithfulness {_fmt_f(r['faithfulness'])}); "
              "circuit-atlas "
              f"n={o['n_requested']} ({o['n_edges']} edges, {o['circuits']} circuits, "
              f"faithfulness {_fmt_f(o['faithfulness'])}); reference search: apply_greedy "
              f"{rt['search_apply_greedy']:.1f} s, evaluate_graph "
              f"{rt['search_evaluate_graph']:.1f} s")
    print(f"load average {result['load_range']}; {result['uptime_end']}")
    print(f"wrote {out_path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="development run: 8 prompts, m = 2, one repeat, 8 prompts per task")
    p.add_argument("--n", type=int, default=None, help="random prompts (32; quick 8)")
    p.add_argument("--pos", type=int, default=16, help="tokens per random prompt")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--ig-steps", type=int, default=None, help="m (30; quick 2)")
    p.add_argument("--unit-n", type=int, default=None, help="prompts per task (32; quick 8)")
    p.add_argument("--tasks", nargs="*", default=list(TASKS), choices=TASKS)
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (3; quick 1)")
    p.add_argument("--circuit-n", type=int, default=200, help="greedy edges of the circuit")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ref-python", default="/tmp/refenv/bin/python")
    p.add_argument("--eap-ig", default="/tmp/eap-ig/src", help="EAP-IG's src directory")
    p.add_argument("--eap-ig-commit", default="795f560", help="recorded in the JSON")
    p.add_argument("--work", default=None, help="working directory (default: a temp dir)")
    p.add_argument("--out", default=None, help="JSON output path")
    p.add_argument("--worker", choices=("project", "reference"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, Path(args.work), args.threads, args.batch_size)
        return
    quick = args.quick
    args.n = args.n or (8 if quick else 32)
    args.ig_steps = args.ig_steps or (2 if quick else 30)
    args.unit_n = args.unit_n or (8 if quick else 32)
    args.repeats = args.repeats or (1 if quick else 3)
    if quick:
        args.batch_size = min(args.batch_size, 8)
    driver(args)


if __name__ == "__main__":
    main()
