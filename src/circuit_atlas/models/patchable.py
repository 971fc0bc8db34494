"""The patchable transformer: one forward over the edge graph, shared by every adapter.

The forward is written in terms of the edge graph of :mod:`circuit_atlas.graph`: every head's
output (through its slice of W_O, without b_O), every MLP's output and the ``input`` node (the
token embedding, plus learned position embeddings where the architecture has them) are *forward
slots*; every head's q, k and v inputs, every MLP input and the logits are *backward slots*. In a
plain run each backward slot receives the residual stream; a patched run replaces, edge by edge,
the parent's contribution to a backward slot with an alternative value (the corrupted run's, the
mean, or zero). This is the computation of ``evaluate_graph`` / ``attribute`` in hannamw/EAP-IG,
done with dense slot matrices instead of TransformerLens hooks.

:class:`PatchableTransformer` holds the weights in one layout for every architecture (q/k/v
per head ``(3, h, d, e)``, W_O per head ``(h, e, d)``, MLP ``W_in``/``W_gate``/``W_out``, norms as
weight and bias) and reads the differences from its :class:`~circuit_atlas.models.spec.ModelSpec`:
LayerNorm or RMSNorm, rotary (partial or full) or learned positions, a plain or gated (SwiGLU)
MLP, parallel or sequential residual. Adapters (:mod:`circuit_atlas.models.adapters`) copy a HF
model's weights into this layout; grouped-query attention is ungrouped (every query head gets its
own copy of its group's K/V weights, so each head has its own k and v inputs, as EAP-IG does).

Its public building blocks (q/k/v, attention with its pattern, MLP, norms, unembedding, OV/QK
matrices, the residual walker :meth:`PatchableTransformer.walk`) are the
:class:`~circuit_atlas.models.protocol.PatchableModel` protocol that components use; nothing
outside :mod:`circuit_atlas.models` reads a private name of it.

Shapes use ``b`` batch, ``p`` positions, ``d`` d_model, ``h`` heads, ``e`` d_head, ``m`` d_mlp,
``f`` forward slots, ``s`` backward slots, ``k`` circuits evaluated together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from circuit_atlas.errors import TaskDataError, UnsupportedArchitectureError
from circuit_atlas.graph import Graph
from circuit_atlas.models.slot_forward import OutputEdit, Patch, SlotForward, SlotHook
from circuit_atlas.models.slot_grad import upcast
from circuit_atlas.models.spec import ModelSpec

__all__ = [
    "ACTIVATIONS",
    "BlockOutput",
    "OutputEdit",
    "Patch",
    "PatchableTransformer",
    "Rope",
    "activation",
    "SlotHook",
    "upcast",
]

Rope = tuple[Tensor, Tensor]
"""Rotary ``(cos, sin)``, each ``(p, rotary_dims)`` (``rotary_dims`` is 0 without rotary)."""

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "gelu_new": lambda t: F.gelu(t, approximate="tanh"),
    "gelu_pytorch_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "silu": F.silu,
}
"""MLP activations by HF ``hidden_act`` name."""


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The MLP activation of a HF ``hidden_act`` name.

    Raises:
        UnsupportedArchitectureError: For a name not in :data:`ACTIVATIONS` (lists them).
    """
    if name not in ACTIVATIONS:
        raise UnsupportedArchitectureError(
            f"MLP activation {name!r} is not supported; supported: {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


@dataclass
class BlockOutput:
    """One transformer block's views, from :meth:`PatchableTransformer.block`.

    Attributes:
        heads: ``(h, b, p, d)`` each head's output through its slice of W_O (no b_O), after any
            head edit.
        pattern: ``(h, b, p, p)`` attention probabilities (query, key); float32 for
            half-precision models.
        attn: ``(b, p, d)`` the attention output, ``heads.sum(0) + b_O``.
        mlp: ``(b, p, d)`` the MLP output.
        resid: ``(b, p, d)`` the residual stream after the block.
    """

    heads: Tensor
    pattern: Tensor
    attn: Tensor
    mlp: Tensor
    resid: Tensor


class _Layer(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        d, h, e, m = spec.d_model, spec.n_heads, spec.d_head, spec.d_mlp
        self.ln1_w = nn.Parameter(torch.ones(d))
        self.ln1_b = nn.Parameter(torch.zeros(d))
        self.ln2_w = nn.Parameter(torch.ones(d))
        self.ln2_b = nn.Parameter(torch.zeros(d))
        self.W_qkv = nn.Parameter(torch.zeros(3, h, d, e))  # (q|k|v, h, d, e)
        self.b_qkv = nn.Parameter(torch.zeros(3, h, 1, e))
        self.W_O = nn.Parameter(torch.zeros(h, e, d))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.W_in = nn.Parameter(torch.zeros(d, m))
        self.b_in = nn.Parameter(torch.zeros(m))
        self.W_gate = nn.Parameter(torch.zeros(d, m)) if spec.gated_mlp else None
        self.b_gate = nn.Parameter(torch.zeros(m)) if spec.gated_mlp else None
        self.W_out = nn.Parameter(torch.zeros(m, d))
        self.b_out = nn.Parameter(torch.zeros(d))


class PatchableTransformer(SlotForward, nn.Module):
    """A decoder-only language model whose forward pass can be patched edge by edge.

    Build one with an adapter's ``from_hf`` (e.g.
    :meth:`circuit_atlas.models.neox.PatchableGPTNeoX.from_hf`),
    :func:`circuit_atlas.models.adapters.from_hf`, or
    :func:`circuit_atlas.models.sources.load_model`.

    The edge-graph forward passes (``forward``, ``run``) come from
    :class:`~circuit_atlas.models.slot_forward.SlotForward`; this class holds the weights and the
    building blocks they are made of.

    Attributes:
        spec: Architecture hyper-parameters.
        graph: The edge graph (:class:`circuit_atlas.graph.Graph`) of this architecture.
        tokenizer: The HF tokenizer the model was trained with, or None.
        source: Where the weights came from (kind, name, step, path, revision, ...).
    """

    def __init__(self, spec: ModelSpec, tokenizer: Any = None, source: dict | None = None):
        super().__init__()
        self.spec = spec
        self.graph = Graph.from_spec(spec)
        self.tokenizer = tokenizer
        self.source = dict(source or {})
        d, v = spec.d_model, spec.vocab_size
        self.W_E = nn.Parameter(torch.zeros(v, d))
        self.W_pos = (
            nn.Parameter(torch.zeros(spec.max_positions, d))
            if spec.positional == "learned"
            else None
        )
        self.layers = nn.ModuleList(_Layer(spec) for _ in range(spec.n_layers))
        self.lnf_w = nn.Parameter(torch.ones(d))
        self.lnf_b = nn.Parameter(torch.zeros(d))
        self.W_U = nn.Parameter(torch.zeros(d, v))
        rot = int(spec.d_head * spec.rotary_pct) if spec.positional == "rotary" else 0
        self.rotary_dims = rot - rot % 2
        inv = 1.0 / (
            spec.rotary_base ** (torch.arange(0, self.rotary_dims, 2).float() / max(rot, 1))
        )
        self.register_buffer("inv_freq", inv, persistent=False)
        self._rms = spec.norm == "rmsnorm"
        self._act = activation(spec.hidden_act)
        self.requires_grad_(False)

    @classmethod
    def empty_like(
        cls, spec: ModelSpec, hf_model: nn.Module, tokenizer: Any = None, source: dict | None = None
    ):
        """A zero-weight model of ``spec`` on ``hf_model``'s device and dtype (for ``from_hf``)."""
        ref = next(hf_model.parameters())
        return cls(spec, tokenizer=tokenizer, source=source).to(device=ref.device, dtype=ref.dtype)

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the weights."""
        return self.W_E.dtype

    # ------------------------------------------------------------------ weights by role
    @property
    def embedding(self) -> Tensor:
        """Token embedding matrix ``W_E`` ``(vocab, d)`` (no position embeddings)."""
        return self.W_E

    @property
    def unembedding(self) -> Tensor:
        """Unembedding matrix ``W_U`` ``(d, vocab)`` (after the final norm; tied models: W_Eᵀ)."""
        return self.W_U

    def ov(self, layer: int) -> tuple[Tensor, Tensor, Tensor]:
        """The OV matrices of every head of ``layer``.

        Returns:
            ``W_V (h, d, e)``, ``b_V (h, 1, e)`` and ``W_O (h, e, d)`` (applied after the
            layer's attention norm; grouped-query models: each head's copy of its group's V).
        """
        lw = self.layers[layer]
        return lw.W_qkv[2], lw.b_qkv[2], lw.W_O

    def qk(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The QK matrices of every head of ``layer``: ``W_Q, b_Q, W_K, b_K``.

        Returns:
            ``W_Q (h, d, e)``, ``b_Q (h, 1, e)``, ``W_K (h, d, e)``, ``b_K (h, 1, e)``, applied
            after the attention norm and before rotary embeddings.
        """
        lw = self.layers[layer]
        return lw.W_qkv[0], lw.b_qkv[0], lw.W_qkv[1], lw.b_qkv[1]

    def attn_out_bias(self, layer: int) -> Tensor:
        """``b_O`` ``(d,)`` of ``layer`` (belongs to no head; zeros where there is none)."""
        return self.layers[layer].b_O

    def norm_weights(
        self, which: Literal["attn", "mlp", "final"], layer: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Weight and bias ``(d,)``, ``(d,)`` of a norm (ones / zeros where it has none).

        Args:
            which: ``attn`` (before q/k/v), ``mlp`` (before the MLP) or ``final``.
            layer: The layer, for ``attn`` and ``mlp``.

        Raises:
            ValueError: For an unknown ``which`` or a missing ``layer``.
        """
        if which == "final":
            return self.lnf_w, self.lnf_b
        if which not in ("attn", "mlp") or layer is None:
            raise ValueError(f"norm_weights wants 'final', or 'attn'/'mlp' with a layer; got "
                             f"{which!r}, layer={layer}")  # fmt: skip
        lw = self.layers[layer]
        return (lw.ln1_w, lw.ln1_b) if which == "attn" else (lw.ln2_w, lw.ln2_b)

    # ------------------------------------------------------------------ norms
    def center(self, x: Tensor) -> Tensor:
        """The norm's centring of ``x`` ``(..., d)``: mean removed (LayerNorm), ``x`` (RMSNorm)."""
        return x if self._rms else x - x.mean(-1, keepdim=True)

    def norm_scale(self, x: Tensor) -> Tensor:
        """The norm's divisor ``(..., 1)`` of ``x`` ``(..., d)``, in ``x``'s dtype.

        ``sqrt(var(x) + eps)`` for LayerNorm, ``sqrt(mean(x²) + eps)`` for RMSNorm.
        """
        eps = self.spec.layer_norm_eps
        if self._rms:
            return torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)

    def _norm(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        if self._rms:
            y = upcast(x)
            y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.spec.layer_norm_eps)
            return (y * upcast(w)).to(x.dtype)
        y = F.layer_norm(upcast(x), (x.shape[-1],), upcast(w), upcast(b), self.spec.layer_norm_eps)
        return y.to(x.dtype)

    def final_norm(self, resid: Tensor) -> Tensor:
        """The final norm of the residual stream ``(..., d)`` → ``(..., d)``."""
        return self._norm(resid, self.lnf_w, self.lnf_b)

    # ------------------------------------------------------------------ building blocks
    def embed(self, tokens: Tensor) -> Tensor:
        """The ``input`` node ``(b, p, d)`` of ``tokens`` ``(b, p)`` int64.

        Token embeddings, plus position embeddings ``W_pos[:p]`` for learned-position models.

        Raises:
            TaskDataError: If a learned-position model gets more positions than it has.
        """
        x = self.W_E[tokens]
        if self.W_pos is not None:
            p = tokens.shape[-1]
            if p > self.W_pos.shape[0]:
                raise TaskDataError(
                    f"{p} token positions exceed the {self.W_pos.shape[0]} learned positions of "
                    f"this {self.spec.architecture} model"
                )
            x = x + self.W_pos[:p]
        return x

    def rotary(self, n_pos: int) -> Rope:
        """Rotary ``(cos, sin)`` for positions ``0 … n_pos − 1``, each ``(n_pos, rotary_dims)``."""
        t = torch.arange(n_pos, device=self.device, dtype=torch.float32)
        freqs = t[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def rotate(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotary embedding of queries or keys ``(..., p, e)`` (``rotate_half``; or identity)."""
        r = self.rotary_dims
        if r == 0:
            return x
        x_rot, x_pass = x[..., :r], x[..., r:]
        half = r // 2
        rotated = torch.cat((-x_rot[..., half:], x_rot[..., :half]), dim=-1)
        return torch.cat((x_rot * cos + rotated * sin, x_pass), dim=-1)

    def qkv(self, layer: int, qkv_in: Tensor, heads: list[int] | None = None) -> Tensor:
        """Per-head q, k and v ``(3, h, b, p, e)`` from their slot inputs before the norm.

        Args:
            layer: Layer index.
            qkv_in: ``(3, h, b, p, d)``, or ``(1, 1, b, p, d)`` when every q/k/v slot receives
                the same residual stream (then one fused GEMM computes all of them).
            heads: Compute only these heads (``qkv_in`` then has ``len(heads)`` rows per q/k/v).

        With ``spec.clip_qkv`` (OLMo), q, k and v are clamped to ``[−clip, clip]``.
        """
        lw = self.layers[layer]
        e = self.spec.d_head
        w_qkv, b_qkv = lw.W_qkv, lw.b_qkv
        if heads is not None:
            w_qkv, b_qkv = w_qkv[:, heads], b_qkv[:, heads]
        h = w_qkv.shape[1]
        _, _, b, p, d = qkv_in.shape
        x = self._norm(qkv_in, lw.ln1_w, lw.ln1_b)
        if qkv_in.shape[0] == 1:  # one shared input: one fused GEMM for q, k and v
            w = w_qkv.permute(2, 0, 1, 3).reshape(d, 3 * h * e)
            qkv = (x.reshape(b * p, d) @ w).view(b * p, 3, h, e).permute(1, 2, 0, 3)
        else:
            qkv = torch.matmul(x.reshape(3 * h, b * p, d), w_qkv.reshape(3 * h, d, e))
            qkv = qkv.view(3, h, b * p, e)  # (3, h, b·p, e)
        qkv = (qkv + b_qkv).view(3, h, b, p, e)
        clip = self.spec.clip_qkv
        return qkv if clip is None else qkv.clamp(-clip, clip)

    def attend(
        self, layer: int, qkv: Tensor, rope: Rope, heads: list[int] | None = None
    ) -> Tensor:
        """Each head's output through its slice of W_O (no b_O), ``(h, b, p, d)``.

        Args:
            layer: Layer index.
            qkv: ``(3, h, b, p, e)`` queries, keys and values before rotary embeddings.
            rope: Rotary ``(cos, sin)`` from :meth:`rotary`.
            heads: The heads ``qkv`` holds (default: all).
        """
        return self.attention(layer, qkv, rope, heads)[0]

    def attention(
        self, layer: int, qkv: Tensor, rope: Rope, heads: list[int] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Head outputs ``(h, b, p, d)`` as :meth:`attend`, and the attention probabilities.

        The probabilities are ``(h, b, p, p)`` (query, key), float32 for half-precision models.
        Scores are scaled by ``1/√e`` and causally masked.
        """
        w_o = self.layers[layer].W_O if heads is None else self.layers[layer].W_O[heads]
        _, h, b, p, e = qkv.shape
        cos, sin = rope
        q = self.rotate(qkv[0], cos, sin)  # (h, b, p, e)
        k = self.rotate(qkv[1], cos, sin)
        v = qkv[2]
        causal = torch.ones(p, p, dtype=torch.bool, device=q.device).triu(1)
        pattern = self.attention_pattern(torch.matmul(q, k.transpose(-1, -2)), causal)
        z = torch.matmul(pattern.to(v.dtype), v)  # (h, b, p, e)
        out = torch.matmul(z.reshape(h, b * p, e), w_o).view(h, b, p, self.spec.d_model)
        return out, pattern

    def attention_pattern(self, scores: Tensor, hidden: Tensor) -> Tensor:
        """Attention probabilities ``(..., q, k)`` from raw scores ``q·k`` ``(..., q, k)``.

        Scales by ``1/√e``, sets the keys where ``hidden`` (bool, broadcastable) is True to
        −inf and takes the softmax over keys, in float32 for half-precision models.
        """
        scaled = upcast(scores) / math.sqrt(self.spec.d_head)
        return scaled.masked_fill(hidden, float("-inf")).softmax(-1)

    def through_o(self, layer: int, z: Tensor) -> Tensor:
        """Sum over heads of ``z`` ``(h, ..., e)`` through W_O → ``(..., d)`` (no b_O)."""
        w_o = self.layers[layer].W_O  # (h, e, d)
        h, e, d = w_o.shape
        lead = z.shape[1:-1]
        flat = z.reshape(h, -1, e).permute(1, 0, 2).reshape(-1, h * e)  # (n, h·e)
        return (flat @ w_o.reshape(h * e, d)).view(*lead, d)

    def mlp(self, layer: int, x: Tensor) -> Tensor:
        """MLP output ``(..., d)`` from its input before the norm ``(..., d)``."""
        lw = self.layers[layer]
        return self.mlp_raw(layer, self._norm(x, lw.ln2_w, lw.ln2_b))

    def mlp_raw(self, layer: int, x: Tensor) -> Tensor:
        """MLP output ``(..., d)`` of an already normed input ``(..., d)`` (no norm applied).

        ``act(x W_in + b_in) W_out + b_out``, or for a gated MLP (SwiGLU)
        ``(act(x W_gate + b_gate) ⊙ (x W_in + b_in)) W_out + b_out``. Weights are cast to
        ``x``'s dtype (a no-op in the forward; float32 for upcast inputs).
        """
        lw = self.layers[layer]
        dt = x.dtype
        hidden = x @ lw.W_in.to(dt) + lw.b_in.to(dt)
        if lw.W_gate is not None:
            act = self._act(x @ lw.W_gate.to(dt) + lw.b_gate.to(dt)) * hidden
        else:
            act = self._act(hidden)
        return act @ lw.W_out.to(dt) + lw.b_out.to(dt)

    def mlp_input(self, resid: Tensor, attn: Tensor) -> Tensor:
        """What a layer's MLP reads ``(..., d)``: ``resid`` (parallel) or ``resid + attn``."""
        return resid if self.spec.parallel_residual else resid + attn

    def unembed(self, resid: Tensor) -> Tensor:
        """Logits ``(..., vocab)`` from the final residual stream ``(..., d)``."""
        return self.final_norm(resid) @ self.W_U

    # ------------------------------------------------------------------ the residual walker
    def block(
        self,
        layer: int,
        resid: Tensor,
        rope: Rope,
        *,
        qkv_in: Tensor | None = None,
        head_edit: Callable[[int, Tensor], Tensor] | None = None,
    ) -> BlockOutput:
        """One transformer block on the residual stream ``(b, p, d)`` before ``layer``.

        Args:
            layer: Layer index.
            resid: ``(b, p, d)`` residual stream before the block.
            rope: From :meth:`rotary`.
            qkv_in: ``(3, h, b, p, d)`` q/k/v inputs to use instead of ``resid``.
            head_edit: ``edit(layer, heads (h, b, p, d)) -> heads`` applied before the heads
                are summed (the MLP and later layers read the edited outputs).
        """
        qkv = self.qkv(layer, resid[None, None] if qkv_in is None else qkv_in)
        heads, pattern = self.attention(layer, qkv, rope)
        if head_edit is not None:
            heads = head_edit(layer, heads)
        attn = heads.sum(0) + self.layers[layer].b_O
        mlp = self.mlp(layer, self.mlp_input(resid, attn))
        return BlockOutput(heads, pattern, attn, mlp, resid + attn + mlp)

    def walk(
        self,
        resid: Tensor,
        rope: Rope,
        *,
        start: int = 0,
        stop: int | None = None,
        qkv_edit: Callable[[int, Tensor], Tensor] | None = None,
        head_edit: Callable[[int, Tensor], Tensor] | None = None,
        observe: Callable[[int, Tensor, BlockOutput], None] | None = None,
    ) -> Tensor:
        """Run blocks ``start … stop − 1`` on the residual stream; return the stream after them.

        The one residual walker that the component scores use (the parallel/sequential wiring
        lives in :meth:`mlp_input`). It equals :meth:`forward` when nothing is edited.

        Args:
            resid: ``(b, p, d)`` residual stream before block ``start`` (:meth:`embed` for 0).
            rope: From :meth:`rotary`.
            start: First block.
            stop: One past the last block (default: every block).
            qkv_edit: ``edit(layer, qkv_in)`` with the q/k/v inputs before the norm
                ``(3, h, b, p, d)`` (a read-only expanded view: clone before writing); returns
                the inputs to use.
            head_edit: As for :meth:`block`.
            observe: ``observe(layer, resid_before, out)`` after each block.

        Returns:
            ``(b, p, d)`` residual stream after block ``stop − 1``.
        """
        stop = self.spec.n_layers if stop is None else stop
        h = self.spec.n_heads
        for layer in range(start, stop):
            qkv_in = None
            if qkv_edit is not None:
                qkv_in = qkv_edit(layer, resid[None, None].expand(3, h, *resid.shape))
            out = self.block(layer, resid, rope, qkv_in=qkv_in, head_edit=head_edit)
            if observe is not None:
                observe(layer, resid, out)
            resid = out.resid
        return resid
