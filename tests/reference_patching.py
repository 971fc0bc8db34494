"""An independent, deliberately plain implementation of edge-level circuit runs, for tests.

It reads the weights straight from a HF ``GPTNeoXForCausalLM``, loops over heads and parents in
Python, and never touches :mod:`circuit_atlas.models.neox`. It is slow and only meant for tiny
models (a few layers, a few heads, a handful of positions).
"""

from __future__ import annotations

import math

import torch


def _weights(hf):
    cfg = hf.config
    H = cfg.num_attention_heads
    D = cfg.hidden_size
    E = D // H
    layers = []
    for layer in hf.gpt_neox.layers:
        att = layer.attention
        w = att.query_key_value.weight.detach().view(H, 3, E, D)
        bqkv = att.query_key_value.bias.detach().view(H, 3, E)
        layers.append(
            dict(
                ln1=layer.input_layernorm,
                ln2=layer.post_attention_layernorm,
                wq=[w[h, 0] for h in range(H)],
                wk=[w[h, 1] for h in range(H)],
                wv=[w[h, 2] for h in range(H)],
                bq=[bqkv[h, 0] for h in range(H)],
                bk=[bqkv[h, 1] for h in range(H)],
                bv=[bqkv[h, 2] for h in range(H)],
                wo=[att.dense.weight.detach()[:, h * E : (h + 1) * E] for h in range(H)],
                bo=att.dense.bias.detach(),
                mlp=layer.mlp,
            )
        )
    return layers


def _rope(x, rot, base):
    """Rotary embedding on the first ``rot`` dims of x (p, e), rotate-half convention."""
    p = x.shape[0]
    inv = 1.0 / (base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    ang = torch.arange(p, dtype=torch.float64)[:, None] * inv[None]
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)
    xr, xp = x[:, :rot], x[:, rot:]
    half = rot // 2
    rotated = torch.cat([-xr[:, half:], xr[:, :half]], -1)
    return torch.cat([xr * cos + rotated * sin, xp], -1)


def node_names(cfg):
    names = ["input"]
    for layer in range(cfg.num_hidden_layers):
        names += [f"a{layer}.h{h}" for h in range(cfg.num_attention_heads)]
        names.append(f"m{layer}")
    return names


@torch.no_grad()
def run(hf, tokens, position, keep=None, alt=None):
    """One example through the graph; returns (logits at ``position``, node outputs dict).

    Args:
        hf: HF GPT-NeoX model (parallel residual).
        tokens: (p,) int64.
        position: int, where logits are read.
        keep: function (parent_name, child_slot_name) -> bool; None keeps every edge.
        alt: dict parent_name -> (p, d) alternative output for dropped edges (None = zeros).
    """
    cfg = hf.config
    H = cfg.num_attention_heads
    E = cfg.hidden_size // H
    rot = int(E * cfg.rope_parameters["partial_rotary_factor"])
    base = cfg.rope_parameters["rope_theta"]
    W = _weights(hf)
    outs = {"input": hf.gpt_neox.embed_in.weight.detach()[tokens]}
    bias = torch.zeros_like(outs["input"])

    def slot_input(parents, child):
        total = bias.clone()
        for u in parents:
            if keep is None or keep(u, child):
                total = total + outs[u]
            elif alt is not None:
                total = total + alt[u]
        return total

    parents = ["input"]
    p = tokens.shape[0]
    causal = torch.ones(p, p, dtype=torch.bool).triu(1)
    for layer in range(cfg.num_hidden_layers):
        w = W[layer]
        new = {}
        for h in range(H):
            name = f"a{layer}.h{h}"
            q = w["ln1"](slot_input(parents, f"{name}<q>")) @ w["wq"][h].T + w["bq"][h]
            k = w["ln1"](slot_input(parents, f"{name}<k>")) @ w["wk"][h].T + w["bk"][h]
            v = w["ln1"](slot_input(parents, f"{name}<v>")) @ w["wv"][h].T + w["bv"][h]
            q, k = _rope(q, rot, base), _rope(k, rot, base)
            att = (q @ k.T / math.sqrt(E)).masked_fill(causal, float("-inf")).softmax(-1)
            new[name] = (att @ v) @ w["wo"][h].T
        mlp_in = slot_input(parents, f"m{layer}")
        new[f"m{layer}"] = w["mlp"](w["ln2"](mlp_in))
        outs.update(new)
        bias = bias + w["bo"]
        parents = parents + [f"a{layer}.h{h}" for h in range(H)] + [f"m{layer}"]
    final = slot_input(parents, "logits")[position]
    logits = hf.get_output_embeddings()(hf.gpt_neox.final_layer_norm(final))
    return logits, outs


def logit_diff(logits, answer, wrong):
    return logits[answer] - logits[wrong]


def circuit_metric(hf, data, in_circuit, ablation="patching", means=None):
    """Mean logit difference of a circuit run (edges outside ``in_circuit`` ablated)."""
    total = 0.0
    for i in range(len(data)):
        n = int(data.lengths[i])
        clean = data.clean[i, :n]
        corrupted = data.corrupted[i, :n]
        if ablation == "patching":
            _, alt = run(hf, corrupted, n - 1)
        elif ablation == "mean":
            alt = {u: means[u].expand(n, -1) for u in means}
        else:
            alt = None
        logits, _ = run(hf, clean, n - 1, keep=lambda u, v: f"{u}->{v}" in in_circuit, alt=alt)
        total += float(logit_diff(logits, int(data.answer[i]), int(data.wrong[i])))
    return total / len(data)


def mean_outputs(hf, data):
    """Mean output of each node over the clean prompts' real positions."""
    sums, count = {}, 0
    for i in range(len(data)):
        n = int(data.lengths[i])
        _, outs = run(hf, data.clean[i, :n], n - 1)
        for u, o in outs.items():
            sums[u] = sums.get(u, 0) + o.sum(0)
        count += n
    return {u: s / count for u, s in sums.items()}


def exact_scores(hf, data, all_edges, edge_names):
    """Exact patching score of ``edge_names``: metric(clean) − metric(only that edge patched)."""
    everything = set(all_edges)
    base = circuit_metric(hf, data, everything)
    return torch.tensor(
        [base - circuit_metric(hf, data, everything - {e}) for e in edge_names], dtype=torch.float64
    )


def eap_scores(hf, data, edge_names):
    """EAP computed the textbook way: a separate autograd leaf per (edge) slot input."""
    cfg = hf.config
    scores = {e: 0.0 for e in edge_names}
    for i in range(len(data)):
        n = int(data.lengths[i])
        _, clean_outs = run(hf, data.clean[i, :n], n - 1)
        _, corr_outs = run(hf, data.corrupted[i, :n], n - 1)
        # Gradient wrt each slot input: perturb one slot input at a time through `keep`/`alt`
        # is not differentiable, so use finite differences of tiny patches instead (double).
        eps = 1e-6
        alt = {u: clean_outs[u] + eps * (corr_outs[u] - clean_outs[u]) for u in clean_outs}
        base_logits, _ = run(hf, data.clean[i, :n], n - 1)
        base = float(logit_diff(base_logits, int(data.answer[i]), int(data.wrong[i])))
        for e in edge_names:
            logits, _ = run(
                hf, data.clean[i, :n], n - 1, keep=lambda u, v, e=e: f"{u}->{v}" != e, alt=alt
            )
            val = float(logit_diff(logits, int(data.answer[i]), int(data.wrong[i])))
            scores[e] += (base - val) / eps
    del cfg
    return torch.tensor([scores[e] / len(data) for e in edge_names], dtype=torch.float64)
