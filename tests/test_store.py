import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from circuit_atlas.errors import StoreError
from circuit_atlas.store import MARKER, SCHEMA_VERSION, TABLES, ResultsStore


def unit_tables(unit_id: str, step: int = 1000, faithfulness: float | None = 0.9) -> dict:
    """Rows of one plausible unit (two tasks, a 3-edge graph)."""
    common = {"unit_id": unit_id, "model": "tiny-a", "step": step}
    full = {**common, "params": 1234, "tokens_seen": step * 2_097_152}
    units = [{
        **full, "source_kind": "suite", "size": "a", "path": "/x/a/step1000",
        "settings": json.dumps({"threshold": 0.8}), "spec": "{}", "versions": "{}",
        "timings": json.dumps({"total": 1.5}), "duration_s": 1.5, "status": "complete",
        "errors": "{}", "device": "cpu", "host": "h",
        "finished_at": pd.Timestamp("2024-01-01", tz="UTC"), "weights_fingerprint": f"{step:064x}",
        "seed": 2, "base_model": "tiny", "suite": "tiny", "tokens_per_step": 2_097_152,
    }]
    metrics, circuits, edges, nodes, curves = [], [], [], [], []
    for task in ("ioi", "sva"):
        row = {**full, "task": task, "metric_kind": "logit_diff", "clean_metric": 1.0,
               "corrupted_metric": -1.0, "clean_metric_std": 0.1, "corrupted_metric_std": 0.2,
               "n_examples": 8}
        for name in ("accuracy", "rank0", "prob_mass", "logit_diff", "prob_diff"):
            row[name] = 0.5
            row[f"corrupted_{name}"] = 0.25
        metrics.append(row)
        circuits.append({
            **full, "task": task, "n_edges": 2, "n_nodes": 3, "n_edges_total": 3,
            "n_nodes_total": 3, "faithfulness": faithfulness, "faithfulness_normalized": None,
            "threshold": 0.8, "search": "fast", "method": "EAP-IG-inputs", "ig_steps": 5,
            "ablation": "patching", "clean_metric": 1.0, "corrupted_metric": -1.0,
            "empty_metric": -1.0,
        })
        for edge, parent, child, score, keep in (
            ("input->m0", "input", "m0", 0.5, True),
            ("m0->logits", "m0", "logits", -0.25, True),
            ("input->logits", "input", "logits", 0.0, False),
        ):
            edges.append({**common, "task": task, "edge": edge, "parent": parent,
                          "child": child, "score": score, "in_circuit": keep})
        for node in ("input", "m0", "logits"):
            nodes.append({**common, "task": task, "node": node, "in_circuit": True})
        curves.append({**common, "task": task, "n_requested": 1, "n_edges": 1, "n_nodes": 2,
                       "metric": 0.5, "faithfulness": 0.5, "faithfulness_normalized": 0.75})
    return {"units": units, "task_metrics": metrics, "circuits": circuits, "edges": edges,
            "nodes": nodes, "curves": curves}


def snapshot(root) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*")) if p.is_file() and ".tmp" not in p.parts
    }


@pytest.fixture
def store(tmp_path):
    return ResultsStore(tmp_path / "results", create=True)


