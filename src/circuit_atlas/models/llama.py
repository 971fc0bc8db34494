"""The Llama-family adapter: HF ``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``OlmoForCausalLM``.

Shared specifics: pre-norm sequential residual, full rotary embeddings (``rotate_half``), separate
``q_proj``/``k_proj``/``v_proj``/``o_proj``, a gated SwiGLU MLP ``down(act(gate(x)) ⊙ up(x))``,
grouped-query attention. The family members differ only in:

- Llama: RMSNorm with a weight; optional ``attention_bias`` (q/k/v/o) and ``mlp_bias``; rotary
  frequencies ``default``, ``linear`` or ``llama3`` (Llama 3.x), copied from HF's
  ``rotary_emb``.
- Qwen2: RMSNorm; q/k/v biases (no o bias); sliding-window attention is refused.
- OLMo: non-parametric LayerNorm (no weight, no bias, eps 1e-5); ``clip_qkv`` clamps q, k and v
  (in every forward and in the gradient pass; the OV/QK matrices of ``ov``/``qk`` are the
  unclamped weights).

Grouped-query attention is ungrouped: every query head gets its own copy of its group's K and V
weights (``repeat_interleave`` over heads, as HF ``repeat_kv`` and TransformerLens'
``ungroup_grouped_query_attention``), so each head has its own k and v inputs in the graph, as in
EAP-IG. The copies cost ``2·(h − n_kv)·d·e`` extra weights per layer.

Shapes use ``h`` heads, ``g`` key/value heads, ``e`` d_head, ``d`` d_model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from circuit_atlas.errors import ModelSourceError, UnsupportedArchitectureError
from circuit_atlas.models.neox import rope_theta
from circuit_atlas.models.patchable import PatchableTransformer, activation
from circuit_atlas.models.spec import ModelSpec

__all__ = ["PatchableLlama", "llama_spec", "LLAMA_FAMILY"]


@dataclass(frozen=True)
class _Family:
    norm: str
    parametric_norm: bool
    qkv_bias: bool | None  # None: from config.attention_bias


ROPE_TYPES = ("default", "linear", "llama3")
"""Rotary variants read (their frequencies are copied from the HF model's ``rotary_emb``); the
others (``dynamic``, ``yarn``, ``longrope``) rescale with sequence length or scale cos/sin."""

LLAMA_FAMILY = {
    "llama": _Family("rmsnorm", True, None),
    "qwen2": _Family("rmsnorm", True, True),
    "olmo": _Family("layernorm", False, None),
}
"""The HF ``model_type`` values this adapter reads, and how they differ."""


def llama_spec(config: Any) -> ModelSpec:
    """The :class:`ModelSpec` of a Llama, Qwen2 or OLMo config.

    Raises:
        UnsupportedArchitectureError: For another ``model_type``, or options the adapter does
            not implement (scaled rotary other than ``linear``/``llama3``, a ``head_dim`` other
            than ``hidden_size / heads``, sliding windows).
    """
    model_type = getattr(config, "model_type", None)
    if model_type not in LLAMA_FAMILY:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is not one of {sorted(LLAMA_FAMILY)}"
        )
    family = LLAMA_FAMILY[model_type]
    d, h = int(config.hidden_size), int(config.num_attention_heads)
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    problems = []
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        problems.append(f"rope_type={rope_type!r} (supported: {', '.join(ROPE_TYPES)})")
    if float(rope.get("partial_rotary_factor", 1.0)) != 1.0:
        problems.append("partial_rotary_factor != 1")
    if (getattr(config, "head_dim", None) or d // h) != d // h or d % h:
        problems.append(f"head_dim={config.head_dim} (hidden_size / heads = {d / h})")
    if getattr(config, "use_sliding_window", False):
        problems.append("use_sliding_window=True")
    if problems:
        raise UnsupportedArchitectureError(
            f"{model_type} options not supported by the llama adapter: {', '.join(problems)}"
        )
    kv = int(getattr(config, "num_key_value_heads", None) or h)
    if h % kv:
        raise UnsupportedArchitectureError(f"{h} heads do not split into {kv} key/value groups")
    eps = float(getattr(config, "rms_norm_eps", 1e-5)) if family.parametric_norm else 1e-5
    bias = family.qkv_bias if family.qkv_bias is not None else getattr(config, "attention_bias",
                                                                         False)  # fmt: skip
    activation(str(config.hidden_act))  # refuses an unknown activation before any weights load
    return ModelSpec(
        architecture=model_type,
        n_layers=int(config.num_hidden_layers),
        n_heads=h,
        d_model=d,
        d_mlp=int(config.intermediate_size),
        vocab_size=int(config.vocab_size),
        parallel_residual=False,
        rotary_pct=1.0,
        rotary_base=rope_theta(config),
        layer_norm_eps=eps,
        max_positions=int(config.max_position_embeddings),
        attention_bias=bool(bias),
        hidden_act=str(config.hidden_act),
        norm=family.norm,
        positional="rotary",
        gated_mlp=True,
        n_kv_heads=None if kv == h else kv,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        rope_type=str(rope_type),
        clip_qkv=None if getattr(config, "clip_qkv", None) is None else float(config.clip_qkv),
    )


class PatchableLlama(PatchableTransformer):
    """A Llama-family (Llama, Qwen2, OLMo) model whose forward pass can be patched edge by edge.

    See :class:`~circuit_atlas.models.patchable.PatchableTransformer` for the forward.
    """

    @classmethod
    def from_hf(cls, hf_model: nn.Module, tokenizer: Any = None, source: dict | None = None):
        """Copy the weights of a HF Llama, Qwen2 or OLMo causal LM into a patchable model.

        K and V are ungrouped per query head.

        The result lives on the HF model's device and dtype. The HF model is not modified.

        Raises:
            UnsupportedArchitectureError: If the model is not of the family (see
                :func:`llama_spec`).
            ModelSourceError: If a weight has an unexpected shape.
        """
        spec = llama_spec(hf_model.config)
        model = cls.empty_like(spec, hf_model, tokenizer, source)
        h, e, d = spec.n_heads, spec.d_head, spec.d_model
        g = spec.n_kv_heads or h
        base = hf_model.model
        with torch.no_grad():
            model.W_E.copy_(base.embed_tokens.weight)
            for layer, hf in zip(model.layers, base.layers, strict=True):
                att = hf.self_attn
                for i, (proj, n) in enumerate(((att.q_proj, h), (att.k_proj, g), (att.v_proj, g))):
                    if proj.weight.shape != (n * e, d):
                        shape = tuple(proj.weight.shape)
                        raise ModelSourceError(
                            f"attention projection {i} has weight shape {shape}, "
                            f"expected {(n * e, d)}"
                        )
                    w = proj.weight.view(n, e, d).transpose(1, 2)  # (n, d, e)
                    layer.W_qkv[i].copy_(w.repeat_interleave(h // n, dim=0))
                    if proj.bias is not None:
                        layer.b_qkv[i].copy_(proj.bias.view(n, 1, e).repeat_interleave(h // n, 0))
                layer.W_O.copy_(att.o_proj.weight.T.reshape(h, e, d))
                if att.o_proj.bias is not None:
                    layer.b_O.copy_(att.o_proj.bias)
                _copy_norm(layer.ln1_w, layer.ln1_b, hf.input_layernorm)
                _copy_norm(layer.ln2_w, layer.ln2_b, hf.post_attention_layernorm)
                mlp = hf.mlp
                layer.W_gate.copy_(mlp.gate_proj.weight.T)
                layer.W_in.copy_(mlp.up_proj.weight.T)
                layer.W_out.copy_(mlp.down_proj.weight.T)
                for ours, theirs in ((layer.b_gate, mlp.gate_proj), (layer.b_in, mlp.up_proj),
                                     (layer.b_out, mlp.down_proj)):  # fmt: skip
                    if theirs.bias is not None:
                        ours.copy_(theirs.bias)
            _copy_norm(model.lnf_w, model.lnf_b, base.norm)
            model.W_U.copy_(hf_model.get_output_embeddings().weight.T)
            rotary = getattr(base, "rotary_emb", None)
            if rotary is not None:  # HF's frequencies: the same for default rope, scaled else
                if float(getattr(rotary, "attention_scaling", 1.0)) != 1.0:
                    raise UnsupportedArchitectureError(
                        f"rotary attention_scaling {rotary.attention_scaling} is not supported"
                    )
                model.inv_freq.copy_(rotary.inv_freq)
        return model


def _copy_norm(w: torch.Tensor, b: torch.Tensor, hf_norm: nn.Module) -> None:
    """Copy a norm's weight (and bias); a non-parametric norm keeps ones and zeros."""
    if getattr(hf_norm, "weight", None) is not None:
        w.copy_(hf_norm.weight)
    if getattr(hf_norm, "bias", None) is not None:
        b.copy_(hf_norm.bias)
