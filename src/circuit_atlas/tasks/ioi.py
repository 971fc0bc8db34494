"""Indirect Object Identification (IOI) prompts, clean and S2→IO corrupted (PAPER.md §2.1).

Source followed: Callum McDougall's ARENA port of Wang et al.'s generator, ``ioi_dataset.py`` (the
version with string flips ``gen_flipped_prompts("ABB->ABA, BAB->BAA")``, which the paper's
``path_patching_cm/ioi_dataset.py`` is a copy of). The ARENA_3.0 repository itself was not in the
search index; the file was read from public copies of it (callummcdougall/SERIMATS_app and derived
repositories that keep its names, templates and random draws unchanged). From it we take, as data:

- the 15 ``BABA_TEMPLATES`` and their ``ABBA`` versions (first ``[B]`` and first ``[A]`` swapped);
  ``prompt_type="mixed"`` uses the first 7 of each (``nb_templates // 2`` with 15 templates),
  shuffled;
- ``PLACES`` (8), ``OBJECTS`` (8) and ``NAMES``. The ARENA list has **109** names (Aaron …
  William), not the 100 names (Michael … Samuel) of Redwood's original ``ioi_dataset.py``; we use
  the ARENA list, assuming the paper's unreadable copy kept it (PAPER.md §2.1 says "100 first
  names" from recollection);
- the order of random draws of ``IOIDataset(prompt_type="mixed", N, seed)`` with
  ``symmetric=False`` and no prefixes: shuffle the templates, then per prompt choose a template,
  three distinct names (the third is unused), a place and an object. With a tokenizer for which
  every name, place and object is a single token (Pythia's is), the prompts are those of
  ``IOIDataset(prompt_type="mixed", N=70, seed=42)`` (checked by replaying its draws).

What differs, on purpose:

- the prompt ends *before* the final name, so the metric is read at END = the last real token
  (``word_idx["end"]`` in the reference); the answer is the IO name token and the wrong answer
  the S name token: logit(IO) − logit(S);
- names, places and objects that are not single tokens (with their leading space) for the given
  tokenizer are dropped with a warning (the reference does no such filtering);
- a prompt whose clean and corrupted tokenizations do not align (same length, differing only at
  S2) is skipped and a new one drawn; with byte-level BPE tokenizers this never happens.

The corruption replaces the second subject mention S2 by the IO name (``ABB->ABA``,
``BAB->BAA``), so the corrupted prompt points at the other name.
"""

from __future__ import annotations

import random
from typing import Any, Literal, NamedTuple

import torch

from circuit_atlas.errors import TaskDataError
from circuit_atlas.tasks._common import (
    encode,
    keep_single_tokens,
    pad_pairs,
    pad_token_id,
    require,
    warn_dropped,
)
from circuit_atlas.tasks.base import TaskDataset

__all__ = [
    "ABBA_TEMPLATES",
    "BABA_TEMPLATES",
    "IOI_NAMES",
    "IOI_OBJECTS",
    "IOI_PLACES",
    "PromptType",
    "make_ioi",
]

TASK = "ioi"

IOI_NAMES: tuple[str, ...] = (
    "Aaron", "Adam", "Alan", "Alex", "Alice", "Amy", "Anderson", "Andre", "Andrew", "Andy",
    "Anna", "Anthony", "Arthur", "Austin", "Blake", "Brandon", "Brian", "Carter", "Charles",
    "Charlie", "Christian", "Christopher", "Clark", "Cole", "Collins", "Connor", "Crew",
    "Crystal", "Daniel", "David", "Dean", "Edward", "Elizabeth", "Emily", "Eric", "Eva", "Ford",
    "Frank", "George", "Georgia", "Graham", "Grant", "Henry", "Ian", "Jack", "Jacob", "Jake",
    "James", "Jamie", "Jane", "Jason", "Jay", "Jennifer", "Jeremy", "Jessica", "John",
    "Jonathan", "Jordan", "Joseph", "Joshua", "Justin", "Kate", "Kelly", "Kevin", "Kyle",
    "Laura", "Leon", "Lewis", "Lisa", "Louis", "Luke", "Madison", "Marco", "Marcus", "Maria",
    "Mark", "Martin", "Mary", "Matthew", "Max", "Michael", "Michelle", "Morgan", "Patrick",
    "Paul", "Peter", "Prince", "Rachel", "Richard", "River", "Robert", "Roman", "Rose", "Ruby",
    "Russell", "Ryan", "Sarah", "Scott", "Sean", "Simon", "Stephen", "Steven", "Sullivan",
    "Taylor", "Thomas", "Tyler", "Victoria", "Warren", "William",
)  # fmt: skip
"""The 109 first names of ARENA's ``ioi_dataset.py`` ``NAMES``, in its order."""

