"""Selection and pruning against slow, literal re-implementations of hannamw/EAP-IG.

The references below are plain Python over edge lists: ``pinned_apply_greedy`` and
``pinned_prune_dead_nodes`` follow ``graph.py`` of EAP-IG at 10035b8 line by line (nested
``heapq.merge`` streams, reverse/forward node passes), ``head_prune`` follows HEAD's
``Graph.prune`` (iterate until nothing changes), ``heap_greedy`` is the textbook heap with the
documented tie-break (|score| descending, then edge index).
"""

from __future__ import annotations

import heapq

import pytest
import torch

from circuit_atlas.circuit import (
    _greedy_batched,
    _greedy_lazy,
    circuit_nodes,
    circuit_sizes,
    edge_ranks,
    greedy_order,
    masks_from_order,
    prune,
    prune_prefixes,
    select_greedy,
    select_topn,
    selection_order,
    topn_order,
)
from circuit_atlas.errors import UnknownNameError
from circuit_atlas.graph import Graph

SHAPES = [(1, 1, True), (2, 4, True), (3, 3, True), (4, 2, True), (2, 3, False), (3, 2, False)]


# ----------------------------------------------------------------------------- references
class _Edge:
    def __init__(self, index, parent, child, score):
        self.index, self.parent, self.child, self.score = index, parent, child, score
        self.in_graph = False


class _Node:
    def __init__(self, index):
        self.index = index
        self.in_graph = False
        self.parent_edges: list[_Edge] = []
        self.child_edges: list[_Edge] = []


def _build(graph: Graph, scores: list[float]):
    nodes = [_Node(i) for i in range(graph.n_nodes)]
    edges = []
    parents = graph.edge_parent_node.tolist()
    children = graph.edge_child_node.tolist()
    for i, (p, c) in enumerate(zip(parents, children, strict=True)):
        e = _Edge(i, nodes[p], nodes[c], scores[i])
        nodes[p].child_edges.append(e)
        nodes[c].parent_edges.append(e)
        edges.append(e)
    return nodes, edges


def pinned_apply_greedy(graph: Graph, scores: list[float], n: int) -> list[int]:
    """EAP-IG 10035b8 ``apply_greedy(n, absolute=True)``, returning edges in pick order."""
    nodes, edges = _build(graph, scores)
    nodes[graph.logits_node].in_graph = True

    def key(edge):
        return abs(edge.score)

    candidates = sorted([e for e in edges if e.child.in_graph], key=key, reverse=True)
    stream = heapq.merge(candidates, key=key, reverse=True)
    out = []
    while n > 0:
        n -= 1
        top = next(stream)
        top.in_graph = True
        out.append(top.index)
        parent = top.parent
        if not parent.in_graph:
            parent.in_graph = True
            new = sorted(parent.parent_edges, key=key, reverse=True)
            stream = heapq.merge(stream, new, key=key, reverse=True)
    return out


def heap_greedy(graph: Graph, scores: list[float], absolute: bool = True) -> list[int]:
    """Textbook greedy with the documented tie-break: (-key, edge index)."""
    key = [abs(s) if absolute else s for s in scores]
    parents = graph.edge_parent_node.tolist()
    incoming: list[list[int]] = [[] for _ in range(graph.n_nodes)]
    for e, c in enumerate(graph.edge_child_node.tolist()):
        incoming[c].append(e)
    inside = {graph.logits_node}
    heap = [(-key[e], e) for e in incoming[graph.logits_node]]
    heapq.heapify(heap)
    out = []
    while heap:
        _, e = heapq.heappop(heap)
        out.append(e)
        if parents[e] not in inside:
            inside.add(parents[e])
            for f in incoming[parents[e]]:
                heapq.heappush(heap, (-key[f], f))
    return out


def pinned_prune_dead_nodes(graph: Graph, mask: list[bool]) -> tuple[list[bool], list[bool]]:
    """EAP-IG 10035b8 ``prune_dead_nodes(prune_childless=True, prune_parentless=True)``.

    Node in_graph flags start as ``apply_greedy`` leaves them (parents of chosen edges and
    logits). Returns (edge in_graph, node in_graph).
    """
    nodes, edges = _build(graph, [0.0] * graph.n_edges)
    for e, m in zip(edges, mask, strict=True):
        e.in_graph = m
        if m:
            e.parent.in_graph = True
    logits = nodes[graph.logits_node]
    logits.in_graph = any(e.in_graph for e in logits.parent_edges)
    for node in reversed(nodes):  # node order is topological: input, per layer heads+MLP, logits
        if node is logits:
            continue
        if any(e.in_graph for e in node.child_edges):
            node.in_graph = True
        else:
            node.in_graph = False
            for e in node.parent_edges:
                e.in_graph = False
    for node in nodes:
        if node.index != 0 and node.in_graph and not any(e.in_graph for e in node.parent_edges):
            node.in_graph = False
            for e in node.child_edges:
                e.in_graph = False
    return [e.in_graph for e in edges], [n.in_graph for n in nodes]


