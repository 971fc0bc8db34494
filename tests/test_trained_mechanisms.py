"""The paper's IOI mechanisms in trained weights, not planted ones (issues 10 and 11).

The fixture (``tests/data/demo_small_step1250``, see its README) is the demo suite's small model
at its last checkpoint. Everything asserted is computed here by the pipeline: the IOI
behaviour, the minimal faithful circuit, the heads' roles and the paper's Figure 4 panels.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import circuit_atlas as ca
from circuit_atlas.components.algorithm import circuit_heads

FIXTURE = Path(__file__).parent / "data" / "demo_small_step1250"


@pytest.fixture(scope="module")
def trained(data_dir: Path):
    model = ca.load_model(path=FIXTURE, dtype="float32")
    data = ca.make_dataset("ioi", model.tokenizer, data_dir=data_dir)
    return model, data


def test_trained_model_does_ioi_through_name_movers_and_s_inhibition(trained, data_dir) -> None:
    model, data = trained
    assert model.spec.n_layers == 3
    clean = ca.behaviour(model, data)["clean"]["metric"]
    assert 0.5 < clean < 5.0  # logits: IO over S, well above the untrained ~0
    result = ca.find_circuit(model, data)
    assert result.faithfulness >= 0.8
    algo = ca.ioi_algorithm(model, data, circuit=circuit_heads(result), data_dir=data_dir)
    direct, s_inhibition = algo.panels["direct"], algo.panels["s_inhibition"]
    assert direct.value is not None and 50.0 <= direct.value <= 100.0 + 1e-6
    assert s_inhibition.value is not None and 50.0 <= s_inhibition.value <= 100.0 + 1e-6
    movers = algo.heads("name_mover")
    assert movers and {layer for layer, _ in movers} == {2}  # the last layer writes the answer
    inhibitors = algo.heads("s_inhibition")
    assert inhibitors and max(layer for layer, _ in inhibitors) < 2  # upstream of the movers