IOI_PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station",
)  # fmt: skip
"""The 8 places of ``PLACES``."""

IOI_OBJECTS: tuple[str, ...] = (
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack",
)  # fmt: skip
"""The 8 objects of ``OBJECTS``."""

BABA_TEMPLATES: tuple[str, ...] = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] "
    "to [A]",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to [A]",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to [A]",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
)
"""The 15 BABA templates: [B] is the subject S, [A] the indirect object IO."""


def _to_abba(template: str) -> str:
    """Swap the first ``[B]`` and the first ``[A]`` (the reference's ABBA construction)."""
    return template.replace("[B]", "[X]", 1).replace("[A]", "[B]", 1).replace("[X]", "[A]", 1)


ABBA_TEMPLATES: tuple[str, ...] = tuple(_to_abba(t) for t in BABA_TEMPLATES)
"""The ABBA versions of :data:`BABA_TEMPLATES` (IO mentioned first)."""

PromptType = Literal["mixed", "ABBA", "BABA"]
"""Template family: ``mixed`` (the paper's) = first 7 BABA + first 7 ABBA, shuffled."""


def _templates(prompt_type: PromptType, rng: random.Random) -> list[str]:
    if prompt_type == "mixed":
        half = len(BABA_TEMPLATES) // 2
        templates = list(BABA_TEMPLATES[:half]) + list(ABBA_TEMPLATES[:half])
        rng.shuffle(templates)
        return templates
    if prompt_type == "ABBA":
        return list(ABBA_TEMPLATES)
    if prompt_type == "BABA":
        return list(BABA_TEMPLATES)
    raise ValueError(f"IOI prompt_type must be 'mixed', 'ABBA' or 'BABA', got {prompt_type!r}")


class _Prompt(NamedTuple):
    clean_text: str
    corrupted_text: str
    io: str
    s: str
    kind: str  # "ABBA" or "BABA"
    clean: list[int]
    corrupted: list[int]
    io_pos: int
    s1_pos: int
    s2_pos: int


def _fill(template: str, io: str, s: str, place: str, obj: str) -> tuple[str, str]:
    """Return the (clean, corrupted) prompts of one template, both ending before the final name.

    The corrupted prompt has the last ``[B]`` (S2) replaced by ``[A]`` (IO).
    """
    prompt = template.removesuffix(" [A]")
    cut = prompt.rindex("[B]")
    corrupted = prompt[:cut] + "[A]" + prompt[cut + 3 :]

    def sub(text: str) -> str:
        text = text.replace("[PLACE]", place).replace("[OBJECT]", obj)
        return text.replace("[A]", io).replace("[B]", s)

    return sub(prompt), sub(corrupted)


