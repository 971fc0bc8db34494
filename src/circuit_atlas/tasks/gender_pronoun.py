"""Gendered Pronoun prompts: "So {Name} is {predicate}, isn't" (PAPER.md §2.3).

Source: the paper's exact 100-row file ``data/gender-pronoun.csv`` of curt-tigges/circuits-over-time
(``tasks/gender-pronoun/gender-pronoun.csv`` in the data directory), read as
``UniversalPatchingDataset.from_csv`` does: columns ``clean, corrupted, clean_answer_idx,
corrupted_answer_idx``; clean and corrupted differ only in the name (swapped for an
opposite-gender name); the label is [clean answer, corrupted answer] and the metric is the logit
difference logit(clean answer) − logit(corrupted answer) at the last prompt token.

The answer columns hold GPT-NeoX ids (703 = " she", 344 = " he"). For any tokenizer we map them
back to their strings and re-tokenize, so Pythia's tokenizer gets 703/344 back and another
tokenizer gets its own ids (each must be a single token). Rows whose clean and corrupted prompts
tokenize to different lengths are dropped with a warning (the reference asserts they match).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch

from circuit_atlas.data import data_file
from circuit_atlas.errors import TaskDataError
from circuit_atlas.tasks._common import (
    cap_n,
    encode,
    pad_pairs,
    pad_token_id,
    row_order,
    single_token_ids,
    warn_dropped,
)
from circuit_atlas.tasks.base import TaskDataset

__all__ = ["GENDER_PRONOUN_FILE", "NEOX_ANSWER_TEXT", "make_gender_pronoun", "read_rows"]

TASK = "gender-pronoun"

GENDER_PRONOUN_FILE = "tasks/gender-pronoun/gender-pronoun.csv"
"""Path of the dataset inside the data directory."""

NEOX_ANSWER_TEXT: dict[int, str] = {703: " she", 344: " he"}
"""The answer ids of the CSV (GPT-NeoX-20B vocabulary) and the strings they stand for."""

_COLUMNS = ("clean", "corrupted", "clean_answer_idx", "corrupted_answer_idx")


def read_rows(data_dir: str | os.PathLike[str] | None = None) -> tuple[Path, list[dict[str, str]]]:
    """Read the CSV: its path and its rows (as dicts of strings), checking the columns.

    Raises:
        DataNotFoundError: If the file is missing.
        TaskDataError: If a column is missing (the message names the file).
    """
    path = data_file(GENDER_PRONOUN_FILE, data_dir)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise TaskDataError(f"{str(path)!r}: missing column(s) {missing}")
        return path, list(reader)


def make_gender_pronoun(
    tokenizer: Any,
    *,
    n: int = 100,
    seed: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> TaskDataset:
    """Build the Gendered Pronoun dataset (PAPER.md §2.3).

    Args:
        tokenizer: Any Hugging Face tokenizer; no BOS is prepended.
        n: Number of rows (the file has 100; a larger ``n`` is capped with a warning).
        seed: None keeps the file order (the paper's); an int shuffles the rows with
            ``random.Random(seed)`` before truncating to ``n``.
        data_dir: The data directory, searched first (see :func:`circuit_atlas.data.search_path`).

    Returns:
        A ``logit_diff`` :class:`TaskDataset`: ``answer`` is the clean pronoun (" she"/" he" for
        this tokenizer), ``wrong`` the corrupted one. ``info["rows"]`` holds the CSV row number
        (1-based, header excluded) of each example.

    Raises:
        DataNotFoundError: If the CSV is missing.
        TaskDataError: If an answer id is not 703/344, " she" or " he" is not a single token, a
            row is malformed, or no row has matching clean/corrupted lengths.
    """
    csv_path, rows = read_rows(data_dir)
    path = str(csv_path)
    texts = list(NEOX_ANSWER_TEXT.values())
    ids = dict(zip(texts, single_token_ids(tokenizer, texts), strict=True))
    for text, i in ids.items():
        if i is None:
            raise TaskDataError(
                f"task {TASK!r}: the answer {text!r} is not a single token for this tokenizer"
            )

    def answer_id(row_no: int, field: str, value: str) -> int:
        try:
            return ids[NEOX_ANSWER_TEXT[int(value)]]  # type: ignore[return-value]
        except (ValueError, KeyError):
            raise TaskDataError(
                f"{path!r} row {row_no}, field {field!r}: expected a GPT-NeoX answer id in "
                f"{sorted(NEOX_ANSWER_TEXT)}, got {value!r}"
            ) from None

    clean = encode(tokenizer, [r["clean"] for r in rows])
    corrupted = encode(tokenizer, [r["corrupted"] for r in rows])
    kept, dropped = [], []
    for i, (r, c, k) in enumerate(zip(rows, clean, corrupted, strict=True)):
        row_no = i + 1
        if len(c) != len(k) or not c:
            dropped.append(
                f"row {row_no} {r['clean']!r} / {r['corrupted']!r} ({len(c)} vs {len(k)} tokens)"
            )
            continue
        kept.append(
            (
                row_no,
                i,
                answer_id(row_no, "clean_answer_idx", r["clean_answer_idx"]),
                answer_id(row_no, "corrupted_answer_idx", r["corrupted_answer_idx"]),
            )
        )
    warn_dropped(TASK, dropped, "clean and corrupted prompts tokenize to different lengths")
    if not kept:
        raise TaskDataError(
            f"task {TASK!r}: no row of {path!r} has clean and corrupted prompts of the same "
            "token length for this tokenizer"
        )
    n = cap_n(TASK, n, len(kept), "usable rows")
    chosen = [kept[j] for j in row_order(len(kept), seed)[:n]]
    pad_id = pad_token_id(tokenizer)
    clean_t, corrupted_t, lengths = pad_pairs(
        [clean[i] for _, i, _, _ in chosen], [corrupted[i] for _, i, _, _ in chosen], pad_id
    )
    return TaskDataset(
        task=TASK,
        clean=clean_t,
        corrupted=corrupted_t,
        lengths=lengths,
        answer=torch.tensor([a for _, _, a, _ in chosen], dtype=torch.int64),
        wrong=torch.tensor([w for _, _, _, w in chosen], dtype=torch.int64),
        metric="logit_diff",
        clean_text=tuple(rows[i]["clean"] for _, i, _, _ in chosen),
        corrupted_text=tuple(rows[i]["corrupted"] for _, i, _, _ in chosen),
        pad_id=pad_id,
        seed=seed,
        dropped=tuple(dropped),
        info={"source": path, "rows": tuple(row_no for row_no, _, _, _ in chosen)},
    )
