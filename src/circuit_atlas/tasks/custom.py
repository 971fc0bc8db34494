"""Custom tasks from a CSV or JSONL file of clean/corrupted prompt pairs.

Each row (a CSV row under a header, or one JSON object per line) has the fields:

- ``clean``: the clean prompt; the metric is read at its last token;
- ``corrupted``: the corrupted prompt; it must have the same token length as ``clean``;
- ``answer``: the correct next token on the clean prompt, as a string that is a single token
  (write the leading space when the answer follows a word: ``" Mary"``);
- ``wrong_answer``: the competing token (the correct answer on the corrupted prompt), a single
  token too, different from ``answer``;
- ``metric`` (optional): ``logit_diff`` (default) or ``prob_diff``; every row must agree with the
  others and with the ``metric`` argument when one is given.

With ``logit_diff`` the metric is logit(answer) − logit(wrong_answer); with ``prob_diff`` it is
P(answer) − P(wrong_answer) (a group of all answer tokens, signed +1 for the row's answer and −1
for its wrong answer). Every problem raises :class:`~circuit_atlas.errors.TaskDataError` naming the
file, the row (1-based data row; the CSV header is not counted) and the field.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, get_args

import torch

from circuit_atlas.errors import DataNotFoundError, TaskDataError
from circuit_atlas.tasks._common import (
    cap_n,
    encode,
    pad_pairs,
    pad_token_id,
    row_order,
    single_token_ids,
)
from circuit_atlas.tasks.base import MetricKind, TaskDataset

__all__ = ["CUSTOM_FIELDS", "make_custom", "read_custom_rows"]

TASK = "custom"

CUSTOM_FIELDS: tuple[str, ...] = ("clean", "corrupted", "answer", "wrong_answer")
"""Required fields of every row; ``metric`` is optional."""

_METRICS: tuple[str, ...] = get_args(MetricKind)


def read_custom_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read the rows of a ``.csv`` or ``.jsonl`` (``.json`` lines) file, checking the fields.

    Returns:
        One dict per data row with at least the :data:`CUSTOM_FIELDS`, values as strings.

    Raises:
        DataNotFoundError: If the file does not exist.
        TaskDataError: If the extension is unknown, the file is not UTF-8 (names the line and
            byte), has no rows, a line is not a JSON object, or a required field is missing or
            not a string.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"custom task file {str(path)!r} does not exist")
    where = repr(str(path))
    suffix = path.suffix.lower()
    rows: list[dict[str, Any]] = []
    if suffix not in (".csv", ".jsonl", ".json", ".ndjson"):
        raise TaskDataError(f"{where}: unknown custom task format {suffix!r}; use .csv or .jsonl")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise TaskDataError(
            f"{where} line {line}: byte {raw[e.start]:#04x} (offset {e.start}) is not UTF-8; "
            "save the file as UTF-8"
        ) from None
    if suffix == ".csv":
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CUSTOM_FIELDS if c not in (reader.fieldnames or ())]
            if missing:
                raise TaskDataError(
                    f"{where}: missing column(s) {missing}; the header must name "
                    f"{list(CUSTOM_FIELDS)} (and optionally 'metric')"
                )
            rows = list(reader)
    else:
        with io.StringIO(text) as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TaskDataError(
                        f"{where} row {len(rows) + 1} (line {line_no}): not valid JSON ({e.msg})"
                    ) from None
                if not isinstance(obj, dict):
                    raise TaskDataError(
                        f"{where} row {len(rows) + 1} (line {line_no}): expected a JSON object, "
                        f"got {type(obj).__name__}"
                    )
                rows.append(obj)
    if not rows:
        raise TaskDataError(f"{where}: no rows")
    for row_no, row in enumerate(rows, start=1):
        for field in CUSTOM_FIELDS + ("metric",):
            value = row.get(field)
            if field == "metric" and value in (None, ""):
                continue
            if value is None:
                raise TaskDataError(f"{where} row {row_no}: missing field {field!r}")
            if not isinstance(value, str):
                raise TaskDataError(
                    f"{where} row {row_no}, field {field!r}: expected a string, got "
                    f"{type(value).__name__} {value!r}"
                )
    return rows


def make_custom(
    tokenizer: Any,
    *,
    path: str | os.PathLike[str] | None = None,
    n: int | None = None,
    seed: int | None = None,
    data_dir: object = None,
    metric: MetricKind | None = None,
) -> TaskDataset:
    """Build a task from a CSV/JSONL file of prompt pairs (see the module docstring).

    Args:
        tokenizer: Any Hugging Face tokenizer; no BOS is prepended.
        path: The ``.csv`` or ``.jsonl`` file.
        n: Number of rows to use (None: all; more than the file has is capped with a warning).
        seed: None keeps the file order; an int shuffles the rows with ``random.Random(seed)``
            before truncating to ``n``.
        data_dir: Unused; accepted for a uniform builder signature.
        metric: ``logit_diff`` or ``prob_diff``; rows that carry a ``metric`` field must agree
            with it. None: the rows' metric, else ``logit_diff``.

    Returns:
        A :class:`TaskDataset` named ``custom`` with ``info["source"]`` the file and
        ``info["rows"]`` the 1-based row number of each example.

    Raises:
        DataNotFoundError: If the file does not exist.
        TaskDataError: For any invalid row: the message names the file, the row and the field
            (a multi-token or unknown-token answer, equal answer and wrong answer, clean and
            corrupted prompts of different token lengths, an empty prompt, an unknown or
            inconsistent metric).
    """
    del data_dir
    if path is None:
        raise TaskDataError("task 'custom' needs path= (a .csv or .jsonl file of prompt pairs)")
    rows = read_custom_rows(path)
    where = repr(str(path))

    chosen_metric: str | None = metric
    if chosen_metric is not None and chosen_metric not in _METRICS:
        raise TaskDataError(f"custom task metric must be one of {list(_METRICS)}, got {metric!r}")
    for row_no, row in enumerate(rows, start=1):
        row_metric = row.get("metric") or None
        if row_metric is None:
            continue
        if row_metric not in _METRICS:
            raise TaskDataError(
                f"{where} row {row_no}, field 'metric': must be one of {list(_METRICS)}, got "
                f"{row_metric!r}"
            )
        if chosen_metric is not None and row_metric != chosen_metric:
            raise TaskDataError(
                f"{where} row {row_no}, field 'metric': {row_metric!r} disagrees with "
                f"{chosen_metric!r} (one metric per task)"
            )
        chosen_metric = row_metric
    kind: MetricKind = "prob_diff" if chosen_metric == "prob_diff" else "logit_diff"

    clean = encode(tokenizer, [r["clean"] for r in rows])
    corrupted = encode(tokenizer, [r["corrupted"] for r in rows])
    answers = single_token_ids(tokenizer, [r["answer"] for r in rows])
    wrongs = single_token_ids(tokenizer, [r["wrong_answer"] for r in rows])
    for row_no, (row, c, k, a, w) in enumerate(
        zip(rows, clean, corrupted, answers, wrongs, strict=True), start=1
    ):
        for field, ids in (("clean", c), ("corrupted", k)):
            if not ids:
                raise TaskDataError(f"{where} row {row_no}, field {field!r}: empty prompt")
        if len(c) != len(k):
            raise TaskDataError(
                f"{where} row {row_no}, fields 'clean'/'corrupted': clean has {len(c)} tokens but "
                f"corrupted has {len(k)}; they must have the same token length"
            )
        for field, tok_id in (("answer", a), ("wrong_answer", w)):
            if tok_id is None:
                pieces = encode(tokenizer, [row[field]])[0]
                raise TaskDataError(
                    f"{where} row {row_no}, field {field!r}: {row[field]!r} is not a single "
                    f"known token for this tokenizer (it is {len(pieces)} tokens: {pieces})"
                )
        if a == w:
            raise TaskDataError(
                f"{where} row {row_no}, fields 'answer'/'wrong_answer': both are the token "
                f"{row['answer']!r}"
            )

    n = cap_n(TASK, len(rows) if n is None else n, len(rows), "rows in the file")
    idx = row_order(len(rows), seed)[:n]
    pad_id = pad_token_id(tokenizer)
    clean_t, corrupted_t, lengths = pad_pairs(
        [clean[i] for i in idx], [corrupted[i] for i in idx], pad_id
    )
    answer = torch.tensor([answers[i] for i in idx], dtype=torch.int64)
    wrong = torch.tensor([wrongs[i] for i in idx], dtype=torch.int64)
    group_tokens = group_signs = None
    if kind == "prob_diff":
        group_tokens = torch.unique(torch.cat([answer, wrong]))  # sorted
        group_signs = (group_tokens[None, :] == answer[:, None]).float() - (
            group_tokens[None, :] == wrong[:, None]
        ).float()
    return TaskDataset(
        task=TASK,
        clean=clean_t,
        corrupted=corrupted_t,
        lengths=lengths,
        answer=answer,
        wrong=wrong,
        metric=kind,
        group_tokens=group_tokens,
        group_signs=group_signs,
        clean_text=tuple(rows[i]["clean"] for i in idx),
        corrupted_text=tuple(rows[i]["corrupted"] for i in idx),
        pad_id=pad_id,
        seed=seed,
        info={"source": str(path), "rows": tuple(i + 1 for i in idx)},
    )
