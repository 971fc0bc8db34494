import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from circuit_atlas.cli import app
from circuit_atlas.errors import TaskDataError
from circuit_atlas.mib import cpr
from circuit_atlas.store import ResultsStore
from circuit_atlas.study.load import load_study
from circuit_atlas.study.runner import Engine, run_study, run_unit
from circuit_atlas.study.status import study_status
from circuit_atlas.study.units import plan_units
from tests.test_study_helpers import SUITE_STEPS, assert_same_rows, make_suite, write_study

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("runner")
    make_suite(root)
    write_study(root, data_dir)
    return root


@pytest.fixture(scope="module")
def reference(root):
    """An uninterrupted run through the CLI, in process."""
    result = runner.invoke(
        app, ["run", str(root / "study.toml"), "-r", str(root / "ref"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    return result


def test_run_end_to_end(root, reference):
    assert "3 units done, 0 already there, 0 failed" in reference.output
    store = ResultsStore(root / "ref")
    units = store.table("units").sort_values("step")
    assert units["step"].tolist() == list(SUITE_STEPS)
    assert units["tokens_seen"].tolist() == [s * 1000 for s in SUITE_STEPS]
    assert set(units["model"]) == {"tiny-a"} and set(units["status"]) == {"complete"}
    assert set(units["source_kind"]) == {"suite"}
    assert set(units["suite"]) == {"tiny"} and set(units["tokens_per_step"]) == {1000}
    assert json.loads(units["spec"].iloc[0])["n_layers"] == 2
    metrics = store.table("task_metrics")
    assert len(metrics) == 6 and set(metrics["task"]) == {"ioi", "gender-pronoun"}
    assert (metrics["n_examples"] == 6).all()
    circuits = store.table("circuits")
    assert len(circuits) == 6 and (circuits["n_edges"] <= circuits["n_edges_total"]).all()
    edges = store.table("edges")
    assert len(edges) == 6 * circuits["n_edges_total"].iloc[0]
    in_circuit = edges.groupby(["unit_id", "task"])["in_circuit"].sum()
    merged = circuits.set_index(["unit_id", "task"])["n_edges"]
    assert (in_circuit.sort_index() == merged.sort_index()).all()
    assert len(store.table("nodes")) == 6 * circuits["n_nodes_total"].iloc[0]
    assert not store.table("curves").empty
    mib = store.table("mib")  # on by default: one row per unit and task
    assert len(mib) == 6 and set(mib["ablation"]) == {"patching"}
    assert (mib["n_fractions"] == 10).all() and (mib["circuits"] >= 2).all()
    curves = store.table("mib_curves")
    assert len(curves) == 6 * 2 * 10
    full = curves[curves["fraction"] == 1.0]
    assert (full["n_edges"] == circuits["n_edges_total"].iloc[0]).all()
    defined = mib.dropna(subset=["cpr"])
    for _, row in defined.iterrows():  # CPR integrates the signed curve, as MIB's
        pts = curves[(curves["unit_id"] == row["unit_id"]) & (curves["task"] == row["task"])
                     & ~curves["absolute"]].sort_values("fraction")
        assert row["cpr"] == pytest.approx(cpr(pts["faithfulness"].tolist()), rel=1e-12)
    logs = list((root / "ref" / "runs").glob("*.log"))
    assert len(logs) == 1 and "committed" in logs[0].read_text()
    assert store.read_plan()["study"] == "tiny-study"


def test_component_scores_are_part_of_every_unit(root, data_dir):
    from circuit_atlas.components import COMPONENT_TASKS, COMPONENTS

    study = load_study(write_study(root, data_dir, ("behaviour", "circuit", "components"),
                                   name="components.toml"))
    units = plan_units(study)[:1]
    store = ResultsStore(root / "with-components", create=True)
    run_study(units, store, progress=False)
    unit = store.table("units").iloc[0]
    assert unit["status"] == "complete", unit["errors"]
    timings = json.loads(unit["timings"])
    assert timings["components"] > 0 and "components.copy_suppression" in timings
    scores = store.table("component_scores")
    n_heads = 2 * 4  # tiny_config: 2 layers x 4 heads
    assert scores.groupby("component").size().to_dict() == {c: n_heads for c in COMPONENTS}
    assert scores["step"].eq(units[0].checkpoint.step).all()
    # CSPA only from cspa_min_layer = 1; every other score is defined for every head.
    cspa = scores[scores["component"] == "copy_suppression"]
    assert cspa.loc[cspa["layer"] == 0, "score"].isna().all()
    assert cspa.loc[cspa["layer"] == 1, "score"].notna().all()
    fractions = scores[scores["component"].isin(["induction", "previous_token", "successor",
                                                 "name_mover"])]["score"]
    assert fractions.between(0, 1).all()
    heads = store.table("component_heads")
    # Only ioi of this study has linked components; gender-pronoun has none.
    assert set(heads["task"]) == {"ioi"}
    assert set(heads["component"]) == set(COMPONENT_TASKS["ioi"])
    assert len(heads) == len(COMPONENT_TASKS["ioi"]) * n_heads
    # in_circuit agrees with the stored edges of the same circuit when it is faithful, and is
    # null when it is not (the stored circuit is then the search's fallback).
    circuit = store.table("circuits").set_index("task").loc["ioi"]
    if circuit["faithfulness"] >= circuit["threshold"] and circuit["n_edges"] > 0:
        edges = store.table("edges")
        edges = edges[(edges["task"] == "ioi") & edges["in_circuit"]]
        heads_in = {n for n in set(edges["parent"]) & set(edges["child"]) if n.startswith("a")}
        assert set(heads.loc[heads["in_circuit"].astype(bool), "node"]) == heads_in
    else:
        assert heads["in_circuit"].isna().all()


def test_algorithm_tables_are_part_of_every_ioi_unit(root, data_dir, reference):
    from circuit_atlas.components.algorithm import FINGERPRINT_ROLES, PANELS

    path = write_study(root, data_dir, ("behaviour", "circuit", "components", "algorithm"),
                       name="algorithm.toml")  # fmt: skip
    # Accept any non-zero gap so that a random model's noise still goes through every stage.
    path.write_text(path.read_text() + "\n[algorithm]\ngap_abs_tol = 0.0\ngap_n_se = 0.0\n"
                    'denominator = "all"\n')  # fmt: skip
    units = plan_units(load_study(path))[:1]
    store = ResultsStore(root / "with-algorithm", create=True)
    run_study(units, store, progress=False)
    unit = store.table("units").iloc[0]
    assert unit["status"] == "complete", unit["errors"]
    assert json.loads(unit["timings"])["algorithm"] > 0
    assert json.loads(unit["settings"])["algorithm"] != "{}"
    algorithm = store.table("algorithm")
    assert algorithm["panel"].tolist() == list(PANELS) and set(algorithm["task"]) == {"ioi"}
    assert set(algorithm["denominator"]) == {"all"}
    # a number, or None with a reason -- never both, never neither
    assert (algorithm["pct_effect"].isna() == algorithm["reason"].notna()).all()
    # Bootstrap intervals over the IOI prompts (schema v9): seeded, 1,000 resamples; one per
    # defined share (the direct-effect sweep's and the S-inhibition sweep's per-prompt effects
    # are kept), none for an undefined one.
    from circuit_atlas.store import ALGORITHM_CI_COLUMNS

    assert set(ALGORITHM_CI_COLUMNS) <= set(algorithm.columns)
    assert set(algorithm["ci_n_resamples"]) == {1000} and set(algorithm["ci_seed"]) == {0}
    assert (algorithm["n_examples"] > 1).all()
    defined = algorithm[algorithm["pct_effect"].notna()]
    assert (defined["pct_effect_ci_low"].notna() | defined["ci_reason"].notna()).all()
    with_ci = defined[defined["pct_effect_ci_low"].notna()]
    assert (with_ci["pct_effect_ci_low"] <= with_ci["pct_effect_ci_high"]).all()
    assert (with_ci["ci_n_valid"] > 0).all()
    assert algorithm.loc[algorithm["pct_effect"].isna(), "pct_effect_ci_low"].isna().all()
    direct = algorithm.iloc[0]  # the direct-effect sweep always keeps its per-prompt effects
    assert pd.isna(direct["pct_effect"]) or pd.notna(direct["pct_effect_ci_low"])
    assert len(store.table("algorithm_heads")) == 2 * 4
    fingerprints = store.table("fingerprints")
    assert set(fingerprints["task"]) == {"ioi"}  # gender-pronoun has no fingerprint roles
    assert fingerprints["role"].tolist() == list(FINGERPRINT_ROLES["ioi"])
    if fingerprints["share"].notna().all():
        assert fingerprints["share"].sum() == pytest.approx(1.0)
    else:
        assert fingerprints["reason"].notna().all()
    repair = store.table("self_repair")
    assert len(repair) == 1 and repair["task"].tolist() == ["ioi"]
    heads = store.table("self_repair_heads")
    assert len(heads) == (0 if repair["n_ablated"].iloc[0] == 0 else 8)
    assert (repair["reason"].notna() == (repair["n_ablated"] == 0)).all()
    store.verify()
    # The study without the analysis stores none of it.
    assert ResultsStore(root / "ref").table("algorithm").empty


def test_rerun_skips_finished_units(root, reference):
    before = sorted(p.stat().st_mtime_ns for p in (root / "ref" / "units").rglob("*.parquet"))
    result = runner.invoke(
        app, ["run", str(root / "study.toml"), "-r", str(root / "ref"), "--no-progress"]
    )
    assert result.exit_code == 0 and "0 units done, 3 already there" in result.output
    after = sorted(p.stat().st_mtime_ns for p in (root / "ref" / "units").rglob("*.parquet"))
    assert before == after


def test_status_command(root, reference):
    result = runner.invoke(app, ["status", str(root / "ref")])
    assert result.exit_code == 0, result.output
    assert "study tiny-study: 3/3 units done, 0 running, 0 failed" in result.output
    assert "tiny-a: 3/3 done" in result.output and "ETA: 0m00s" in result.output


KILL_MID_UNIT = textwrap.dedent("""\
    import os, signal, sys
    import circuit_atlas.search as search
    real = search.find_circuit
    calls = []
    def find_circuit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first task of the second unit: die mid-unit
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    search.find_circuit = find_circuit
    from circuit_atlas.cli import app
    app(sys.argv[1:])
""")


def test_killed_run_resumes_to_same_results(root, reference):
    results = root / "killed"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_MID_UNIT,
            "run",
            str(root / "study.toml"),
            "-r",
            str(results),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    store = ResultsStore(results)  # opens cleanly: no torn unit
    assert len(store.unit_ids()) == 1
    status = study_status(store)
    assert (status.done, len(status.interrupted), status.pending) == (1, 1, 1)
    result = runner.invoke(
        app, ["run", str(root / "study.toml"), "-r", str(results), "--no-progress"]
    )
    assert result.exit_code == 0 and "2 units done, 1 already there" in result.output
    assert_same_rows(root / "ref", results)
    assert study_status(ResultsStore(results)).interrupted == {}


def _failing_load(**kwargs):
    if kwargs.get("step") == 10:
        raise RuntimeError("CUDA out of memory (simulated)")
    return Engine().load_model(**kwargs)


def test_failed_unit_is_recorded_then_retried(root, reference):
    units = plan_units(load_study(root / "study.toml"))
    store = ResultsStore(root / "failing", create=True)
    summary = run_study(units, store, engine=Engine(load_model=_failing_load))
    assert summary.done == 2 and len(summary.failed) == 1
    status = study_status(store)
    (record,) = status.failed.values()
    assert record["step"] == 10 and "CUDA out of memory" in record["error"]
    assert "Traceback" in record["traceback"]
    result = runner.invoke(app, ["status", str(root / "failing")])
    assert "1 failed" in result.output and "failed" in result.output
    again = run_study(units, store)
    assert (again.done, again.skipped, again.failed) == (1, 2, {})
    assert study_status(store).failed == {}
    assert_same_rows(root / "ref", root / "failing")


def test_task_data_error_makes_partial_unit(root, reference):
    unit = plan_units(load_study(root / "study.toml"))[0]
    unit = replace(unit, settings=replace(unit.settings, analyses=("behaviour",)))

    def make_dataset(name, tokenizer, **kwargs):
        if name == "ioi":
            raise TaskDataError("no single-token names for this tokenizer")
        return Engine().make_dataset(name, tokenizer, **kwargs)

    store = ResultsStore(root / "partial", create=True)
    assert run_unit(unit, store, Engine(make_dataset=make_dataset))
    assert not run_unit(unit, store, Engine(make_dataset=make_dataset))
    units = store.table("units")
    assert units["status"].tolist() == ["partial"]
    assert "single-token" in json.loads(units["errors"].iloc[0])["ioi"]
    assert store.table("task_metrics")["task"].tolist() == ["gender-pronoun"]
    assert store.table("edges").empty


def test_mib_export_of_a_store(root, reference, tmp_path):
    result = runner.invoke(app, ["export", str(root / "ref"), "-f", "mib", "-o",
                                 str(tmp_path / "mib")])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "mib").rglob("importances.json"))
    assert len(files) == 6
    sub = json.loads((tmp_path / "mib" / "step10" / "ioi_tiny-a" / "importances.json").read_text())
    assert sub["cfg"] == {"n_layers": 2, "n_heads": 4, "d_model": 32, "parallel_attn_mlp": True}
    assert all(set(v) == {"in_graph"} for v in sub["nodes"].values())
    ref = ResultsStore(root / "ref")
    edges = ref.query("SELECT e.edge, e.score FROM edges e JOIN units u USING (unit_id) "
                      "WHERE u.step = 10 AND e.task = 'ioi'")
    assert {k: v["score"] for k, v in sub["edges"].items()} == pytest.approx(
        dict(zip(edges["edge"], edges["score"], strict=True)))


def test_export_formats(root, reference, tmp_path):
    for fmt in ("csv", "parquet"):
        result = runner.invoke(
            app, ["export", str(root / "ref"), "-f", fmt, "-o", str(tmp_path / fmt)]
        )
        assert result.exit_code == 0, result.output
    ref = ResultsStore(root / "ref")
    csv = pd.read_csv(tmp_path / "csv" / "circuits.csv")
    assert len(csv) == 6 and list(csv.columns) == list(ref.table("circuits").columns)
    parquet = pd.read_parquet(tmp_path / "parquet" / "edges.parquet")
    assert len(parquet) == len(ref.table("edges"))
    result = runner.invoke(
        app, ["export", str(root / "ref"), "-f", "eap-json", "-o", str(tmp_path / "eap")]
    )
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "eap").rglob("*.json"))
    assert len(files) == 6
    graph = json.loads((tmp_path / "eap" / "tiny-a" / "ioi" / "step10.json").read_text())
    assert graph["cfg"] == {"n_layers": 2, "n_heads": 4, "d_model": 32, "parallel_attn_mlp": True}
    edges = ref.query(
        "SELECT e.edge, e.score, e.in_circuit FROM edges e JOIN units u "
        "USING (unit_id) WHERE u.step = 10 AND e.task = 'ioi'"
    )
    assert len(graph["edges"]) == len(edges)
    assert sum(e["in_graph"] for e in graph["edges"].values()) == edges["in_circuit"].sum()
    result = runner.invoke(app, ["export", str(root / "ref"), "-f", "xml"])
    assert result.exit_code == 2 and "unknown export format 'xml'" in result.output


