"""Attribution: EAP is the exact first-order effect of patching; IG batching changes nothing."""

from __future__ import annotations

import pytest
import torch

from circuit_atlas.attribution import attribute
from circuit_atlas.evaluation import record_outputs
from circuit_atlas.models.neox import Patch
from circuit_atlas.tasks.base import metric_values
from tests import reference_patching as ref
from tests.tiny import ARCHS, arch_model, dataset, hf_model, patchable


@pytest.fixture(scope="module", params=ARCHS)
def setup(request):
    """A tiny random model of every adapter (GPT-NeoX: parallel residual), and toy data."""
    hf = arch_model(request.param, layers=2, heads=2, d_model=16, seed=7)
    return hf, patchable(hf), dataset(n=3, pos=5, seed=3)


def test_eap_equals_independent_first_order_reference(setup):
    """EAP == d/dε metric drop when every edge's parent moves ε towards its corrupted value."""
    hf, model, data = setup
    ours = attribute(model, None, data, method="EAP").double()
    expected = ref.eap_scores(hf, data, model.graph.edge_names)
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(ours, expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)


def test_eap_ig_inputs_equals_independent_reference(setup):
    """EAP-IG-inputs == the reference's finite differences at each interpolated input."""
    hf, model, data = setup
    ours = attribute(model, None, data, method="EAP-IG-inputs", ig_steps=3).double()
    expected = ref.eap_ig_inputs_scores(hf, data, model.graph.edge_names, steps=3)
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(ours, expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)


def test_eap_with_olmo_clip_qkv_equals_independent_reference():
    """The gradient pass (SlotFanout) has no gradient where OLMo's clip_qkv clamps."""
    hf = arch_model("olmo", layers=2, heads=2, d_model=16, seed=7, clip_qkv=0.3)
    model, data = patchable(hf), dataset(n=3, pos=5, seed=3)
    with torch.no_grad():
        assert (model.qkv(0, model.embed(data.clean)[None, None]).abs() == 0.3).any()
    ours = attribute(model, None, data, method="EAP").double()
    expected = ref.eap_scores(hf, data, model.graph.edge_names)
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(ours, expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)


