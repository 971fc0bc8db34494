"""Pythia registry facts and checkpoint schedules (no weights, no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from circuit_atlas.errors import ConfigError, InvalidCheckpointError, UnknownNameError
from circuit_atlas.models import (
    NAMED_SCHEDULES,
    PYTHIA_MODELS,
    PYTHIA_STEPS,
    TOKENS_PER_STEP,
    count_parameters,
    get_pythia,
    list_pythia_models,
    pythia_config,
    pythia_spec,
    resolve_schedule,
    steps_to_tokens,
    validate_step,
)
from circuit_atlas.models.schedules import linear, log

# Published totals (Pythia paper Table 1 / model cards), embeddings included.
PUBLISHED = {
    "14m": (6, 4, 128, 14_067_712),
    "31m": (6, 8, 256, 30_494_720),
    "70m": (6, 8, 512, 70_426_624),
    "160m": (12, 12, 768, 162_322_944),
    "410m": (24, 16, 1024, 405_334_016),
    "1b": (16, 8, 2048, 1_011_781_632),
    "1.4b": (24, 16, 2048, 1_414_647_808),
    "2.8b": (32, 32, 2560, 2_775_208_960),
    "6.9b": (32, 32, 4096, 6_857_302_016),
    "12b": (36, 40, 5120, 11_846_072_320),
}


# --- steps and tokens ------------------------------------------------------------------------


def test_pythia_has_154_checkpoints():
    assert len(PYTHIA_STEPS) == 154
    assert PYTHIA_STEPS[:12] == (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
    assert PYTHIA_STEPS[-2:] == (142_000, 143_000)
    assert list(PYTHIA_STEPS) == sorted(set(PYTHIA_STEPS))
    assert all(s % 1000 == 0 for s in PYTHIA_STEPS[11:])


def test_tokens_per_step():
    assert TOKENS_PER_STEP == 2_097_152
    assert steps_to_tokens(143_000) == 299_892_736_000
    assert steps_to_tokens(512) == 1_073_741_824
    assert steps_to_tokens(0) == 0
    with pytest.raises(InvalidCheckpointError, match="-1"):
        steps_to_tokens(-1)


# --- architectures and parameter counts ------------------------------------------------------


@pytest.mark.parametrize("size", list(PUBLISHED))
def test_architecture_and_parameter_count(size):
    n_layers, n_heads, d_model, published = PUBLISHED[size]
    entry = get_pythia(f"pythia-{size}")
    arch = entry.architecture
    assert (arch.n_layers, arch.n_heads, arch.d_model) == (n_layers, n_heads, d_model)
    assert arch.d_mlp == 4 * d_model
    assert entry.repo_id == f"EleutherAI/pythia-{size}"
    assert entry.n_params == published
    assert count_parameters(n_layers, d_model, arch.vocab_size) == published


@pytest.mark.parametrize("size", list(PUBLISHED))
def test_hf_config_matches_registry_and_published_count(size):
    """The HF module built from our config (on the meta device) has the published size."""
    from transformers import GPTNeoXForCausalLM

    config = pythia_config(f"pythia-{size}")
    with torch.device("meta"):
        model = GPTNeoXForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[size][3]
    spec = pythia_spec(f"pythia-{size}")
    assert (spec.n_layers, spec.n_heads, spec.d_model) == PUBLISHED[size][:3]
    assert spec.d_mlp == 4 * spec.d_model
    assert spec.parallel_residual is True
    assert spec.rotary_pct == pytest.approx(0.25, abs=1e-12)
    assert spec.rotary_base == pytest.approx(10000.0, abs=1e-9)
    assert spec.max_positions == 2048
    assert spec.vocab_size in (50304, 50432, 50688)


def test_padded_vocabularies():
    vocab = {size: get_pythia(f"pythia-{size}").architecture.vocab_size for size in PUBLISHED}
    assert vocab.pop("6.9b") == 50432
    assert vocab.pop("12b") == 50688
    assert set(vocab.values()) == {50304}


def test_deduped_variants():
    deduped = list_pythia_models(variant="deduped")
    assert len(deduped) == 8  # 14m and 31m were not trained on the deduplicated Pile
    assert "pythia-14m-deduped" not in PYTHIA_MODELS
    for name in deduped:
        entry = PYTHIA_MODELS[name]
        assert entry.repo_id == f"EleutherAI/{name}"
        assert entry.architecture == get_pythia(name.removesuffix("-deduped")).architecture
    assert len(list_pythia_models(variant="standard")) == 10


def test_lookup_accepts_hub_ids_and_case():
    assert get_pythia("EleutherAI/pythia-1.4b").name == "pythia-1.4b"
    assert get_pythia("Pythia-1.4B-Deduped").name == "pythia-1.4b-deduped"


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"'pythia-15m'.*pythia-14m, pythia-31m, pythia-70m"):
        get_pythia("pythia-15m")
    with pytest.raises(UnknownNameError, match="gpt2"):
        pythia_config("gpt2")


def test_revision_validates_the_step():
    entry = get_pythia("pythia-70m")
    assert entry.revision(143_000) == "step143000"
    assert entry.revision(0) == "step0"
    with pytest.raises(InvalidCheckpointError, match="pythia-70m; nearest valid steps: 1000, 2000"):
        entry.revision(1500)


# --- step validation -------------------------------------------------------------------------


def test_invalid_step_names_its_neighbours():
    with pytest.raises(
        InvalidCheckpointError,
        match=r"^step 1500 is not a checkpoint of pythia-70m; nearest valid steps: 1000, 2000$",
    ):
        validate_step(1500, PYTHIA_STEPS, model="pythia-70m")
    with pytest.raises(InvalidCheckpointError, match="step 3 .* 2, 4$"):
        validate_step(3, PYTHIA_STEPS)
    with pytest.raises(InvalidCheckpointError, match="step 600 .* 512, 1000$"):
        validate_step(600, PYTHIA_STEPS)
    with pytest.raises(InvalidCheckpointError, match="nearest valid step: 143000$"):
        validate_step(150_000, PYTHIA_STEPS)
    with pytest.raises(InvalidCheckpointError, match="nearest valid step: 0$"):
        validate_step(-5, PYTHIA_STEPS)
    with pytest.raises(InvalidCheckpointError, match="'abc'.*not an integer"):
        validate_step("abc", PYTHIA_STEPS)
    assert validate_step(4000, PYTHIA_STEPS) == 4000
    assert validate_step("4000", PYTHIA_STEPS) == 4000
    assert validate_step(np.int64(4000), PYTHIA_STEPS) == 4000


# --- named schedules -------------------------------------------------------------------------


def test_schedule_lengths():
    assert resolve_schedule("all") == list(PYTHIA_STEPS)
    exp = resolve_schedule("exp_plus_detail")
    assert len(NAMED_SCHEDULES["exp_plus_detail"].raw()) == 44
    assert len(exp) == 43
    assert len([s for s in exp if s >= 1000]) == 33
    assert exp[:10] == [2**i for i in range(10)]
    assert len(resolve_schedule("sparse")) == 28
    assert resolve_schedule("default") == [10_000, 143_000]
    assert resolve_schedule("late_start_all") == list(range(1000, 143_001, 1000))
    assert resolve_schedule("late_start_all_4k")[0] == 4000
    assert resolve_schedule("late_start_all_256")[:3] == [256, 512, 1000]
    assert resolve_schedule("late_start_exp_plus_detail") == [s for s in exp if s >= 1000]
    assert resolve_schedule("final") == [143_000]


def test_sparse_schedule_exactly():
    assert resolve_schedule("sparse") == [
        256, 512, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000,
        10000, 15000, 20000, 25000, 30000, 35000, 40000, 45000,
        50000, 60000, 70000, 80000, 90000, 100000, 120000, 140000, 143000,
    ]  # fmt: skip


@pytest.mark.parametrize("name", list(NAMED_SCHEDULES))
def test_every_named_schedule_is_sorted_unique_and_valid(name):
    steps = resolve_schedule(name)
    assert steps == sorted(set(steps))
    assert set(steps) <= set(PYTHIA_STEPS)


def test_unknown_schedule_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="'dense'.*exp_plus_detail.*sparse"):
        resolve_schedule("dense")


# --- parametric schedules --------------------------------------------------------------------


def test_linear_and_log_snap_to_valid_checkpoints():
    assert linear(1000, 143_000, 3) == [1000, 72_000, 143_000]
    assert resolve_schedule({"kind": "linear", "start": 0, "stop": 2000, "n": 5}) == [
        0,
        512,
        1000,
        2000,
    ]  # fmt: skip  (targets 0, 500, 1000, 1500, 2000; 1500 ties -> lower)
    assert log(1, 512, 10) == [2**i for i in range(10)]
    steps = resolve_schedule({"kind": "log", "start": 1, "stop": 143_000, "n": 30})
    assert steps[0] == 1 and steps[-1] == 143_000
    assert set(steps) <= set(PYTHIA_STEPS) and steps == sorted(set(steps))
    assert resolve_schedule({"kind": "linear", "n": 2}) == [0, 143_000]


def test_custom_and_list_schedules():
    assert resolve_schedule([4000, 1000, 1000, 512]) == [512, 1000, 4000]
    assert resolve_schedule({"kind": "custom", "steps": [2, 1]}) == [1, 2]
    assert resolve_schedule({"kind": "named", "name": "default"}) == [10_000, 143_000]
    assert resolve_schedule(2000) == [2000]
    with pytest.raises(InvalidCheckpointError, match="step 1500 .* 1000, 2000"):
        resolve_schedule([1000, 1500], model="pythia-410m")


def test_malformed_schedule_dicts():
    with pytest.raises(UnknownNameError, match="'cubic'.*linear, log, custom, named"):
        resolve_schedule({"kind": "cubic"})
    with pytest.raises(ConfigError, match=r"missing keys \['n'\]"):
        resolve_schedule({"kind": "linear", "start": 0, "stop": 10})
    with pytest.raises(ConfigError, match=r"unknown keys \['count'\]"):
        resolve_schedule({"kind": "linear", "count": 3, "n": 3})
    with pytest.raises(ConfigError, match="'n' must be a positive integer, got 0"):
        resolve_schedule({"kind": "linear", "n": 0})
    with pytest.raises(ConfigError, match="start >= 1"):
        resolve_schedule({"kind": "log", "start": 0, "stop": 1000, "n": 4})
    with pytest.raises(ConfigError, match="start=5000, stop=1000"):
        resolve_schedule({"kind": "linear", "start": 5000, "stop": 1000, "n": 4})
    with pytest.raises(ConfigError, match="empty"):
        resolve_schedule([])


# --- schedules over a local suite's steps ----------------------------------------------------

SUITE_STEPS = [0, 50, 100, 200, 400, 800]


def test_schedules_over_a_custom_step_list():
    assert resolve_schedule("all", SUITE_STEPS) == SUITE_STEPS
    assert resolve_schedule("final", SUITE_STEPS) == [800]
    # targets 0, 200, 400, 600, 800; 600 is equidistant from 400 and 800 and snaps down
    assert resolve_schedule({"kind": "linear", "start": 0, "stop": 800, "n": 5}, SUITE_STEPS) == [
        0, 200, 400, 800,
    ]  # fmt: skip
    assert resolve_schedule({"kind": "log", "start": 50, "stop": 800, "n": 5}, SUITE_STEPS) == [
        50, 100, 200, 400, 800,
    ]  # fmt: skip
    assert resolve_schedule([800, 50], SUITE_STEPS) == [50, 800]
    with pytest.raises(
        InvalidCheckpointError,
        match="step 256 is not a checkpoint of tiny; nearest valid steps: 200, 400",
    ):
        resolve_schedule("sparse", SUITE_STEPS, model="tiny")
    with pytest.raises(InvalidCheckpointError, match="between 1 and 40"):
        resolve_schedule({"kind": "linear", "start": 1, "stop": 40, "n": 3}, SUITE_STEPS)


@settings(max_examples=60, deadline=None)
@given(
    valid=st.lists(st.integers(0, 10_000), min_size=1, max_size=40, unique=True),
    n=st.integers(1, 25),
    kind=st.sampled_from(["linear", "log"]),
)
def test_parametric_schedules_are_valid_subsets(valid, n, kind):
    lo, hi = (max(min(valid), 1) if kind == "log" else min(valid)), max(valid)
    assume(any(lo <= s <= hi for s in valid))
    steps = resolve_schedule({"kind": kind, "start": lo, "stop": hi, "n": n}, valid)
    assert steps == sorted(set(steps))
    assert set(steps) <= set(valid)
    assert all(lo <= s <= hi for s in steps)
    assert 1 <= len(steps) <= n
    in_range = sorted(s for s in valid if lo <= s <= hi)
    assert steps[0] == in_range[0]
    if n > 1:
        assert steps[-1] == in_range[-1]
