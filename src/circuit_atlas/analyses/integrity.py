"""Checkpoint integrity across units: distinct checkpoints that hold identical weights.

Every unit records the fingerprint of the weights it analysed (``units.weights_fingerprint``,
defined in :mod:`circuit_atlas.models.integrity`). Two units of different checkpoints — another
step of the same model, or another model (a seed, a size) — with the same fingerprint analysed
the same weights: their results are duplicates, not two points of a training curve. This has been
reported for hub branches of Pythia models (EleutherAI/pythia issues #195 and #205).
:func:`identical_weights` finds them; ``circuit-atlas status`` and the report show its rows.
"""

from __future__ import annotations

import pandas as pd

from circuit_atlas.errors import AnalysisError

__all__ = ["IDENTICAL_WEIGHTS_COLUMNS", "identical_weights"]

IDENTICAL_WEIGHTS_COLUMNS = ("weights_fingerprint", "models", "steps", "checkpoints",
                             "n_checkpoints", "unit_ids", "message")  # fmt: skip
"""Columns of :func:`identical_weights`' frame."""


def _step(value) -> int | None:
    return None if pd.isna(value) else int(value)


def _checkpoint_label(model: str, step: int | None, path) -> str:
    if step is not None:
        return f"{model}@{step}"
    return f"{model} ({path})" if isinstance(path, str) and path else str(model)


def _join(items: list[str]) -> str:
    """``a and b``; ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _message(checkpoints: list[tuple[str, int | None, str]], fingerprint: str) -> str:
    models = sorted({model for model, _, _ in checkpoints})
    steps = [step for _, step, _ in checkpoints]
    if len(models) == 1 and None not in steps:
        what = f"steps {_join([str(s) for s in steps])} of {models[0]}"
    else:
        what = _join([label for _, _, label in checkpoints])
    return f"{what} have identical weights (fingerprint {fingerprint[:12]})"


def identical_weights(units: pd.DataFrame) -> pd.DataFrame:
    """Find groups of distinct checkpoints whose weights fingerprints are equal.

    A checkpoint is a ``(model, step)`` pair (``(model, path)`` when the step is null). Several
    units of one checkpoint (the same checkpoint analysed with other settings) are one
    checkpoint, not a duplicate. Units without a fingerprint (written before schema version 4,
    or whose weight files were not found) are ignored.

    Args:
        units: Rows of the ``units`` table with ``unit_id``, ``model``, ``step`` and
            ``weights_fingerprint`` (``path`` optional). A frame without ``weights_fingerprint``
            (an older store) has no duplicates.

    Returns:
        One row per group of two or more checkpoints with one fingerprint, with the columns of
        :data:`IDENTICAL_WEIGHTS_COLUMNS`: the fingerprint; the models and steps (comma-joined,
        sorted by model then step); ``checkpoints`` (``model@step``, comma-joined); their count;
        the unit ids (comma-joined); and a sentence such as ``steps 2000 and 3000 of pythia-2.8b
        have identical weights (fingerprint 0123456789ab)``. Sorted by model and first step;
        empty when every checkpoint's weights differ.

    Raises:
        AnalysisError: If ``units`` has a fingerprint column but lacks ``unit_id``, ``model`` or
            ``step``.
    """
    empty = pd.DataFrame(columns=list(IDENTICAL_WEIGHTS_COLUMNS))
    if units is None or units.empty or "weights_fingerprint" not in units.columns:
        return empty
    missing = sorted({"unit_id", "model", "step"} - set(units.columns))
    if missing:
        raise AnalysisError(f"identical_weights needs the units columns {missing}")
    known = units[units["weights_fingerprint"].notna()]
    rows = []
    for fingerprint, group in known.groupby("weights_fingerprint", sort=True):
        seen: dict[tuple, tuple[str, int | None, str]] = {}
        unit_ids: list[str] = []
        for row in group.itertuples(index=False):
            step = _step(row.step)
            path = getattr(row, "path", None)
            key = (str(row.model), step if step is not None else path)
            seen.setdefault(key, (str(row.model), step, _checkpoint_label(row.model, step, path)))
            unit_ids.append(str(row.unit_id))
        if len(seen) < 2:
            continue
        checkpoints = sorted(seen.values(), key=lambda c: (c[0], -1 if c[1] is None else c[1]))
        rows.append({
            "weights_fingerprint": fingerprint,
            "models": ", ".join(dict.fromkeys(c[0] for c in checkpoints)),
            "steps": ", ".join("—" if c[1] is None else str(c[1]) for c in checkpoints),
            "checkpoints": ", ".join(c[2] for c in checkpoints),
            "n_checkpoints": len(checkpoints),
            "unit_ids": ", ".join(sorted(set(unit_ids))),
            "message": _message(checkpoints, str(fingerprint)),
            "_order": (checkpoints[0][0], -1 if checkpoints[0][1] is None else checkpoints[0][1]),
        })
    if not rows:
        return empty
    frame = pd.DataFrame(rows).sort_values("_order", kind="stable")
    return frame[list(IDENTICAL_WEIGHTS_COLUMNS)].reset_index(drop=True)
