"""Subject–verb agreement prompts from Marvin & Linzen (2018) (PAPER.md §2.4).

Source followed: ``data/sva/create_dataset.py`` and ``data/sva/utils.py``
(``get_singular_and_plural``) of curt-tigges/circuits-over-time, with the 15 condition files
``tasks/sva/ML-*.csv`` and ``tasks/sva/combined_verb_list.csv`` of the data directory:

- in each file, the i-th singular row (``label`` 0) is paired with the i-th plural row (``label``
  1); a pair is kept only if both sentences have the same token length;
- clean = singular / corrupted = plural, and the reverse, so there are 2× pairs; the label is the
  clean subject's number (0 singular, 1 plural);
- the pairs are shuffled and truncated to ``n``;
- metric ``prob_diff`` (``group_sum``) over the verbs of ``combined_verb_list.csv`` whose
  " verb" form is a single token (``strict=False``: a plural form counts even when its singular
  form does not): +1 for verbs agreeing with the clean subject's number, −1 for the others.

What differs: the reference shuffles with an unseeded ``torch.randperm``; we use
``torch.randperm(generator=torch.Generator().manual_seed(seed))``, so the dataset is deterministic.
The reference finds the verbs by scanning the vocabulary for "Ġ"-prefixed tokens; we tokenize
" verb" instead, which works for any tokenizer and is the same set for byte-level BPE.
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
    keep_single_tokens,
    pad_pairs,
    pad_token_id,
    require,
    single_token_ids,
    warn_dropped,
)
from circuit_atlas.tasks.base import TaskDataset

__all__ = ["SVA_CONDITIONS", "SVA_DIR", "VERB_FILE", "make_sva", "read_pairs", "read_verbs"]

TASK = "sva"

SVA_DIR = "tasks/sva"
"""Folder of the condition files and the verb list inside the data directory."""

VERB_FILE = "tasks/sva/combined_verb_list.csv"
"""The singular/plural verb list (columns ``idx, sing, plur, freq``)."""

SVA_CONDITIONS: tuple[str, ...] = (
    "subj_rel_all", "prep_inanim_all", "obj_rel_within_anim_all",
    "obj_rel_no_comp_within_inanim_all", "sent_comp_all", "obj_rel_no_comp_across_inanim_all",
    "obj_rel_within_inanim_all", "obj_rel_no_comp_within_anim_all", "obj_rel_across_anim_all",
    "obj_rel_across_inanim_all", "simple_agrmt_all", "long_vp_coord_all", "prep_anim_all",
    "vp_coord_all", "obj_rel_no_comp_across_anim_all",
)  # fmt: skip
"""The 15 Marvin & Linzen conditions, in the reference's file order (file ``ML-{name}.csv``)."""


def read_pairs(
    data_dir: str | os.PathLike[str] | None = None,
) -> list[tuple[str, int, str, str]]:
    """Read the matched singular/plural pairs of the 15 condition files.

    Returns:
        ``(condition, pair index within the file, singular sentence, plural sentence)`` in the
        reference's file order.

    Raises:
        DataNotFoundError: If a file is missing.
        TaskDataError: If a file lacks the ``sentence``/``label`` columns, has a label other than
            0/1, or has different numbers of singular and plural rows (the message names the file
            and row).
    """
    pairs = []
    for condition in SVA_CONDITIONS:
        path = data_file(f"{SVA_DIR}/ML-{condition}.csv", data_dir)
        singular, plural = [], []
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("sentence", "label") if c not in (reader.fieldnames or ())]
            if missing:
                raise TaskDataError(f"{str(path)!r}: missing column(s) {missing}")
            for row_no, row in enumerate(reader, start=1):
                if row["label"] not in ("0", "1"):
                    raise TaskDataError(
                        f"{str(path)!r} row {row_no}, field 'label': expected 0 or 1, got "
                        f"{row['label']!r}"
                    )
                (singular if row["label"] == "0" else plural).append(row["sentence"])
        if len(singular) != len(plural):
            raise TaskDataError(
                f"{str(path)!r}: {len(singular)} singular rows but {len(plural)} plural rows; "
                "they must pair up"
            )
        pairs += [
            (condition, i, s, p) for i, (s, p) in enumerate(zip(singular, plural, strict=True))
        ]
    return pairs


def read_verbs(data_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], list[str]]:
    """Read ``combined_verb_list.csv``: ``(singular forms, plural forms)``, row-aligned.

    Raises:
        DataNotFoundError: If the file is missing.
        TaskDataError: If a column is missing or a form is both singular and plural.
    """
    path: Path = data_file(VERB_FILE, data_dir)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("sing", "plur") if c not in (reader.fieldnames or ())]
        if missing:
            raise TaskDataError(f"{str(path)!r}: missing column(s) {missing}")
        rows = list(reader)
    singular, plural = [r["sing"] for r in rows], [r["plur"] for r in rows]
    both = set(singular) & set(plural)
    if both:
        raise TaskDataError(f"{str(path)!r}: forms listed as both singular and plural: {both}")
    return singular, plural


def _unique(words: list[str]) -> list[str]:
    return list(dict.fromkeys(words))