def make_ioi(
    tokenizer: Any,
    *,
    n: int = 70,
    seed: int = 42,
    data_dir: object = None,
    prompt_type: PromptType = "mixed",
) -> TaskDataset:
    """Build the IOI dataset (PAPER.md §2.1): ``n`` clean prompts and their S2→IO corruptions.

    Args:
        tokenizer: Any Hugging Face tokenizer; no BOS is prepended.
        n: Number of prompts (the paper: 70). Any ``n`` >= 1 is satisfied by sampling.
        seed: Seed of ``random.Random`` (the paper: 42).
        data_dir: Unused (the word pools are built in); accepted for a uniform builder signature.
        prompt_type: ``mixed`` (the paper's), ``ABBA`` or ``BABA`` (all 15 templates).

    Returns:
        A ``logit_diff`` :class:`TaskDataset` whose ``answer`` is the IO name token and ``wrong``
        the S name token. ``info`` holds per-example token positions ``io_pos``, ``s1_pos``,
        ``s2_pos``, ``end_pos`` (tuples of ints over the whole dataset; ``select`` does not slice
        them), the names ``io_names`` / ``s_names``, the ``template_kind`` (``ABBA``/``BABA``) and
        the ``templates`` used.

    Raises:
        TaskDataError: If fewer than 2 names, or no place or no object, are single tokens for
            ``tokenizer``, or if prompts keep failing to tokenize in alignment.
        ValueError: If ``n`` < 1 or ``prompt_type`` is unknown.
    """
    del data_dir
    if n < 1:
        raise ValueError(f"task {TASK!r}: n must be >= 1, got {n}")
    names, name_ids, dropped_names = keep_single_tokens(
        tokenizer, IOI_NAMES, task=TASK, what="name"
    )
    places, _, dropped_places = keep_single_tokens(tokenizer, IOI_PLACES, task=TASK, what="place")
    objects, _, dropped_objects = keep_single_tokens(
        tokenizer, IOI_OBJECTS, task=TASK, what="object"
    )
    hint = "words must be single tokens with their leading space"
    require(len(names), 2, task=TASK, what="single-token names", hint=hint)
    require(len(places), 1, task=TASK, what="single-token places", hint=hint)
    require(len(objects), 1, task=TASK, what="single-token objects", hint=hint)
    name_id = dict(zip(names, name_ids, strict=True))

    rng = random.Random(seed)
    templates = _templates(prompt_type, rng)
    distinct = min(3, len(names))  # the reference draws 3 distinct names; the third is unused
    rows: list[_Prompt] = []
    skipped: list[str] = []
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 20 * n + 100:
            raise TaskDataError(
                f"task {TASK!r}: {len(skipped)} of {attempts - 1} prompts did not tokenize in "
                f"alignment (clean and corrupted must have the same length and differ only at "
                f"S2); first: {skipped[:3]}"
            )
        template = rng.choice(templates)
        io = s = third = ""
        while len({io, s, third}) < distinct:
            io, s, third = rng.choice(names), rng.choice(names), rng.choice(names)
        place, obj = rng.choice(places), rng.choice(objects)
        clean_text, corrupted_text = _fill(template, io, s, place, obj)
        clean, corrupted = encode(tokenizer, [clean_text, corrupted_text])
        io_id, s_id = name_id[io], name_id[s]
        diff = [i for i, (a, b) in enumerate(zip(clean, corrupted, strict=False)) if a != b]
        if (
            len(clean) != len(corrupted)
            or len(diff) != 1
            or (clean[diff[0]], corrupted[diff[0]]) != (s_id, io_id)
            or io_id not in clean
        ):
            skipped.append(f"prompt {clean_text!r} (clean/corrupted tokens do not align at S2)")
            continue
        kind = "ABBA" if template.index("[A]") < template.index("[B]") else "BABA"
        rows.append(
            _Prompt(
                clean_text,
                corrupted_text,
                io,
                s,
                kind,
                clean,
                corrupted,
                io_pos=clean.index(io_id),
                s1_pos=clean.index(s_id),
                s2_pos=diff[0],
            )
        )
    warn_dropped(TASK, skipped, "tokenization did not align; redrawn")

    pad_id = pad_token_id(tokenizer)
    clean_t, corrupted_t, lengths = pad_pairs(
        [r.clean for r in rows], [r.corrupted for r in rows], pad_id
    )
    return TaskDataset(
        task=TASK,
        clean=clean_t,
        corrupted=corrupted_t,
        lengths=lengths,
        answer=torch.tensor([name_id[r.io] for r in rows], dtype=torch.int64),
        wrong=torch.tensor([name_id[r.s] for r in rows], dtype=torch.int64),
        metric="logit_diff",
        clean_text=tuple(r.clean_text for r in rows),
        corrupted_text=tuple(r.corrupted_text for r in rows),
        pad_id=pad_id,
        seed=seed,
        dropped=tuple(dropped_names + dropped_places + dropped_objects + skipped),
        info={
            "source": f"ARENA ioi_dataset.py IOIDataset(prompt_type={prompt_type!r}), "
            "corruption ABB->ABA, BAB->BAA",
            "prompt_type": prompt_type,
            "templates": tuple(templates),
            "template_kind": tuple(r.kind for r in rows),
            "io_names": tuple(r.io for r in rows),
            "s_names": tuple(r.s for r in rows),
            "io_pos": tuple(r.io_pos for r in rows),
            "s1_pos": tuple(r.s1_pos for r in rows),
            "s2_pos": tuple(r.s2_pos for r in rows),
            "end_pos": tuple(len(r.clean) - 1 for r in rows),
        },
    )
