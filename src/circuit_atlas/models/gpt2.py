"""The GPT-2 adapter: HF ``GPT2LMHeadModel`` weights → :class:`PatchableGPT2`.

GPT-2 specifics: learned absolute position embeddings (the ``input`` node is token plus position
embedding, TransformerLens' ``blocks.0.hook_resid_pre``), sequential residual (each MLP reads its
own layer's heads, so the graph has head → same-layer MLP edges), LayerNorm with bias, ``gelu_new``
MLP, ``Conv1D`` weights (``x @ W``, the transpose of ``nn.Linear``) with ``c_attn`` laid out as
``[q of all heads | k | v]``, unembedding tied to the token embedding.

Shapes use ``h`` heads, ``e`` d_head, ``d`` d_model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from circuit_atlas.errors import ModelSourceError, UnsupportedArchitectureError
from circuit_atlas.models.patchable import PatchableTransformer, activation
from circuit_atlas.models.spec import ModelSpec

__all__ = ["PatchableGPT2", "gpt2_spec"]


def gpt2_spec(config: Any) -> ModelSpec:
    """The :class:`ModelSpec` of a ``GPT2Config``.

    Raises:
        UnsupportedArchitectureError: For options the adapter does not implement
            (``scale_attn_by_inverse_layer_idx``, ``scale_attn_weights=False``, cross-attention).
    """
    for option, unsupported in (
        ("scale_attn_by_inverse_layer_idx", True),
        ("scale_attn_weights", False),
        ("add_cross_attention", True),
    ):
        if getattr(config, option, not unsupported) == unsupported:
            raise UnsupportedArchitectureError(
                f"GPT-2 option {option}={unsupported} is not supported by the gpt2 adapter"
            )
    activation(str(config.activation_function))  # refuses an unknown one before weights load
    d = int(config.n_embd)
    return ModelSpec(
        architecture="gpt2",
        n_layers=int(config.n_layer),
        n_heads=int(config.n_head),
        d_model=d,
        d_mlp=int(config.n_inner or 4 * d),
        vocab_size=int(config.vocab_size),
        parallel_residual=False,
        rotary_pct=0.0,
        layer_norm_eps=float(config.layer_norm_epsilon),
        max_positions=int(config.n_positions),
        attention_bias=True,
        hidden_act=str(config.activation_function),
        norm="layernorm",
        positional="learned",
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
    )


class PatchableGPT2(PatchableTransformer):
    """A GPT-2 language model whose forward pass can be patched edge by edge.

    See :class:`~circuit_atlas.models.patchable.PatchableTransformer` for the forward.
    """

    @classmethod
    def from_hf(cls, hf_model: nn.Module, tokenizer: Any = None, source: dict | None = None):
        """Copy the weights of a HF ``GPT2LMHeadModel`` into a patchable model.

        The result lives on the HF model's device and dtype. The HF model is not modified.

        Raises:
            UnsupportedArchitectureError: If the model is not GPT-2.
            ModelSourceError: If a weight has an unexpected shape.
        """
        model_type = getattr(hf_model.config, "model_type", None)
        if model_type != "gpt2":
            raise UnsupportedArchitectureError(
                f"PatchableGPT2 takes a 'gpt2' model, got model_type {model_type!r}"
            )
        spec = gpt2_spec(hf_model.config)
        model = cls.empty_like(spec, hf_model, tokenizer, source)
        h, e, d = spec.n_heads, spec.d_head, spec.d_model
        base = hf_model.transformer
        with torch.no_grad():
            model.W_E.copy_(base.wte.weight)
            model.W_pos.copy_(base.wpe.weight)
            for layer, hf in zip(model.layers, base.h, strict=True):
                w = hf.attn.c_attn.weight  # Conv1D (d, 3d): columns [q | k | v], per head e wide
                if w.shape != (d, 3 * d):
                    raise ModelSourceError(f"c_attn weight has shape {tuple(w.shape)}")
                layer.W_qkv.copy_(w.view(d, 3, h, e).permute(1, 2, 0, 3))  # (3, h, d, e)
                layer.b_qkv.copy_(hf.attn.c_attn.bias.view(3, h, 1, e))
                layer.W_O.copy_(hf.attn.c_proj.weight.view(h, e, d))
                layer.b_O.copy_(hf.attn.c_proj.bias)
                layer.ln1_w.copy_(hf.ln_1.weight)
                layer.ln1_b.copy_(hf.ln_1.bias)
                layer.ln2_w.copy_(hf.ln_2.weight)
                layer.ln2_b.copy_(hf.ln_2.bias)
                layer.W_in.copy_(hf.mlp.c_fc.weight)
                layer.b_in.copy_(hf.mlp.c_fc.bias)
                layer.W_out.copy_(hf.mlp.c_proj.weight)
                layer.b_out.copy_(hf.mlp.c_proj.bias)
            model.lnf_w.copy_(base.ln_f.weight)
            model.lnf_b.copy_(base.ln_f.bias)
            model.W_U.copy_(hf_model.get_output_embeddings().weight.T)
        return model
