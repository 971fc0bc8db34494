"""MIB circuit metrics (circuit_atlas.mib) against transcriptions of the MIB circuit track.

The references below are written from hannamw/MIB-circuit-track ``MIB_circuit_track/
evaluation.py`` (``evaluate_area_under_curve``, commit b759df3) and hannamw/EAP-IG
``src/eap/graph.py`` (``apply_topn``, ``prune``; commit 7af394a, MIB's submodule), line by line.
"""

from __future__ import annotations

import math

import pytest
import torch

from circuit_atlas.errors import MibError
from circuit_atlas.mib import (
    MIB_FRACTIONS,
    area_from_1,
    area_under,
    cmd,
    cpr,
    mib_circuits,
    mib_curve,
    mib_metrics,
    mib_sizes,
)

# A hand-made curve: rises, overshoots 1 at 20 %, comes back.
HAND = [0.05, 0.12, 0.30, 0.55, 0.70, 0.85, 0.95, 1.02, 0.99, 1.00]


def reference_areas(faithfulnesses, percentages, log_scale=False):
    """The integration loop of ``evaluate_area_under_curve``, transcribed line by line."""
    area_under = 0.
    area_from_1 = 0.
    for i in range(len(faithfulnesses) - 1):
        i_1, i_2 = i, i + 1
        x_1 = percentages[i_1]
        x_2 = percentages[i_2]
        # area from point to 100
        if log_scale:
            x_1 = math.log(x_1)
            x_2 = math.log(x_2)
        trapezoidal = (x_2 - x_1) * \
            (((abs(1. - faithfulnesses[i_1])) + (abs(1. - faithfulnesses[i_2]))) / 2)
        area_from_1 += trapezoidal

        trapezoidal = (x_2 - x_1) * ((faithfulnesses[i_1] + faithfulnesses[i_2]) / 2)
        area_under += trapezoidal
    return area_under, area_from_1


def test_fractions_are_mibs():
    assert MIB_FRACTIONS == (.001, .002, .005, .01, .02, .05, .1, .2, .5, 1)
    # int(pct * n) exactly as MIB: GPT-2 small has 32,491 edges
    assert mib_sizes(32491) == [32, 64, 162, 324, 649, 1624, 3249, 6498, 16245, 32491]


