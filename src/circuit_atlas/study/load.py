"""Loading a study file: parse it, then check it against the registries and the file system.

:func:`load_study` is :func:`~circuit_atlas.study.config.parse_study` (the typed file) followed
by the checks that need the rest of circuit-atlas: task names against the task registry, and
every source's schedule through :func:`~circuit_atlas.study.units.plan_units`. It lives here,
above both, so that ``config`` (the file's types) and ``units`` (planning, which reads those
types) do not import each other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from circuit_atlas.errors import CircuitAtlasError, ConfigError
from circuit_atlas.study.config import StudyConfig, located_error, parse_study
from circuit_atlas.study.units import plan_units
from circuit_atlas.tasks import list_tasks

__all__ = ["load_study"]


def load_study(path: str | os.PathLike[str]) -> StudyConfig:
    """Load a study file and check it against the registries and the file system.

    Beyond :func:`~circuit_atlas.study.config.parse_study`, every task name must be registered,
    every task-schedule key must be one of the study's tasks, and every source's schedule must
    resolve to real checkpoints (for a suite: of the suite directory). The units themselves are
    built by :func:`circuit_atlas.study.units.plan_units`.

    Raises:
        ConfigError: Naming the key and line of the first problem.
    """
    study = parse_study(path)

    def fail(loc: Sequence[int | str], message: str) -> ConfigError:
        return located_error(path, loc, message)

    known = set(list_tasks())
    for i, task in enumerate(study.tasks):
        if task.name not in known:
            raise fail(["tasks", i, "name"], f"unknown task {task.name!r}; known: {sorted(known)}")
    names = {t.name for t in study.tasks}
    for i, source in enumerate(study.models):
        for task in getattr(source, "task_schedules", {}):
            if task not in names:
                raise fail(["models", i, "task_schedules", task],
                           f"task {task!r} is not one of the study's tasks {sorted(names)}")
    try:
        plan_units(study)
    except ConfigError as exc:
        loc = getattr(exc, "loc", None)
        raise (fail(loc, str(exc)) if loc else exc) from None
    except CircuitAtlasError as exc:
        raise fail(getattr(exc, "loc", ["models"]), str(exc)) from None
    return study
