"""The computational graph whose edges circuit-atlas scores and patches.

Nodes are ``input`` (the token embedding), one node per attention head ``a{l}.h{h}`` (its output
through W_O, without b_O), one node per MLP ``m{l}``, and ``logits``. Upstream outputs live in
*forward slots* and downstream inputs in *backward slots*: each head has three separate inputs
(q, k and v), each MLP and the logits one. An edge joins a forward slot to a backward slot of a
later component. For parallel-residual models (GPT-NeoX / Pythia) a layer's MLP receives no edge
from the heads of its own layer; for sequential-residual models (GPT-2, Llama, Qwen2, OLMo) it
does. Grouped-query models are ungrouped: every query head has its own k and v inputs.

This reproduces ``Graph.from_model`` of hannamw/EAP-IG (``use_split_qkv_input``,
``parallel_attn_mlp``), including its edge names (``a0.h1->a2.h3<q>``) and counts: Pythia-70m has
56 nodes and 3,580 edges, 160m 158 / 32,347, 410m and 1.4b 410 / 231,493, 2.8b 1,058 / 1,591,857
(PAPER.md §1, §3.1); GPT-2 small (12 × 12, sequential) has 158 / 32,491, as in EAP-IG and
MIB.

Slot layout (used by the patchable forward and attribution):

* forward slot ``f``: 0 = ``input``; layer ``l`` head ``h`` = ``1 + l·(H+1) + h``; MLP ``l`` =
  ``1 + l·(H+1) + H``. Forward slot ``f`` is node ``f``.
* backward slot ``b``: layer ``l`` has ``3H + 1`` slots starting at ``l·(3H+1)``: q of heads
  ``0..H-1``, then k, then v, then the MLP input; the last slot is ``logits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

__all__ = ["Graph"]

_QKV = ("q", "k", "v")


@dataclass(frozen=True, eq=False)
class Graph:
    """The edge graph of one architecture (no weights).

    Attributes:
        n_layers: Transformer blocks.
        n_heads: Heads per block.
        parallel_residual: Whether an MLP is fed by the residual before its own layer's heads.
    """

    n_layers: int
    n_heads: int
    parallel_residual: bool = True

    @classmethod
    def from_spec(cls, spec: Any) -> Graph:
        """Build the graph of a model spec.

        Args:
            spec: A :class:`~circuit_atlas.models.spec.ModelSpec` (only its ``n_layers``,
                ``n_heads`` and ``parallel_residual`` are read). The graph module does not import
                ``models``: models build their graph, so the arrow runs models → graph only
                (``tests/test_import_graph.py``). From a ``transformers`` config, no weights
                needed: ``Graph.from_spec(models.adapters.spec_from_hf_config(config))``.
        """
        return cls(spec.n_layers, spec.n_heads, spec.parallel_residual)

    # ----------------------------------------------------------------- slot arithmetic
    @property
    def n_forward(self) -> int:
        """Forward slots: ``input``, every head and every MLP (``1 + L·(H+1)``)."""
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_backward(self) -> int:
        """Backward slots: q, k, v of every head, every MLP input, and ``logits``."""
        return self.n_layers * (3 * self.n_heads + 1) + 1

    @property
    def n_nodes(self) -> int:
        """Nodes, including ``input`` and ``logits``."""
        return self.n_forward + 1

    def layer_forward_start(self, layer: int) -> int:
        """First forward slot of ``layer`` (its head 0); also the number of slots before it."""
        return 1 + layer * (self.n_heads + 1)

    def head_forward(self, layer: int, head: int) -> int:
        """Forward slot (= node index) of head ``head`` of ``layer``."""
        return self.layer_forward_start(layer) + head

    def mlp_forward(self, layer: int) -> int:
        """Forward slot (= node index) of the MLP of ``layer``."""
        return self.layer_forward_start(layer) + self.n_heads

    def layer_backward_start(self, layer: int) -> int:
        """First backward slot of ``layer`` (q input of head 0)."""
        return layer * (3 * self.n_heads + 1)

    def qkv_backward(self, layer: int, head: int, which: str) -> int:
        """Backward slot of the q, k or v input of a head (``which`` in ``"qkv"``)."""
        return self.layer_backward_start(layer) + _QKV.index(which) * self.n_heads + head

    def mlp_backward(self, layer: int) -> int:
        """Backward slot of the MLP input of ``layer``."""
        return self.layer_backward_start(layer) + 3 * self.n_heads

    @property
    def logits_backward(self) -> int:
        """Backward slot of ``logits``."""
        return self.n_backward - 1

    @property
    def logits_node(self) -> int:
        """Node index of ``logits``."""
        return self.n_nodes - 1

    def n_parents(self, backward: int) -> int:
        """Number of forward slots feeding a backward slot: they are slots ``0..n-1``."""
        if backward == self.logits_backward:
            return self.n_forward
        layer = backward // (3 * self.n_heads + 1)
        n = self.layer_forward_start(layer)
        if backward == self.mlp_backward(layer) and not self.parallel_residual:
            n += self.n_heads
        return n

    # ----------------------------------------------------------------- names and tables
    @cached_property
    def node_names(self) -> tuple[str, ...]:
        """Node names: ``input``, per layer ``a{l}.h{h}`` then ``m{l}``, then ``logits``."""
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}" for h in range(self.n_heads)]
            names.append(f"m{layer}")
        names.append("logits")
        return tuple(names)

    @cached_property
    def backward_names(self) -> tuple[str, ...]:
        """Backward slot names: ``a{l}.h{h}<q>`` …, ``m{l}``, ``logits``."""
        names: list[str] = []
        for layer in range(self.n_layers):
            for which in _QKV:
                names += [f"a{layer}.h{h}<{which}>" for h in range(self.n_heads)]
            names.append(f"m{layer}")
        names.append("logits")
        return tuple(names)

    @cached_property
    def backward_node(self) -> Tensor:
        """``(n_backward,)`` int64: the node each backward slot belongs to."""
        out = torch.empty(self.n_backward, dtype=torch.long)
        for layer in range(self.n_layers):
            start = self.layer_backward_start(layer)
            for i in range(3):
                out[start + i * self.n_heads : start + (i + 1) * self.n_heads] = torch.arange(
                    self.n_heads
                ) + self.layer_forward_start(layer)
            out[self.mlp_backward(layer)] = self.mlp_forward(layer)
        out[self.logits_backward] = self.logits_node
        return out

    @cached_property
    def valid(self) -> Tensor:
        """``(n_forward, n_backward)`` bool: which (forward, backward) pairs are edges."""
        counts = torch.tensor([self.n_parents(b) for b in range(self.n_backward)])
        return torch.arange(self.n_forward)[:, None] < counts[None, :]

    @cached_property
    def _edge_index(self) -> tuple[Tensor, Tensor]:
        src, dst = self.valid.nonzero(as_tuple=True)
        return src.contiguous(), dst.contiguous()

    @property
    def edge_src(self) -> Tensor:
        """``(n_edges,)`` int64 forward slot (= parent node) of each edge."""
        return self._edge_index[0]

    @property
    def edge_dst(self) -> Tensor:
        """``(n_edges,)`` int64 backward slot of each edge."""
        return self._edge_index[1]

    @property
    def edge_parent_node(self) -> Tensor:
        """``(n_edges,)`` int64 node index of each edge's parent."""
        return self.edge_src

    @cached_property
    def edge_child_node(self) -> Tensor:
        """``(n_edges,)`` int64 node index of each edge's child."""
        return self.backward_node[self.edge_dst]

    @property
    def n_edges(self) -> int:
        """Number of edges."""
        return int(self.edge_src.numel())

    @cached_property
    def edge_names(self) -> tuple[str, ...]:
        """Edge names in edge order, EAP-IG convention ``parent->child<q|k|v>``."""
        nodes, back = self.node_names, self.backward_names
        return tuple(
            f"{nodes[s]}->{back[d]}"
            for s, d in zip(self.edge_src.tolist(), self.edge_dst.tolist(), strict=True)
        )

    @cached_property
    def edge_index_by_name(self) -> dict[str, int]:
        """Map from edge name to edge index."""
        return {name: i for i, name in enumerate(self.edge_names)}

    # ----------------------------------------------------------------- masks
    def dense(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """Scatter per-edge values into the ``(..., n_forward, n_backward)`` slot matrix.

        Args:
            values: ``(..., n_edges)`` per-edge values (any dtype).
            fill: Value for pairs that are not edges.

        Returns:
            ``(..., n_forward, n_backward)`` tensor of ``values``' dtype and device.
        """
        lead = values.shape[:-1]
        out = torch.full(
            (*lead, self.n_forward * self.n_backward),
            fill,
            dtype=values.dtype,
            device=values.device,
        )
        flat = (self.edge_src * self.n_backward + self.edge_dst).to(values.device)
        out[..., flat] = values
        return out.view(*lead, self.n_forward, self.n_backward)

    def node_mask(self, edge_mask: Tensor) -> Tensor:
        """Nodes touched by at least one edge of ``edge_mask``.

        Args:
            edge_mask: ``(..., n_edges)`` bool.

        Returns:
            ``(..., n_nodes)`` bool; ``logits`` and ``input`` count only if an edge touches them.
        """
        lead = edge_mask.shape[:-1]
        out = torch.zeros(*lead, self.n_nodes, dtype=torch.bool, device=edge_mask.device)
        src = self.edge_parent_node.to(edge_mask.device).expand(*lead, -1)
        dst = self.edge_child_node.to(edge_mask.device).expand(*lead, -1)
        out.scatter_reduce_(-1, src, edge_mask, reduce="amax")
        out.scatter_reduce_(-1, dst, edge_mask, reduce="amax")
        return out
