"""Pure helpers of benchmarks/compare_reference.py (no reference environment needed)."""

import importlib.util
import random
from pathlib import Path

import pytest

from circuit_atlas.curve_search import AdaptiveConfig, paper_search

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_reference.py"
_SPEC = importlib.util.spec_from_file_location("compare_reference", _PATH)
cr = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cr)


def _curve(seed: int):
    rng = random.Random(seed)
    knee, width, noise = rng.randint(30, 1500), rng.uniform(20, 400), rng.uniform(0, 0.08)
    values = {n: 1 / (1 + 2.718 ** (-(n - knee) / width)) + rng.uniform(-noise, noise)
              for n in range(0, 1601)}
    return lambda n: values[n]


@pytest.mark.parametrize("seed", range(40))
def test_adaptive_search_decides_as_the_projects_paper_search(seed):
    f = _curve(seed)
    calls = []

    def oracle(n):
        calls.append(n)
        return f(n)

    size, passed = cr.adaptive_search(oracle)
    ours = paper_search(lambda sizes: [f(n) for n in sizes], AdaptiveConfig())
    assert (size, passed) == (ours.size, ours.passed)
    # the loop asks only for sizes the paper's procedure asks for before it decides
    assert set(calls) <= set(ours.trace)


def test_adaptive_search_fallback_when_nothing_passes():
    assert cr.adaptive_search(lambda n: 0.1) == (1600, False)


def test_flop_floor_by_hand():
    # 1 prompt × 2 tokens, 1 layer, d = 2, f = 4, V = 3, m = 1, 5 edges, 3 backward slots
    fwd = 1 * 1 * (2 * 2 * (3 * 4 + 4 + 2 * 2 * 4) + 2 * 2 * 2 * 3) + 2 * 2 * 3
    assert cr.forward_flops(1, 2, d=2, d_mlp=4, layers=1, vocab=3) == fwd
    floor = cr.ig_inputs_flop_floor(1, 2, 1, d=2, d_mlp=4, layers=1, vocab=3, n_edges=5,
                                    n_backward=3)
    record = fwd - 2 * 2 * 3
    assert floor["forwards"] == fwd + record
    assert floor["backwards"] == fwd + 2 * 2 * 2 * 3
    assert floor["contraction"] == 2 * 1 * 2 * 2 * 5
    assert floor["gradient_sums"] == 1 * 1 * 2 * 3 * 2
    assert floor["total"] == sum(floor[k] for k in ("forwards", "backwards", "gradient_sums",
                                                     "contraction"))


def test_agreement_and_table():
    a = {"x": 1.0, "y": -2.0, "z": 0.5}
    b = {"x": 1.0, "y": -2.0, "z": 0.25}
    got = cr.agreement(a, b, top=2)
    assert got["max_abs_diff"] == pytest.approx(0.25)
    assert got["max_rel_diff"] == pytest.approx(0.125)
    assert got["top2_overlap"] == 1.0
    assert 0.9 < got["pearson"] < 1.0
    with pytest.raises(ValueError, match="edge names differ"):
        cr.agreement(a, {"x": 1.0})
    table = cr.markdown_table([{"measurement": "EAP", "reference": "10 s", "ours": "0.5 s",
                                "ratio": "20×", "target": "≥ 15×", "met": True}])
    assert table.splitlines()[2] == "| EAP | 10 s | 0.5 s | 20× | ≥ 15× | **yes** |"
