"""What a results store holds against its plan: done, running, failed, pending units and an ETA.

It also flags distinct checkpoints that analysed identical weights
(:func:`circuit_atlas.analyses.identical_weights`).
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from circuit_atlas.analyses.integrity import identical_weights
from circuit_atlas.store import ResultsStore

__all__ = ["StudyStatus", "study_status"]


@dataclass
class StudyStatus:
    """The state of a study's units.

    Attributes:
        study: Study name from the latest plan (None without a plan).
        planned: Units in the latest plan (0 without a plan).
        done: Committed units of the plan (all committed units without a plan).
        running: Units in flight: ``unit_id`` → record (model, step, started_at, pid, host).
        interrupted: Units recorded as running whose process (on this host) is gone.
        failed: ``unit_id`` → record (model, step, error) of units whose last attempt failed.
        pending: Units of the plan neither done, running nor failed.
        per_model: model → ``{"planned", "done", "failed"}``.
        seconds_per_unit: Mean wall-clock seconds of the committed units (None if none).
        eta_seconds: Estimated seconds to finish the remaining units (None if unknown): for each
            model, remaining units × that model's mean seconds per unit (the overall mean for a
            model with no finished unit), divided by the number of units running at once.
        partial: Committed units whose status is ``partial`` (a task could not run).
        driver: The run holding the store's lock, as it recorded itself (pid, host, command,
            since), or None when no run holds it (a record left by a dead process on this host
            is ignored).
        identical_weights: One record per group of distinct checkpoints whose weights
            fingerprints are equal (the rows of :func:`~circuit_atlas.analyses.identical_weights`:
            ``checkpoints``, ``unit_ids``, ``weights_fingerprint``, ``message``, ...).
    """

    study: str | None
    planned: int
    done: int
    running: dict[str, dict] = field(default_factory=dict)
    interrupted: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, dict] = field(default_factory=dict)
    pending: int = 0
    per_model: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds_per_unit: float | None = None
    eta_seconds: float | None = None
    partial: int = 0
    identical_weights: list[dict[str, Any]] = field(default_factory=list)
    driver: dict[str, Any] | None = None


def study_status(store: ResultsStore) -> StudyStatus:
    """Summarise a store against its latest plan (``plan.json``).

    Args:
        store: The results store.

    Returns:
        A :class:`StudyStatus`.
    """
    plan: dict[str, Any] = store.read_plan() or {}
    planned = plan.get("units", [])
    units = store.query("SELECT unit_id, model, step, path, duration_s, status, "
                        "weights_fingerprint FROM units")
    done_ids = set(units["unit_id"])
    state = store.read_state()
    running = {k: v for k, v in state["running"].items() if not v.get("interrupted")}
    interrupted = {k: v for k, v in state["running"].items() if v.get("interrupted")}
    planned_ids = [u["unit_id"] for u in planned]
    failed = {k: v for k, v in state["failed"].items() if k not in done_ids}
    remaining = [u for u in planned if u["unit_id"] not in done_ids]
    per_model: dict[str, dict[str, int]] = {}
    for u in planned:
        row = per_model.setdefault(u["model"], {"planned": 0, "done": 0, "failed": 0})
        row["planned"] += 1
        row["done"] += u["unit_id"] in done_ids
        row["failed"] += u["unit_id"] in failed
    mean = float(units["duration_s"].mean()) if len(units) else None
    by_model = units.groupby("model")["duration_s"].mean().to_dict() if len(units) else {}
    eta = None
    if mean is not None:
        counts = Counter(u["model"] for u in remaining)
        eta = sum(n * by_model.get(m, mean) for m, n in counts.items()) / max(1, len(running))
    done = len(done_ids & set(planned_ids)) if planned else len(done_ids)
    busy = set(running) | set(interrupted) | set(failed)
    return StudyStatus(
        study=plan.get("study"), planned=len(planned), done=done, running=running,
        interrupted=interrupted, failed=failed,
        pending=sum(1 for u in remaining if u["unit_id"] not in busy),
        per_model=per_model, seconds_per_unit=mean, eta_seconds=eta,
        partial=int((units["status"] == "partial").sum()) if len(units) else 0,
        identical_weights=identical_weights(units).to_dict("records"),
        driver=_driver(store),
    )


def _driver(store: ResultsStore) -> dict[str, Any] | None:
    """The lock holder's record, read without touching the lock (status never blocks a run)."""
    from circuit_atlas.lock import read_holder
    from circuit_atlas.store import _pid_alive

    holder = read_holder(store.root / "state" / "driver.json")
    if not holder:
        return None
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0 \
            and not _pid_alive(pid):
        return None  # left by a killed run; its lock died with it
    return holder
