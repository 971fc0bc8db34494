"""Reliability under faults (issue 17, docs/guarantees.md): real processes, real files.

- Promise 1: ``circuit-atlas run`` killed with SIGKILL at named moments, including inside a
  unit's commit (the test-only fault points of :mod:`circuit_atlas._faults`), then rerun, holds
  exactly the rows of an uninterrupted run.
- Promise 2: two ``run`` (or ``train``) processes on one store (suite directory): the second is
  refused naming the first, or waits with ``--wait``; a SIGKILLed holder blocks nobody.
- Promise 6: with stderr a pipe, progress is a few plain lines, never ``\\r`` refreshes.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import circuit_atlas
from circuit_atlas._faults import FAULT_ENV_VAR, FAULT_POINTS
from circuit_atlas.cli import app
from circuit_atlas.console import PlainLines
from circuit_atlas.errors import LockedError
from circuit_atlas.store import ResultsStore
from circuit_atlas.study.status import study_status
from tests.test_study_helpers import assert_same_rows, make_suite, write_study

SRC = str(Path(circuit_atlas.__file__).resolve().parents[1])


def start(args, fault=None, **kwargs):
    """Start ``circuit-atlas ARGS`` as a real process, output to pipes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    env.pop(FAULT_ENV_VAR, None)
    if fault:
        env[FAULT_ENV_VAR] = fault
    return subprocess.Popen([sys.executable, "-m", "circuit_atlas.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            **kwargs)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(path: Path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def root(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("faults")
    make_suite(root)
    write_study(root, data_dir)
    return root


@pytest.fixture(scope="module")
def reference(root):
    """An uninterrupted run in a real process whose stderr is a pipe (progress on)."""
    code, out, err = finish(start(["run", root / "study.toml", "-r", root / "ref"]))
    assert code == 0, err
    return out, err


# --- promise 6: progress off a terminal -----------------------------------------------------------


def test_progress_in_a_pipe_is_a_few_plain_lines(reference):
    out, err = reference
    assert "\r" not in out + err
    lines = progress_lines(err)
    # a header, then one line when each of the 3 units starts and one when it is committed
    assert len(lines) == 1 + 2 * 3, err
    assert lines[0].endswith("units: 0/3 done before this run, 3 to run")
    assert lines[-1].endswith("ETA 0m00s") and "units: 3/3 done; tiny-a@20 committed" in lines[-1]
    assert "3 units done, 0 already there, 0 failed" in out


def progress_lines(err):
    """The progress lines of a stderr (``[HH:MM:SS] ...``), not any library's warnings."""
    return [line for line in err.splitlines() if re.match(r"\[\d\d:\d\d:\d\d\] ", line)]


def test_plain_lines_are_rate_limited(capsys):
    lines = PlainLines(interval=3600)
    for i in range(1000):
        lines.tick(f"step {i}")
    lines.line("done")
    lines.tick("suppressed: within the interval of the last line")
    err = capsys.readouterr().err.splitlines()
    assert [line.split("] ", 1)[1] for line in err] == ["step 0", "done"]


# --- promise 2: one driver per store ------------------------------------------------------------


def first_to_exit(procs, release: Path, timeout=120.0):
    """Wait until one of ``procs`` exits, then create ``release`` (the others may go on)."""
    deadline = time.monotonic() + timeout
    while all(p.poll() is None for p in procs):
        assert time.monotonic() < deadline, "no process exited"
        time.sleep(0.05)
    release.touch()
    return [finish(p) for p in procs]


def test_second_run_on_a_store_is_refused(root, reference, tmp_path):
    results = root / "twice"
    # Whichever gets the lock holds it until the other has exited (refused), whichever of the
    # two imports faster.
    release = tmp_path / "release"
    procs = [start(["run", root / "study.toml", "-r", results, "--no-progress"],
                   fault=f"run.locked:until:{release}") for _ in range(2)]
    outcomes = first_to_exit(procs, release)
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], outcomes
    winner = next(p for p, (code, _, _) in zip(procs, outcomes, strict=True) if code == 0)
    _, _, refused = next(o for o in outcomes if o[0] == 2)
    assert f"results store {str(results.resolve())!r} is in use by process {winner.pid}" in refused
    assert "--wait" in refused
    assert len(list((results / "runs").glob("*.json"))) == 1  # the refused run wrote nothing
    assert_same_rows(root / "ref", results)


def test_wait_flag_waits_for_the_first_run(root, reference, tmp_path):
    results = root / "waiting"
    release = tmp_path / "release"
    first = start(["run", root / "study.toml", "-r", results, "--no-progress"],
                  fault=f"run.locked:until:{release}")
    wait_for(results / "state" / "driver.json")
    second = start(["run", root / "study.toml", "-r", results, "--no-progress", "--wait"])
    waiting = ""
    while "waiting" not in waiting:  # the second says it waits; then the first may go on
        line = second.stderr.readline()
        assert line, f"the second run never waited: {waiting}"
        waiting += line
    release.touch()
    (code1, out1, err1), (code2, out2, err2) = finish(first), finish(second)
    err2 = waiting + err2
    assert (code1, code2) == (0, 0), (err1, err2)
    assert f"in use by process {first.pid}" in err2 and "waiting for it to finish" in err2
    assert "3 units done" in out1 and "0 units done, 3 already there" in out2
    assert_same_rows(root / "ref", results)


def test_killed_holder_does_not_block_the_next_run(root, reference):
    results = root / "killed-holder"
    holder = start(["run", root / "study.toml", "-r", results, "--no-progress"],
                   fault="run.locked:sleep:120")
    wait_for(results / "state" / "driver.json")
    shown = CliRunner().invoke(app, ["status", str(results)]).output
    assert f"in use by process {holder.pid} on" in shown, shown
    holder.send_signal(signal.SIGKILL)
    assert finish(holder)[0] == -signal.SIGKILL
    assert (results / "state" / "driver.json").exists()  # its record is left behind ...
    assert "in use by" not in CliRunner().invoke(app, ["status", str(results)]).output
    code, out, err = finish(start(["run", root / "study.toml", "-r", results, "--no-progress"]))
    assert code == 0, err  # ... but its lock died with it
    assert "3 units done" in out and not (results / "state" / "driver.json").exists()
    assert_same_rows(root / "ref", results)


def test_lock_in_process_names_the_holder(tmp_path):
    store = ResultsStore(tmp_path / "r", create=True)
    with store.lock():
        with pytest.raises(LockedError, match=rf"is in use by process {os.getpid()} on"):
            with ResultsStore(tmp_path / "r").lock():
                pass
        messages = []
        with pytest.raises(LockedError, match=r"still in use .* after waiting 0.2 s"):
            with ResultsStore(tmp_path / "r").lock(wait=0.2, on_wait=messages.append):
                pass
        assert len(messages) == 1 and "waiting for it to finish" in messages[0]
    with store.lock():  # released: free again
        pass
    store.check()  # the lock files live in state/, not among the store's entries


def test_refusal_waits_for_the_holder_record_written_just_after_the_lock(tmp_path):
    """The holder takes the lock, then writes its record: a process refused in between must
    still name it (it said "another process" under load), and a killed holder's stale record
    must not be taken for the live one's."""
    import json
    import socket
    import threading

    from circuit_atlas.lock import _current_holder

    record = tmp_path / "holder.json"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": "x", "since": "now"}
    timer = threading.Timer(0.3, lambda: record.write_text(json.dumps(me)))
    timer.start()
    assert _current_holder(record, patience=5.0) == me  # missing at first, then written
    timer.join()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {**me, "pid": dead.pid}
    record.write_text(json.dumps(stale))
    threading.Timer(0.3, lambda: record.write_text(json.dumps(me))).start()
    assert _current_holder(record, patience=5.0) == me  # the dead pid's record is skipped
    record.write_text(json.dumps(stale))
    assert _current_holder(record, patience=0.2) == stale  # at the deadline: what it read


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "brown.txt").write_bytes((data_dir / "corpus" / "brown.txt").read_bytes()[:60_000])
    return folder


