"""The edge graph matches hannamw/EAP-IG's counts and naming for every Pythia size."""

from __future__ import annotations

import pytest
import torch

from circuit_atlas.graph import Graph
from circuit_atlas.models.adapters import spec_from_hf_config
from circuit_atlas.models.pythia import pythia_config


@pytest.mark.parametrize(
    "name,nodes,edges",
    [
        ("pythia-70m", 56, 3_580),
        ("pythia-160m", 158, 32_347),
        ("pythia-410m", 410, 231_493),
        ("pythia-1.4b", 410, 231_493),
        ("pythia-2.8b", 1_058, 1_591_857),
    ],
)
def test_counts_match_reference(name, nodes, edges):
    graph = Graph.from_spec(spec_from_hf_config(pythia_config(name)))
    assert graph.n_nodes == nodes
    assert graph.n_edges == edges


def test_parallel_mlp_has_no_same_layer_head_parent():
    g = Graph(3, 2, parallel_residual=True)
    names = set(g.edge_names)
    assert "a1.h0->m1" not in names
    assert "a0.h0->m1" in names
    seq = Graph(3, 2, parallel_residual=False)
    assert "a1.h0->m1" in set(seq.edge_names)
    assert seq.n_edges == g.n_edges + 3 * 2


def test_names_follow_eap_ig_convention():
    g = Graph(2, 2)
    assert g.node_names == ("input", "a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1", "logits")
    names = set(g.edge_names)
    assert {
        "input->a0.h1<q>",
        "a0.h1->a1.h0<k>",
        "m0->a1.h1<v>",
        "m1->logits",
        "input->logits",
    } <= names
    assert not any(n.startswith("logits") for n in names)
    assert len(names) == g.n_edges


def test_slot_tables_are_consistent():
    g = Graph(4, 3)
    for i, name in enumerate(g.edge_names):
        parent, child = name.split("->")
        assert g.node_names[int(g.edge_parent_node[i])] == parent
        assert g.node_names[int(g.edge_child_node[i])] == child.split("<")[0]
        assert g.backward_names[int(g.edge_dst[i])] == child
    dense = g.dense(torch.arange(g.n_edges, dtype=torch.float32) + 1)
    assert int((dense > 0).sum()) == g.n_edges
    assert torch.equal(dense > 0, g.valid)


def test_node_mask_marks_both_ends():
    g = Graph(2, 2)
    mask = torch.zeros(g.n_edges, dtype=torch.bool)
    mask[g.edge_index_by_name["a0.h1->logits"]] = True
    nodes = g.node_mask(mask)
    assert [g.node_names[i] for i in nodes.nonzero().flatten().tolist()] == ["a0.h1", "logits"]