def head_prune(graph: Graph, mask: list[bool]) -> list[bool]:
    """EAP-IG HEAD ``Graph.prune``: nodes need an outgoing and an incoming edge (input counts as
    having one, logits is always present); iterate until nothing changes."""
    parents = graph.edge_parent_node.tolist()
    children = graph.edge_child_node.tolist()
    alive = list(mask)
    while True:
        out_nodes = {parents[e] for e in range(len(alive)) if alive[e]}
        in_nodes = {children[e] for e in range(len(alive)) if alive[e]} | {0}
        node_ok = out_nodes & in_nodes
        new = [
            alive[e]
            and parents[e] in node_ok
            and (children[e] == graph.logits_node or children[e] in node_ok)
            for e in range(len(alive))
        ]
        if new == alive:
            return alive
        alive = new


def _scores(graph: Graph, seed: int, kind: str = "normal") -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(graph.n_edges, generator=gen)
    if kind == "heavy":
        return torch.randn(graph.n_edges, generator=gen) ** 5
    return torch.randint(-2, 3, (graph.n_edges,), generator=gen).float()  # many ties


# ----------------------------------------------------------------------------- greedy
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", range(3))
def test_greedy_order_matches_pinned_library(shape, seed):
    graph = Graph(*shape)
    scores = _scores(graph, seed, "heavy" if seed == 2 else "normal")
    ref = pinned_apply_greedy(graph, scores.tolist(), graph.n_edges)
    assert greedy_order(graph, scores).tolist() == ref
    assert _greedy_lazy(graph, scores, True, graph.n_edges) == ref
    assert _greedy_batched(graph, scores, True, graph.n_edges).tolist() == ref


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("absolute", [True, False])
def test_greedy_ties_follow_edge_index(shape, absolute):
    graph = Graph(*shape)
    scores = _scores(graph, 7, "ties")
    ref = heap_greedy(graph, scores.tolist(), absolute)
    assert _greedy_lazy(graph, scores, absolute, graph.n_edges) == ref
    assert _greedy_batched(graph, scores, absolute, graph.n_edges).tolist() == ref


