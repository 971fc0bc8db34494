"""Architecture hyper-parameters of a patchable model, independent of its weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """What the graph and the patchable forward need to know about an architecture.

    Attributes:
        architecture: The HF ``model_type`` of the adapter (``gpt_neox``, ``gpt2``, ...).
        n_layers: Transformer blocks.
        n_heads: Attention heads per block.
        d_model: Residual-stream width.
        d_mlp: MLP hidden width.
        vocab_size: Rows of the unembedding (logits per position).
        parallel_residual: GPT-NeoX's ``x + attn(ln1(x)) + mlp(ln2(x))``. When True an MLP gets
            no edge from the heads of its own layer (PAPER.md §3.1).
        rotary_pct: Fraction of each head's dimensions that get rotary embeddings.
        rotary_base: Rotary base frequency.
        layer_norm_eps: LayerNorm epsilon.
        max_positions: Longest supported sequence, in tokens.
        attention_bias: Whether q/k/v and output projections have biases.
        hidden_act: MLP activation (HF name, e.g. ``gelu``).
        norm: ``layernorm`` (centre, scale, weight and bias) or ``rmsnorm`` (scale, weight).
        positional: ``rotary`` (on ``rotary_pct`` of each head) or ``learned`` (absolute
            position embeddings added to the token embedding: the ``input`` node holds both).
        gated_mlp: SwiGLU-style ``(act(x W_gate) ⊙ x W_in) W_out`` instead of ``act(x W_in) W_out``.
        n_kv_heads: Key/value heads (grouped-query attention); None when equal to ``n_heads``.
            The graph always has per-head k and v inputs (the groups are ungrouped).
        tied_embeddings: Whether the unembedding is the transposed token embedding.
        rope_type: HF rotary variant (``default``; the Llama adapter also reads ``linear`` and
            ``llama3``, whose frequencies it copies from the HF model).
        clip_qkv: OLMo's clamp of q, k and v to ``[−clip_qkv, clip_qkv]``; None for none.
    """

    architecture: str
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    vocab_size: int
    parallel_residual: bool = True
    rotary_pct: float = 0.25
    rotary_base: float = 10000.0
    layer_norm_eps: float = 1e-5
    max_positions: int = 2048
    attention_bias: bool = True
    hidden_act: str = "gelu"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    positional: Literal["rotary", "learned"] = "rotary"
    gated_mlp: bool = False
    n_kv_heads: int | None = None
    tied_embeddings: bool = False
    rope_type: str = "default"
    clip_qkv: float | None = None

    @property
    def d_head(self) -> int:
        """Width of one attention head (``d_model // n_heads``)."""
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as a plain dict (JSON-serialisable)."""
        return asdict(self)
