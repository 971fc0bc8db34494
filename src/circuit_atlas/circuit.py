"""Circuit selection and pruning on edge-score tensors (PAPER.md §3.3).

A *circuit* is a boolean mask over the edges of a :class:`~circuit_atlas.graph.Graph`. Given the
signed attribution score of every edge, two selections are offered:

* **greedy** (the paper's): ``Graph.apply_greedy(n, absolute=True)`` of hannamw/EAP-IG, pinned
  commit 10035b8 (``graph.py``). Start from ``logits``; repeatedly add the highest-|score|
  candidate edge whose child node is already in the circuit; an edge whose parent is new brings
  that parent in, and the parent's incoming edges join the candidates. The circuit is connected
  to the logits by construction.
* **topn**: the n edges of highest |score| (HEAD's ``apply_topn``).

Both are prefix families: the circuit of size n is the first n edges of one *order*, so the
order is computed once (:func:`greedy_order`, :func:`topn_order`) and sliced for every n
(:func:`masks_from_order`).

Ties. Edges are ranked by |score| (or the signed score with ``absolute=False``), and edges of
equal key by their index in the graph's edge order (lower index first). The pinned library
breaks ties by how long an edge has been a candidate, then by the iteration order of a Python
``set`` (hash-randomised between runs), so its tie order is not reproducible; with real-valued
attribution scores exact ties are rare, and on untied scores the two orders are identical.
Sizes above the number of edges select every edge (the pinned library raises ``StopIteration``
there, HEAD a ``ValueError``).

**Pruning** (:func:`prune`) reproduces ``prune_dead_nodes(prune_childless=True,
prune_parentless=True)``: drop nodes with no outgoing in-circuit edge (except ``logits``) with
their incoming edges, then non-input nodes with no incoming in-circuit edge with their outgoing
edges. The pinned library does this as one reverse then one forward pass over the nodes; HEAD's
``prune()`` repeats node/edge removal until nothing changes. For edge masks the two coincide
(a parentless node only loses its own outgoing edges, so no survivor becomes childless); both
are implemented, and the tests check each against a literal re-implementation of its source.
"""

from __future__ import annotations

import functools
import heapq
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from circuit_atlas.errors import UnknownNameError
from circuit_atlas.graph import Graph

__all__ = [
    "PRUNE_MODES",
    "SELECTIONS",
    "PruneMode",
    "Selection",
    "circuit_nodes",
    "circuit_sizes",
    "edge_ranks",
    "greedy_order",
    "masks_from_order",
    "prune",
    "prune_prefixes",
    "select_greedy",
    "select_topn",
    "selection_order",
    "topn_order",
]

Selection = Literal["greedy", "topn"]
"""How a circuit of n edges is chosen from edge scores."""

SELECTIONS: tuple[str, ...] = ("greedy", "topn")

PruneMode = Literal["fixpoint", "single"]
"""``single``: the pinned library's one childless + one parentless pass; ``fixpoint``: HEAD's
``prune()``, repeated until nothing changes."""

PRUNE_MODES: tuple[str, ...] = ("fixpoint", "single")


def _check_scores(graph: Graph, scores: Tensor) -> np.ndarray:
    if scores.shape != (graph.n_edges,):
        raise ValueError(
            f"scores have shape {tuple(scores.shape)}; the graph has {graph.n_edges} edges"
        )
    values = scores.detach().to("cpu", torch.float32).numpy()
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(f"scores contain {int((~finite).sum())} non-finite values (NaN or inf)")
    return values


def edge_ranks(graph: Graph, scores: Tensor, *, absolute: bool = True) -> Tensor:
    """Rank every edge by score: rank 0 is the most important edge.

    Args:
        graph: The graph the scores belong to.
        scores: ``(n_edges,)`` signed edge scores (any float dtype, any device; compared in
            float32).
        absolute: Rank by |score| (the paper's ``absolute=True``) rather than the signed score.

    Returns:
        ``(n_edges,)`` int64 ranks, a permutation of ``0..n_edges-1``; edges of equal key are
        ranked by edge index (lower first).

    Raises:
        ValueError: If ``scores`` has the wrong shape or non-finite values.
    """
    ranks, _ = _rank_order(graph, scores, absolute)
    return torch.from_numpy(ranks)


