"""Searches on synthetic curves: the fast search returns the paper's answer on the same curve.

``reference_adaptive`` restates ``get_faithfulness_metrics_adaptive`` and
``get_faithfulness_metrics_binary_search_with_local_search`` of curt-tigges/circuits-over-time
(``get_circuits_over_time.py``, 007e53d) as plain loops over a curve function, counting every
``evaluate_graph`` call the original makes (its binary search keeps its own dict, and ``main``
evaluates the chosen size once more).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from circuit_atlas.errors import UnknownNameError
from circuit_atlas.search import (
    AdaptiveConfig,
    Baselines,
    exhaustive_search,
    fast_search,
    paper_search,
    run_search,
)


def reference_adaptive(f, threshold=0.8, start=25, end=1600, initial_step=25):
    calls = 0

    def ev(n):
        nonlocal calls
        calls += 1
        return f(n)

    def binary(lo_start, hi_end):
        local_dict = {}

        def size_value(n):
            if n not in local_dict:
                local_dict[n] = ev(n)
            return local_dict[n]

        low, high, best = lo_start, hi_end, None
        while low <= high:
            mid = (low + high) // 2
            score = size_value(mid)
            if score >= threshold:
                best, high = mid, mid - 1
            else:
                low = mid + 1
            if abs(score - threshold) <= threshold * 0.1:
                for offset in range(-5, 6):
                    if offset == 0:
                        continue
                    n = mid + offset
                    if lo_start <= n <= hi_end:
                        s = size_value(n)
                        if s >= threshold and (best is None or n < best):
                            best, high = n, n - 1
                            break
        return local_dict, (hi_end if best is None else best)

    logged = {}
    step, size, exceeded, min_size = initial_step, start, False, None
    while size < end:
        score = ev(size)
        logged[size] = score
        if score > threshold and not exceeded:
            exceeded = True
            found, min_size = binary(max(size - step, 1), size)
            step = initial_step * 2
            logged.update(found)
        if step < initial_step and not exceeded and (
            score < threshold * 0.75 or score < logged[size - step]
        ):
            step = max(initial_step, int(step / 0.5))
        if not exceeded and score > threshold * 0.75:
            step = max(1, int(step * 0.5))
        size += step
    passed = min_size is not None
    return (min_size if passed else end), passed, logged, calls + 1


def _noise(seed, n):
    return random.Random(seed * 1_000_003 + n).uniform(-1, 1)


def _curve(seed):
    """Deterministic non-monotone faithfulness curves of several shapes."""
    rng = random.Random(seed)
    kind = seed % 6
    center, width = rng.uniform(10, 1500), rng.uniform(5, 300)
    amp, top = rng.uniform(0.02, 0.25), rng.uniform(0.7, 1.3)

    def sigmoid(n):
        return top / (1 + math.exp(-(n - center) / width))

    if kind == 0:  # noisy sigmoid
        return lambda n: sigmoid(n) + amp * _noise(seed, n)
    if kind == 1:  # oscillating around the threshold band (step resets)
        return lambda n: 0.7 + 0.15 * math.sin(n / rng_period) + 0.05 * _noise(seed, n)
    if kind == 2:  # never passes
        return lambda n: 0.79 * sigmoid(n) / top + 0.0 * n
    if kind == 3:  # passes immediately, above 1
        return lambda n: 1.1 + 0.2 * _noise(seed, n)
    if kind == 4:  # quantised values hitting the threshold exactly (> vs >= matters)
        return lambda n: round(4 * sigmoid(n) + 0.6 * _noise(seed, n)) / 5
    return lambda n: sigmoid(n) - 0.3 * (abs(_noise(seed, n)) > 0.8)  # spiky dips


rng_period = 37.0


def _counting(f):
    calls = []

    def evaluate(sizes):
        calls.append(list(sizes))
        return [f(n) for n in sizes]

    return evaluate, calls


@pytest.mark.parametrize("seed", range(120))
def test_paper_and_fast_search_match_reference(seed):
    f = _curve(seed)
    size, passed, logged, calls = reference_adaptive(f)
    paper = paper_search(_counting(f)[0])
    assert (paper.size, paper.passed) == (size, passed)
    assert paper.reference_evaluations == calls
    assert {n: paper.values[n] for n in logged} == logged
    evaluate, batches = _counting(f)
    fast = fast_search(evaluate)
    assert (fast.size, fast.passed) == (size, passed)
    assert fast.rounds == len(batches) <= 8
    assert all(len(set(b)) == len(b) for b in batches)  # memoised: no size twice in a call
    flat = [n for b in batches for n in b]
    assert len(flat) == len(set(flat)) == fast.sizes_evaluated  # nor across calls


@pytest.mark.parametrize(("window", "growth"), [(0, 1.0), (5, 1.0), (25, 1.5), (60, 3.0)])
def test_fast_speculation_settings_keep_the_answer(window, growth):
    for seed in range(0, 120, 7):
        f = _curve(seed)
        size, passed, _, _ = reference_adaptive(f)
        evaluate, batches = _counting(f)
        fast = fast_search(evaluate, window=window, growth=growth)
        assert (fast.size, fast.passed) == (size, passed)
        default = fast_search(_counting(f)[0])
        if window == 0:  # no speculation: one size per round, a subset of the paper's sizes
            assert all(len(b) == 1 for b in batches)
            assert {n for b in batches for n in b} <= set(paper_search(_counting(f)[0]).values)
            assert fast.rounds >= default.rounds
    with pytest.raises(ValueError, match="growth=0.5"):
        fast_search(evaluate, window=1, growth=0.5)


def test_fast_is_not_the_global_minimum_on_non_monotone_curves():
    # Passing at 7, failing everywhere else until 400: the paper's scan never visits 7.
    def f(n):
        return 0.9 if n == 7 or n >= 400 else 0.1

    fast = fast_search(_counting(f)[0])
    exhaustive = exhaustive_search(_counting(f)[0], max_size=1000, chunk=300)
    assert fast.size == reference_adaptive(f)[0] == 376 + 24  # binary search in (375, 400]
    assert exhaustive.size == 7 and exhaustive.passed
    assert exhaustive.rounds == 4 and exhaustive.sizes_evaluated == 1000


def test_fallback_when_nothing_passes():
    cfg = AdaptiveConfig(end=300)
    for search in ("fast", "paper", "exhaustive"):
        result = run_search(search, lambda sizes: [0.5] * len(sizes), cfg, max_size=200)
        assert result.size == 300 and not result.passed


def test_small_config_and_prefetch_in_first_round():
    evaluate, batches = _counting(lambda n: n / 100)
    cfg = AdaptiveConfig(threshold=0.5, start=5, end=200, initial_step=10)
    result = fast_search(evaluate, cfg, prefetch=[150, 190])
    assert result.size == reference_adaptive(lambda n: n / 100, 0.5, 5, 200, 10)[0] == 50
    assert 150 in batches[0] and 190 in batches[0]


def test_errors():
    with pytest.raises(ValueError, match="start=0"):
        AdaptiveConfig(start=0)
    with pytest.raises(ValueError, match="initial_step=0"):
        AdaptiveConfig(initial_step=0)
    with pytest.raises(UnknownNameError, match="unknown search 'smart'"):
        run_search("smart", lambda s: s)
    with pytest.raises(ValueError, match="returned 1 values for 63"):
        fast_search(lambda sizes: [0.0])


# ----------------------------------------------------------------------------- faithfulness
def test_faithfulness_both_ways():
    b = Baselines(clean=2.0, empty=-1.0, clean_se=0.1)
    assert b.ratio(2.0) == 1.0 and b.normalized(2.0) == 1.0
    assert b.ratio(1.0) == 0.5
    assert b.normalized(-1.0) == 0.0
    assert b.normalized(0.5) == pytest.approx(0.5)
    assert b.faithfulness(1.0, "ratio") == 0.5
    with pytest.raises(UnknownNameError, match="unknown faithfulness 'kl'"):
        b.faithfulness(1.0, "kl")


def test_faithfulness_undefined_when_gap_is_noise():
    tiny = Baselines(clean=5e-4, empty=0.0)
    assert tiny.ratio(1.0) is None and tiny.normalized(1.0) is None
    assert not tiny.defined("ratio") and not tiny.defined("normalized")
    noisy = Baselines(clean=0.05, empty=0.0, clean_se=0.1)  # 0.5 standard errors
    assert noisy.ratio(0.04) is None and noisy.normalized(0.04) is None
    gap_only = Baselines(clean=1.0, empty=0.9995)  # ratio defined, normalised not
    assert gap_only.ratio(0.5) == 0.5 and gap_only.normalized(0.5) is None
    assert Baselines(clean=float("nan"), empty=0.0).ratio(1.0) is None


# ----------------------------------------------------------------------------- find_circuit
def _self_labelled(model, seed=2, n=12, pos=8):
    """A toy task with a real signal: the corrupted prompt is resampled, and the answer/wrong
    tokens are those whose logit difference the corruption moves most."""
    import dataclasses

    import torch

    from circuit_atlas.evaluation import task_logits
    from tests.tiny import dataset

    data = dataset(n=n, pos=pos, seed=seed)
    g = torch.Generator().manual_seed(seed + 1000)  # not the generator of the clean prompts
    corrupted = torch.where(data.clean > 0, torch.randint(2, 64, data.clean.shape, generator=g), 0)
    data = dataclasses.replace(data, corrupted=corrupted)
    diff = task_logits(model, data) - task_logits(model, data, corrupted=True)
    return dataclasses.replace(data, answer=diff.argmax(-1), wrong=diff.argmin(-1))


@pytest.fixture(scope="module")
def tiny_task():
    import torch

    from circuit_atlas.attribution import attribute
    from tests.tiny import hf_model, patchable

    model = patchable(hf_model(layers=4, heads=4, seed=3, dtype=torch.float32))  # 463 edges
    data = _self_labelled(model, n=10)
    scores = attribute(model, None, data, method="EAP-IG-inputs", ig_steps=5)
    return model, data, scores


def test_fast_equals_paper_and_reference_on_a_real_tiny_model(tiny_task):
    import torch

    from circuit_atlas.circuit import greedy_order, masks_from_order, prune
    from circuit_atlas.evaluation import evaluate_circuits
    from circuit_atlas.search import find_circuit

    model, data, scores = tiny_task
    kw = dict(scores=scores, max_edges=200)
    paper = find_circuit(model, data, search="paper", **kw)
    fast = find_circuit(model, data, search="fast", fast_window=25, **kw)  # GPU-style window
    lazy = find_circuit(model, data, search="fast", **kw)  # on a CPU the default window is 0
    # Independent path: the whole curve 1..200 in one batched call, fed to the literal
    # reference search (the paper's driver evaluates one size per call, the fast one batches).
    graph, clean = model.graph, paper.clean_metric
    order = greedy_order(graph, scores)
    masks = prune(graph, masks_from_order(graph, order, list(range(1, 201))))
    table = (evaluate_circuits(model, graph, data, masks) / clean).tolist()

    def f(n):
        return table[n - 1]

    ref_size, passed, _, ref_calls = reference_adaptive(f, end=200)
    assert passed and paper.settings["passed"] and fast.settings["passed"]
    assert paper.settings["n_requested"] == fast.settings["n_requested"] == ref_size
    assert lazy.settings["n_requested"] == ref_size
    stats = {r.settings["search"] + str(r.settings["fast_window"]): r.settings["search_stats"]
             for r in (paper, fast, lazy)}
    assert stats["fast0"]["circuits"] <= min(stats["fast25"]["circuits"],
                                             stats["paperNone"]["circuits"])
    assert torch.equal(paper.in_circuit, fast.in_circuit)
    assert paper.settings["search_stats"]["reference_evaluations"] == ref_calls
    assert fast.settings["search_stats"]["rounds"] <= 4 < paper.settings["search_stats"]["rounds"]
    for result in (paper, fast):
        assert result.faithfulness >= 0.8
        torch.testing.assert_close(
            result.faithfulness, f(result.settings["n_requested"]), atol=1e-6, rtol=0
        )


def test_find_circuit_result_is_consistent(tiny_task, tmp_path):
    import torch

    from circuit_atlas.circuit import circuit_nodes, prune, select_greedy
    from circuit_atlas.result import CircuitResult
    from circuit_atlas.search import find_circuit

    model, data, scores = tiny_task
    r = find_circuit(model, data, scores=scores, max_edges=300, curve_step=100)
    exhaustive = find_circuit(model, data, scores=scores, max_edges=80, search="exhaustive")
    assert exhaustive.settings["passed"]
    assert exhaustive.settings["n_requested"] <= r.settings["n_requested"]
    assert exhaustive.faithfulness >= 0.8
    assert all(p["faithfulness"] < 0.8 for p in exhaustive.curve
               if p["n_requested"] < exhaustive.settings["n_requested"])
    graph = model.graph
    n = r.settings["n_requested"]
    assert torch.equal(r.in_circuit, prune(graph, select_greedy(graph, scores, n)))
    assert torch.equal(r.node_in_circuit, circuit_nodes(graph, r.in_circuit))
    assert (r.n_edges, r.n_nodes) == (int(r.in_circuit.sum()), int(r.node_in_circuit.sum()))
    assert r.edge_child[graph.edge_names.index("a0.h1->a2.h3<q>")] == "a2.h3"
    sizes = [p["n_requested"] for p in r.curve]
    assert sizes == sorted(sizes) and {0, 100, 200, 300} <= set(sizes)
    empty = r.curve[0]
    assert empty["n_edges"] == 0 and empty["faithfulness_normalized"] == pytest.approx(0.0)
    torch.testing.assert_close(r.empty_metric, r.corrupted_metric, atol=1e-5, rtol=0)
    expected = (r.curve[sizes.index(n)]["metric"] - r.empty_metric) / (
        r.clean_metric - r.empty_metric
    )
    assert r.faithfulness_normalized == pytest.approx(expected)
    assert set(r.timings) == {"behaviour", "attribution", "selection", "search", "per_example",
                              "total"}
    # Per-prompt metrics of the empty and the found circuit: their means are the stored means.
    assert set(r.example_metrics) == {"empty", "circuit"}
    assert [len(v) for v in r.example_metrics.values()] == [len(data), len(data)]
    for run, mean in (("empty", r.empty_metric), ("circuit", r.curve[sizes.index(n)]["metric"])):
        torch.testing.assert_close(float(np.mean(r.example_metrics[run])), mean, atol=1e-5,
                                   rtol=1e-5)
    clean_values = r.settings["behaviour"]["clean"]["metric_values"]
    torch.testing.assert_close(float(np.mean(clean_values)), r.clean_metric, atol=1e-5,
                               rtol=1e-5)
    assert {"torch", "transformers", "circuit_atlas", "python"} <= set(r.versions)
    assert r.settings["graph"]["n_edges"] == graph.n_edges == len(r.edge_names)
    loaded = CircuitResult.load(r.save(tmp_path))
    assert loaded.settings == r.settings and loaded.curve == r.curve
    assert loaded.example_metrics == r.example_metrics
    assert torch.equal(loaded.in_circuit, r.in_circuit)


@pytest.mark.parametrize("ablation", ["mean", "zero"])
def test_other_ablations_and_normalized_search(tiny_task, ablation):
    from circuit_atlas.search import find_circuit

    model, data, scores = tiny_task
    r = find_circuit(model, data, scores=scores, ablation=ablation, faithfulness="normalized",
                     max_edges=100, selection="topn", prune="single")
    assert r.settings["ablation"] == ablation and r.settings["selection"] == "topn"
    if r.settings["passed"]:
        assert r.faithfulness_normalized >= 0.8
    else:
        assert r.settings["n_requested"] == 100


def test_undefined_faithfulness_skips_the_search(tiny_task):
    import dataclasses

    from circuit_atlas.search import find_circuit

    model, data, scores = tiny_task
    same = dataclasses.replace(data, wrong=data.answer)  # metric identically 0
    r = find_circuit(model, same, scores=scores, max_edges=100)
    assert r.faithfulness is None and r.faithfulness_normalized is None
    assert not r.settings["passed"] and r.settings["n_requested"] == 100
    assert "undefined" in r.settings["note"] and "undefined" in r.summary()


def test_find_circuit_runs_attribution_and_rejects_bad_options(tiny_task):
    from circuit_atlas.graph import Graph
    from circuit_atlas.search import find_circuit

    model, data, _ = tiny_task
    r = find_circuit(model, data, method="EAP", max_edges=60)
    assert r.scores.shape == (model.graph.n_edges,) and r.scores.abs().sum() > 0
    with pytest.raises(UnknownNameError, match="unknown search 'quick'"):
        find_circuit(model, data, search="quick")
    with pytest.raises(UnknownNameError, match="unknown ablation 'resample'"):
        find_circuit(model, data, ablation="resample")
    with pytest.raises(ValueError, match="does not match the model"):
        find_circuit(model, data, graph=Graph(2, 2))
