"""An independent, deliberately plain implementation of edge-level circuit runs, for tests.

It reads the weights straight from a HF causal LM's own modules (``GPTNeoXForCausalLM``,
``GPT2LMHeadModel``, ``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``OlmoForCausalLM``; norms and
MLPs are HF's modules), loops over heads and parents in Python, and never touches
:mod:`circuit_atlas.models`. It is slow and only meant for tiny
models (a few layers, a few heads, a handful of positions).
"""

from __future__ import annotations

import math

import torch


def _weights(hf):
    """Per-layer weights and modules of a HF causal LM, per head, straight from HF's modules.

    Each layer gives ``ln1``/``ln2`` (HF norm modules), ``wq/wk/wv[h]`` ``(E, D)`` and
    ``bq/bk/bv[h]`` ``(E,)`` with ``q = ln1(x) @ wq[h].T + bq[h]``, ``wo[h]`` ``(D, E)``, ``bo``
    ``(D,)`` and the HF ``mlp`` module (applied to ``ln2``'s output). Grouped-query K/V heads are
    read from the head's group.
    """
    cfg = hf.config
    kind = cfg.model_type
    if kind == "gpt_neox":
        return _neox_weights(hf)
    if kind == "gpt2":
        return _gpt2_weights(hf)
    return _llama_weights(hf)


def _neox_weights(hf):
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


def _gpt2_weights(hf):
    cfg = hf.config
    H, D = cfg.n_head, cfg.n_embd
    E = D // H
    layers = []
    for layer in hf.transformer.h:
        w = layer.attn.c_attn.weight.detach()  # Conv1D (D, 3D): x @ w
        b = layer.attn.c_attn.bias.detach()
        cols = [[slice(j * D + h * E, j * D + (h + 1) * E) for h in range(H)] for j in range(3)]
        wo = layer.attn.c_proj.weight.detach()  # (D, D): z @ wo
        layers.append(
            dict(
                ln1=layer.ln_1,
                ln2=layer.ln_2,
                wq=[w[:, c].T for c in cols[0]],
                wk=[w[:, c].T for c in cols[1]],
                wv=[w[:, c].T for c in cols[2]],
                bq=[b[c] for c in cols[0]],
                bk=[b[c] for c in cols[1]],
                bv=[b[c] for c in cols[2]],
                wo=[wo[h * E : (h + 1) * E].T for h in range(H)],
                bo=layer.attn.c_proj.bias.detach(),
                mlp=layer.mlp,
            )
        )
    return layers