def test_report_command(root, reference, tmp_path):
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(root / "ref"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "tiny-study" in html and "gender-pronoun" in html


def test_cli_reports_config_errors(root, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((root / "study.toml").read_text().replace("ig_steps", "ig_stepz"))
    result = runner.invoke(app, ["run", str(bad), "-r", str(tmp_path / "r"), "--no-progress"])
    assert result.exit_code == 2
    assert "bad.toml:20: attribution.ig_stepz: Extra inputs" in result.output
    result = runner.invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 2 and "not a results store" in result.output


def test_dry_run_prints_plan(root, tmp_path):
    result = runner.invoke(
        app, ["run", str(root / "study.toml"), "-r", str(tmp_path / "r"), "--dry-run"]
    )
    assert result.exit_code == 0
    assert "3 units, 6 task runs" in result.output and "tiny-a: 3 units" in result.output
    assert not (tmp_path / "r").exists()
    assert os.path.exists(root / "study.toml")


def test_eap_json_export_equals_circuit_result(root, reference, tmp_path):
    from circuit_atlas.study.export import eap_json

    unit = plan_units(load_study(root / "study.toml"))[1]
    engine, s, ex = Engine(), unit.settings, unit.execution
    model = engine.load_model(**unit.checkpoint.load_kwargs(), device="cpu", dtype=s.precision,
                              data_dir=ex.data_dir)
    task = s.tasks[0]
    data = engine.make_dataset(task.name, model.tokenizer, n=task.n, seed=task.seed,
                               data_dir=ex.data_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(ex.threads)  # as the runner does: same reduction order, same floats
    try:
        result = engine.find_circuit(model, data, method=s.method, ig_steps=s.ig_steps,
                                     threshold=s.threshold, search=s.search,
                                     ablation=s.ablation, batch_size=ex.batch_size)
    finally:
        torch.set_num_threads(threads)
    exported = eap_json(ResultsStore(root / "ref"), unit.unit_id, task.name)
    expected = result.to_eap_json()
    assert exported["nodes"] == expected["nodes"] and exported["edges"] == expected["edges"]
    assert exported["cfg"] == {**expected["cfg"], "d_model": 32}


def test_failing_commit_is_a_failed_unit(root, reference, monkeypatch, tmp_path):
    units = plan_units(load_study(root / "study.toml"))[:1]
    store = ResultsStore(tmp_path / "r", create=True)

    def disk_full(self, unit_id, tables):
        raise OSError("No space left on device")

    monkeypatch.setattr(ResultsStore, "write_unit", disk_full)
    summary = run_study(units, store)
    assert summary.done == 0 and "No space left" in summary.failed[units[0].unit_id]
    assert store.unit_ids() == set() and list(store.read_state()["failed"]) == [units[0].unit_id]