def make_sva(
    tokenizer: Any,
    *,
    n: int = 200,
    seed: int = 42,
    data_dir: str | os.PathLike[str] | None = None,
) -> TaskDataset:
    """Build the subject–verb agreement dataset (PAPER.md §2.4).

    Args:
        tokenizer: Any Hugging Face tokenizer; no BOS is prepended.
        n: Number of examples (the paper: 200); capped with a warning at the number of usable
            (clean, corrupted) pairs.
        seed: Seed of the ``torch.Generator`` that shuffles the pairs.
        data_dir: The data directory, searched first (see :func:`circuit_atlas.data.search_path`).

    Returns:
        A ``prob_diff`` :class:`TaskDataset`: ``group_tokens`` are the single-token singular verbs
        then the single-token plural verbs; ``group_signs[i]`` is +1 on the verbs agreeing with
        the clean subject of example i and −1 on the others. ``answer``/``wrong`` are " is"/" are"
        (swapped for a plural clean subject) when both are single tokens, else −1.
        ``info`` holds ``labels`` (0 singular, 1 plural clean subject), ``conditions``,
        ``n_singular_verbs`` and ``pairs_available``.

    Raises:
        DataNotFoundError: If a data file is missing.
        TaskDataError: If no pair has equal token lengths, or no singular or no plural verb is a
            single token.
    """
    pairs = read_pairs(data_dir)
    singular_enc = encode(tokenizer, [p[2] for p in pairs])
    plural_enc = encode(tokenizer, [p[3] for p in pairs])
    keep = [i for i in range(len(pairs)) if len(singular_enc[i]) == len(plural_enc[i])]
    dropped = [
        f"{pairs[i][0]} pair {pairs[i][1]}: {pairs[i][2]!r} / {pairs[i][3]!r} "
        f"({len(singular_enc[i])} vs {len(plural_enc[i])} tokens)"
        for i in sorted(set(range(len(pairs))) - set(keep))
    ]
    warn_dropped(TASK, dropped, "singular and plural prompts tokenize to different lengths")
    require(
        len(keep),
        1,
        task=TASK,
        what="singular/plural pairs of equal token length",
        hint="the two sentences of a pair must tokenize to the same number of tokens",
    )

    singular_words, plural_words = read_verbs(data_dir)
    sing, sing_ids, dropped_sing = keep_single_tokens(
        tokenizer, _unique(singular_words), task=TASK, what="verb"
    )
    plur, plur_ids, dropped_plur = keep_single_tokens(
        tokenizer, _unique(plural_words), task=TASK, what="verb"
    )
    hint = "verbs must be single tokens with their leading space"
    require(len(sing), 1, task=TASK, what="single-token singular verbs", hint=hint)
    require(len(plur), 1, task=TASK, what="single-token plural verbs", hint=hint)

    # Clean = singular / corrupted = plural (label 0), then the reverse (label 1).
    clean = [singular_enc[i] for i in keep] + [plural_enc[i] for i in keep]
    corrupted = [plural_enc[i] for i in keep] + [singular_enc[i] for i in keep]
    clean_text = [pairs[i][2] for i in keep] + [pairs[i][3] for i in keep]
    corrupted_text = [pairs[i][3] for i in keep] + [pairs[i][2] for i in keep]
    conditions = [pairs[i][0] for i in keep] * 2
    labels = torch.tensor([0] * len(keep) + [1] * len(keep))

    n = cap_n(TASK, n, len(clean), "usable pairs (both directions)")
    order = torch.randperm(len(clean), generator=torch.Generator().manual_seed(seed))[:n]
    idx = order.tolist()
    labels = labels[order]

    pad_id = pad_token_id(tokenizer)
    clean_t, corrupted_t, lengths = pad_pairs(
        [clean[i] for i in idx], [corrupted[i] for i in idx], pad_id
    )
    is_singular = torch.tensor([True] * len(sing_ids) + [False] * len(plur_ids))
    agrees = is_singular[None, :] == (labels == 0)[:, None]  # (n, k)
    signs = torch.where(agrees, 1.0, -1.0).to(torch.float32)

    is_id, are_id = single_token_ids(tokenizer, [" is", " are"])
    if is_id is None or are_id is None:
        answer = wrong = torch.full((n,), -1, dtype=torch.int64)
    else:
        answer = torch.where(labels == 0, is_id, are_id).to(torch.int64)
        wrong = torch.where(labels == 0, are_id, is_id).to(torch.int64)
    return TaskDataset(
        task=TASK,
        clean=clean_t,
        corrupted=corrupted_t,
        lengths=lengths,
        answer=answer,
        wrong=wrong,
        metric="prob_diff",
        group_tokens=torch.tensor(sing_ids + plur_ids, dtype=torch.int64),
        group_signs=signs,
        clean_text=tuple(clean_text[i] for i in idx),
        corrupted_text=tuple(corrupted_text[i] for i in idx),
        pad_id=pad_id,
        seed=seed,
        dropped=tuple(dropped + dropped_sing + dropped_plur),
        info={
            "source": "circuits-over-time data/sva/create_dataset.py (Marvin & Linzen 2018)",
            "labels": tuple(labels.tolist()),
            "conditions": tuple(conditions[i] for i in idx),
            "n_singular_verbs": len(sing_ids),
            "pairs_available": len(clean),
        },
    )