def _llama_weights(hf):
    cfg = hf.config
    H, D = cfg.num_attention_heads, cfg.hidden_size
    G = cfg.num_key_value_heads or H
    E = D // H
    layers = []

    def rows(proj, h):
        w = proj.weight.detach()[h * E : (h + 1) * E]
        b = proj.bias
        return w, (torch.zeros(E, dtype=w.dtype) if b is None else b.detach()[h * E : (h + 1) * E])

    for layer in hf.model.layers:
        att = layer.self_attn
        ln1, ln2 = _norm64(layer.input_layernorm, cfg), _norm64(layer.post_attention_layernorm, cfg)
        q = [rows(att.q_proj, h) for h in range(H)]
        k = [rows(att.k_proj, h // (H // G)) for h in range(H)]
        v = [rows(att.v_proj, h // (H // G)) for h in range(H)]
        wo = att.o_proj.weight.detach()
        bo = att.o_proj.bias
        layers.append(
            dict(
                ln1=ln1,
                ln2=ln2,
                wq=[w for w, _ in q],
                wk=[w for w, _ in k],
                wv=[w for w, _ in v],
                bq=[b for _, b in q],
                bk=[b for _, b in k],
                bv=[b for _, b in v],
                wo=[wo[:, h * E : (h + 1) * E] for h in range(H)],
                bo=torch.zeros(D, dtype=wo.dtype) if bo is None else bo.detach(),
                mlp=layer.mlp,
            )
        )
    return layers


def _norm64(module, cfg):
    """A Llama-family norm at the input's precision.

    HF's ``LlamaRMSNorm`` / ``OlmoLayerNorm`` compute in float32 even for a float64 model, too
    coarse for the finite differences below; this is the same formula without the downcast:
    RMSNorm ``x / sqrt(mean(x²) + eps) · w``, OLMo's LayerNorm without weight or bias.
    """
    if cfg.model_type == "olmo":
        return lambda x: torch.nn.functional.layer_norm(x, (x.shape[-1],), eps=1e-5)
    w = module.weight.detach()
    eps = module.variance_epsilon
    return lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _arch(hf):
    """Embedding, rotary, final norm and residual wiring of a HF causal LM."""
    cfg = hf.config
    kind = cfg.model_type
    if kind == "gpt_neox":
        E = cfg.hidden_size // cfg.num_attention_heads
        rot = int(E * cfg.rope_parameters["partial_rotary_factor"])
        return dict(
            embed=lambda t: hf.gpt_neox.embed_in.weight.detach()[t],
            rope=lambda x: _rope(x, rot, cfg.rope_parameters["rope_theta"]),
            final=hf.gpt_neox.final_layer_norm,
            parallel=cfg.use_parallel_residual,
            layers=cfg.num_hidden_layers,
            heads=cfg.num_attention_heads,
        )
    if kind == "gpt2":
        tr = hf.transformer
        return dict(
            embed=lambda t: tr.wte.weight.detach()[t] + tr.wpe.weight.detach()[: t.shape[0]],
            rope=lambda x: x,
            final=tr.ln_f,
            parallel=False,
            layers=cfg.n_layer,
            heads=cfg.n_head,
        )
    E = cfg.hidden_size // cfg.num_attention_heads
    return dict(
        embed=lambda t: hf.model.embed_tokens.weight.detach()[t],
        rope=lambda x: _rope(x, E, cfg.rope_parameters["rope_theta"]),
        final=_norm64(hf.model.norm, cfg),
        clip=getattr(cfg, "clip_qkv", None),
        parallel=False,
        layers=cfg.num_hidden_layers,
        heads=cfg.num_attention_heads,
    )


def _rope(x, rot, base):
    """Rotary embedding on the first ``rot`` dims of x (p, e), rotate-half convention."""
    if rot == 0:
        return x
    p = x.shape[0]
    inv = 1.0 / (base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    ang = torch.arange(p, dtype=torch.float64)[:, None] * inv[None]
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)
    xr, xp = x[:, :rot], x[:, rot:]
    half = rot // 2
    rotated = torch.cat([-xr[:, half:], xr[:, :half]], -1)
    return torch.cat([xr * cos + rotated * sin, xp], -1)


def node_names(hf):
    arch = _arch(hf)
    names = ["input"]
    for layer in range(arch["layers"]):
        names += [f"a{layer}.h{h}" for h in range(arch["heads"])]
        names.append(f"m{layer}")
    return names


@torch.no_grad()
def run(hf, tokens, position, keep=None, alt=None, embed=None):
    """One example through the graph; returns (logits at ``position``, node outputs dict).

    Args:
        hf: HF causal LM (GPT-NeoX, GPT-2, Llama, Qwen2 or OLMo).
        tokens: (p,) int64.
        position: int, where logits are read.
        keep: function (parent_name, child_slot_name) -> bool; None keeps every edge.
        alt: dict parent_name -> (p, d) alternative output for dropped edges (None = zeros).
        embed: (p, d) output of the ``input`` node to use instead of the embedding of tokens.
    """
    arch = _arch(hf)
    H = arch["heads"]
    W = _weights(hf)
    outs = {"input": arch["embed"](tokens) if embed is None else embed}
    bias = torch.zeros_like(outs["input"])

    def slot_input(parents, child, bias):
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
    for layer in range(arch["layers"]):
        w = W[layer]
        E = w["wq"][0].shape[0]
        new = {}
        for h in range(H):
            name = f"a{layer}.h{h}"
            q = w["ln1"](slot_input(parents, f"{name}<q>", bias)) @ w["wq"][h].T + w["bq"][h]
            k = w["ln1"](slot_input(parents, f"{name}<k>", bias)) @ w["wk"][h].T + w["bk"][h]
            v = w["ln1"](slot_input(parents, f"{name}<v>", bias)) @ w["wv"][h].T + w["bv"][h]
            if arch.get("clip") is not None:  # OLMo's clip_qkv
                q, k, v = (t.clamp(-arch["clip"], arch["clip"]) for t in (q, k, v))
            q, k = arch["rope"](q), arch["rope"](k)
            att = (q @ k.T / math.sqrt(E)).masked_fill(causal, float("-inf")).softmax(-1)
            new[name] = (att @ v) @ w["wo"][h].T
        heads = [f"a{layer}.h{h}" for h in range(H)]
        if arch["parallel"]:
            mlp_in = slot_input(parents, f"m{layer}", bias)
        else:  # sequential residual: the MLP reads this layer's heads and b_O too
            outs.update(new)
            mlp_in = slot_input(parents + heads, f"m{layer}", bias + w["bo"])
        new[f"m{layer}"] = w["mlp"](w["ln2"](mlp_in))
        outs.update(new)
        bias = bias + w["bo"]
        parents = parents + heads + [f"m{layer}"]
    final = slot_input(parents, "logits", bias)[position]
    logits = hf.get_output_embeddings()(arch["final"](final))
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


def eap_ig_inputs_scores(hf, data, edge_names, steps):
    """EAP-IG-inputs the textbook way: EAP's finite differences at each interpolated input.

    Point k (k = 0 … m−1) runs with the ``input`` node set to ``e_corr + (k/m)(e_clean −
    e_corr)``; the activation difference is the ordinary corrupted − clean one.
    """
    arch = _arch(hf)
    scores = {e: 0.0 for e in edge_names}
    eps = 1e-6
    for i in range(len(data)):
        n = int(data.lengths[i])
        clean, corrupted = data.clean[i, :n], data.corrupted[i, :n]
        _, clean_outs = run(hf, clean, n - 1)
        _, corr_outs = run(hf, corrupted, n - 1)
        e_clean, e_corr = arch["embed"](clean), arch["embed"](corrupted)
        answer, wrong = int(data.answer[i]), int(data.wrong[i])
        for k in range(steps):
            z = e_corr + (k / steps) * (e_clean - e_corr)
            base_logits, outs = run(hf, clean, n - 1, embed=z)
            base = float(logit_diff(base_logits, answer, wrong))
            alt = {u: outs[u] + eps * (corr_outs[u] - clean_outs[u]) for u in outs}
            for e in edge_names:
                logits, _ = run(hf, clean, n - 1, keep=lambda u, v, e=e: f"{u}->{v}" != e,
                                alt=alt, embed=z)  # fmt: skip
                val = float(logit_diff(logits, answer, wrong))
                scores[e] += (base - val) / eps
    total = len(data) * steps
    return torch.tensor([scores[e] / total for e in edge_names], dtype=torch.float64)
