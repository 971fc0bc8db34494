"""The task registry: the paper's four tasks (PAPER.md §2) and custom tasks from a file.

Each task is a :class:`TaskSpec` value in a registry; :func:`make_dataset` builds its
:class:`~circuit_atlas.tasks.base.TaskDataset` for any Hugging Face tokenizer::

    from circuit_atlas.data import load_pythia_tokenizer
    from circuit_atlas.tasks import make_dataset

    data = make_dataset("ioi", load_pythia_tokenizer())           # 70 prompts, seed 42
    gt = make_dataset("greater-than", tokenizer, n=1000, seed=1)
    mine = make_dataset("custom", tokenizer, path="pairs.jsonl")

Builders drop (with a ``logging`` warning, and list in ``TaskDataset.dropped``) the words and rows
that do not fit the tokenizer, and raise :class:`~circuit_atlas.errors.TaskDataError` when too
little remains. :func:`evaluation_vocabulary` lists the words the evaluation prompts use, so that
a training curriculum can avoid them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from circuit_atlas.errors import UnknownNameError
from circuit_atlas.tasks.base import MetricKind, TaskDataset, behaviour_metrics, metric_values
from circuit_atlas.tasks.custom import make_custom
from circuit_atlas.tasks.gender_pronoun import NEOX_ANSWER_TEXT, make_gender_pronoun, read_rows
from circuit_atlas.tasks.greater_than import (
    GT_NOUNS,
    GT_TEMPLATE,
    GT_YEAR_RANGE,
    make_greater_than,
)
from circuit_atlas.tasks.ioi import (
    ABBA_TEMPLATES,
    BABA_TEMPLATES,
    IOI_NAMES,
    IOI_OBJECTS,
    IOI_PLACES,
    make_ioi,
)
from circuit_atlas.tasks.sva import make_sva, read_pairs, read_verbs

__all__ = [
    "GT_NOUNS",
    "IOI_NAMES",
    "IOI_OBJECTS",
    "IOI_PLACES",
    "MetricKind",
    "TaskDataset",
    "TaskSpec",
    "behaviour_metrics",
    "evaluation_templates",
    "evaluation_vocabulary",
    "get_task",
    "list_tasks",
    "make_dataset",
    "metric_values",
    "template_frame",
]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task.

    Attributes:
        name: Registry name (``ioi``, ``greater-than``, ``gender-pronoun``, ``sva``, ``custom``).
        description: One line for listings.
        metric: The metric its datasets report (``custom``: the default, ``logit_diff``).
        default_n: Examples built when ``n`` is not given (None: every row of the file).
        default_seed: Seed used when ``seed`` is not given (None: file order, no shuffling).
        builder: ``builder(tokenizer, *, n, seed, data_dir, **options) -> TaskDataset``.
    """

    name: str
    description: str
    metric: MetricKind
    default_n: int | None
    default_seed: int | None
    builder: Callable[..., TaskDataset]


_REGISTRY: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="ioi",
            description="Indirect Object Identification: logit(IO) - logit(S) at END; "
            "corruption S2->IO (ARENA templates, mixed ABBA/BABA)",
            metric="logit_diff",
            default_n=70,
            default_seed=42,
            builder=make_ioi,
        ),
        TaskSpec(
            name="greater-than",
            description="Greater-Than: 'The {noun} lasted from the year {XXYY} to the year "
            "{XX}'; P(YY' > YY) - P(YY' <= YY); corruption year XX01",
            metric="prob_diff",
            default_n=200,
            default_seed=42,
            builder=make_greater_than,
        ),
        TaskSpec(
            name="gender-pronoun",
            description="Gendered Pronoun: 'So {Name} is {predicate}, isn't' -> she/he; the "
            "paper's 100-row CSV; corruption swaps the name's gender",
            metric="logit_diff",
            default_n=100,
            default_seed=None,
            builder=make_gender_pronoun,
        ),
        TaskSpec(
            name="sva",
            description="Subject-verb agreement (Marvin & Linzen): P(agreeing verbs) - "
            "P(other verbs); corruption flips the subject's number",
            metric="prob_diff",
            default_n=200,
            default_seed=42,
            builder=make_sva,
        ),
        TaskSpec(
            name="custom",
            description="Prompt pairs from a CSV/JSONL file (path=...): clean, corrupted, "
            "answer, wrong_answer[, metric]",
            metric="logit_diff",
            default_n=None,
            default_seed=None,
            builder=make_custom,
        ),
    )
}


def list_tasks() -> list[str]:
    """Names of the registered tasks, in registration order."""
    return list(_REGISTRY)


