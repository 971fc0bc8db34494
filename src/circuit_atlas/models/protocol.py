"""The :class:`PatchableModel` protocol: what attribution, evaluation and components may use.

Every adapter (:mod:`circuit_atlas.models.adapters`) gives a
:class:`~circuit_atlas.models.patchable.PatchableTransformer`, which implements this protocol;
code outside :mod:`circuit_atlas.models` types its ``model`` argument with it and uses only these
names (a test scans ``src/`` for private-name accesses). The building blocks are stated on the
edge graph's terms: a head's q/k/v input and an MLP's input are residual-stream vectors *before*
the block's norm; a head's output is its z through its slice of W_O, without b_O.

Shapes use ``b`` batch, ``p`` positions, ``d`` d_model, ``h`` heads, ``e`` d_head, ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from circuit_atlas.graph import Graph
    from circuit_atlas.models.patchable import BlockOutput, Patch, Rope
    from circuit_atlas.models.spec import ModelSpec

__all__ = ["PatchableModel"]


@runtime_checkable
class PatchableModel(Protocol):
    """A language model with a patchable edge-graph forward and public building blocks.

    Attributes:
        spec: Architecture hyper-parameters (:class:`~circuit_atlas.models.spec.ModelSpec`).
        graph: Its edge graph (:class:`~circuit_atlas.graph.Graph`).
        tokenizer: The HF tokenizer, or None.
        source: Where the weights came from.
    """

    spec: ModelSpec
    graph: Graph
    tokenizer: Any
    source: dict

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        ...

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the weights."""
        ...

    # --- weights by role
    @property
    def embedding(self) -> Tensor:
        """Token embedding ``W_E`` ``(V, d)``."""
        ...

    @property
    def unembedding(self) -> Tensor:
        """Unembedding ``W_U`` ``(d, V)`` (after the final norm)."""
        ...

    def ov(self, layer: int) -> tuple[Tensor, Tensor, Tensor]:
        """``W_V (h, d, e)``, ``b_V (h, 1, e)``, ``W_O (h, e, d)`` of every head of ``layer``."""
        ...

    def qk(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``W_Q (h, d, e)``, ``b_Q (h, 1, e)``, ``W_K (h, d, e)``, ``b_K (h, 1, e)``."""
        ...

    def attn_out_bias(self, layer: int) -> Tensor:
        """``b_O`` ``(d,)`` of ``layer``."""
        ...

    def norm_weights(
        self, which: Literal["attn", "mlp", "final"], layer: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Weight and bias ``(d,)`` of a norm."""
        ...

    # --- norms
    def center(self, x: Tensor) -> Tensor:
        """The norm's centring of ``x`` ``(..., d)``."""
        ...

    def norm_scale(self, x: Tensor) -> Tensor:
        """The norm's divisor ``(..., 1)`` of ``x`` ``(..., d)``."""
        ...

    def final_norm(self, resid: Tensor) -> Tensor:
        """The final norm ``(..., d)`` → ``(..., d)``."""
        ...

    # --- building blocks
    def embed(self, tokens: Tensor) -> Tensor:
        """The ``input`` node ``(b, p, d)`` of ``tokens`` ``(b, p)``."""
        ...

    def rotary(self, n_pos: int) -> Rope:
        """Rotary ``(cos, sin)`` ``(p, r)`` (``r = 0`` without rotary)."""
        ...

    def rotate(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotary embedding of queries or keys ``(..., p, e)``."""
        ...

    def qkv(self, layer: int, qkv_in: Tensor, heads: list[int] | None = None) -> Tensor:
        """q, k, v ``(3, h, b, p, e)`` from inputs ``(3, h, b, p, d)`` or ``(1, 1, b, p, d)``."""
        ...

    def attention(
        self, layer: int, qkv: Tensor, rope: Rope, heads: list[int] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Head outputs ``(h, b, p, d)`` and the pattern ``(h, b, p, p)``."""
        ...

    def attend(self, layer: int, qkv: Tensor, rope: Rope, heads: list[int] | None = None) -> Tensor:
        """Head outputs ``(h, b, p, d)``."""
        ...

    def attention_pattern(self, scores: Tensor, hidden: Tensor) -> Tensor:
        """Probabilities ``(..., q, k)`` from raw ``q·k`` scores; ``hidden`` keys masked."""
        ...

    def through_o(self, layer: int, z: Tensor) -> Tensor:
        """Sum over heads of ``z`` ``(h, ..., e)`` through W_O → ``(..., d)``."""
        ...

    def mlp(self, layer: int, x: Tensor) -> Tensor:
        """MLP output ``(..., d)`` from its input before the norm."""
        ...

    def mlp_raw(self, layer: int, x: Tensor) -> Tensor:
        """MLP output ``(..., d)`` of an already normed input."""
        ...

    def mlp_input(self, resid: Tensor, attn: Tensor) -> Tensor:
        """What an MLP reads: ``resid`` (parallel residual) or ``resid + attn``."""
        ...

    def unembed(self, resid: Tensor) -> Tensor:
        """Logits ``(..., V)`` of the final residual stream."""
        ...

    # --- the residual walker
    def block(self, layer: int, resid: Tensor, rope: Rope, *, qkv_in: Tensor | None = None,
              head_edit: Callable[[int, Tensor], Tensor] | None = None) -> BlockOutput:  # fmt: skip
        """One transformer block on the residual stream ``(b, p, d)``."""
        ...

    def walk(self, resid: Tensor, rope: Rope, *, start: int = 0, stop: int | None = None,
             qkv_edit: Callable[[int, Tensor], Tensor] | None = None,
             head_edit: Callable[[int, Tensor], Tensor] | None = None,
             observe: Callable[[int, Tensor, BlockOutput], None] | None = None,
             ) -> Tensor:  # fmt: skip
        """Blocks ``start … stop − 1``; the residual stream after them ``(b, p, d)``."""
        ...

    # --- edge-graph forward passes
    def forward(self, tokens: Tensor) -> Tensor:
        """Plain logits ``(b, p, V)``."""
        ...

    def run(self, tokens: Tensor, positions: Tensor | None, *, embed: Tensor | None = None,
            patch: Patch | None = None, record: Tensor | None = None,
            slot_hook: Callable[[int, Tensor], None] | None = None,
            edit_output: Callable[[int, Tensor], Tensor] | None = None,
            return_resid: bool = False) -> Tensor:  # fmt: skip
        """The slot-graph forward, optionally patched edge by edge."""
        ...
