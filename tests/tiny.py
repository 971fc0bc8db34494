"""Tiny random models (GPT-NeoX and every other adapter) and datasets shared by the core tests."""

from __future__ import annotations

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from circuit_atlas.models.neox import PatchableGPTNeoX
from circuit_atlas.tasks.base import TaskDataset


def hf_model(
    *,
    layers=2,
    heads=4,
    d_model=32,
    vocab=64,
    parallel=True,
    seed=0,
    scale=6.0,
    dtype=torch.float64,
):
    """A random HF GPT-NeoX whose weights are scaled up so that behaviour is far from linear."""
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        hidden_size=d_model,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        intermediate_size=4 * d_model,
        vocab_size=vocab,
        use_parallel_residual=parallel,
        max_position_embeddings=64,
    )
    hf = GPTNeoXForCausalLM(cfg).eval().to(dtype)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "layernorm" in name or "layer_norm" in name:
                p.add_(0.3 * torch.randn_like(p))
            elif p.dim() > 1:
                p.mul_(scale)
            else:
                p.add_(0.1 * torch.randn_like(p))
    return hf


ARCHS = ("gpt_neox", "gpt2", "llama", "qwen2", "olmo")
"""The HF ``model_type`` of every adapter, for tests parametrized over adapters."""


def arch_model(
    arch,
    *,
    layers=2,
    heads=2,
    d_model=16,
    vocab=64,
    kv_heads=None,
    clip_qkv=None,
    seed=0,
    scale=6.0,
    dtype=torch.float64,
):
    """A random HF causal LM of ``arch`` (a HF ``model_type``), weights scaled as :func:`hf_model`.

    ``gpt_neox`` is :func:`hf_model` (parallel residual). Llama-family models get grouped-query
    attention with ``kv_heads`` key/value heads (default ``heads // 2``, at least 1); OLMo
    takes ``clip_qkv``.
    """
    if arch == "gpt_neox":
        return hf_model(layers=layers, heads=heads, d_model=d_model, vocab=vocab, seed=seed,
                        scale=scale, dtype=dtype)  # fmt: skip
    import transformers

    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = transformers.GPT2Config(n_layer=layers, n_head=heads, n_embd=d_model,
                                      vocab_size=vocab, n_positions=64, bos_token_id=0,
                                      eos_token_id=0)  # fmt: skip
        hf = transformers.GPT2LMHeadModel(cfg)
    else:
        config_cls, model_cls = {
            "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
            "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
            "olmo": (transformers.OlmoConfig, transformers.OlmoForCausalLM),
        }[arch]
        extra = {"clip_qkv": clip_qkv} if clip_qkv is not None else {}
        cfg = config_cls(**extra,hidden_size=d_model, num_attention_heads=heads,
                         num_key_value_heads=kv_heads or max(1, heads // 2),
                         num_hidden_layers=layers, intermediate_size=3 * d_model,
                         vocab_size=vocab, max_position_embeddings=64, bos_token_id=0,
                         eos_token_id=0, pad_token_id=0)  # fmt: skip
        hf = model_cls(cfg)
    hf = hf.eval().to(dtype)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() > 1:
                p.mul_(scale)
            elif "norm" in name or "ln_" in name:
                p.add_(0.3 * torch.randn_like(p))
            else:
                p.add_(0.1 * torch.randn_like(p))
    return hf


def patchable(hf):
    """The patchable model of any supported HF model (through the adapter registry)."""
    from circuit_atlas.models.adapters import from_hf

    if hf.config.model_type == "gpt_neox":
        return PatchableGPTNeoX.from_hf(hf)
    return from_hf(hf)


def dataset(vocab=64, n=5, pos=6, seed=1, metric="logit_diff"):
    """Random paired prompts; the corrupted prompt differs at one position; varied lengths."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(2, vocab, (n, pos), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = torch.randint(2, vocab, (n,), generator=g)
    lengths = torch.randint(pos - 2, pos + 1, (n,), generator=g)
    lengths[0] = pos
    for i in range(n):
        clean[i, lengths[i] :] = 0
        corrupted[i, lengths[i] :] = 0
    answer = torch.randint(2, vocab, (n,), generator=g)
    wrong = (answer + 1 + torch.randint(0, vocab - 3, (n,), generator=g)) % (vocab - 2) + 2
    kw = {}
    if metric == "prob_diff":
        group = torch.arange(2, 12)
        signs = torch.where(torch.rand(n, 10, generator=g) > 0.5, 1.0, -1.0)
        kw = dict(group_tokens=group, group_signs=signs)
    return TaskDataset("toy", clean, corrupted, lengths, answer, wrong, metric, **kw)
