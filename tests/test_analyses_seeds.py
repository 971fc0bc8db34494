"""Seeds as an axis: mean ± spread over seeds, emergence spread, seed-vs-step Jaccard.

Golden values are worked out by hand in the comments; every test has a wrong implementation it
would catch (a swapped denominator, ddof=0, seeds mixed into one circuit, a missing base model).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from circuit_atlas.analyses import across_seeds, emergence_across_seeds, seed_jaccard, seed_map
from circuit_atlas.errors import AnalysisError

UNITS = pd.DataFrame({
    "model": ["m", "m-seed1", "m-seed1", "solo"],
    "base_model": ["m", "m", "m", None],  # "solo": a unit of an older store / one run
    "seed": [0, 1, 1, None],
})

# seed 0: step 10 {e1, e2}, step 20 {e1, e2, e3};  seed 1: step 10 {e1}, step 20 {e2, e3}
CIRCUITS = {("m", 10): {"e1", "e2"}, ("m", 20): {"e1", "e2", "e3"},
            ("m-seed1", 10): {"e1"}, ("m-seed1", 20): {"e2", "e3"}}


def edges_frame(circuits=CIRCUITS) -> pd.DataFrame:
    rows = []
    for (model, step), inside in circuits.items():
        for edge in ("e1", "e2", "e3", "e4"):
            rows.append({"model": model, "task": "ioi", "step": step, "edge": edge,
                         "in_circuit": edge in inside})
    return pd.DataFrame(rows)


def test_seed_map_defaults_the_base_model_to_the_model():
    seeds = seed_map(UNITS).set_index("model")
    assert seeds.loc["m-seed1", "base_model"] == "m" and seeds.loc["m-seed1", "seed"] == 1
    assert seeds.loc["solo", "base_model"] == "solo" and pd.isna(seeds.loc["solo", "seed"])
    old = seed_map(pd.DataFrame({"model": ["a", "b"]}))  # a v4 store: no seed columns at all
    assert old["base_model"].tolist() == ["a", "b"] and old["seed"].isna().all()
    with pytest.raises(AnalysisError, match=r"model\(s\) \['x'\] have several base models"):
        seed_map(pd.DataFrame({"model": ["x", "x"], "base_model": ["p", "q"], "seed": [0, 1]}))


def test_seed_jaccard_next_to_step_jaccard():
    out = seed_jaccard(edges_frame(), UNITS, item="edge").set_index("step")
    assert out["model"].unique().tolist() == ["m"] and out["n_seeds"].tolist() == [2, 2]
    # step 10: J({e1,e2}, {e1}) = 1/2;  step 20: J({e1,e2,e3}, {e2,e3}) = 2/3
    assert out.loc[10, "seed_jaccard"] == pytest.approx(1 / 2, abs=1e-12)
    assert out.loc[20, "seed_jaccard"] == pytest.approx(2 / 3, abs=1e-12)
    assert out.loc[20, "n_pairs"] == 1
    # 10 -> 20: seed 0 J({e1,e2}, {e1,e2,e3}) = 2/3, seed 1 J({e1}, {e2,e3}) = 0
    assert out.loc[20, "step_jaccard"] == pytest.approx(1 / 3, abs=1e-12)
    assert out.loc[20, "step_jaccard_std"] == pytest.approx(math.sqrt(2 / 9), abs=1e-12)
    assert math.isnan(out.loc[10, "step_jaccard"])  # no previous step


def test_identical_seeds_have_seed_jaccard_one_and_a_lone_seed_none():
    same = {("m", 10): {"e1"}, ("m-seed1", 10): {"e1"}, ("solo", 10): {"e2"}}
    out = seed_jaccard(edges_frame(same), UNITS, item="edge").set_index("model")
    assert out.loc["m", "seed_jaccard"] == 1.0 and out.loc["m", "n_pairs"] == 1
    assert out.loc["solo", "n_pairs"] == 0 and math.isnan(out.loc["solo", "seed_jaccard"])
    with pytest.raises(AnalysisError, match="item must be 'edge' or 'node', got 'head'"):
        seed_jaccard(edges_frame(), UNITS, item="head")


def test_empty_circuits_of_analysed_checkpoints_count():
    circuits = {("m", 10): {"e1"}, ("m-seed1", 10): set()}
    frame = edges_frame(circuits)
    frame = frame[frame["in_circuit"]]  # only in-circuit rows stored
    all_steps = pd.DataFrame({"model": ["m", "m-seed1"], "task": "ioi", "step": [10, 10]})
    out = seed_jaccard(frame, UNITS, item="edge", all_steps=all_steps)
    assert out["seed_jaccard"].tolist() == [0.0] and out["n_seeds"].tolist() == [2]


def test_across_seeds_mean_and_sample_spread():
    frame = pd.DataFrame({"model": ["m", "m-seed1", "m", "m-seed1", "solo"],
                          "task": "ioi", "step": [10, 10, 20, 20, 10],
                          "tokens_seen": [100, 100, 200, 200, 100],
                          "logit_diff": [1.0, 3.0, 2.0, 2.0, 5.0]})
    out = across_seeds(frame, "logit_diff", UNITS).set_index(["model", "step"])
    assert out.loc[("m", 10), "mean"] == 2.0 and out.loc[("m", 10), "n_seeds"] == 2
    assert out.loc[("m", 10), "std"] == pytest.approx(math.sqrt(2), abs=1e-12)  # ddof=1
    assert (out.loc[("m", 10), "min"], out.loc[("m", 10), "max"]) == (1.0, 3.0)
    assert out.loc[("m", 20), "std"] == 0.0 and out.loc[("m", 20), "tokens_seen"] == 200
    assert out.loc[("solo", 10), "mean"] == 5.0 and math.isnan(out.loc[("solo", 10), "std"])
    with pytest.raises(AnalysisError, match="several rows of 'logit_diff'"):
        across_seeds(pd.concat([frame, frame]), "logit_diff", UNITS)
    with pytest.raises(AnalysisError, match=r"missing column\(s\) \['accuracy'\]"):
        across_seeds(frame, "accuracy", UNITS)


def test_emergence_points_get_a_spread_over_seeds():
    emergence = pd.DataFrame({"model": ["m", "m-seed1", "solo"], "task": "ioi",
                              "emerged": [True, True, False], "step": [1000, 3000, None],
                              "tokens_seen": [2e9, 6e9, None]})
    out = emergence_across_seeds(emergence, UNITS).set_index("model")
    assert out.loc["m", "n_seeds"] == 2 and out.loc["m", "n_emerged"] == 2
    assert out.loc["m", "step_mean"] == 2000 and out.loc["m", "step_min"] == 1000
    assert out.loc["m", "step_std"] == pytest.approx(math.sqrt(2) * 1000, rel=1e-12)
    assert out.loc["m", "tokens_seen_max"] == 6e9
    assert out.loc["solo", "n_emerged"] == 0 and math.isnan(out.loc["solo", "step_mean"])
