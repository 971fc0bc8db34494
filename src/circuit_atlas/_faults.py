"""Fault injection at named points, for the reliability tests only (``tests/test_faults.py``).

**Test-only.** When the environment variable :data:`FAULT_ENV_VAR` is unset (always, outside
the tests) :func:`fault_point` returns at once and does nothing. The tests set it in a
subprocess to kill or stall ``circuit-atlas run`` at an exact moment, e.g. between writing a
unit's ``_COMMITTED`` marker and renaming the unit into place.

The variable holds one or more ``;``-separated rules ``POINT[@N]:ACTION[:SECONDS]``:

- ``POINT``: a name passed to :func:`fault_point` (see :data:`FAULT_POINTS`);
- ``@N``: act only the ``N``-th time this process reaches the point (default: every time);
- ``ACTION``: ``kill`` (``SIGKILL`` this process: no cleanup, no ``finally``), ``sleep``
  (sleep ``SECONDS``, default 1) or ``until`` (wait until the file named after the colon
  exists, at most 120 s: the test decides when the process may go on).

Example: ``CIRCUIT_ATLAS_FAULT="store.marked@2:kill"`` kills the run while it commits its
second unit, after the marker is written and before the rename.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

__all__ = ["FAULT_ENV_VAR", "FAULT_POINTS", "fault_point"]

FAULT_ENV_VAR = "CIRCUIT_ATLAS_FAULT"
"""Environment variable holding the fault rules (test-only; unset in normal use)."""

FAULT_POINTS = {
    "run.locked": "the run holds the store's lock, before it writes the plan",
    "unit.computed": "a unit's rows are computed, before its commit starts",
    "store.staged": "a unit's Parquet files are written to .tmp/, before its marker",
    "store.marked": "a unit's marker is written in .tmp/, before the rename into units/",
    "store.renamed": "a unit is renamed into units/, before units/ is fsynced",
    "unit.committed": "a unit is committed, before its running state is cleared",
    "train.locked": "train holds the suite directory's lock, before it trains",
}
"""The named points and where they are."""

_reached: Counter[str] = Counter()


def fault_point(name: str) -> None:
    """Kill or stall this process here if :data:`FAULT_ENV_VAR` asks for it (test-only).

    Args:
        name: The point's name, a key of :data:`FAULT_POINTS`.
    """
    rules = os.environ.get(FAULT_ENV_VAR)
    if not rules:
        return
    _reached[name] += 1
    for rule in rules.split(";"):
        point, _, rest = rule.strip().partition(":")
        point, _, nth = point.partition("@")
        if point != name or (nth and int(nth) != _reached[name]):
            continue
        action, _, argument = rest.partition(":")
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "sleep":
            time.sleep(float(argument or 1))
        elif action == "until":
            deadline = time.monotonic() + 120
            while not os.path.exists(argument) and time.monotonic() < deadline:
                time.sleep(0.05)
