"""Seeds and hub suites in a study file: planning, unit identity, and a three-seed local run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from circuit_atlas.errors import ConfigError
from circuit_atlas.study.config import HubSource
from circuit_atlas.study.load import load_study
from circuit_atlas.study.units import plan_units
from tests.report_html import section, table_after

TASK = '\n[[tasks]]\nname = "ioi"\nn = 6\n'


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    for var in ("HF_HUB_CACHE", "HF_HOME", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # planning must never reach the hub


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(body) + TASK)
    return path


def test_polypythias_seeds_plan_one_model_per_seed(tmp_path):
    path = write(tmp_path, '''\
        name = "poly"
        models = [{suite = "pythia-160m", seeds = [0, 1, 2], schedule = [1000, 143000]}]
        ''')
    study = load_study(path)
    assert isinstance(study.models[0], HubSource)
    units = plan_units(study)
    got = sorted((u.checkpoint.model, u.checkpoint.step, u.checkpoint.repo_id) for u in units)
    assert got == [("pythia-160m", 1000, "EleutherAI/pythia-160m"),
                   ("pythia-160m", 143000, "EleutherAI/pythia-160m"),
                   ("pythia-160m-seed1", 1000, "EleutherAI/pythia-160m-seed1"),
                   ("pythia-160m-seed1", 143000, "EleutherAI/pythia-160m-seed1"),
                   ("pythia-160m-seed2", 1000, "EleutherAI/pythia-160m-seed2"),
                   ("pythia-160m-seed2", 143000, "EleutherAI/pythia-160m-seed2")]
    assert {u.checkpoint.base_model for u in units} == {"pythia-160m"}
    assert sorted({u.checkpoint.seed for u in units}) == [0, 1, 2]
    assert all(u.checkpoint.kind == "pythia" and u.checkpoint.revision is None for u in units)
    assert units[0].checkpoint.load_kwargs() == {"name": "pythia-160m", "step": 1000}
    assert len({u.unit_id for u in units}) == 6
    # The seed is part of the identity: seed 0 of a seeds study is not the plain run's unit.
    plain = plan_units(load_study(write(tmp_path, '''\
        name = "plain"
        models = [{kind = "pythia", sizes = ["160m"], schedule = [1000]}]
        ''')))
    assert plain[0].checkpoint.seed is None
    assert plain[0].unit_id not in {u.unit_id for u in units}
    assert "seed" not in plain[0].checkpoint.identity()  # ids of seedless units are unchanged


def test_bad_seeds_and_suites_are_config_errors_naming_the_value(tmp_path):
    cases = [
        ('models = [{suite = "pythia-160m", seeds = [0, 10]}]',
         r"study.toml:2: models\[0\].seeds: pythia-160m has no seed 10; seeds: 0, 1, 2"),
        ('models = [{suite = "pythia-160m", seeds = [1, 1]}]', r"seeds \[1, 1\] list a seed twice"),
        ('models = [{suite = "pythia-13m"}]', r"models\[0\].suite: unknown hub model 'pythia-13m'"),
        ('models = [{suite = "olmo"}]', r"hub suite 'olmo' needs `sizes` \(one of 1b, 7b\)"),
        ('models = [{suite = "olmo-2-1b"}]', r"model_type 'olmo2'.*no architecture adapter"),
        ('models = [{suite = "amber-7b"}]', r"revisions of LLM360/Amber are unknown"),
    ]
    for models, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_study(write(tmp_path, f'name = "bad"\n{models}\n'))


def test_a_hub_suite_plans_its_branches_from_the_revisions_cache(tmp_path):
    results = tmp_path / "results"
    (results / "revisions").mkdir(parents=True)
    branches = ["main", "ckpt_000", "ckpt_100", "ckpt_200", "ckpt_359"]
    (results / "revisions" / "LLM360--Amber.json").write_text(json.dumps(
        {"repo_id": "LLM360/Amber", "fetched_at": "2025-01-01T00:00:00+00:00",
         "branches": branches}))
    path = write(tmp_path, '''\
        name = "amber"
        results = "results"
        models = [{suite = "amber", sizes = ["7b"], schedule = {kind = "linear", n = 3}}]
        ''')
    units = plan_units(load_study(path))
    got = [(u.checkpoint.kind, u.checkpoint.step, u.checkpoint.revision) for u in units]
    assert got == [("hub", 0, "ckpt_000"), ("hub", 200, "ckpt_200"), ("hub", 359, "ckpt_359")]
    assert units[0].checkpoint.load_kwargs() == {"name": "amber-7b", "step": 0,
                                                 "revision": "ckpt_000"}
    assert units[0].checkpoint.seed is None and units[0].checkpoint.tokens_seen is None


def make_seeded_suite(root: Path, seeds=(0, 1, 2), steps=(0, 10)) -> Path:
    from circuit_atlas.models.configs import save_random_checkpoint, tiny_config

    suite = root / "suite"
    for seed in seeds:
        for step in steps:
            save_random_checkpoint(suite / f"seed{seed}" / "a" / f"step{step}", tiny_config(),
                                   seed=100 * seed + step)
        (suite / f"seed{seed}" / "suite.json").write_text(json.dumps({"tokens_per_step": 1000}))
    return suite


def test_local_suite_seeds_plan_and_missing_seed_is_named(tmp_path):
    make_seeded_suite(tmp_path, seeds=(0, 1))
    path = write(tmp_path, '''\
        name = "local-seeds"
        [[models]]
        kind = "suite"
        path = "suite"
        seeds = [0, 1]
        ''')
    units = plan_units(load_study(path))
    got = sorted((u.checkpoint.model, u.checkpoint.seed, u.checkpoint.step,
                  Path(u.checkpoint.path).name) for u in units)
    assert got == [("suite-a-seed0", 0, 0, "seed0"), ("suite-a-seed0", 0, 10, "seed0"),
                   ("suite-a-seed1", 1, 0, "seed1"), ("suite-a-seed1", 1, 10, "seed1")]
    assert {u.checkpoint.base_model for u in units} == {"suite-a"}
    assert units[0].checkpoint.tokens_seen == 0 and units[1].checkpoint.tokens_seen == 10_000
    path.write_text(path.read_text().replace("seeds = [0, 1]", "seeds = [0, 5]"))
    with pytest.raises(ConfigError, match=r"models\[0\].seeds: suite .* has no seed 5 .*"
                                          r"found: seed0, seed1"):
        load_study(path)


def test_three_seed_local_study_runs_end_to_end(tmp_path, data_dir):
    from typer.testing import CliRunner

    from circuit_atlas.analyses import across_seeds, seed_jaccard
    from circuit_atlas.cli import app
    from circuit_atlas.store import ResultsStore

    make_seeded_suite(tmp_path)
    path = write(tmp_path, f'''\
        name = "three-seeds"
        data_dir = "{data_dir}"
        analyses = ["behaviour", "circuit"]
        [[models]]
        kind = "suite"
        path = "suite"
        seeds = [0, 1, 2]
        [attribution]
        method = "EAP"
        [run]
        device = "cpu"
        batch_size = 6
        threads = 1
        ''')
    result = CliRunner().invoke(app, ["run", str(path), "-r", str(tmp_path / "res"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "6 units done" in result.output
    store = ResultsStore(tmp_path / "res")
    units = store.table("units")
    assert sorted(units["seed"].tolist()) == [0, 0, 1, 1, 2, 2]
    assert set(units["base_model"]) == {"suite-a"} and units["model"].nunique() == 3
    curve = across_seeds(store.table("task_metrics"), "logit_diff", units)
    assert curve["n_seeds"].tolist() == [3, 3] and curve["std"].notna().all()
    jac = seed_jaccard(store.table("edges"), units, item="edge",
                       all_steps=store.table("circuits")).set_index("step")
    assert jac["n_pairs"].tolist() == [3, 3] and jac["n_seeds"].tolist() == [3, 3]
    assert jac["seed_jaccard"].between(0, 1).all() and jac.loc[10, "step_jaccard"] >= 0
    # Per-prompt metrics of every run, whose means are the stored means (schema v6).
    prompts = store.table("prompt_metrics")
    counts = prompts.groupby(["unit_id", "run"]).size()
    assert len(counts) == 6 * 4 and (counts == 6).all()  # 6 units x 4 runs x 6 prompts
    clean = prompts[prompts["run"] == "clean"].groupby("unit_id")["metric"].mean()
    metrics = store.table("task_metrics").set_index("unit_id")
    np.testing.assert_allclose(clean.sort_index(), metrics["clean_metric"].sort_index(),
                               atol=1e-5, rtol=1e-5)
    faithful = store.table("circuits").set_index("unit_id")
    curves = store.table("curves")
    by_size = curves.sort_values("n_requested").groupby("unit_id")["metric"]
    for run, stored in (("empty", by_size.first()), ("circuit", by_size.last())):
        # The empty circuit is the curve at 0 edges; every faithfulness here is undefined, so
        # the stored circuit is the fallback at the largest size of the curve.
        means = prompts[prompts["run"] == run].groupby("unit_id")["metric"].mean()
        np.testing.assert_allclose(means.sort_index(), stored.sort_index(), atol=1e-5,
                                   rtol=1e-5)
    # The report: Figure 1 is the mean over seeds with a min-max band, and the seed table.
    from circuit_atlas.report import ReportOptions, write_report

    out = write_report(store, tmp_path / "report.html",
                       options=ReportOptions(dpi=30, diagrams_per_series=1))
    text = out.read_text(encoding="utf-8")
    performance = section(text, "performance")
    assert "the line is the mean over seeds and the shaded band the min–max over seeds" \
        in performance
    plotted = table_after(performance, "The plotted values and intervals")
    assert [r["model"] for r in plotted] == ["suite-a", "suite-a"]
    assert {r["band"] for r in plotted} == {"min–max over seeds (line: mean over seeds)"}
    for row, (_, want) in zip(plotted, curve.iterrows(), strict=True):
        assert int(row["step"]) == want["step"] and int(row["n_seeds"]) == 3
        got = [float(row[c]) for c in ("value", "ci_low", "ci_high")]
        np.testing.assert_allclose(got, [want["mean"], want["min"], want["max"]], rtol=1e-3)
        assert got[1] <= got[0] <= got[2] and got[1] < got[2]
    seeds = section(text, "seeds")
    assert "suite-a (3 seeds)" in seeds and "Seed-vs-step Jaccard" in seeds
    summary = table_after(seeds, "Seed-vs-step Jaccard")
    assert {(r["set"], r["model"], r["task"]) for r in summary} == {
        ("edges", "suite-a", "ioi"), ("nodes", "suite-a", "ioi")}
    edges = next(r for r in summary if r["set"] == "edges")
    np.testing.assert_allclose(float(edges["seed_jaccard"]), jac["seed_jaccard"].mean(),
                               rtol=1e-3)
    np.testing.assert_allclose(float(edges["step_jaccard"]), jac.loc[10, "step_jaccard"],
                               rtol=1e-3)
    spread = table_after(seeds, "Emergence of the task metric across seeds")
    assert [(r["model"], r["task"], r["n_seeds"]) for r in spread] == [("suite-a", "ioi", "3")]
    faithfulness = section(text, "faithfulness")
    # The random tiny models learn nothing: faithfulness is undefined everywhere, and said so.
    assert faithful["faithfulness"].isna().all()
    assert "No interval: there is no defined value to draw." in faithfulness

