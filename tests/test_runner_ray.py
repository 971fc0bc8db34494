import functools
import os
import sys

import pytest
from typer.testing import CliRunner

from circuit_atlas.cli import app
from circuit_atlas.store import ResultsStore
from circuit_atlas.study.load import load_study
from circuit_atlas.study.runner import Engine, run_study
from circuit_atlas.study.units import plan_units
from tests.test_study_helpers import assert_same_rows, make_suite, write_study

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the whole module (2 CPUs, no dashboard)."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def root(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("ray")
    make_suite(root)
    write_study(root, data_dir)
    units = plan_units(load_study(root / "study.toml"))
    summary = run_study(units, ResultsStore(root / "local", create=True))
    assert summary.done == 3
    return root


def crash_once_load(marker: str, crash_step: int, **kwargs):
    """Kill the Ray worker (no exception, no cleanup) the first time ``crash_step`` loads."""
    if kwargs.get("step") == crash_step and not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write(str(os.getpid()))
        os._exit(1)
    return Engine().load_model(**kwargs)


def test_cli_ray_executor_matches_local(ray_local, root):
    # Runs first: it starts the (slow to import) workers that the next tests reuse.
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(root / "study.toml"),
            "-r",
            str(root / "cli"),
            "--executor",
            "ray",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 units done" in result.output
    assert_same_rows(root / "local", root / "cli")


def test_killed_worker_is_retried_without_duplicates(ray_local, root):
    marker = root / "crashed-once"
    engine = Engine(load_model=functools.partial(crash_once_load, str(marker), 0))
    units = plan_units(load_study(root / "study.toml"))
    store = ResultsStore(root / "ray", create=True)
    summary = run_study(
        units, store, executor="ray", engine=engine, executor_options={"max_retries": 2}
    )
    assert marker.exists() and int(marker.read_text()) != os.getpid()
    assert (summary.done, summary.failed) == (3, {})
    counts = store.query("SELECT unit_id, count(*) AS n FROM units GROUP BY unit_id")
    assert counts["n"].tolist() == [1, 1, 1]
    assert_same_rows(root / "local", root / "ray")


def test_worker_that_always_dies_is_a_failed_unit(ray_local, root, tmp_path):
    # Runs last: it kills a warm worker.
    def always_die(**kwargs):
        os._exit(1)

    units = plan_units(load_study(root / "study.toml"))[:1]
    store = ResultsStore(tmp_path / "dead", create=True)
    summary = run_study(
        units,
        store,
        executor="ray",
        engine=Engine(load_model=always_die),
        executor_options={"max_retries": 0},
    )
    assert summary.done == 0 and len(summary.failed) == 1
    (error,) = summary.failed.values()
    assert "died" in error.lower() or "crash" in error.lower()
    assert store.unit_ids() == set()
    assert list(store.read_state()["failed"]) == [units[0].unit_id]




def test_gpu_placement(root):
    from circuit_atlas.errors import ConfigError
    from circuit_atlas.study.executors import RayExecutor

    unit = plan_units(load_study(root / "study.toml"), device="cuda:3")[0]
    placed, gpus = RayExecutor()._placement(unit, {"CPU": 4, "GPU": 2})
    assert (placed.execution.device, gpus, placed.unit_id) == ("cuda", 1.0, unit.unit_id)
    with pytest.raises(ConfigError, match="device 'cuda:3' requested but the Ray cluster"):
        RayExecutor()._placement(unit, {"CPU": 4})
    auto = plan_units(load_study(root / "study.toml"), device="auto")[0]
    assert RayExecutor()._placement(auto, {"CPU": 4})[1] == 0.0
    assert RayExecutor()._placement(auto, {"CPU": 4, "GPU": 1})[1] == 1.0