def test_exact_equals_independent_reference(setup):
    hf, model, data = setup
    ours = attribute(model, None, data, method="exact").double()
    subset = torch.randperm(model.graph.n_edges, generator=torch.Generator().manual_seed(0))[:30]
    names = [model.graph.edge_names[i] for i in subset.tolist()]
    expected = ref.exact_scores(hf, data, model.graph.edge_names, names)
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(ours[subset], expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("arch,parallel", [("gpt_neox", True), ("gpt_neox", False),
                                           *((a, False) for a in ARCHS[1:])])  # fmt: skip
def test_exact_equals_eap_where_attribution_is_exact(arch, parallel):
    """A corrupted run infinitesimally close to the clean one: exact patching == EAP."""
    if arch == "gpt_neox":
        hf = hf_model(layers=2, heads=2, d_model=16, seed=8, parallel=parallel)
    else:
        hf = arch_model(arch, layers=2, heads=2, d_model=16, seed=8)
    model = patchable(hf)
    data = dataset(n=3, pos=5, seed=4)
    g = model.graph
    eap = attribute(model, g, data, method="EAP").double()
    _, clean = record_outputs(model, data.clean, data.metric_positions)
    _, corr = record_outputs(model, data.corrupted, data.metric_positions)
    base = metric_values(model.run(data.clean, data.metric_positions), data).mean()
    eps = 1e-7
    alt = clean + eps * (corr - clean)
    keep = torch.ones(g.n_edges, g.n_edges, dtype=torch.float64)
    keep[torch.arange(g.n_edges), torch.arange(g.n_edges)] = 0
    exact = torch.empty(g.n_edges, dtype=torch.float64)
    for start in range(0, g.n_edges, 64):
        k = keep[start : start + 64]
        logits = model.run(data.clean, data.metric_positions, patch=Patch(g.dense(k), alt))
        vals = metric_values(logits, _tile(data, len(k))).view(len(k), -1).mean(1)
        exact[start : start + len(k)] = (base - vals) / eps
    torch.testing.assert_close(exact, eap, atol=1e-5 * eap.abs().max().item(), rtol=1e-5)


def _tile(data, k):
    from circuit_atlas.evaluation import _repeat

    return _repeat(data, k)


@pytest.mark.parametrize("method", ["EAP-IG-inputs", "EAP-IG-activations", "clean-corrupted"])
def test_batched_points_equal_one_at_a_time(setup, method):
    _, model, data = setup
    one = attribute(model, None, data, method=method, ig_steps=4, steps_per_pass=1)
    many = attribute(model, None, data, method=method, ig_steps=4, steps_per_pass=4)
    batches = attribute(model, None, data, method=method, ig_steps=4, batch_size=2)
    assert one.abs().max() > 1e-3
    torch.testing.assert_close(many, one, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(batches, one, atol=1e-6, rtol=1e-6)


def test_ig_with_one_step_is_eap_at_the_corrupted_end(setup):
    """m = 1 puts the only EAP-IG-inputs point at the corrupted embedding (k = 0)."""
    _, model, data = setup
    ig1 = attribute(model, None, data, method="EAP-IG-inputs", ig_steps=1)
    cc = attribute(model, None, data, method="clean-corrupted")
    eap = attribute(model, None, data, method="EAP")
    torch.testing.assert_close(cc, (eap + ig1) / 2, atol=1e-6, rtol=1e-6)


def test_ig_converges_to_the_path_integral(setup):
    """IG with many steps approximates the exact effect of patching *all* edges at once."""
    _, model, data = setup
    ig = attribute(model, None, data, method="EAP-IG-inputs", ig_steps=50)
    # Sum over edges into the logits and every slot: completeness holds for the input node's
    # edges only when the input is the only interpolated quantity; check the score is finite
    # and correlates with exact patching.
    exact = attribute(model, None, data, method="exact")
    corr = torch.corrcoef(torch.stack([ig, exact]))[0, 1]
    assert corr > 0.5


def test_unknown_method_and_bad_steps(setup):
    _, model, data = setup
    with pytest.raises(ValueError, match="unknown attribution method 'EAP-XL'"):
        attribute(model, None, data, method="EAP-XL")
    with pytest.raises(ValueError, match="ig_steps must be >= 1, got 0"):
        attribute(model, None, data, ig_steps=0)


def _expected_input_run_part(model, data, m):
    """The input-interpolation runs' share of EAP-IG-activations, from other methods.

    Those runs set the ``input`` node to ``e_corr + (k/m)(e_clean − e_corr)``, k = 1 … m: the
    EAP-IG-inputs points k = 0 … m−1 without the corrupted end (EAP-IG-inputs with m = 1) and
    with the clean end (EAP). Their sum, divided like the method by (1 + 2L)·m.
    """
    L = model.graph.n_layers
    ig = attribute(model, None, data, method="EAP-IG-inputs", ig_steps=m).double()
    ig1 = attribute(model, None, data, method="EAP-IG-inputs", ig_steps=1).double()
    eap = attribute(model, None, data, method="EAP").double()
    return (m * ig - ig1 + eap) / ((1 + 2 * L) * m)


@pytest.mark.parametrize(
    "arch,parallel,dropped",
    [("gpt_neox", True, "qkv+mlp"), ("gpt_neox", False, "qkv"), ("llama", False, "qkv"),
     ("gpt2", False, "none")],
)  # fmt: skip
def test_ig_activations_reference_layer0_gradients(arch, parallel, dropped):
    """``layer0_gradients="reference"`` = the consistent scores less the input runs' share,
    on exactly the edges into layer-0 slots that read the embedding alone (hannamw/EAP-IG
    HEAD's interpolated embedding does not require grad, so their hooks never fire)."""
    if arch == "gpt_neox":
        hf = hf_model(layers=2, heads=2, d_model=16, seed=8, parallel=parallel)
    else:
        hf = arch_model(arch, layers=2, heads=2, d_model=16, seed=8)
    model, data, m = patchable(hf), dataset(n=3, pos=5, seed=4), 3
    g = model.graph
    consistent = attribute(model, None, data, method="EAP-IG-activations", ig_steps=m).double()
    reference = attribute(
        model, None, data, method="EAP-IG-activations", ig_steps=m, layer0_gradients="reference"
    ).double()
    names = g.edge_names
    qkv = torch.tensor([n.startswith("input->a0.") for n in names])
    mlp = torch.tensor([n == "input->m0" for n in names])
    hit = {"qkv+mlp": qkv | mlp, "qkv": qkv, "none": torch.zeros_like(qkv)}[dropped]
    expected = consistent.clone()
    expected[hit] -= _expected_input_run_part(model, data, m)[hit]
    assert (expected - consistent).abs().max() > 1e-3 or dropped == "none"
    tol = 1e-5 * consistent.abs().max().item()
    torch.testing.assert_close(reference, expected, atol=tol, rtol=1e-5)


def test_unknown_layer0_gradients(setup):
    _, model, data = setup
    with pytest.raises(ValueError, match="unknown layer0_gradients 'sometimes'"):
        attribute(model, None, data, method="EAP-IG-activations", layer0_gradients="sometimes")