def train_args(out, corpus, data_dir):
    return ["train", "--out", out, "--corpus", corpus, "--sizes", "micro", "--steps", "3",
            "--n-even", "1", "--batch-size", "2", "--seq-len", "16", "--vocab-size", "600",
            "--data-dir", data_dir]  # fmt: skip


def test_second_train_on_a_suite_directory_is_refused(tmp_path, corpus, data_dir):
    out, release = tmp_path / "suite", tmp_path / "release"
    procs = [start(train_args(out, corpus, data_dir), fault=f"train.locked:until:{release}")
             for _ in range(2)]
    outcomes = first_to_exit(procs, release)
    assert sorted(code for code, _, _ in outcomes) == [0, 2], outcomes
    winner = next(p for p, (code, _, _) in zip(procs, outcomes, strict=True) if code == 0)
    (_, _, refused), = [o for o in outcomes if o[0] == 2]
    assert f"suite directory {str(out)!r} is in use by process {winner.pid}" in refused
    (_, winner_out, winner_err), = [o for o in outcomes if o[0] == 0]
    assert (out / "micro" / "step3" / "config.json").is_file()
    # promise 6 for train: progress (on by default) is plain lines in a pipe
    assert "\r" not in winner_out + winner_err
    lines = progress_lines(winner_err)
    # preparing the tokenizer and the corpus, start, one per checkpoint (0..3), done
    assert len(lines) == 2 + 1 + 4 + 1, winner_err
    assert lines[-1].endswith("train micro: done at step 3/3")