def _composite_keys(graph: Graph, scores: Tensor, absolute: bool) -> tuple[np.ndarray, int]:
    """A unique int64 priority per edge: higher = more important.

    The key of edge e is ``(monotone_int(key_e) << bits) | (2**bits - 1 - e)``: the float32
    key's order-preserving integer image, then the edge index reversed, so that a larger
    composite means a larger key, or an equal key and a lower edge index.

    Returns:
        ``(composite (n_edges,) int64, bits)``; ``composite & (2**bits - 1)`` is
        ``2**bits - 1 - edge``.
    """
    values = _check_scores(graph, scores)
    values = (np.abs(values) if absolute else values) + np.float32(0.0)  # -0.0 -> 0.0
    raw = values.view(np.int32).astype(np.int64)
    monotone = np.where(raw >= 0, raw, -(raw & 0x7FFFFFFF)) + (1 << 31)  # in [0, 2**32)
    n = values.shape[0]
    bits = max(1, int(n).bit_length())
    low = (1 << bits) - 1
    return (monotone << bits) | (low - np.arange(n, dtype=np.int64)), bits


def _rank_order(graph: Graph, scores: Tensor, absolute: bool) -> tuple[np.ndarray, np.ndarray]:
    """Ranks and the edges by rank, from one integer sort of the composite keys.

    No argsort is needed: the edge index is read back from the sorted keys.
    """
    composite, bits = _composite_keys(graph, scores, absolute)
    low = (1 << bits) - 1
    order = low - (np.sort(composite)[::-1] & low)  # edge index by rank
    ranks = np.empty(order.shape[0], dtype=np.int64)
    ranks[order] = np.arange(order.shape[0], dtype=np.int64)
    return ranks, order


