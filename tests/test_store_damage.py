"""A damaged store is detected and repaired, never mixed in (issue 17, promise 3).

Each case damages one unit (or adds a foreign file) in a copy of a finished store, then:
``status``, ``report`` and ``run`` exit 2 naming the damaged path and the fix, changing nothing;
``run --repair`` moves exactly the damaged entry to ``damaged/`` and recomputes only that unit,
and the store then holds exactly the rows of an uninterrupted run. No valid file is touched.
"""

import json
import shutil

import pytest
from typer.testing import CliRunner

from circuit_atlas.cli import app
from circuit_atlas.store import MARKER, ResultsStore
from circuit_atlas.study.load import load_study
from circuit_atlas.study.runner import run_study
from circuit_atlas.study.units import plan_units
from tests.test_study_helpers import assert_same_rows, make_suite, write_study

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("damage")
    make_suite(root)
    units = plan_units(load_study(write_study(root, data_dir)))
    run_study(units, ResultsStore(root / "ref", create=True))
    return root


def truncate(unit):
    path = unit / "edges.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def bad_footer(unit):  # same size, so only reading the Parquet footer finds it
    path = unit / "circuits.parquet"
    data = bytearray(path.read_bytes())
    data[-12:-4] = b"\0" * 8
    path.write_bytes(bytes(data))
    return path


def drop_marker(unit):
    (unit / MARKER).unlink()
    return unit


def other_schema(unit):
    marker = json.loads((unit / MARKER).read_text())
    (unit / MARKER).write_text(json.dumps({**marker, "schema_version": 99}))
    return unit


def foreign_file(unit):
    path = unit.parent.parent / "notes.txt"
    path.write_text("my notes\n")
    return path


DAMAGE = {"truncated-parquet": (truncate, "bytes; its marker says", True),
          "bad-parquet-footer": (bad_footer, "unreadable Parquet file", True),
          "missing-marker": (drop_marker, "has no _COMMITTED marker", True),
          "other-schema-version": (other_schema, "was written with schema version 99", True),
          "foreign-file": (foreign_file, "foreign entry", False)}  # fmt: skip


def snapshot(store_root):
    return {str(p.relative_to(store_root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in store_root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_store_is_named_then_repaired(root, tmp_path, case):
    damage, words, redo = DAMAGE[case]
    store_root = tmp_path / "store"
    shutil.copytree(root / "ref", store_root)
    units = sorted((store_root / "units").iterdir())
    victim = units[1]
    damaged = damage(victim)
    before = snapshot(store_root)
    study = str(root / "study.toml")

    for args in (["status", str(store_root)], ["report", str(store_root)],
                 ["run", study, "-r", str(store_root), "--no-progress"]):
        result = runner.invoke(app, args)
        message = " ".join(result.output.split())
        assert result.exit_code == 2, (args, result.output)
        assert str(damaged) in message and words in message, (args, message)
        assert f"run STUDY -r {store_root} --repair" in message, message
        assert snapshot(store_root) == before, args  # nothing written, nothing deleted

    result = runner.invoke(app, ["run", study, "-r", str(store_root), "--repair",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    (moved,) = (store_root / "damaged").iterdir()
    kept = moved / damaged.relative_to(store_root) if not redo else moved / "units" / victim.name
    assert kept.exists() and f"set aside damaged entry: {kept}" in result.output
    assert (f"{int(redo)} units done, {3 - int(redo)} already there, 0 failed"
            in result.output)
    after = snapshot(store_root)
    for other in (units[0], units[2]):  # the valid units: not rewritten, not moved
        for name, stat in before.items():
            if name.startswith(f"units/{other.name}/"):
                assert after[name] == stat
    assert_same_rows(root / "ref", store_root)
    assert runner.invoke(app, ["status", str(store_root)]).exit_code == 0