def get_task(name: str) -> TaskSpec:
    """Return the registered task ``name``.

    Raises:
        UnknownNameError: If ``name`` is not registered (the message lists the valid names).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown task {name!r}; valid tasks: {', '.join(_REGISTRY)}"
        ) from None


def make_dataset(
    name: str,
    tokenizer: Any,
    *,
    n: int | None = None,
    seed: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> TaskDataset:
    """Build the dataset of task ``name`` for ``tokenizer``.

    Args:
        name: A registered task name (see :func:`list_tasks`).
        tokenizer: Any Hugging Face tokenizer (``PreTrainedTokenizerFast``).
        n: Number of examples; None: the task's ``default_n``.
        seed: Seed; None: the task's ``default_seed``.
        data_dir: The data directory, searched first (see :func:`circuit_atlas.data.search_path`).
        **options: Task-specific options (``ioi``: ``prompt_type``; ``custom``: ``path``,
            ``metric``).

    Returns:
        The task's :class:`TaskDataset`.

    Raises:
        UnknownNameError: If ``name`` is not registered.
        TaskDataError: If the task's data is malformed or too little of it fits the tokenizer.
        DataNotFoundError: If a data file is missing.
    """
    spec = get_task(name)
    return spec.builder(
        tokenizer,
        n=spec.default_n if n is None else n,
        seed=spec.default_seed if seed is None else seed,
        data_dir=data_dir,
        **options,
    )


_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_SLOT = re.compile(r"\[\w+\]|\{\w+\}")  # template slots: [PLACE], {noun}


def _words(texts: Any) -> set[str]:
    """Lowercased words of ``texts``, template slots left out."""
    return {w.lower() for t in texts for w in _WORD.findall(_SLOT.sub(" ", t))}


def evaluation_vocabulary(
    data_dir: str | os.PathLike[str] | None = None,
) -> dict[str, frozenset[str]]:
    """Every name, noun, year and verb that the four tasks' evaluation prompts and metrics use.

    A training curriculum built from templated sentences should draw its names, nouns, years and
    verbs from outside these sets, so that evaluation measures generalisation. The sets do not
    depend on a tokenizer (they are the candidates before single-token filtering).

    Args:
        data_dir: The data directory (the Gendered Pronoun and SVA words come from its files).

    Returns:
        ``names``: IOI names and Gendered Pronoun names (case kept);
        ``female_names`` / ``male_names``: the Gendered Pronoun names whose clean answer is
        " she" / " he" (a subset of ``names``);
        ``places`` / ``objects``: IOI places and objects;
        ``nouns``: the Greater-Than event nouns;
        ``years``: every Greater-Than year "1100" … "1799" (and so the centuries "11" … "17");
        ``verbs``: every singular and plural form of the SVA verb list (the metric's verbs);
        ``sva_nouns``: the nouns of the SVA prompts (the words after "the");
        ``words``: every word, lowercased, of every evaluation prompt template and data row of
        the four tasks, the answers included (a superset of the sets above, lowercased).

    Raises:
        DataNotFoundError: If the data files are missing.
    """
    _, pronoun_rows = read_rows(data_dir)
    pronoun_texts = [r[c] for r in pronoun_rows for c in ("clean", "corrupted")]
    pronoun_names = {m.group(1) for t in pronoun_texts for m in [re.match(r"So (\w+) is", t)] if m}
    sva_texts = [s for _, _, singular, plural in read_pairs(data_dir) for s in (singular, plural)]
    sva_nouns = {
        b.lower()
        for t in sva_texts
        for a, b in zip(t.split(), t.split()[1:], strict=False)
        if a.lower() == "the"
    }
    singular, plural = read_verbs(data_dir)
    start, end = GT_YEAR_RANGE
    years = {str(y) for y in range(start, end)}
    names = set(IOI_NAMES) | pronoun_names
    clean_pronouns = [  # (name, " she" | " he") of every clean prompt
        (m.group(1), NEOX_ANSWER_TEXT.get(int(r["clean_answer_idx"])))
        for r in pronoun_rows
        for m in [re.match(r"So (\w+) is", r["clean"])]
        if m
    ]
    female = {name for name, pronoun in clean_pronouns if pronoun == " she"}
    male = {name for name, pronoun in clean_pronouns if pronoun == " he"}
    words = (
        _words(BABA_TEMPLATES + (GT_TEMPLATE,))
        | _words(pronoun_texts + list(NEOX_ANSWER_TEXT.values()))
        | _words(sva_texts)
        | {w.lower() for w in names | set(IOI_PLACES) | set(IOI_OBJECTS) | set(GT_NOUNS)}
        | {w.lower() for w in singular + plural}
    )
    return {
        "names": frozenset(names),
        "female_names": frozenset(female),
        "male_names": frozenset(male),
        "places": frozenset(IOI_PLACES),
        "objects": frozenset(IOI_OBJECTS),
        "nouns": frozenset(GT_NOUNS),
        "years": frozenset(years),
        "verbs": frozenset(singular) | frozenset(plural),
        "sva_nouns": frozenset(sva_nouns),
        "words": frozenset(words),
    }


GENDER_PRONOUN_TEMPLATE = "So {name} is {predicate}, isn't"
"""The Gendered Pronoun prompt frame of the paper's CSV (every row follows it)."""


def evaluation_templates() -> dict[str, tuple[str, ...]]:
    """The prompt templates of the evaluation, per task (slots as ``[X]`` or ``{x}``).

    A training curriculum must hold these out (:mod:`circuit_atlas.training.curriculum` checks
    that none of its templates contains one, slots and punctuation aside). SVA has no templates
    of its own here: its prompts are the rows of Marvin & Linzen's files, checked as strings.

    Returns:
        ``ioi``: the 15 BABA and 15 ABBA templates; ``greater-than``: the prompt;
        ``gender-pronoun``: the CSV's frame.
    """
    return {
        "ioi": BABA_TEMPLATES + ABBA_TEMPLATES,
        "greater-than": (GT_TEMPLATE,),
        "gender-pronoun": (GENDER_PRONOUN_TEMPLATE,),
    }


def template_frame(template: str) -> tuple[str, ...]:
    """A template as lowercased words with every slot as ``"<slot>"`` (punctuation dropped).

    ``"Then, [B] and [A] went"`` → ``("then", "<slot>", "and", "<slot>", "went")``; used to
    compare templates whatever their slot names and punctuation.
    """
    marked = _SLOT.sub(" SLOTMARK ", template)
    return tuple("<slot>" if w == "SLOTMARK" else w.lower() for w in _WORD.findall(marked))