@functools.lru_cache(maxsize=8)
def _incoming(graph: Graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges grouped by child node: ``(edges, start, end)``.

    Node c's incoming edges are ``edges[start[c]:end[c]]``, in edge order.
    """
    child = graph.edge_child_node.numpy()
    edges = np.argsort(child, kind="stable")
    counts = np.bincount(child, minlength=graph.n_nodes)
    end = np.cumsum(counts)
    return edges, end - counts, end


def topn_order(graph: Graph, scores: Tensor, *, absolute: bool = True) -> Tensor:
    """Edges by decreasing |score| (the order behind :func:`select_topn`).

    Returns:
        ``(n_edges,)`` int64 edge indices; ties by edge index.
    """
    return torch.from_numpy(_rank_order(graph, scores, absolute)[1].copy())


def greedy_order(
    graph: Graph, scores: Tensor, *, absolute: bool = True, limit: int | None = None
) -> Tensor:
    """The order in which the paper's greedy selection adds edges.

    ``select_greedy(graph, scores, n)`` is the first ``n`` edges of this order. The order is
    the one of ``Graph.apply_greedy`` (hannamw/EAP-IG 10035b8, see the module docstring), with
    ties broken by edge index. Two exact algorithms compute it:

    * a short prefix (``limit`` up to a quarter of the edges, e.g. the search's 1,600 edges)
      is a lazy k-way merge: a heap over in-circuit nodes, each node's incoming edges sorted
      only when the node enters the circuit;
    * a long prefix never pops edges one at a time: between two moments at which a new node
      enters, the candidates are fixed, so the edges taken are exactly the candidates ranked
      above the best edge leading to a new node (the *frontier*), in rank order — one
      vectorised gather per node that enters (at most ``n_nodes`` iterations).

    On Pythia-2.8b's graph (1.6M edges) a 1,600-edge prefix takes ~0.1 s and the whole order
    under a second on a loaded 2-core CPU.

    Args:
        graph: The graph.
        scores: ``(n_edges,)`` signed edge scores.
        absolute: Rank by |score| (the paper's setting) rather than the signed score.
        limit: Compute only the first ``limit`` edges (None = all of them).

    Returns:
        ``(min(limit, n_edges),)`` int64 edge indices in the order they are added.

    Raises:
        ValueError: If ``scores`` has the wrong shape or non-finite values, or ``limit`` < 0.
    """
    n_edges = graph.n_edges
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    limit = n_edges if limit is None else min(limit, n_edges)
    if limit <= n_edges // 4:
        out = _greedy_lazy(graph, scores, absolute, limit)
    else:
        out = _greedy_batched(graph, scores, absolute, limit)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.int64))


def _greedy_lazy(graph: Graph, scores: Tensor, absolute: bool, limit: int) -> list[int]:
    """Greedy prefix by a heap over in-circuit nodes (cost ~ limit · log n_nodes)."""
    composite, _ = _composite_keys(graph, scores, absolute)
    edges, start, end = _incoming(graph)
    parent = graph.edge_parent_node.numpy()
    in_circuit = [False] * graph.n_nodes
    queues: dict[int, tuple[list[int], list[int]]] = {}  # node -> (-priorities, edges)
    ptr = [0] * graph.n_nodes
    heap: list[tuple[int, int]] = []  # (-priority of the node's best unpicked edge, node)

    def admit(node: int) -> None:
        in_circuit[node] = True
        seg = edges[start[node] : end[node]]
        if seg.size == 0:
            return
        neg = -composite[seg]
        order = np.argsort(neg)  # priorities are unique
        queues[node] = (neg[order].tolist(), seg[order].tolist())
        heapq.heappush(heap, (queues[node][0][0], node))

    admit(graph.logits_node)
    out: list[int] = []
    while len(out) < limit:
        _, node = heap[0]
        negs, seg = queues[node]
        i = ptr[node]
        edge = seg[i]
        ptr[node] = i + 1
        if i + 1 < len(seg):
            heapq.heapreplace(heap, (negs[i + 1], node))
        else:
            heapq.heappop(heap)
        out.append(edge)
        new = int(parent[edge])
        if not in_circuit[new]:
            admit(new)
    return out


def _greedy_batched(graph: Graph, scores: Tensor, absolute: bool, limit: int) -> np.ndarray:
    """Greedy prefix by frontier stretches (one vectorised step per node that enters)."""
    n_edges = graph.n_edges
    ranks, by_rank = _rank_order(graph, scores, absolute)
    if limit == 0:
        return np.empty(0, dtype=np.int64)
    child = graph.edge_child_node.numpy()
    parent = graph.edge_parent_node.numpy()
    n_nodes = graph.n_nodes
    _, seg_start, seg_end = _incoming(graph)

    # Incoming edges of every node, grouped by child node and sorted by rank within a group:
    # one integer sort of child * n_edges + rank (also the key searched below).
    seg_key = np.sort(child.astype(np.int64) * n_edges + ranks)
    seg_rank = seg_key % n_edges
    seg_parent = parent[by_rank[seg_rank]]

    none = np.iinfo(np.int64).max
    in_circuit = np.zeros(n_nodes, dtype=bool)
    best_to_circuit = np.full(n_nodes, none, dtype=np.int64)  # min rank of q -> (node in circuit)
    ptr = seg_start.copy()  # first unpicked incoming edge of each node
    picked: list[np.ndarray] = []
    total = 0

    def admit(node: int) -> None:
        in_circuit[node] = True
        s, e = seg_start[node], seg_end[node]
        if s == e:
            return
        parents, first = np.unique(seg_parent[s:e], return_index=True)  # first = lowest rank
        np.minimum.at(best_to_circuit, parents, seg_rank[s + first])

    admit(graph.logits_node)
    while total < limit:
        frontier = np.where(in_circuit, none, best_to_circuit)
        new_node = int(frontier.argmin())
        bound = int(frontier[new_node])
        nodes = np.flatnonzero(in_circuit)
        starts = ptr[nodes]
        if bound == none:  # every node is in: the rest is plain rank order
            stops = seg_end[nodes]
        else:
            stops = np.maximum(starts, np.searchsorted(seg_key, nodes * n_edges + bound))
        lengths = stops - starts
        n_take = int(lengths.sum())
        if n_take:
            offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
            picked.append(np.sort(seg_rank[offsets + np.arange(n_take)]))
            total += n_take
        ptr[nodes] = stops
        if bound == none:
            break
        # The frontier edge itself: the first unpicked incoming edge of its child.
        ptr[child[by_rank[bound]]] += 1
        picked.append(np.array([bound], dtype=np.int64))
        total += 1
        admit(new_node)
    return by_rank[np.concatenate(picked)[:limit]]


def selection_order(
    graph: Graph,
    scores: Tensor,
    selection: Selection = "greedy",
    *,
    absolute: bool = True,
    limit: int | None = None,
) -> Tensor:
    """The order of a selection (:func:`greedy_order` or :func:`topn_order`).

    Raises:
        UnknownNameError: For an unknown selection.
    """
    if selection not in _ORDERS:
        raise UnknownNameError(
            f"unknown selection {selection!r}; choose one of {', '.join(SELECTIONS)}"
        )
    order = _ORDERS[selection](graph, scores, absolute=absolute)
    return order if limit is None else order[:limit]


def _topn(graph: Graph, scores: Tensor, *, absolute: bool = True) -> Tensor:
    return topn_order(graph, scores, absolute=absolute)


_ORDERS = {"greedy": greedy_order, "topn": _topn}


def masks_from_order(graph: Graph, order: Tensor, sizes: Tensor | list[int] | int) -> Tensor:
    """Circuits made of the first ``n`` edges of an order, for one or many ``n``.

    Args:
        graph: The graph.
        order: ``(m,)`` int64 edge indices (a selection order, possibly truncated).
        sizes: One size or ``(k,)`` sizes; sizes above ``m`` take the whole order.

    Returns:
        ``(n_edges,)`` bool for a single int, else ``(k, n_edges)`` bool.

    Raises:
        ValueError: For a negative size.
    """
    single = isinstance(sizes, int)
    sizes_t = torch.as_tensor([sizes] if single else sizes, dtype=torch.long)
    if sizes_t.numel() and int(sizes_t.min()) < 0:
        raise ValueError(f"circuit sizes must be >= 0, got {sizes_t.min().item()}")
    position = torch.full((graph.n_edges,), torch.iinfo(torch.long).max, dtype=torch.long)
    position[order] = torch.arange(order.numel())
    masks = position[None, :] < sizes_t[:, None]
    return masks[0] if single else masks


def select_greedy(graph: Graph, scores: Tensor, n: int, *, absolute: bool = True) -> Tensor:
    """The paper's greedy circuit of ``n`` edges (``apply_greedy(n, absolute=True)``).

    Returns:
        ``(n_edges,)`` bool mask with ``min(n, n_edges)`` True entries (not pruned).

    Raises:
        ValueError: For a negative ``n`` or bad scores.
    """
    if n < 0:
        raise ValueError(f"circuit size n must be >= 0, got {n}")
    return masks_from_order(graph, greedy_order(graph, scores, absolute=absolute, limit=n), n)


def select_topn(graph: Graph, scores: Tensor, n: int, *, absolute: bool = True) -> Tensor:
    """The ``n`` edges of highest |score| (HEAD's ``apply_topn``; ties by edge index).

    Returns:
        ``(n_edges,)`` bool mask with ``min(n, n_edges)`` True entries (not pruned).

    Raises:
        ValueError: For a negative ``n`` or bad scores.
    """
    if n < 0:
        raise ValueError(f"circuit size n must be >= 0, got {n}")
    return masks_from_order(graph, topn_order(graph, scores, absolute=absolute), n)


def prune(graph: Graph, edge_mask: Tensor, *, fixpoint: bool = True) -> Tensor:
    """Remove dead ends from circuits (``prune_dead_nodes(True, True)``, or HEAD's ``prune``).

    ``fixpoint=False`` reproduces the pinned library: first every node with no outgoing
    in-circuit edge (except ``logits``) loses its incoming edges — cascading, as the library's
    reverse pass over the nodes does — then every non-input node with no incoming in-circuit
    edge loses its outgoing edges, cascading forward. ``fixpoint=True`` reproduces HEAD: an edge
    survives while its parent is ``input`` or has an incoming edge and its child is ``logits``
    or has an outgoing edge, repeated until nothing changes. (For edge masks both give the same
    circuit; see the module docstring.)

    Args:
        graph: The graph.
        edge_mask: ``(..., n_edges)`` bool circuits.
        fixpoint: HEAD's iterated pruning (True) or the pinned single pass (False).

    Returns:
        Pruned masks of the same shape, on the same device.

    Raises:
        ValueError: If the last dimension is not ``n_edges``.
    """
    if edge_mask.shape[-1] != graph.n_edges:
        raise ValueError(
            f"edge mask has {edge_mask.shape[-1]} edges; the graph has {graph.n_edges}"
        )
    lead = edge_mask.shape[:-1]
    flat = edge_mask.reshape(-1, graph.n_edges).to("cpu", torch.bool)
    k_idx, e_idx = flat.nonzero(as_tuple=True)
    alive = torch.from_numpy(
        _prune_pairs(graph, k_idx.numpy(), e_idx.numpy(), flat.shape[0], fixpoint)
    )
    out = torch.zeros_like(flat)
    out[k_idx[alive], e_idx[alive]] = True
    return out.reshape(*lead, graph.n_edges).to(edge_mask.device)


def prune_prefixes(
    graph: Graph, order: Tensor, sizes: list[int], *, fixpoint: bool = True
) -> list[Tensor]:
    """Pruned circuits made of the first ``n`` edges of an order, kept sparse.

    Equivalent to ``prune(graph, masks_from_order(graph, order, sizes))`` without ever building
    ``(k, n_edges)`` dense masks (65 dense masks of Pythia-2.8b's graph are 100 MB).

    Args:
        graph: The graph.
        order: ``(m,)`` int64 selection order.
        sizes: Circuit sizes (sizes above ``m`` take the whole order).
        fixpoint: HEAD's iterated pruning (True) or the pinned single pass (False).

    Returns:
        One sorted ``(edges,)`` int64 tensor of in-circuit edge indices per size.

    Raises:
        ValueError: For a negative size.
    """
    if any(n < 0 for n in sizes):
        raise ValueError(f"circuit sizes must be >= 0, got {min(sizes)}")
    order_np = order.numpy()
    counts = np.array([min(n, order_np.size) for n in sizes], dtype=np.int64)
    e_idx = np.concatenate([order_np[:c] for c in counts]) if counts.sum() else np.empty(0, int)
    k_idx = np.repeat(np.arange(len(sizes)), counts)
    alive = _prune_pairs(graph, k_idx, e_idx.astype(np.int64), len(sizes), fixpoint)
    kept = np.bincount(k_idx[alive], minlength=len(sizes))
    pieces = np.split(e_idx[alive], np.cumsum(kept)[:-1])
    return [torch.from_numpy(np.sort(p)) for p in pieces]


def _prune_pairs(
    graph: Graph, k_idx: np.ndarray, e_idx: np.ndarray, n_circuits: int, fixpoint: bool
) -> np.ndarray:
    """Which (circuit, edge) pairs survive pruning: ``(len(e_idx),)`` bool (numpy)."""
    n_nodes = graph.n_nodes
    parent = graph.edge_parent_node.numpy()[e_idx] + k_idx * n_nodes  # node ids per circuit
    child = graph.edge_child_node.numpy()[e_idx] + k_idx * n_nodes
    size = n_circuits * n_nodes
    node = np.arange(size) % n_nodes
    is_input, is_logits = node == 0, node == graph.logits_node
    alive = np.ones(e_idx.size, dtype=bool)

    def has(ids: np.ndarray) -> np.ndarray:
        return np.bincount(ids[alive], minlength=size) > 0

    def childless() -> np.ndarray:  # child must be logits or have an outgoing edge
        return (is_logits | has(parent))[child]

    def parentless() -> np.ndarray:  # parent must be input or have an incoming edge
        return (is_input | has(child))[parent]

    def both() -> np.ndarray:
        return childless() & parentless()

    def cascade(rule) -> None:
        while True:
            drop = alive & ~rule()
            if not drop.any():
                return
            alive[drop] = False

    if fixpoint:
        cascade(both)
    else:
        cascade(childless)
        cascade(parentless)
    return alive


def circuit_nodes(graph: Graph, edge_mask: Tensor) -> Tensor:
    """In-circuit nodes: those touched by an in-circuit edge (``input``/``logits`` included).

    For a pruned circuit this is the set of nodes the pinned library marks ``in_graph`` (the
    paper's node count).

    Args:
        graph: The graph.
        edge_mask: ``(..., n_edges)`` bool.

    Returns:
        ``(..., n_nodes)`` bool.
    """
    return graph.node_mask(edge_mask.to(torch.bool))


def circuit_sizes(graph: Graph, edge_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Edges and nodes of each circuit.

    Args:
        graph: The graph.
        edge_mask: ``(..., n_edges)`` bool.

    Returns:
        ``(edges, nodes)``, each ``(...)`` int64: in-circuit edges and in-circuit nodes
        (:func:`circuit_nodes`).
    """
    mask = edge_mask.to(torch.bool)
    return mask.sum(-1), circuit_nodes(graph, mask).sum(-1)