def test_killed_trainer_does_not_block_the_next(tmp_path, corpus, data_dir):
    out = tmp_path / "suite"
    holder = start(train_args(out, corpus, data_dir) + ["--no-progress"],
                   fault="train.locked:sleep:120")
    wait_for(out / ".train.lock.json")
    holder.send_signal(signal.SIGKILL)
    assert finish(holder)[0] == -signal.SIGKILL
    code, _, err = finish(start(train_args(out, corpus, data_dir) + ["--no-progress"]))
    assert code == 0, err
    assert (out / "micro" / "step3" / "config.json").is_file()


# --- promise 1: kill -9 at any moment loses at most the unit in flight ---------------------------


@pytest.mark.parametrize(("fault", "committed"), [
    ("store.staged@2:kill", 1),    # its Parquet files are in .tmp/, no marker yet
    ("store.marked@2:kill", 1),    # its marker is written, the rename not done
    ("store.renamed@2:kill", 2),   # renamed into units/, units/ not yet fsynced
    ("unit.committed@2:kill", 2),  # committed, its running state not yet cleared
])  # fmt: skip
def test_kill_during_commit_then_rerun_gives_the_same_rows(root, reference, fault, committed):
    assert fault.split("@")[0] in FAULT_POINTS
    results = root / f"kill-{fault.split('@')[0]}"
    code, _, err = finish(start(["run", root / "study.toml", "-r", results, "--no-progress"],
                                fault=fault))
    assert code == -signal.SIGKILL, err
    store = ResultsStore(results)  # opens cleanly: no torn unit, no foreign entry
    store.verify()
    assert len(store.unit_ids()) == committed
    status = study_status(store)
    assert (status.done, len(status.interrupted)) == (committed, 1)
    staged = list((results / ".tmp").iterdir())
    assert len(staged) == (1 if fault.startswith(("store.staged", "store.marked")) else 0)
    result = CliRunner().invoke(app, ["run", str(root / "study.toml"), "-r", str(results),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"{3 - committed} units done, {committed} already there, 0 failed" in result.output
    assert_same_rows(root / "ref", results)  # every row equal, none duplicated
    assert list((results / ".tmp").iterdir()) == []  # the dead run's staging was cleaned
    assert study_status(ResultsStore(results)).interrupted == {}
