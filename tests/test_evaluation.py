"""Circuit evaluation equals an independent per-edge implementation; batching changes nothing."""

from __future__ import annotations

import pytest
import torch

from circuit_atlas.evaluation import behaviour, evaluate_circuits, mean_outputs
from tests import reference_patching as ref
from tests.tiny import ARCHS, arch_model, dataset, hf_model, patchable


@pytest.fixture(scope="module", params=ARCHS)
def setup(request):
    """A tiny random model of every adapter (GPT-NeoX: parallel residual), and toy data."""
    arch = request.param
    # Seeds where the clean and corrupted metrics differ by > 0.1 (the tests' precondition).
    seed = {"qwen2": 1}.get(arch, 0)
    hf = hf_model() if arch == "gpt_neox" else arch_model(arch, heads=4, d_model=32, seed=seed)
    model = patchable(hf)
    return hf, model, dataset()


def test_full_circuit_is_clean_and_empty_is_corrupted(setup):
    _, model, data = setup
    g = model.graph
    full = torch.ones(g.n_edges, dtype=torch.bool)
    beh = behaviour(model, data)
    assert abs(beh["clean"]["metric"] - beh["corrupted"]["metric"]) > 0.1
    torch.testing.assert_close(
        float(evaluate_circuits(model, g, data, full)), beh["clean"]["metric"], atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        float(evaluate_circuits(model, g, data, ~full)),
        beh["corrupted"]["metric"],
        atol=1e-6,
        rtol=0,
    )


@pytest.mark.parametrize("ablation", ["patching", "mean", "zero"])
def test_matches_independent_reference(setup, ablation):
    hf, model, data = setup
    g = model.graph
    gen = torch.Generator().manual_seed(3)
    masks = torch.rand(3, g.n_edges, generator=gen) > 0.4
    ours = evaluate_circuits(model, g, data, masks, ablation=ablation)
    means = ref.mean_outputs(hf, data) if ablation == "mean" else None
    for k in range(3):
        in_circuit = {g.edge_names[i] for i in masks[k].nonzero().flatten().tolist()}
        expected = ref.circuit_metric(hf, data, in_circuit, ablation=ablation, means=means)
        torch.testing.assert_close(float(ours[k]), expected, atol=1e-6, rtol=1e-6)


def test_batched_circuits_equal_one_at_a_time(setup):
    _, model, data = setup
    g = model.graph
    masks = torch.rand(7, g.n_edges, generator=torch.Generator().manual_seed(4)) > 0.5
    together = evaluate_circuits(model, g, data, masks, batch_size=2)
    tiny_budget = evaluate_circuits(model, g, data, masks, batch_size=5, memory_budget=1)
    alone = torch.stack([evaluate_circuits(model, g, data, m) for m in masks])
    torch.testing.assert_close(together, alone, atol=1e-9, rtol=0)
    torch.testing.assert_close(tiny_budget, alone, atol=1e-9, rtol=0)


def test_prob_diff_metric_and_sequential_residual():
    hf = hf_model(parallel=False, seed=5)
    model = patchable(hf)
    data = dataset(metric="prob_diff", seed=2)
    g = model.graph
    masks = torch.rand(2, g.n_edges, generator=torch.Generator().manual_seed(5)) > 0.5
    ours = evaluate_circuits(model, g, data, masks)
    full = evaluate_circuits(model, g, data, torch.ones(g.n_edges, dtype=torch.bool))
    beh = behaviour(model, data)
    torch.testing.assert_close(float(full), beh["clean"]["metric"], atol=1e-6, rtol=0)
    assert ours.shape == (2,)
    assert (ours.abs() <= 1).all()


def test_mean_outputs_shape(setup):
    _, model, data = setup
    means = mean_outputs(model, data)
    assert means.shape == (model.graph.n_forward, 1, 1, model.spec.d_model)


def test_bad_arguments(setup):
    _, model, data = setup
    g = model.graph
    with pytest.raises(ValueError, match="unknown ablation 'resample'"):
        evaluate_circuits(
            model, g, data, torch.ones(g.n_edges, dtype=torch.bool), ablation="resample"
        )
    with pytest.raises(ValueError, match="3 edges"):
        evaluate_circuits(model, g, data, torch.ones(3, dtype=torch.bool))


@pytest.mark.parametrize("ablation", ["patching", "mean", "zero"])
def test_cached_evaluator_equals_one_shot(setup, ablation):
    from circuit_atlas.evaluation import CircuitEvaluator

    _, model, data = setup
    g = model.graph
    masks = torch.rand(4, g.n_edges, generator=torch.Generator().manual_seed(6)) > 0.5
    evaluator = CircuitEvaluator(model, data, ablation=ablation, batch_size=2)
    first = evaluator(masks)
    second = evaluator(masks)  # served from the cached corrupted run
    one_shot = evaluate_circuits(model, g, data, masks, ablation=ablation, batch_size=2)
    torch.testing.assert_close(first, one_shot, atol=1e-9, rtol=0)
    torch.testing.assert_close(second, one_shot, atol=1e-9, rtol=0)
    if ablation == "patching":
        n_batches = len(evaluator.batches)
        assert evaluator.passes == n_batches + 2 * n_batches  # corrupted runs only once


@pytest.mark.parametrize("ablation", ["patching", "mean", "zero"])
def test_small_circuits_skip_unused_nodes_exactly(setup, ablation):
    """Nodes with no kept outgoing edge are never computed; the result must not change."""
    hf, model, data = setup
    g = model.graph
    gen = torch.Generator().manual_seed(9)
    masks = torch.zeros(2, g.n_edges, dtype=torch.bool)
    masks[0, torch.randperm(g.n_edges, generator=gen)[:6]] = True
    masks[1, g.edge_index_by_name["a1.h2->logits"]] = True
    ours = evaluate_circuits(model, g, data, masks, ablation=ablation)
    means = ref.mean_outputs(hf, data) if ablation == "mean" else None
    for k in range(2):
        in_circuit = {g.edge_names[i] for i in masks[k].nonzero().flatten().tolist()}
        expected = ref.circuit_metric(hf, data, in_circuit, ablation=ablation, means=means)
        torch.testing.assert_close(float(ours[k]), expected, atol=1e-6, rtol=1e-6)


def test_per_example_values_are_the_runs_behind_the_means(setup):
    from circuit_atlas.evaluation import CircuitEvaluator, task_logits
    from circuit_atlas.tasks.base import metric_values

    _, model, data = setup
    g = model.graph
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(3, g.n_edges, generator=generator) < 0.5
    masks[0], masks[1] = True, False  # the full model and the empty circuit
    evaluator = CircuitEvaluator(model, data, batch_size=3)  # several batches
    per = evaluator.per_example(masks)
    assert per.shape == (3, len(data))
    torch.testing.assert_close(per.double().mean(1).float(), evaluator(masks), atol=1e-5,
                               rtol=1e-5)
    clean = metric_values(task_logits(model, data), data)
    corrupted = metric_values(task_logits(model, data, corrupted=True), data)
    torch.testing.assert_close(per[0], clean, atol=1e-5, rtol=1e-5)  # in dataset order
    torch.testing.assert_close(per[1], corrupted, atol=1e-5, rtol=1e-5)
    beh = behaviour(model, data)
    assert beh["clean"]["metric_values"] == pytest.approx(clean.tolist(), abs=1e-6)
    assert beh["corrupted"]["metric_values"] == pytest.approx(corrupted.tolist(), abs=1e-6)
