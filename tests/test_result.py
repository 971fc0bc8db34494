"""CircuitResult: save/load round trip, atomic files, EAP-IG JSON, summary."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest
import torch

from circuit_atlas.circuit import circuit_nodes, prune, select_greedy
from circuit_atlas.errors import StoreError
from circuit_atlas.graph import Graph
from circuit_atlas.result import EDGES_FILE, RESULT_FILE, CircuitResult


def _result(graph: Graph, n: int = 12, faithfulness: float | None = 0.83) -> CircuitResult:
    scores = torch.randn(graph.n_edges, generator=torch.Generator().manual_seed(0))
    mask = prune(graph, select_greedy(graph, scores, n))
    names = graph.node_names
    return CircuitResult(
        task="ioi",
        metric_kind="logit_diff",
        node_names=list(names),
        edge_names=list(graph.edge_names),
        edge_parent=[names[i] for i in graph.edge_parent_node.tolist()],
        edge_child=[names[i] for i in graph.edge_child_node.tolist()],
        scores=scores,
        in_circuit=mask,
        node_in_circuit=circuit_nodes(graph, mask),
        n_edges=int(mask.sum()),
        n_nodes=int(circuit_nodes(graph, mask).sum()),
        faithfulness=faithfulness,
        faithfulness_normalized=None,
        clean_metric=2.5,
        corrupted_metric=-1.0,
        empty_metric=-1.0,
        curve=[
            {"n_requested": 0, "n_edges": 0, "n_nodes": 0, "metric": -1.0,
             "faithfulness": -0.4, "faithfulness_normalized": None},
            {"n_requested": n, "n_edges": int(mask.sum()), "n_nodes": 5, "metric": 2.1,
             "faithfulness": 0.84, "faithfulness_normalized": None},
        ],
        settings={"search": "fast", "n_requested": n, "threshold": 0.8,
                  "graph": {"d_model": 32}, "note": None},
        versions={"torch": torch.__version__},
        timings={"total": 1.5},
        model={"kind": "pythia", "name": "pythia-70m", "step": 1000},
    )


def test_save_load_round_trip(tmp_path):
    graph = Graph(2, 3)
    result = _result(graph)
    out = result.save(tmp_path / "run" / "ioi")
    assert sorted(p.name for p in out.iterdir()) == [EDGES_FILE, RESULT_FILE]  # no temp files
    loaded = CircuitResult.load(out)
    for name in result.__dataclass_fields__:
        a, b = getattr(result, name), getattr(loaded, name)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b) and a.dtype == b.dtype, name
        else:
            assert a == b, name
    table = pq.read_table(out / EDGES_FILE)
    assert table.column_names == ["edge", "parent", "child", "score", "in_circuit"]
    assert str(table.schema.field("score").type) == "float"
    assert table.num_rows == graph.n_edges
    assert json.loads((out / RESULT_FILE).read_text())["format_version"] == 1


def test_save_overwrites_atomically(tmp_path):
    graph = Graph(1, 2)
    _result(graph, n=3).save(tmp_path)
    _result(graph, n=5).save(tmp_path)
    assert CircuitResult.load(tmp_path).settings["n_requested"] == 5
    assert len(list(tmp_path.iterdir())) == 2


def test_load_errors(tmp_path):
    with pytest.raises(StoreError, match="has no result.json"):
        CircuitResult.load(tmp_path)
    graph = Graph(1, 2)
    _result(graph).save(tmp_path)
    meta = json.loads((tmp_path / RESULT_FILE).read_text())
    meta["n_graph_edges"] += 1
    (tmp_path / RESULT_FILE).write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=f"has {graph.n_edges} edges, result.json says"):
        CircuitResult.load(tmp_path)
    meta["format_version"] = 99
    (tmp_path / RESULT_FILE).write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="unknown format version"):
        CircuitResult.load(tmp_path)


def test_shape_validation():
    graph = Graph(1, 2)
    result = _result(graph)
    with pytest.raises(ValueError, match=r"scores has shape \(3,\)"):
        CircuitResult(**{**result.__dict__, "scores": torch.zeros(3)})
    with pytest.raises(ValueError, match="edge_parent has 1 entries"):
        CircuitResult(**{**result.__dict__, "edge_parent": ["input"]})


@pytest.mark.parametrize("parallel", [True, False])
def test_eap_json(parallel):
    graph = Graph(3, 2, parallel)
    result = _result(graph, n=20)
    d = result.to_eap_json()
    assert d["cfg"] == {"n_layers": 3, "n_heads": 2, "d_model": 32, "parallel_attn_mlp": parallel}
    assert list(d["nodes"]) == list(graph.node_names)
    assert list(d["edges"]) == list(graph.edge_names)
    in_graph = [name for name, e in d["edges"].items() if e["in_graph"]]
    assert in_graph == result.circuit_edges and len(in_graph) == result.n_edges
    assert [n for n, v in d["nodes"].items() if v] == result.circuit_nodes
    first = graph.edge_names[0]
    assert math.isclose(d["edges"][first]["score"], float(result.scores[0]), rel_tol=1e-6)
    json.dumps(d)  # serialisable


def test_summary():
    graph = Graph(2, 2)
    text = _result(graph).summary()
    assert "pythia-70m step 1000" in text and "task ioi" in text
    assert "faithfulness m(C)/m(M) = 0.830" in text and "normalised" in text
    assert "undefined" in text  # the normalised faithfulness is None
    assert "undefined · normalised" in _result(graph, faithfulness=None).summary()
