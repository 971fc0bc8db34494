"""Architecture hyper-parameters of a patchable model, independent of its weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from circuit_atlas.errors import UnsupportedArchitectureError

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """What the graph and the patchable forward need to know about an architecture.

    Attributes:
        architecture: Adapter name; ``gpt_neox`` is built in.
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

    @property
    def d_head(self) -> int:
        """Width of one attention head (``d_model // n_heads``)."""
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as a plain dict (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_hf_config(cls, config: Any) -> ModelSpec:
        """Build a spec from a ``transformers`` config (``GPTNeoXConfig`` is supported).

        Raises:
            UnsupportedArchitectureError: For a ``model_type`` with no adapter.
        """
        model_type = getattr(config, "model_type", None)
        if model_type != "gpt_neox":
            raise UnsupportedArchitectureError(
                f"model_type {model_type!r} has no architecture adapter; supported: 'gpt_neox'"
            )
        return cls(
            architecture="gpt_neox",
            n_layers=config.num_hidden_layers,
            n_heads=config.num_attention_heads,
            d_model=config.hidden_size,
            d_mlp=config.intermediate_size,
            vocab_size=config.vocab_size,
            parallel_residual=bool(getattr(config, "use_parallel_residual", True)),
            rotary_pct=float(getattr(config, "rotary_pct", None) or _partial_rotary(config)),
            rotary_base=float(getattr(config, "rotary_emb_base", None) or _rope_theta(config)),
            layer_norm_eps=float(config.layer_norm_eps),
            max_positions=int(config.max_position_embeddings),
            attention_bias=bool(getattr(config, "attention_bias", True)),
            hidden_act=str(config.hidden_act),
        )


def _partial_rotary(config: Any) -> float:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return float(rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 0.25)))


def _rope_theta(config: Any) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
