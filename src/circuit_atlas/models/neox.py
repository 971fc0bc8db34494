"""The GPT-NeoX adapter (Pythia's architecture): HF ``GPTNeoXForCausalLM`` weights → patchable.

GPT-NeoX specifics: parallel residual ``x + attn(ln1(x)) + mlp(ln2(x))`` (sequential residual is
supported too), partial rotary embeddings on the first ``rotary_pct·d_head`` dimensions
(``rotate_half`` convention), fused ``query_key_value`` weights laid out per head as
``[q | k | v]``, LayerNorm with bias, untied unembedding. The forward itself is
:class:`~circuit_atlas.models.patchable.PatchableTransformer`'s.

Shapes use ``h`` heads, ``e`` d_head, ``d`` d_model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from circuit_atlas.errors import ModelSourceError, UnsupportedArchitectureError
from circuit_atlas.models.patchable import (
    OutputEdit,
    Patch,
    PatchableTransformer,
    SlotHook,
    activation,
)
from circuit_atlas.models.spec import ModelSpec

__all__ = ["PatchableGPTNeoX", "Patch", "SlotHook", "OutputEdit", "neox_spec"]


def neox_spec(config: Any) -> ModelSpec:
    """The :class:`ModelSpec` of a ``GPTNeoXConfig``.

    Raises:
        UnsupportedArchitectureError: If the config is not GPT-NeoX.
    """
    if getattr(config, "model_type", None) != "gpt_neox":
        raise UnsupportedArchitectureError(
            f"model_type {getattr(config, 'model_type', None)!r} is not 'gpt_neox'"
        )
    activation(str(config.hidden_act))  # refuses an unknown activation before any weights load
    return ModelSpec(
        architecture="gpt_neox",
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        d_model=config.hidden_size,
        d_mlp=config.intermediate_size,
        vocab_size=config.vocab_size,
        parallel_residual=bool(getattr(config, "use_parallel_residual", True)),
        rotary_pct=float(getattr(config, "rotary_pct", None) or _partial_rotary(config)),
        rotary_base=float(getattr(config, "rotary_emb_base", None) or rope_theta(config)),
        layer_norm_eps=float(config.layer_norm_eps),
        max_positions=int(config.max_position_embeddings),
        attention_bias=bool(getattr(config, "attention_bias", True)),
        hidden_act=str(config.hidden_act),
    )


class PatchableGPTNeoX(PatchableTransformer):
    """A GPT-NeoX language model whose forward pass can be patched edge by edge.

    Build it with :meth:`from_hf` (from a ``transformers.GPTNeoXForCausalLM``) or through
    :func:`circuit_atlas.models.sources.load_model`. See
    :class:`~circuit_atlas.models.patchable.PatchableTransformer` for the forward.
    """

    @classmethod
    def from_hf(cls, hf_model: nn.Module, tokenizer: Any = None, source: dict | None = None):
        """Copy the weights of a HF ``GPTNeoXForCausalLM`` into a patchable model.

        The result lives on the HF model's device and dtype. The HF model is not modified.

        Raises:
            UnsupportedArchitectureError: If the model is not GPT-NeoX.
            ModelSourceError: If a weight has an unexpected shape.
        """
        model_type = getattr(hf_model.config, "model_type", None)
        if model_type != "gpt_neox":
            raise UnsupportedArchitectureError(
                f"PatchableGPTNeoX takes a 'gpt_neox' model, got model_type {model_type!r}; "
                "use circuit_atlas.models.adapters.from_hf for other architectures"
            )
        spec = neox_spec(hf_model.config)
        model = cls.empty_like(spec, hf_model, tokenizer, source)
        h, e, d = spec.n_heads, spec.d_head, spec.d_model
        base = hf_model.gpt_neox
        with torch.no_grad():
            model.W_E.copy_(base.embed_in.weight)
            for layer, hf in zip(model.layers, base.layers, strict=True):
                att = hf.attention
                w = att.query_key_value.weight  # (h·3·e, d), rows per head [q | k | v]
                if w.shape != (3 * d, d):
                    raise ModelSourceError(f"query_key_value weight has shape {tuple(w.shape)}")
                layer.W_qkv.copy_(w.view(h, 3, e, d).permute(1, 0, 3, 2))
                if att.query_key_value.bias is not None:
                    layer.b_qkv.copy_(att.query_key_value.bias.view(h, 3, 1, e).permute(1, 0, 2, 3))
                layer.W_O.copy_(att.dense.weight.T.reshape(h, e, d))
                if att.dense.bias is not None:
                    layer.b_O.copy_(att.dense.bias)
                layer.ln1_w.copy_(hf.input_layernorm.weight)
                layer.ln1_b.copy_(hf.input_layernorm.bias)
                layer.ln2_w.copy_(hf.post_attention_layernorm.weight)
                layer.ln2_b.copy_(hf.post_attention_layernorm.bias)
                layer.W_in.copy_(hf.mlp.dense_h_to_4h.weight.T)
                layer.b_in.copy_(hf.mlp.dense_h_to_4h.bias)
                layer.W_out.copy_(hf.mlp.dense_4h_to_h.weight.T)
                layer.b_out.copy_(hf.mlp.dense_4h_to_h.bias)
            model.lnf_w.copy_(base.final_layer_norm.weight)
            model.lnf_b.copy_(base.final_layer_norm.bias)
            model.W_U.copy_(hf_model.get_output_embeddings().weight.T)
        return model


def _partial_rotary(config: Any) -> float:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return float(rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 0.25)))


def rope_theta(config: Any) -> float:
    """The rotary base of a HF config (``rope_parameters['rope_theta']`` or ``rope_theta``)."""
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
