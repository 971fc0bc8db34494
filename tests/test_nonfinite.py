"""Numbers are never silently garbage (issue 17, promise 5; docs/guarantees.md).

A tiny random model with one NaN (or huge) weight: loading, behaviour, attribution and a whole
study run refuse it with a :class:`NonFiniteError` naming the parameter or the layer, and no NaN
score is ever stored or used to choose a circuit.
"""

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from circuit_atlas.errors import NonFiniteError
from circuit_atlas.evaluation import behaviour
from circuit_atlas.models.configs import save_random_checkpoint, tiny_config
from circuit_atlas.models.finite import check_finite_scores, first_nonfinite_slot
from circuit_atlas.models.sources import load_model
from circuit_atlas.search import find_circuit
from circuit_atlas.store import TABLES, ResultsStore
from circuit_atlas.study.load import load_study
from circuit_atlas.study.runner import run_study
from circuit_atlas.study.units import plan_units
from circuit_atlas.tasks import make_dataset
from tests.test_study_helpers import make_suite, write_study

BAD = "gpt_neox.layers.1.mlp.dense_4h_to_h.weight"


def poison(checkpoint, name=BAD, value=float("nan")):
    """Set one entry of tensor ``name`` of a checkpoint's model.safetensors to ``value``."""
    path = checkpoint / "model.safetensors"
    tensors = load_file(path)
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[3] = value
    save_file(tensors, path, metadata={"format": "pt"})


@pytest.fixture(scope="module")
def good(tmp_path_factory, pythia_tokenizer):
    return save_random_checkpoint(tmp_path_factory.mktemp("finite") / "step0", tiny_config(),
                                  seed=0, tokenizer=pythia_tokenizer)


@pytest.fixture(scope="module")
def data(good, data_dir):
    model = load_model(path=good, device="cpu")
    return make_dataset("gender-pronoun", model.tokenizer, n=6, seed=0, data_dir=data_dir)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weight_is_refused_at_load_naming_it(good, tmp_path, value):
    import shutil

    bad = shutil.copytree(good, tmp_path / "bad")
    poison(bad, value=value)
    with pytest.raises(NonFiniteError, match=rf"{bad}.*non-finite weights: {BAD} "
                                             rf"\({int(math.isnan(value))} NaN, "
                                             rf"{int(math.isinf(value))} inf of 4096\)"):
        load_model(path=bad, device="cpu")


def test_non_finite_activation_names_the_first_layer(good, data):
    model = load_model(path=good, device="cpu")
    batch = next(iter(data.batches(6)))
    assert first_nonfinite_slot(model, batch.clean, batch.metric_positions) is None
    behaviour(model, data)  # finite: no error
    with torch.no_grad():
        model.layers[1].W_out.view(-1)[3] = float("nan")  # after loading: the load check is past
    # the slow reference: every slot's output, recorded, inspected one by one in slot order
    from circuit_atlas.evaluation import record_outputs

    _, outputs = record_outputs(model, batch.clean, batch.metric_positions)
    bad = [name for name, out in zip(model.graph.node_names, outputs, strict=False)
           if not torch.isfinite(out).all()]
    assert bad and bad[0] == "m1"
    assert first_nonfinite_slot(model, batch.clean, batch.metric_positions) == bad[0]
    with pytest.raises(NonFiniteError, match=r"clean metric of task 'gender-pronoun' is nan "
                                             r"\(activations not finite, first at the output of "
                                             r"'m1'\)"):
        behaviour(model, data)


def test_no_circuit_is_chosen_from_nan_scores(good, data):
    model = load_model(path=good, device="cpu")
    scores = torch.randn(len(model.graph.edge_names))
    scores[5] = float("nan")
    edge = model.graph.edge_names[5]
    with pytest.raises(NonFiniteError, match=rf"1 of {len(scores)} EAP-IG-inputs scores are not "
                                             rf"finite \(first: edge '{edge}' = nan\)"):
        find_circuit(model, data, scores=scores, max_edges=40)
    with pytest.raises(NonFiniteError, match="2 of 3 EAP scores"):
        check_finite_scores(torch.tensor([1.0, float("inf"), float("nan")]), ["a", "b", "c"],
                            "EAP")


def test_study_stores_no_nan_and_names_the_layer(tmp_path, data_dir):
    make_suite(tmp_path)
    poison(tmp_path / "suite" / "a" / "step10")
    units = plan_units(load_study(write_study(tmp_path, data_dir)))
    store = ResultsStore(tmp_path / "results", create=True)
    summary = run_study(units, store)
    (bad,) = [u for u in units if u.checkpoint.step == 10]
    assert summary.done == 2 and list(summary.failed) == [bad.unit_id]
    assert f"non-finite weights: {BAD}" in summary.failed[bad.unit_id]
    assert bad.unit_id not in store.unit_ids()
    for name in TABLES:  # no float column of any stored table holds a NaN from the bad unit
        frame = store.table(name)
        assert bad.unit_id not in set(frame.get("unit_id", []))
    assert store.table("task_metrics")[["clean_metric", "corrupted_metric"]].notna().all().all()
