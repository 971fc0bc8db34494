"""Greater-Than prompts: "The {noun} lasted from the year {XXYY} to the year {XX}" (PAPER.md §2.2).

Source followed: ``data/greater_than_dataset.py`` of curt-tigges/circuits-over-time
(``YearDataset``, ``get_valid_years``, ``get_prob_diff``), itself from Hanna et al.'s
greater-than code. From it we take:

- the 120-noun ``default_nouns`` list (:data:`GT_NOUNS`; the same words as
  ``tasks/greater-than/potential_nouns.txt``), sampled with replacement and not filtered;
- valid years in [1100, 1800): " abcd" must tokenize as [" ab", "cd"]; the first and the last valid
  year of each century are dropped (``get_valid_years``);
- balanced sampling: the i-th example's YY cycles 02, 03, …, 98 and wraps, each year drawn
  uniformly among the valid years with that YY;
- corrupted prompt: the same with the year {XX}01;
- metric ``prob_diff`` (``group_sum``) over the 100 two-digit tokens "00" … "99":
  Σ P(YY' > YY) − Σ P(YY' ≤ YY) at the last prompt token.

What differs: the reference draws with the unseeded ``random`` module; we use
``random.Random(seed)`` (same call order: ``choices`` for the nouns, then one ``randrange`` per
example), so the dataset is deterministic. The single-token checks are tokenizer-agnostic (" ab" and
"cd" must each be one token, and " abcd" must tokenize as exactly those two); for Pythia's tokenizer
they select the same years as the reference's ``convert_ids_to_tokens`` test. Years whose century
does not tokenize " XX01" as [" XX", "01"], and two-digit strings that are not single tokens, are
dropped with a warning.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from circuit_atlas.errors import TaskDataError
from circuit_atlas.tasks._common import (
    encode,
    pad_pairs,
    pad_token_id,
    single_token_ids,
    warn_dropped,
)
from circuit_atlas.tasks.base import TaskDataset

__all__ = ["GT_NOUNS", "GT_TEMPLATE", "GT_YEAR_RANGE", "make_greater_than", "valid_years"]

TASK = "greater-than"

GT_NOUNS: tuple[str, ...] = (
    "abduction", "accord", "affair", "agreement", "appraisal", "assaults", "assessment", "attack",
    "attempts", "campaign", "captivity", "case", "challenge", "chaos", "clash", "collaboration",
    "coma", "competition", "confrontation", "consequence", "conspiracy", "construction",
    "consultation", "contact", "contract", "convention", "cooperation", "custody", "deal",
    "decline", "decrease", "demonstrations", "development", "disagreement", "disorder",
    "dispute", "domination", "dynasty", "effect", "effort", "employment", "endeavor",
    "engagement", "epidemic", "evaluation", "exchange", "existence", "expansion", "expedition",
    "experiments", "fall", "fame", "flights", "friendship", "growth", "hardship", "hostility",
    "illness", "impact", "imprisonment", "improvement", "incarceration", "increase",
    "insurgency", "invasion", "investigation", "journey", "kingdom", "marriage",
    "modernization", "negotiation", "notoriety", "obstruction", "operation", "order",
    "outbreak", "outcome", "overhaul", "patrols", "pilgrimage", "plague", "plan", "practice",
    "process", "program", "progress", "project", "pursuit", "quest", "raids", "reforms",
    "reign", "relationship", "retaliation", "riot", "rise", "rivalry", "romance", "rule",
    "sanctions", "shift", "siege", "slump", "stature", "stint", "strikes", "study", "test",
    "testing", "tests", "therapy", "tour", "tradition", "treaty", "trial", "trip",
    "unemployment", "voyage", "warfare", "work",
)  # fmt: skip
"""The 120 event nouns of ``default_nouns`` (circuits-over-time ``greater_than_dataset.py``)."""

GT_YEAR_RANGE: tuple[int, int] = (1100, 1800)
"""Years considered, ``[start, end)`` (the paper's ``get_valid_years(tokenizer, 1100, 1800)``)."""


GT_TEMPLATE = "The {noun} lasted from the year {year} to the year {century}"
"""The prompt; the clean year is XXYY, the corrupted year XX01, the century XX."""


def _template(noun: str, year: str, century: int) -> str:
    return GT_TEMPLATE.format(noun=noun, year=year, century=century)


def valid_years(
    tokenizer: Any, start: int = GT_YEAR_RANGE[0], end: int = GT_YEAR_RANGE[1]
) -> tuple[list[int], list[str]]:
    """Years in ``[start, end)`` usable in Greater-Than prompts for ``tokenizer``.

    A year abcd is valid when " abcd" tokenizes as exactly [" ab", "cd"] (each of " ab" and "cd"
    a single token) and its century's corrupted year " ab01" as [" ab", "01"]. Then, as in the
    reference, the first and last valid year of each century are dropped.

    Returns:
        ``(years ascending, dropped descriptions)``; the dropped centuries are those whose "01"
        year does not tokenize as two tokens (individual invalid years are expected and not
        listed).
    """
    years = list(range(start, end))
    centuries = sorted({y // 100 for y in years})
    two_digit = single_token_ids(tokenizer, [f"{i:02d}" for i in range(100)])
    century_id = dict(
        zip(centuries, single_token_ids(tokenizer, [f" {c}" for c in centuries]), strict=True)
    )
    full = encode(tokenizer, [f" {y}" for y in years])
    corrupted = dict(zip(centuries, encode(tokenizer, [f" {c}01" for c in centuries]), strict=True))
    dropped = []
    good_century = {}
    for c in centuries:
        want = [century_id[c], two_digit[1]]
        good_century[c] = None not in want and corrupted[c] == want
        if century_id[c] is not None and not good_century[c]:
            dropped.append(f"century {c}xx (' {c}01' does not tokenize as [' {c}', '01'])")
    valid = [
        good_century[y // 100]
        and two_digit[y % 100] is not None
        and ids == [century_id[y // 100], two_digit[y % 100]]
        for y, ids in zip(years, full, strict=True)
    ]
    # Drop the first and last valid year of each century (reference: get_valid_years).
    last_valid, current = None, None
    for i, y in enumerate(years):
        if valid[i]:
            if y // 100 != current:
                current = y // 100
                valid[i] = False
                if last_valid is not None:
                    valid[last_valid] = False
            last_valid = i
    if last_valid is not None:
        valid[last_valid] = False
    return [y for y, v in zip(years, valid, strict=True) if v], dropped


def make_greater_than(
    tokenizer: Any, *, n: int = 200, seed: int = 42, data_dir: object = None
) -> TaskDataset:
    """Build the Greater-Than dataset (PAPER.md §2.2).

    Args:
        tokenizer: Any Hugging Face tokenizer; no BOS is prepended.
        n: Number of prompts (the paper: 200 for circuit finding). Any ``n`` >= 1 is satisfied by
            sampling with replacement.
        seed: Seed of ``random.Random``.
        data_dir: Unused (the nouns are built in); accepted for a uniform builder signature.

    Returns:
        A ``prob_diff`` :class:`TaskDataset`: ``group_tokens`` are the single-token "00" … "99"
        (``k`` <= 100, ascending YY), ``group_signs[i, j]`` is +1 where YY_j > YY_i and −1 where
        YY_j <= YY_i. ``answer`` is the "YY+1" token and ``wrong`` the "YY" token (the boundary of
        the group). ``info`` holds ``years``, ``nouns``, ``group_yy`` (the YY of each group token)
        and ``valid_years``.

    Raises:
        TaskDataError: If no year in [1100, 1800) is valid for ``tokenizer``.
        ValueError: If ``n`` < 1.
    """
    del data_dir
    if n < 1:
        raise ValueError(f"task {TASK!r}: n must be >= 1, got {n}")
    years, dropped = valid_years(tokenizer)
    warn_dropped(TASK, dropped, "corrupted year would not align")
    if not years:
        raise TaskDataError(
            f"task {TASK!r}: no valid years in [{GT_YEAR_RANGE[0]}, {GT_YEAR_RANGE[1]}) for this "
            "tokenizer: a year ' abcd' must tokenize as the two single tokens [' ab', 'cd'] (and "
            "' ab01' as [' ab', '01']), leaving at least three valid years per century"
        )
    two_digit = single_token_ids(tokenizer, [f"{i:02d}" for i in range(100)])
    group_yy = [yy for yy in range(100) if two_digit[yy] is not None]
    group_missing = [f"year token {yy:02d}" for yy in range(100) if two_digit[yy] is None]
    warn_dropped(TASK, group_missing, "not a single token; left out of the probability group")
    dropped += group_missing

    rng = random.Random(seed)
    nouns = rng.choices(GT_NOUNS, k=n)
    by_yy: dict[int, list[int]] = {}
    for y in years:
        by_yy.setdefault(y % 100, []).append(y)
    cycle = [yy for yy in range(2, 99) if yy in by_yy]  # the reference cycles YY = 02 … 98
    if not cycle:
        raise TaskDataError(f"task {TASK!r}: no valid year has YY in 02..98")
    sampled = []
    for i in range(n):
        pool = by_yy[cycle[i % len(cycle)]]
        sampled.append(pool[rng.randrange(len(pool))])

    clean_text = [_template(noun, str(y), y // 100) for noun, y in zip(nouns, sampled, strict=True)]
    corrupted_text = [
        _template(noun, f"{y // 100}01", y // 100) for noun, y in zip(nouns, sampled, strict=True)
    ]
    clean, corrupted = encode(tokenizer, clean_text), encode(tokenizer, corrupted_text)
    for i, (c, k) in enumerate(zip(clean, corrupted, strict=True)):
        if len(c) != len(k):
            raise TaskDataError(
                f"task {TASK!r}: prompt {clean_text[i]!r} has {len(c)} tokens but its corruption "
                f"{corrupted_text[i]!r} has {len(k)}; this tokenizer merges the year with its "
                "context"
            )
    pad_id = pad_token_id(tokenizer)
    clean_t, corrupted_t, lengths = pad_pairs(clean, corrupted, pad_id)
    yy = torch.tensor([y % 100 for y in sampled])
    group = torch.tensor(group_yy)
    signs = torch.where(group[None, :] > yy[:, None], 1.0, -1.0).to(torch.float32)
    answer = [two_digit[y % 100 + 1] for y in sampled]
    return TaskDataset(
        task=TASK,
        clean=clean_t,
        corrupted=corrupted_t,
        lengths=lengths,
        answer=torch.tensor([-1 if a is None else a for a in answer], dtype=torch.int64),
        wrong=torch.tensor([two_digit[y % 100] for y in sampled], dtype=torch.int64),
        metric="prob_diff",
        group_tokens=torch.tensor([two_digit[g] for g in group_yy], dtype=torch.int64),
        group_signs=signs,
        clean_text=tuple(clean_text),
        corrupted_text=tuple(corrupted_text),
        pad_id=pad_id,
        seed=seed,
        dropped=tuple(dropped),
        info={
            "source": "circuits-over-time data/greater_than_dataset.py YearDataset (balanced)",
            "years": tuple(sampled),
            "nouns": tuple(nouns),
            "group_yy": tuple(group_yy),
            "valid_years": tuple(years),
        },
    )