def test_greedy_prefixes_and_limits():
    graph = Graph(3, 4)
    scores = _scores(graph, 3)
    full = greedy_order(graph, scores).tolist()
    assert sorted(full) == list(range(graph.n_edges))
    for limit in [0, 1, 5, graph.n_edges // 4, graph.n_edges // 4 + 1, graph.n_edges, 10**6]:
        assert greedy_order(graph, scores, limit=limit).tolist() == full[:limit]
    for n in [0, 1, 17, graph.n_edges, graph.n_edges + 50]:
        mask = select_greedy(graph, scores, n)
        assert mask.dtype == torch.bool and int(mask.sum()) == min(n, graph.n_edges)
        assert set(mask.nonzero().flatten().tolist()) == set(full[:n])


def test_greedy_circuit_is_connected_to_logits():
    graph = Graph(3, 3)
    scores = _scores(graph, 11)
    mask = select_greedy(graph, scores, 40)
    parents = graph.edge_parent_node[mask].tolist()
    children = graph.edge_child_node[mask].tolist()
    reached = {graph.logits_node}
    changed = True
    while changed:  # nodes with a path to logits inside the circuit
        changed = False
        for p, c in zip(parents, children, strict=True):
            if c in reached and p not in reached:
                reached.add(p)
                changed = True
    assert all(c in reached for c in children)


def test_greedy_on_pythia_2_8b_graph_lazy_equals_batched():
    graph = Graph(32, 32)  # 1,591,857 edges
    scores = _scores(graph, 0, "heavy")
    lazy = greedy_order(graph, scores, limit=1600)
    assert lazy.shape == (1600,)
    batched = _greedy_batched(graph, scores, True, 1600)
    assert lazy.tolist() == batched.tolist()


def test_bad_scores_and_sizes_raise():
    graph = Graph(2, 2)
    with pytest.raises(ValueError, match="shape"):
        greedy_order(graph, torch.zeros(3))
    bad = torch.zeros(graph.n_edges)
    bad[4] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite"):
        greedy_order(graph, bad)
    with pytest.raises(ValueError, match="limit must be >= 0, got -1"):
        greedy_order(graph, torch.zeros(graph.n_edges), limit=-1)
    with pytest.raises(ValueError, match="got -2"):
        select_greedy(graph, torch.zeros(graph.n_edges), -2)
    with pytest.raises(UnknownNameError, match="unknown selection 'best'"):
        selection_order(graph, torch.zeros(graph.n_edges), "best")


# ----------------------------------------------------------------------------- topn
@pytest.mark.parametrize("kind", ["normal", "ties"])
def test_topn_and_ranks(kind):
    graph = Graph(2, 4)
    scores = _scores(graph, 5, kind)
    s = scores.tolist()
    ref = sorted(range(graph.n_edges), key=lambda e: (-abs(s[e]), e))
    assert topn_order(graph, scores).tolist() == ref
    ranks = edge_ranks(graph, scores)
    assert [ranks[e].item() for e in ref] == list(range(graph.n_edges))
    signed = sorted(range(graph.n_edges), key=lambda e: (-s[e], e))
    assert topn_order(graph, scores, absolute=False).tolist() == signed
    mask = select_topn(graph, scores, 10)
    assert set(mask.nonzero().flatten().tolist()) == set(ref[:10])
    assert selection_order(graph, scores, "topn", limit=4).tolist() == ref[:4]


def test_masks_from_order_batched():
    graph = Graph(2, 2)
    order = greedy_order(graph, _scores(graph, 1))
    masks = masks_from_order(graph, order[:20], [0, 3, 20, 500])
    assert masks.shape == (4, graph.n_edges)
    assert masks.sum(1).tolist() == [0, 3, 20, 20]
    assert masks_from_order(graph, order, 5).shape == (graph.n_edges,)
    with pytest.raises(ValueError, match="got -1"):
        masks_from_order(graph, order, [-1])


# ----------------------------------------------------------------------------- pruning
def _random_masks(graph: Graph, seed: int, k: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    density = torch.rand(k, 1, generator=gen) * 0.5
    return torch.rand(k, graph.n_edges, generator=gen) < density


@pytest.mark.parametrize("shape", SHAPES)
def test_prune_matches_pinned_and_head(shape):
    graph = Graph(*shape)
    masks = torch.cat(
        [
            _random_masks(graph, 0, 12),
            torch.stack([select_greedy(graph, _scores(graph, s), n) for s, n in [(1, 3), (2, 9)]]),
        ]
    )
    single = prune(graph, masks, fixpoint=False)
    fixed = prune(graph, masks, fixpoint=True)
    for k in range(masks.shape[0]):
        ref_edges, ref_nodes = pinned_prune_dead_nodes(graph, masks[k].tolist())
        assert single[k].tolist() == ref_edges
        assert fixed[k].tolist() == head_prune(graph, masks[k].tolist())
        assert circuit_nodes(graph, single[k]).tolist() == ref_nodes
    # For edge masks the pinned single pass already reaches HEAD's fixpoint.
    assert torch.equal(single, fixed)
    assert torch.equal(prune(graph, fixed), fixed)  # idempotent


@pytest.mark.parametrize("fixpoint", [True, False])
def test_prune_prefixes_equals_dense(fixpoint):
    graph = Graph(3, 3)
    order = greedy_order(graph, _scores(graph, 4))
    sizes = [0, 1, 7, 30, 31, graph.n_edges, graph.n_edges + 9]
    sparse = prune_prefixes(graph, order[:100], sizes, fixpoint=fixpoint)
    dense = prune(graph, masks_from_order(graph, order[:100], sizes), fixpoint=fixpoint)
    assert [e.tolist() for e in sparse] == [m.nonzero().flatten().tolist() for m in dense]
    with pytest.raises(ValueError, match="got -3"):
        prune_prefixes(graph, order, [4, -3])


def test_prune_shapes_and_errors():
    graph = Graph(2, 2)
    masks = _random_masks(graph, 3, 6).view(2, 3, graph.n_edges)
    out = prune(graph, masks)
    assert out.shape == masks.shape and out.dtype == torch.bool
    assert not (out & ~masks).any()  # pruning only removes
    assert prune(graph, torch.zeros(graph.n_edges, dtype=torch.bool)).sum() == 0
    full = torch.ones(graph.n_edges, dtype=torch.bool)
    assert torch.equal(prune(graph, full), full)
    with pytest.raises(ValueError, match="edge mask has 3 edges"):
        prune(graph, torch.zeros(3, dtype=torch.bool))


def test_circuit_sizes():
    graph = Graph(2, 2)
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    edge = graph.edge_names.index("input->logits")
    mask[edge] = True
    edges, nodes = circuit_sizes(graph, mask)
    assert edges.item() == 1 and nodes.item() == 2
    node_mask = circuit_nodes(graph, mask)
    assert [graph.node_names[i] for i in node_mask.nonzero().flatten()] == ["input", "logits"]
    edges, nodes = circuit_sizes(graph, torch.ones(2, graph.n_edges, dtype=torch.bool))
    assert edges.tolist() == [graph.n_edges] * 2 and nodes.tolist() == [graph.n_nodes] * 2