@pytest.mark.parametrize("log_scale", [False, True])
def test_areas_equal_the_transcription(log_scale):
    ref_under, ref_from_1 = reference_areas(HAND, MIB_FRACTIONS, log_scale)
    torch.testing.assert_close(area_under(HAND, log_scale=log_scale), ref_under,
                               rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(area_from_1(HAND, log_scale=log_scale), ref_from_1,
                               rtol=1e-12, atol=1e-15)
    if not log_scale:
        torch.testing.assert_close(cpr(HAND), ref_under, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(cmd(HAND), ref_from_1, rtol=1e-12, atol=1e-15)


def test_areas_golden_values():
    # Regenerate: the trapezoid rule is exact on linear f, so with f(x) = x the area under is
    # (1 - 0.001**2) / 2 and the area from 1 is 0.999 minus that.
    torch.testing.assert_close(cpr(list(MIB_FRACTIONS)), 0.4999995, rtol=0, atol=1e-12)
    torch.testing.assert_close(cmd(list(MIB_FRACTIONS)), 0.4990005, rtol=0, atol=1e-12)
    torch.testing.assert_close(cpr([1.0] * 10), 0.999, rtol=0, atol=1e-12)
    assert cmd([1.0] * 10) == 0.0
    assert cpr([0.0] * 10) == 0.0
    torch.testing.assert_close(cmd([0.0] * 10), 0.999, rtol=0, atol=1e-12)
    # the hand curve, summed by hand over its nine trapezoids (widths 0.001, 0.003, 0.005,
    # 0.01, 0.03, 0.05, 0.1, 0.3, 0.5): 0.000085 + 0.00063 + ... + 0.4975 and
    # 0.000915 + 0.00237 + ... + 0.0025
    torch.testing.assert_close(cpr(HAND), 0.97484, rtol=0, atol=1e-12)
    torch.testing.assert_close(cmd(HAND), 0.03216, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("curve", "fractions", "match"), [
    ([], MIB_FRACTIONS, "empty"),
    (HAND[:-1], MIB_FRACTIONS, "9 points, the fractions 10"),
    ([0.1, 0.2], (0.5, 0.2), "increase strictly, got 0.5 then 0.2"),
    ([0.1, 0.2], (0.0, 0.2), "edge fraction 0.0 is not in"),
    ([0.1, 0.2], (0.5, 1.5), "edge fraction 1.5 is not in"),
    ([0.1, 0.2], (0.5,), "at least two"),
    ([0.1, float("nan")], (0.5, 1.0), "faithfulness nan at edge fraction 1.0"),
])
def test_bad_curves_raise(curve, fractions, match):
    for fn in (cpr, cmd):
        with pytest.raises(MibError, match=match):
            fn(curve, fractions)
    assert issubclass(MibError, ValueError)


# ------------------------------------------------------------------------- on a tiny model
def reference_topn_pruned(graph, scores, n, absolute):
    """``apply_topn(n, absolute, prune=True)`` then ``evaluate_graph``'s ``prune()`` (7af394a).

    Written on edge lists: a node's forward index is its node index; the logits node only
    receives. Returns the in-graph edge indices evaluate_graph runs with.
    """
    values = [abs(s) if absolute else s for s in scores.tolist()]
    ranked = sorted(range(len(values)), key=lambda i: (-values[i], i))  # argsort, descending
    in_graph = [False] * len(values)
    for i in ranked[:n]:
        in_graph[i] = True
    parent = graph.edge_parent_node.tolist()
    child = graph.edge_child_node.tolist()
    names = graph.node_names
    inp, logits = names.index("input"), names.index("logits")

    def out_and_in(edges_on):
        outgoing = [False] * len(names)
        ingoing = [False] * len(names)
        for e, on in enumerate(edges_on):
            if on:
                outgoing[parent[e]] = True
                ingoing[child[e]] = True
        ingoing[inp] = True  # input node always treated as if it has incoming edges
        return [o and i for o, i in zip(outgoing, ingoing, strict=True)]

    def prune(in_graph, nodes_in_graph):
        old_new_same = False
        while not old_new_same:
            new_nodes_in_graph = out_and_in(in_graph)
            old_new_same = new_nodes_in_graph == nodes_in_graph
            nodes_in_graph = new_nodes_in_graph
            # remove edges with missing parents or children (logits always present)
            in_graph = [on and nodes_in_graph[parent[e]]
                        and (nodes_in_graph[child[e]] or child[e] == logits)
                        for e, on in enumerate(in_graph)]
        return in_graph, nodes_in_graph

    nodes = out_and_in(in_graph)  # apply_topn with reset: nodes with outgoing & ingoing
    in_graph, nodes = prune(in_graph, nodes)  # apply_topn(prune=True)
    in_graph, nodes = prune(in_graph, nodes)  # evaluate_graph's graph.prune()
    return [e for e, on in enumerate(in_graph) if on]


@pytest.fixture(scope="module")
def tiny():
    from circuit_atlas.attribution import attribute
    from tests.test_search import _self_labelled
    from tests.tiny import hf_model, patchable

    model = patchable(hf_model(layers=4, heads=4, seed=3, dtype=torch.float32))  # 463 edges
    data = _self_labelled(model, n=10)
    scores = attribute(model, None, data, method="EAP", batch_size=32)
    return model, data, scores


@pytest.mark.parametrize("absolute", [True, False])
def test_circuits_equal_an_independent_topn(tiny, absolute):
    model, _, scores = tiny
    graph = model.graph
    fractions = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    circuits = mib_circuits(graph, scores, absolute=absolute, fractions=fractions)
    sizes = mib_sizes(graph.n_edges, fractions)
    pruned_something = False
    for n, edges in zip(sizes, circuits, strict=True):
        ref = reference_topn_pruned(graph, scores, n, absolute)
        assert edges.tolist() == ref, f"n={n}"
        pruned_something |= len(ref) < n
    assert pruned_something  # the pruning is exercised, not only the ranking
    assert circuits[-1].numel() == graph.n_edges


def test_curve_properties_and_batched_equals_one_at_a_time(tiny):
    from circuit_atlas.evaluation import behaviour, evaluate_circuits

    model, data, scores = tiny
    graph = model.graph
    res = mib_metrics(model, data, scores)
    clean = behaviour(model, data)["clean"]["metric"]
    empty = float(evaluate_circuits(model, graph, data, torch.zeros(graph.n_edges, dtype=bool)))
    for curve, absolute in ((res.signed, False), (res.absolute, True)):
        assert curve.absolute is absolute
        assert curve.n_requested[:3] == (0, 0, 2)  # int(p * 463)
        torch.testing.assert_close(curve.clean_metric, clean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(curve.empty_metric, empty, rtol=1e-6, atol=1e-6)
        # f(0 edges) = 0 exactly; f(100 %) = 1 up to the patched-vs-unpatched forward
        assert curve.faithfulness[0] == curve.faithfulness[1] == 0.0
        torch.testing.assert_close(curve.faithfulness[-1], 1.0, rtol=0, atol=1e-5)
        circuits = mib_circuits(graph, scores, absolute=absolute)
        masks = torch.zeros(len(circuits), graph.n_edges, dtype=torch.bool)
        for row, edges in enumerate(circuits):
            masks[row, edges] = True
        one_by_one = [float(evaluate_circuits(model, graph, data, m)) for m in masks]
        torch.testing.assert_close(list(curve.metric), one_by_one, rtol=1e-5, atol=1e-5)
        assert list(curve.n_edges) == [c.numel() for c in circuits]
        f = [(m - empty) / (clean - empty) for m in one_by_one]
        torch.testing.assert_close(list(curve.faithfulness), f, rtol=1e-4, atol=1e-4)
    assert res.cpr == cpr(res.signed) and res.cmd == cmd(res.absolute)
    assert res.circuits < 2 * len(MIB_FRACTIONS) + 1  # duplicates (empty, full) run once
    assert res.signed.n_edges != res.absolute.n_edges  # the two rankings differ here
    single = mib_curve(model, data, scores, absolute=True, clean_metric=clean)
    torch.testing.assert_close(list(single.metric), list(res.absolute.metric), rtol=1e-6,
                               atol=1e-6)


def test_undefined_and_bad_scores(tiny):
    model, data, scores = tiny
    curve = mib_curve(model, data, scores, clean_metric=None, abs_tol=1e9)  # nothing defined
    assert curve.faithfulness is None
    with pytest.raises(MibError, match="undefined"):
        cpr(curve)
    assert mib_metrics(model, data, scores, abs_tol=1e9).cpr is None
    with pytest.raises(MibError, match=r"scores have shape \(3,\)"):
        mib_circuits(model.graph, torch.zeros(3))
    with pytest.raises(MibError, match="n_edges must be >= 0, got -1"):
        mib_sizes(-1)


def test_for_result_reuses_the_search_baselines(tiny):
    from circuit_atlas.mib import mib_for_result
    from circuit_atlas.search import find_circuit

    model, data, scores = tiny
    result = find_circuit(model, data, scores=scores, max_edges=100)
    reused = mib_for_result(model, data, result)
    fresh = mib_metrics(model, data, scores)
    assert reused.circuits == fresh.circuits - 1  # the empty circuit came from the search
    torch.testing.assert_close(reused.cpr, fresh.cpr, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reused.cmd, fresh.cmd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reused.signed.empty_metric, result.empty_metric, rtol=0, atol=0)


def test_submission_json_loads_as_mibs_graph_from_json_reads_it(tiny, tmp_path):
    import json

    from circuit_atlas.mib_export import mib_submission, write_mib_submission
    from circuit_atlas.search import find_circuit

    model, data, scores = tiny
    result = find_circuit(model, data, scores=scores, max_edges=100)
    (path,) = write_mib_submission([("tiny", result)], tmp_path)
    assert path == tmp_path / f"{data.task}_tiny" / "importances.json"
    d = json.loads(path.read_text())
    # what load_graph_from_json / Graph.from_json (7af394a) read, transcribed
    assert all(k in d.keys() for k in ["cfg", "nodes", "edges"])
    cfg = d["cfg"]
    assert cfg == {"n_layers": 4, "n_heads": 4, "parallel_attn_mlp": True, "d_model": 32}
    n_forward = 1 + cfg["n_layers"] * (cfg["n_heads"] + 1)
    assert len([n for n in d["nodes"] if n != "logits"]) == n_forward
    in_graph = {name: node_dict["in_graph"] for name, node_dict in d["nodes"].items()}
    assert sum(in_graph.values()) == result.n_nodes
    got = torch.tensor([d["edges"][name]["score"] for name in model.graph.edge_names])
    torch.testing.assert_close(got, scores.float(), rtol=0, atol=0)
    assert sum(info["in_graph"] for info in d["edges"].values()) == result.n_edges
    assert mib_submission(result) == d
    with pytest.raises(MibError, match="d_model 'x' is not a positive int"):
        mib_submission(result, d_model="x")
    with pytest.raises(MibError, match="two results for the MIB folder"):
        write_mib_submission([("tiny", result), ("tiny", result)], tmp_path)


def test_gpt2_names_equal_mibs_example_submission():
    import hashlib

    from circuit_atlas.graph import Graph

    # Regenerate from MIB's own example (hannamw/MIB-circuit-track b759df3,
    # circuits/ioi-eap-ig.json, GPT-2 small):
    #   d = json.load(open("ioi-eap-ig.json"))
    #   hashlib.sha256("\n".join(sorted(d["edges"])).encode()).hexdigest()  (and d["nodes"])
    g = Graph(12, 12, parallel_residual=False)
    digest = hashlib.sha256("\n".join(sorted(g.edge_names)).encode()).hexdigest()
    assert digest == "6672d04286447197e3765fcba06723573c823578e901c828f9a91fb35cdb8f95"
    digest = hashlib.sha256("\n".join(sorted(g.node_names)).encode()).hexdigest()
    assert digest == "b3f109a2b123d44b495596060f496ff43849c6742042e815a710083d0b5d3067"
