"""Suites as an axis: suite of each model, per-suite correlation, tokens seen, matched tokens.

The synthetic study has two suites with different tokens per step: a Pythia-like suite
(2,097,152 tokens per step) and an OLMo-like one (4,000,000). Every expected value is computed
directly (numpy on the suite's own rows, or by hand in the comments), so a correlation pooled
over suites, a step axis used as if it were tokens, or one suite's tokens per step applied to the
other fails.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from circuit_atlas.analyses import (
    POOLED_SUITE,
    UNRECORDED_SUITE,
    emergence_by_suite,
    emergence_table,
    match_tokens_seen,
    mean_circuit_size,
    size_scale_correlation,
    size_scale_correlation_by_suite,
    suite_map,
    with_suites,
)
from circuit_atlas.errors import AnalysisError
from tests.report_html import section, table_after

PYTHIA_TPS, OLMO_TPS = 2_097_152, 4_000_000
SUITES = {  # suite -> (tokens per step, steps, {model: (size, params)})
    "pythia": (PYTHIA_TPS, (0, 512, 1000, 2000, 4000, 8000),
               {"pythia-70m": ("70m", 70_426_624), "pythia-160m": ("160m", 162_322_944),
                "pythia-410m": ("410m", 405_334_016), "pythia-1b": ("1b", 1_011_781_632)}),
    "olmo": (OLMO_TPS, (0, 250, 500, 1000, 2000, 4000),
             {"olmo-300m": ("300m", 300_000_000), "olmo-1b": ("1b", 1_176_764_416),
              "olmo-7b": ("7b", 6_888_095_744)}),
}
EMERGES_AT = 3.5e9  # tokens: every model's metric jumps here, whatever its suite's step size
# mean sizes chosen so each suite's correlation differs from the pooled one and Pearson differs
# from Spearman (pythia not monotone in params; olmo monotone but not linear)
SIZES = {"pythia-70m": 30.0, "pythia-160m": 45.0, "pythia-410m": 41.0, "pythia-1b": 90.0,
         "olmo-300m": 20.0, "olmo-1b": 22.0, "olmo-7b": 60.0}


def two_suite_frames() -> dict[str, pd.DataFrame]:
    units, metrics, circuits = [], [], []
    for suite, (per_step, steps, models) in SUITES.items():
        for model, (size, params) in models.items():
            for step in steps:
                keys = {"unit_id": f"{model}-{step}", "model": model, "params": params,
                        "step": step, "tokens_seen": step * per_step}
                units.append({**keys, "source_kind": "pythia" if suite == "pythia" else "hub",
                              "size": size, "suite": suite, "tokens_per_step": per_step,
                              "status": "complete", "errors": "{}"})
                value = 1.0 if step * per_step >= EMERGES_AT else 0.05
                metrics.append({**keys, "task": "ioi", "metric_kind": "logit_diff",
                                "clean_metric": value, "n_examples": 20})
                circuits.append({**keys, "task": "ioi", "n_edges": 2 * int(SIZES[model]),
                                 "n_nodes": int(SIZES[model]), "faithfulness": 0.9,
                                 "threshold": 0.8})
    return {"units": pd.DataFrame(units), "task_metrics": pd.DataFrame(metrics),
            "circuits": pd.DataFrame(circuits)}


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return two_suite_frames()


def _pearson(x, y) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])


def _spearman(x, y) -> float:
    return _pearson(pd.Series(x).rank(), pd.Series(y).rank())


# --- suite_map / with_suites -------------------------------------------------------------------


def test_suite_map_reads_the_recorded_suite_and_tokens_per_step(frames):
    out = suite_map(frames["units"]).set_index("model")
    assert out.loc["pythia-1b", "suite"] == "pythia" and out.loc["olmo-1b", "suite"] == "olmo"
    assert out.loc["pythia-70m", "tokens_per_step"] == PYTHIA_TPS
    assert out.loc["olmo-7b", "tokens_per_step"] == OLMO_TPS
    assert list(out.index)[:2] == ["pythia-70m", "pythia-160m"]  # smallest model first


def test_suite_map_derives_the_suite_of_older_units():
    old = pd.DataFrame({  # schema v7: no suite, no tokens_per_step
        "model": ["pythia-70m", "pythia-70m", "olmo-1b", "olmo-1b", "crfm-gpt2-small-seed49",
                  "mine", "tiny-a", "odd"],
        "source_kind": ["pythia", "pythia", "hub", "hub", "hub", "local", "suite", "suite"],
        "size": ["70m", "70m", "1b", "1b", "small", None, "a", None],
        "base_model": [None, None, None, None, "crfm-gpt2-small", None, None, None],
        "step": [0, 1000, 1000, 20000, 100, 5, 10, 3],
        "tokens_seen": [0, 1000 * PYTHIA_TPS, 4e9, 84e9, None, None, 10_000, None],
    })
    out = suite_map(old).set_index("model")
    assert out["suite"].to_dict() == {
        "pythia-70m": "pythia", "olmo-1b": "olmo", "crfm-gpt2-small-seed49": "crfm-gpt2",
        "mine": "local", "tiny-a": "tiny", "odd": UNRECORDED_SUITE}
    assert out.loc["pythia-70m", "tokens_per_step"] == PYTHIA_TPS  # 2,097,152 at every step
    assert out.loc["tiny-a", "tokens_per_step"] == 1000
    # OLMo's tokens come from rounded branch names (4B at 1000, 84B at 20000): not constant
    assert pd.isna(out.loc["olmo-1b", "tokens_per_step"])
    with pytest.raises(AnalysisError, match=r"model 'x' has units of several suites \['a', 'b'\]"):
        suite_map(pd.DataFrame({"model": ["x", "x"], "suite": ["a", "b"]}))
    with pytest.raises(AnalysisError, match=r"model 'x' has several tokens per step \[1, 2\]"):
        suite_map(pd.DataFrame({"model": ["x", "x"], "suite": ["a", "a"],
                                "tokens_per_step": [1, 2]}))


def test_with_suites_fills_tokens_seen_from_each_suites_own_tokens_per_step(frames):
    metrics = frames["task_metrics"].drop(columns="tokens_seen")
    metrics.loc[metrics["model"] == "olmo-1b", "tokens_seen"] = 7.0  # recorded: kept as is
    out = with_suites(metrics, frames["units"]).set_index(["model", "step"])
    assert out.columns[0] == "suite"
    assert out.loc[("pythia-410m", 2000), "tokens_seen"] == 2000 * PYTHIA_TPS
    assert out.loc[("olmo-300m", 2000), "tokens_seen"] == 2000 * OLMO_TPS
    assert out.loc[("olmo-1b", 2000), "tokens_seen"] == 7.0
    alone = with_suites(frames["task_metrics"].drop(columns="tokens_seen").assign(
        model="stranger"), None)
    assert set(alone["suite"]) == {UNRECORDED_SUITE} and alone["tokens_seen"].isna().all()


# --- size vs scale ---------------------------------------------------------------------------


def test_per_suite_correlation_equals_a_direct_computation_on_that_suites_rows(frames):
    means = with_suites(mean_circuit_size(frames["circuits"]), frames["units"])
    out = size_scale_correlation_by_suite(means).set_index("suite")
    assert list(out.index) == ["olmo", "pythia", POOLED_SUITE]
    assert out["pooled"].tolist() == [False, False, True]
    for suite in ("pythia", "olmo"):
        rows = means[means["suite"] == suite]
        assert out.loc[suite, "n_models"] == len(SUITES[suite][2])
        assert out.loc[suite, "pearson"] == pytest.approx(_pearson(rows["params"],
                                                                   rows["mean_size"]), abs=1e-12)
        assert out.loc[suite, "spearman"] == pytest.approx(_spearman(rows["params"],
                                                                     rows["mean_size"]), abs=1e-12)
    pooled = out.loc[POOLED_SUITE]
    assert pooled["n_models"] == 7
    assert pooled["pearson"] == pytest.approx(_pearson(means["params"], means["mean_size"]),
                                              abs=1e-12)
    # the three numbers differ, so a pooled value in a suite's row would be caught
    assert len({round(v, 6) for v in out["pearson"]}) == 3
    assert pooled["pearson"] == pytest.approx(size_scale_correlation(means)["pearson"].iloc[0])
    single = size_scale_correlation_by_suite(means[means["suite"] == "olmo"])
    assert single["suite"].tolist() == ["olmo"]  # one suite: no pooled row
    with pytest.raises(AnalysisError, match=r"null suite for model\(s\) \['olmo-1b'\]"):
        size_scale_correlation_by_suite(means.assign(
            suite=means["suite"].where(means["model"] != "olmo-1b")))


# --- emergence on the tokens axis ------------------------------------------------------------


def test_emergence_tokens_use_each_suites_own_tokens_per_step(frames):
    metrics = with_suites(frames["task_metrics"].drop(columns="tokens_seen"), frames["units"])
    table = emergence_table(metrics, "clean_metric", by=("suite", "model", "task"))
    got = table.set_index("model")
    # pythia: first step with step * 2,097,152 >= 3.5e9 is 2000 (4.19e9; 1000 is 2.10e9)
    # olmo:   first step with step * 4,000,000 >= 3.5e9 is 1000 (4.0e9;  500 is 2.0e9)
    for model in SUITES["pythia"][2]:
        assert got.loc[model, "step"] == 2000 and got.loc[model, "suite"] == "pythia"
        assert got.loc[model, "tokens_seen"] == 2000 * PYTHIA_TPS
    for model in SUITES["olmo"][2]:
        assert got.loc[model, "step"] == 1000 and got.loc[model, "suite"] == "olmo"
        assert got.loc[model, "tokens_seen"] == 1000 * OLMO_TPS
    summary = emergence_by_suite(table).set_index("suite")
    assert summary.loc["pythia", "n_models"] == 4 and summary.loc["olmo", "n_emerged"] == 3
    assert summary.loc["pythia", "tokens_seen_median"] == 2000 * PYTHIA_TPS
    assert summary.loc["olmo", "tokens_seen_median"] == 1000 * OLMO_TPS
    assert summary.loc["olmo", "step_max"] == 1000


# --- matched tokens seen ---------------------------------------------------------------------


def test_matched_tokens_pairs_the_nearest_checkpoints_and_reports_the_mismatch(frames):
    checkpoints = with_suites(frames["units"], frames["units"])
    sparse = checkpoints[~((checkpoints["suite"] == "olmo")
                           & checkpoints["step"].isin([500, 1000]))]  # olmo: 0, 250, 2000, 4000
    out = match_tokens_seen(sparse, "pythia", "olmo")
    assert len(out) == 4 * 6 * 3  # every pythia checkpoint x every olmo model
    one = out[(out["left_model"] == "pythia-160m") & (out["right_model"] == "olmo-1b")]
    one = one.set_index("left_step")
    # pythia 2000 = 4.194e9 tokens: olmo 250 (1e9) is 3.194e9 away, olmo 2000 (8e9) 3.806e9
    assert one.loc[2000, "right_step"] == 250
    assert one.loc[4000, "right_step"] == 2000  # 8.389e9 vs 8e9
    assert one.loc[8000, "right_step"] == 4000  # 16.78e9 vs 16e9
    assert one.loc[512, "right_step"] == 250  # 1.074e9 vs 1e9
    assert one.loc[0, "right_step"] == 0 and one.loc[0, "relative_mismatch"] == 0
    assert one.loc[4000, "tokens_mismatch"] == 2000 * OLMO_TPS - 4000 * PYTHIA_TPS
    assert one.loc[4000, "relative_mismatch"] == pytest.approx(
        abs(8e9 - 4000 * PYTHIA_TPS) / (4000 * PYTHIA_TPS))
    # brute force on every pair: no closer right checkpoint exists
    for _, row in out.iterrows():
        right = sparse[sparse["model"] == row["right_model"]]
        best = (right["tokens_seen"] - row["left_tokens_seen"]).abs().min()
        assert abs(row["tokens_mismatch"]) == best
    close = match_tokens_seen(sparse, "pythia", "olmo", max_relative_mismatch=0.1)
    assert (close["relative_mismatch"] <= 0.1).all() and 2000 not in set(close["left_step"])
    by_model = match_tokens_seen(with_suites(frames["task_metrics"], frames["units"]),
                                 "olmo-1b", "pythia-1b", on="model", by=("task",),
                                 values=("clean_metric",)).set_index("left_step")
    assert by_model.loc[1000, "right_step"] == 2000  # 4e9 vs 4.194e9 (1000: 2.1e9)
    assert by_model.loc[1000, ["left_clean_metric", "right_clean_metric"]].tolist() == [1.0, 1.0]
    with pytest.raises(AnalysisError, match=r"no suite 'gpt2'; the frame has \['olmo', 'pythia'\]"):
        match_tokens_seen(checkpoints, "pythia", "gpt2")
    with pytest.raises(AnalysisError, match="on must be 'suite' or 'model', got 'size'"):
        match_tokens_seen(checkpoints, "pythia", "olmo", on="size")
    with pytest.raises(AnalysisError, match="max_relative_mismatch must be >= 0, got -1"):
        match_tokens_seen(checkpoints, "pythia", "olmo", max_relative_mismatch=-1)
    with pytest.raises(AnalysisError, match="suite 'olmo' has no checkpoint with a known"):
        match_tokens_seen(checkpoints.assign(tokens_seen=checkpoints["tokens_seen"].where(
            checkpoints["suite"] == "pythia")), "pythia", "olmo")


# --- report ----------------------------------------------------------------------------------


def test_report_tables_name_the_suite_of_every_row(frames, tmp_path):
    from circuit_atlas.report import ReportOptions, write_report

    out = write_report(frames, tmp_path / "report.html", options=ReportOptions(dpi=30))
    text = out.read_text(encoding="utf-8")
    emergence = table_after(section(text, "emergence"), "Task metric (clean_metric)")
    assert {r["suite"] for r in emergence} == {"pythia", "olmo"}
    assert {r["model"]: r["suite"] for r in emergence}["olmo-7b"] == "olmo"
    by_suite = table_after(section(text, "emergence"), "Emergence by suite")
    assert [r["suite"] for r in by_suite if r["quantity"] == "clean_metric"] == ["olmo", "pythia"]
    scaling = table_after(section(text, "scaling"), "<table")
    assert [r["suite"] for r in scaling] == ["olmo", "pythia", POOLED_SUITE]
    means = with_suites(mean_circuit_size(frames["circuits"]), frames["units"])
    olmo = means[means["suite"] == "olmo"]
    expected = _pearson(olmo["params"], olmo["mean_size"])
    assert float(scaling[0]["pearson"]) == pytest.approx(expected, abs=1e-3)
    assert "pool every model of every suite" in section(text, "scaling")
    sizes = table_after(section(text, "circuit-size"), "Mean circuit size")
    assert {r["suite"] for r in sizes} == {"pythia", "olmo"}


def test_a_single_suite_report_has_a_suite_column_and_no_pooled_row(frames, tmp_path):
    from circuit_atlas.report import ReportOptions, write_report

    one = {k: v[v["model"].str.startswith("pythia")] for k, v in frames.items()}
    text = write_report(one, tmp_path / "r.html", options=ReportOptions(dpi=30)).read_text()
    scaling = table_after(section(text, "scaling"), "<table")
    assert [r["suite"] for r in scaling] == ["pythia"] and "pooled" not in scaling[0]
    assert "Emergence by suite" not in text


# --- planning records the suite --------------------------------------------------------------


def test_planned_units_carry_their_suite_and_tokens_per_step(tmp_path, monkeypatch):
    from circuit_atlas.models.configs import save_random_checkpoint, tiny_config
    from circuit_atlas.study.load import load_study
    from circuit_atlas.study.units import LOCAL_SUITE, plan_units

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    revisions = tmp_path / "results" / "revisions"
    revisions.mkdir(parents=True)
    (revisions / "allenai--OLMo-1B-hf.json").write_text(json.dumps(
        {"repo_id": "allenai/OLMo-1B-hf", "fetched_at": "2025-01-01T00:00:00+00:00",
         "branches": ["main", "step1000-tokens4B", "step20000-tokens84B"]}))
    for step in (0, 10):
        save_random_checkpoint(tmp_path / "own" / "a" / f"step{step}", tiny_config(), seed=step)
    (tmp_path / "own" / "suite.json").write_text(json.dumps({"name": "mine",
                                                            "tokens_per_step": 512}))
    save_random_checkpoint(tmp_path / "loose", tiny_config(), seed=3)
    study = tmp_path / "study.toml"
    study.write_text(textwrap.dedent('''\
        name = "cross"
        results = "results"
        [[models]]
        kind = "pythia"
        sizes = ["70m"]
        schedule = [1000]
        [[models]]
        suite = "olmo-1b"
        schedule = [1000]
        [[models]]
        kind = "suite"
        path = "own"
        [[models]]
        kind = "local"
        name = "loose"
        checkpoints = [{path = "loose", step = 7, tokens_seen = 70}]
        [[tasks]]
        name = "ioi"
        n = 6
        '''))
    units = plan_units(load_study(study))
    got = {(u.checkpoint.model, u.checkpoint.step): (u.checkpoint.suite,
                                                     u.checkpoint.tokens_per_step,
                                                     u.checkpoint.tokens_seen) for u in units}
    assert got == {("pythia-70m", 1000): ("pythia", PYTHIA_TPS, 1000 * PYTHIA_TPS),
                   ("olmo-1b", 1000): ("olmo", None, 4_000_000_000),
                   ("mine-a", 0): ("mine", 512, 0), ("mine-a", 10): ("mine", 512, 5120),
                   ("loose", 7): (LOCAL_SUITE, None, 70)}
    assert all("suite" not in u.checkpoint.identity() for u in units)  # ids unchanged


def test_helpers_do_not_need_the_suite_registry():
    # analyses stay torch- and registry-free: the suite comes from the units table
    import circuit_atlas.analyses.suites as module

    assert "circuit_atlas.models" not in Path(module.__file__).read_text()