def test_write_query_roundtrip(store):
    assert store.write_unit("u1", unit_tables("u1", step=1000))
    assert store.write_unit("u2", unit_tables("u2", step=2000, faithfulness=None))
    assert store.unit_ids() == {"u1", "u2"}
    circuits = store.table("circuits").sort_values(["step", "task"])
    assert list(circuits.columns) == TABLES["circuits"].names
    assert circuits["faithfulness"].isna().tolist() == [False, False, True, True]
    assert store.table("edges").shape == (12, len(TABLES["edges"].names))
    got = store.query("SELECT step, sum(n_nodes) AS n FROM circuits GROUP BY step ORDER BY step")
    assert got["n"].tolist() == [6, 6]
    units = store.table("units")
    assert units["finished_at"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    store.verify()


def test_rewrite_is_noop(store):
    assert store.write_unit("u1", unit_tables("u1"))
    before = snapshot(store.root)
    assert not store.write_unit("u1", unit_tables("u1", step=5))
    assert snapshot(store.root) == before


def test_empty_store_has_typed_empty_tables(store):
    for name, schema in TABLES.items():
        frame = store.table(name)
        assert frame.empty and list(frame.columns) == schema.names


def test_missing_tables_are_written_empty(store):
    tables = unit_tables("u1")
    assert store.write_unit("u1", {"units": tables["units"]})
    assert len(store.table("units")) == 1 and store.table("edges").empty


def test_open_requires_a_store(tmp_path):
    with pytest.raises(StoreError, match="not a results store"):
        ResultsStore(tmp_path / "nothing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "data.csv").write_text("x")
    with pytest.raises(StoreError, match="non-empty directory without store.json"):
        ResultsStore(tmp_path / "full", create=True)


@pytest.mark.parametrize("manifest, match", [
    ({"format": "circuit-atlas-results", "schema_version": SCHEMA_VERSION + 1},
     f"schema version {SCHEMA_VERSION + 1}"),
    ({"format": "other", "schema_version": SCHEMA_VERSION}, "format 'other'"),
])
def test_incompatible_manifest(store, manifest, match):
    (store.root / "store.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=match):
        ResultsStore(store.root)


def test_foreign_entries_are_reported(store):
    store.write_unit("u1", unit_tables("u1"))
    stray = store.root / "stray.parquet"
    stray.write_bytes(b"x")
    with pytest.raises(StoreError, match="foreign entry .*stray.parquet"):
        ResultsStore(store.root)
    stray.unlink()
    extra = store.units_dir / "u1" / "extra.parquet"
    extra.write_bytes(b"x")
    with pytest.raises(StoreError, match="differ from its marker"):
        ResultsStore(store.root).table("units")
    extra.unlink()
    (store.units_dir / "torn").mkdir()
    with pytest.raises(StoreError, match="torn.*no _COMMITTED"):
        ResultsStore(store.root)
    (store.units_dir / "torn").rmdir()
    (store.units_dir / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="foreign entry .*notes.txt"):
        ResultsStore(store.root)


def test_resized_file_is_reported(store):
    store.write_unit("u1", unit_tables("u1"))
    with open(store.units_dir / "u1" / "edges.parquet", "ab") as handle:
        handle.write(b"junk")
    with pytest.raises(StoreError, match="edges.parquet' has .* bytes; its marker says"):
        ResultsStore(store.root)


def test_marker_of_other_unit(store):
    store.write_unit("u1", unit_tables("u1"))
    os.rename(store.units_dir / "u1", store.units_dir / "u9")
    with pytest.raises(StoreError, match="names unit 'u1'.*expected 'u9'"):
        ResultsStore(store.root)


def test_bad_rows_are_rejected(store):
    tables = unit_tables("u1")
    bad = [dict(row, surprise=1) for row in tables["nodes"]]
    with pytest.raises(StoreError, match=r"nodes.*unknown columns \['surprise'\]"):
        store.write_unit("u1", {**tables, "nodes": bad})
    with pytest.raises(StoreError, match=r"rows of unit\(s\) \['u1'\] written under unit 'u2'"):
        store.write_unit("u2", tables)
    with pytest.raises(StoreError, match="unknown table"):
        store.write_unit("u1", {"figures": []})
    with pytest.raises(StoreError, match="does not fit its schema"):
        store.write_unit("u1", {"curves": [dict(tables["curves"][0], n_edges="many")]})
    assert store.unit_ids() == set() and not any((store.root / ".tmp").iterdir())


def test_failing_write_changes_nothing(store, monkeypatch):
    store.write_unit("u1", unit_tables("u1"))
    before = snapshot(store.root)
    calls = {"n": 0}
    real = pq.write_table

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", flaky)
    with pytest.raises(OSError, match="disk full"):
        store.write_unit("u2", unit_tables("u2"))
    assert snapshot(store.root) == before
    assert not any((store.root / ".tmp").iterdir())
    assert ResultsStore(store.root).unit_ids() == {"u1"}


def test_kill_during_write_leaves_no_unit(store):
    # A process killed after staging but before the rename leaves only .tmp debris, which the
    # next write cleans up; the unit is simply absent.
    code = (
        "import os, sys\n"
        "from circuit_atlas.store import ResultsStore\n"
        "import circuit_atlas.store as s\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_store import unit_tables\n"
        "def die(*a, **k): os._exit(9)\n"
        "s.os.rename = die\n"
        "ResultsStore(sys.argv[1]).write_unit('u1', unit_tables('u1'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(store.root),
                           os.path.dirname(__file__)], timeout=60)
    assert done.returncode == 9
    assert len(list((store.root / ".tmp").iterdir())) == 1
    reopened = ResultsStore(store.root)
    assert reopened.unit_ids() == set()
    assert reopened.write_unit("u2", unit_tables("u2"))
    assert not any((store.root / ".tmp").iterdir())


def test_run_state_records(store):
    store.mark_state("u1", "running", {"pid": os.getpid(), "host": os.uname().nodename})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    store.mark_state("u2", "running", {"pid": int(dead), "host": os.uname().nodename})
    store.mark_state("u3", "failed", {"error": "boom"})
    state = store.read_state()
    assert state["running"]["u1"]["interrupted"] is False
    assert state["running"]["u2"]["interrupted"] is True
    assert state["failed"]["u3"]["error"] == "boom"
    store.mark_state("u3", "running", {})
    store.clear_state("u1")
    state = store.read_state()
    assert set(state["running"]) == {"u2", "u3"} and state["failed"] == {}
    with pytest.raises(StoreError, match="unknown unit state 'paused'"):
        store.mark_state("u1", "paused", {})
    assert (store.units_dir / "u1").exists() is False and MARKER == "_COMMITTED"


def _downgrade(store: ResultsStore, unit_id: str, version: int) -> None:
    """Rewrite a committed unit and the manifest as schema version 2 or 3 wrote them.

    Version 2 had the first eight tables and no algorithm tables; versions 2 and 3 had no
    ``units.weights_fingerprint`` column, versions 2-4 no ``units.seed`` and
    ``units.base_model``, versions 2-7 no ``units.suite`` and ``units.tokens_per_step``,
    versions 3-8 no interval columns in ``algorithm``. Their other schemas are the current ones.
    """
    from circuit_atlas.store import ADDED_COLUMNS, TABLES_BY_VERSION

    unit = store.units_dir / unit_id
    marker = json.loads((unit / MARKER).read_text())
    for name in set(TABLES) - set(TABLES_BY_VERSION[version]):
        (unit / f"{name}.parquet").unlink()
        del marker["files"][f"{name}.parquet"]
    for name in TABLES_BY_VERSION[version]:
        later = [c for v, tables in ADDED_COLUMNS.items() if v > version
                 for c in tables.get(name, ())]  # fmt: skip
        path = unit / f"{name}.parquet"
        if later and path.exists():
            pq.write_table(pq.read_table(path).drop(later), path)
            marker["files"][f"{name}.parquet"]["bytes"] = path.stat().st_size
    marker["schema_version"] = version
    (unit / MARKER).write_text(json.dumps(marker))
    manifest = json.loads((store.root / "store.json").read_text())
    manifest.update(schema_version=version, tables=sorted(TABLES_BY_VERSION[version]))
    (store.root / "store.json").write_text(json.dumps(manifest))


def _algorithm_rows(unit_id: str) -> list[dict]:
    return [{"unit_id": unit_id, "model": "tiny-a", "params": 1234, "step": 2000,
             "tokens_seen": 2000 * 2_097_152, "task": "ioi", "panel": "direct",
             "pct_effect": None, "reason": "gap_too_small", "denominator": "circuit",
             "identified_effect": None, "total_effect": None, "n_identified": 0,
             "n_denominator": 0, "heads": "", "clean_logit_diff": 0.1,
             "corrupted_logit_diff": 0.1, "pct_effect_ci_low": None, "pct_effect_ci_high": None,
             "ci_reason": "gap_too_small", "n_examples": 10, "ci_n_resamples": 1000,
             "ci_n_valid": 0, "ci_seed": 0, "ci_level": 0.95}]  # fmt: skip


def test_schema_v2_store_stays_readable_and_is_upgraded_by_a_new_unit(tmp_path):
    assert SCHEMA_VERSION == 9
    old = ResultsStore(tmp_path / "old", create=True)
    old.write_unit("u1", unit_tables("u1", step=1000))
    _downgrade(old, "u1", 2)
    store = ResultsStore(tmp_path / "old")  # a v2 store opens ...
    assert store.manifest["schema_version"] == 2
    store.verify()  # ... its unit checks against v2's tables ...
    assert len(store.table("circuits")) == 2
    for name in ("algorithm", "algorithm_heads", "fingerprints", "self_repair",
                 "self_repair_heads"):  # ... and the new tables read as empty, typed
        frame = store.table(name)
        assert frame.empty and list(frame.columns) == TABLES[name].names
    assert json.loads((tmp_path / "old" / "store.json").read_text())["schema_version"] == 2
    # A new unit is written with the v3 tables; the manifest moves to v3; both units read.
    assert store.write_unit("u2", {**unit_tables("u2", step=2000),
                                   "algorithm": _algorithm_rows("u2")})
    manifest = json.loads((tmp_path / "old" / "store.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["upgraded_from"] == 2
    reopened = ResultsStore(tmp_path / "old")
    reopened.verify()
    assert sorted(reopened.table("circuits")["unit_id"].unique()) == ["u1", "u2"]
    algorithm = reopened.table("algorithm")
    assert algorithm["unit_id"].tolist() == ["u2"] and algorithm["pct_effect"].isna().all()
    assert algorithm["reason"].tolist() == ["gap_too_small"]
    units = reopened.table("units").set_index("unit_id")["weights_fingerprint"]
    assert units.isna().tolist() == [True, False]  # u1 (v2) has none, u2 (v4) has one


def test_schema_v3_units_read_with_a_null_weights_fingerprint(tmp_path):
    old = ResultsStore(tmp_path / "v3", create=True)
    old.write_unit("u1", unit_tables("u1", step=1000))
    _downgrade(old, "u1", 3)
    store = ResultsStore(tmp_path / "v3")
    store.verify()  # checked against v3's units schema (no fingerprint column)
    units = store.table("units")  # every unit is v3: the column exists, as nulls
    assert list(units.columns) == TABLES["units"].names
    assert units["weights_fingerprint"].isna().all() and units["step"].tolist() == [1000]
    assert store.query("SELECT count(*) AS n FROM units WHERE weights_fingerprint IS NULL")[
        "n"].tolist() == [1]
    assert store.write_unit("u2", unit_tables("u2", step=2000))  # a v4 unit joins
    both = ResultsStore(tmp_path / "v3")
    both.verify()
    fingerprints = both.table("units").set_index("unit_id")["weights_fingerprint"]
    assert fingerprints.isna().to_dict() == {"u1": True, "u2": False}
    assert json.loads((tmp_path / "v3" / "store.json").read_text())["upgraded_from"] == 3


def test_schema_v4_units_read_with_a_null_seed(tmp_path):
    old = ResultsStore(tmp_path / "v4", create=True)
    old.write_unit("u1", unit_tables("u1", step=1000))
    _downgrade(old, "u1", 4)
    store = ResultsStore(tmp_path / "v4")
    store.verify()  # checked against v4's units schema (no seed, no base_model)
    units = store.table("units")
    assert list(units.columns) == TABLES["units"].names
    assert units["seed"].isna().all() and units["base_model"].isna().all()
    assert units["weights_fingerprint"].notna().all()  # v4 kept its fingerprint
    assert store.write_unit("u2", unit_tables("u2", step=2000))  # a v5 unit joins
    both = ResultsStore(tmp_path / "v4").table("units").set_index("unit_id")
    assert both["seed"].isna().to_dict() == {"u1": True, "u2": False}
    assert both.loc["u2", "seed"] == 2 and both.loc["u2", "base_model"] == "tiny"
    assert json.loads((tmp_path / "v4" / "store.json").read_text())["upgraded_from"] == 4


def test_schema_v7_units_read_with_a_null_suite_that_the_analyses_derive(tmp_path):
    from circuit_atlas.analyses import suite_map

    old = ResultsStore(tmp_path / "v7", create=True)
    old.write_unit("u1", unit_tables("u1", step=1000))
    _downgrade(old, "u1", 7)
    assert "suite" not in pq.read_schema(old.units_dir / "u1" / "units.parquet").names
    store = ResultsStore(tmp_path / "v7")
    store.verify()  # checked against v7's units schema (no suite, no tokens_per_step)
    units = store.table("units")
    assert list(units.columns) == TABLES["units"].names
    assert units["suite"].isna().all() and units["tokens_per_step"].isna().all()
    assert units["seed"].tolist() == [2]  # v7 kept its seed
    derived = suite_map(units)  # model "tiny-a", size "a": suite "tiny"; 2,097,152 per step
    assert derived[["suite", "tokens_per_step"]].values.tolist() == [["tiny", 2_097_152]]
    assert store.write_unit("u2", unit_tables("u2", step=2000))  # a v8 unit joins
    both = ResultsStore(tmp_path / "v7")
    both.verify()
    rows = both.table("units").set_index("unit_id")
    assert rows["suite"].isna().to_dict() == {"u1": True, "u2": False}
    assert rows.loc["u2", "suite"] == "tiny" and rows.loc["u2", "tokens_per_step"] == 2_097_152
    assert json.loads((tmp_path / "v7" / "store.json").read_text())["upgraded_from"] == 7


def test_schema_v1_store_is_refused(store):
    manifest = json.loads((store.root / "store.json").read_text())
    (store.root / "store.json").write_text(json.dumps({**manifest, "schema_version": 1}))
    with pytest.raises(StoreError, match=r"schema version 1; this circuit-atlas reads versions"):
        ResultsStore(store.root)


def _prompt_rows(unit_id: str, step: int) -> list[dict]:
    return [{"unit_id": unit_id, "model": "tiny-a", "step": step, "task": task, "run": run,
             "example": i, "metric": 0.25 * i - (run == "corrupted")}
            for task in ("ioi", "sva") for run in ("clean", "corrupted", "empty", "circuit")
            for i in range(3)]  # fmt: skip


def test_prompt_metrics_round_trip(store):
    rows = _prompt_rows("u1", 1000)
    assert store.write_unit("u1", {**unit_tables("u1"), "prompt_metrics": rows})
    store.verify()
    got = store.query("SELECT * FROM prompt_metrics ORDER BY task, run, example")
    assert list(got.columns) == TABLES["prompt_metrics"].names
    want = pd.DataFrame(rows).sort_values(["task", "run", "example"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got["example"].dtype == "int64" and got["metric"].dtype == "float64"
    means = store.query("SELECT task, avg(metric) AS m FROM prompt_metrics WHERE run = 'clean' "
                        "GROUP BY task ORDER BY task")
    assert means["m"].tolist() == [0.25, 0.25]  # (0 + 0.25 + 0.5) / 3
    with pytest.raises(StoreError, match=r"table 'prompt_metrics' .*missing columns \['run'\]"):
        store.write_unit("u2", {"prompt_metrics": [{k: v for k, v in rows[0].items()
                                                    if k != "run"} | {"unit_id": "u2"}]})


def test_schema_v5_units_read_with_no_prompt_metrics(tmp_path):
    old = ResultsStore(tmp_path / "v5", create=True)
    old.write_unit("u1", {**unit_tables("u1", step=1000),
                          "prompt_metrics": _prompt_rows("u1", 1000)})
    _downgrade(old, "u1", 5)
    assert not (old.units_dir / "u1" / "prompt_metrics.parquet").exists()
    store = ResultsStore(tmp_path / "v5")
    store.verify()  # v5's tables: no prompt_metrics file expected
    frame = store.table("prompt_metrics")
    assert frame.empty and list(frame.columns) == TABLES["prompt_metrics"].names
    assert store.write_unit("u2", {**unit_tables("u2", step=2000),
                                   "prompt_metrics": _prompt_rows("u2", 2000)})  # v6 joins
    both = ResultsStore(tmp_path / "v5")
    both.verify()
    assert both.table("prompt_metrics")["unit_id"].unique().tolist() == ["u2"]
    assert len(both.table("units")) == 2


def test_schema_v5_units_read_without_mib_rows(tmp_path):
    old = ResultsStore(tmp_path / "v5", create=True)
    old.write_unit("u1", unit_tables("u1", step=1000))
    _downgrade(old, "u1", 5)
    store = ResultsStore(tmp_path / "v5")
    store.verify()  # checked against v5's tables (no mib, no mib_curves)
    assert not (store.units_dir / "u1" / "mib.parquet").exists()
    for name in ("mib", "mib_curves"):
        frame = store.table(name)
        assert frame.empty and list(frame.columns) == TABLES[name].names
    mib_row = {"unit_id": "u2", "model": "tiny", "params": 1, "step": 2000, "tokens_seen": 2,
               "task": "ioi", "cpr": 0.9, "cmd": 0.1, "clean_metric": 1.0, "empty_metric": 0.0,
               "n_fractions": 10, "circuits": 12, "seconds": 0.5, "ablation": "patching"}
    assert store.write_unit("u2", {**unit_tables("u2", step=2000), "mib": [mib_row]})
    both = ResultsStore(tmp_path / "v5")
    both.verify()
    assert both.table("mib")["unit_id"].tolist() == ["u2"]
    assert json.loads((tmp_path / "v5" / "store.json").read_text())["upgraded_from"] == 5


def _defined_algorithm_rows(unit_id: str, step: int) -> list[dict]:
    row = {**_algorithm_rows(unit_id)[0], "step": step, "tokens_seen": step * 2_097_152,
           "pct_effect": 75.0, "reason": None, "identified_effect": -0.75, "total_effect": -1.0,
           "n_identified": 1, "n_denominator": 4, "heads": "a1.h0", "pct_effect_ci_low": 60.0,
           "pct_effect_ci_high": 88.0, "ci_reason": None, "ci_n_valid": 1000}
    return [row]


def test_schema_v8_units_read_with_null_algorithm_intervals(tmp_path):
    from circuit_atlas import analyses
    from circuit_atlas.store import ALGORITHM_CI_COLUMNS

    old = ResultsStore(tmp_path / "v8", create=True)
    old.write_unit("u1", {**unit_tables("u1", step=1000),
                          "algorithm": _defined_algorithm_rows("u1", 1000)})
    _downgrade(old, "u1", 8)
    names = pq.read_schema(old.units_dir / "u1" / "algorithm.parquet").names
    assert "pct_effect" in names and not set(ALGORITHM_CI_COLUMNS) & set(names)
    store = ResultsStore(tmp_path / "v8")
    store.verify()  # checked against v8's algorithm schema (no interval columns)
    algorithm = store.table("algorithm")
    assert list(algorithm.columns) == TABLES["algorithm"].names
    assert algorithm[list(ALGORITHM_CI_COLUMNS)].isna().all().all()
    assert algorithm["pct_effect"].tolist() == [75.0]
    assert store.write_unit("u2", {**unit_tables("u2", step=2000),
                                   "algorithm": _defined_algorithm_rows("u2", 2000)})
    both = ResultsStore(tmp_path / "v8")
    both.verify()
    rows = both.table("algorithm").set_index("unit_id")
    assert rows["pct_effect_ci_low"].isna().to_dict() == {"u1": True, "u2": False}
    assert rows.loc["u2", ["pct_effect_ci_low", "pct_effect_ci_high"]].tolist() == [60.0, 88.0]
    assert json.loads((tmp_path / "v8" / "store.json").read_text())["upgraded_from"] == 8
    # The Figure 4 series says why the older unit's defined share has no interval.
    series = analyses.algorithm_series(both.table("algorithm")).set_index("step")
    assert series.loc[1000, "ci_reason"] == "not_computed"
    assert pd.isna(series.loc[1000, "ci_low"]) and pd.isna(series.loc[2000, "ci_reason"])
    assert series.loc[2000, "ci_high"] == 88.0
