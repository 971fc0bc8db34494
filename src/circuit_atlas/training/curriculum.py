"""A curriculum of templated task sentences, mixed into the corpus stream (issue 5, part 4).

Models of a few hundred thousand parameters trained for minutes on plain English rarely learn the
paper's tasks. The curriculum mixes in short templated sentences of the same *kind* as the
evaluation prompts — IOI stories, year ranges, subject–verb agreement, name-is-…-isn't-pronoun —
built **only from names, places, objects, nouns, years, verbs and predicate words that the
evaluation never uses**: every slot filler below is checked against
:func:`circuit_atlas.tasks.evaluation_vocabulary` (all of its sets, case-insensitively) and
dropped when it appears there. What the curriculum shares with the evaluation is the sentence
frame (function words such as "the", "and", "to", "gave", "lasted from the year", "isn't") — the
task's form, not its vocabulary — so the evaluation measures whether what was learned on other
words transfers to the evaluation's words.

Notable choices, all recorded in the suite manifest:

* Greater-Than sentences use every century 01–99 except the evaluation's 11–17 (years such as
  0512, 1893 or 4527; the evaluation uses 1100–1799), so that "a later year" is learned
  independently of the century token and the evaluation's centuries are held out.
* SVA sentences use verbs outside the evaluation's 1,950-pair verb list (barks/bark, …), so the
  SVA metric, read on the list's verbs, measures transfer to unseen verbs.
* Gendered-pronoun sentences teach the "isn't she/he" frame on other names; the gender of the
  evaluation's names can only come from the corpus.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from circuit_atlas.errors import ConfigError, UnknownNameError
from circuit_atlas.training.config import SHAREABLE, CurriculumConfig

__all__ = [
    "CURRICULA",
    "CurriculumSampler",
    "CurriculumTask",
    "CurriculumVocabulary",
    "build_vocabulary",
    "held_out_violations",
    "text_templates",
]

_EXEMPT = frozenset({"a", "an", "the"})
"""Articles inside predicate fillers that are not checked against the evaluation vocabulary."""

_FEMALE = (
    "Olivia", "Sophia", "Hannah", "Chloe", "Grace", "Zoe", "Lucy", "Ella", "Megan", "Abigail",
    "Natalie", "Hazel", "Violet", "Stella", "Nora", "Helen", "Ruth", "Alison", "Diana", "Fiona",
    "Gloria", "Irene", "Joan", "Linda", "Nancy", "Nina", "Patricia", "Rebecca", "Sandra", "Tina",
    "Wendy", "Ellen", "Molly", "Emma", "Martha", "Agnes", "Edith", "Esther", "Doris", "Betty",
    "Nicole", "Heather", "Amanda", "Melissa", "Angela", "Brenda", "Donna", "Sharon", "Barbara",
    "Margaret", "Dorothy", "Catherine", "Janet", "Lucia", "Paula", "Sylvia", "Vera", "Rita",
)  # fmt: skip
_MALE = (
    "Oliver", "Harry", "Oscar", "Leo", "Noah", "Ethan", "Liam", "Owen", "Gavin", "Hugo", "Felix",
    "Isaac", "Caleb", "Jesse", "Derek", "Dennis", "Edgar", "Albert", "Ralph", "Roger", "Gordon",
    "Howard", "Harold", "Walter", "Arnold", "Victor", "Vincent", "Philip", "Stanley", "Bruce",
    "Keith", "Larry", "Gerald", "Douglas", "Raymond", "Bernard", "Eugene", "Lawrence", "Nathan",
    "Ronald", "Donald", "Kenneth", "Timothy", "Jeffrey", "Gregory", "Samuel", "Benjamin", "Tom",
    "Fred", "Hans", "Ivan", "Otto", "Rudolph", "Simeon", "Wilbur", "Herbert", "Alfred", "Ernest",
)  # fmt: skip
_PLACES = (
    "park", "beach", "library", "market", "church", "bank", "farm", "museum", "theatre", "cafe",
    "airport", "bakery", "zoo", "lake", "castle", "village", "harbour", "stadium", "bridge",
    "cinema", "kitchen", "hotel", "temple", "forest", "island", "valley", "mountain", "pub",
)  # fmt: skip
_OBJECTS = (
    "letter", "pen", "cake", "flower", "hat", "coin", "map", "key", "cup", "toy", "apple",
    "shirt", "ticket", "photo", "candle", "blanket", "knife", "spoon", "wallet", "umbrella",
    "bottle", "box", "scarf", "glove", "pencil", "basket", "lamp", "radio",
)  # fmt: skip
_EVENT_NOUNS = (
    "festival", "drought", "famine", "tournament", "exhibition", "strike", "rebellion",
    "revolution", "crisis", "boom", "recession", "ceremony", "celebration", "migration", "flood",
    "war", "battle", "exile", "truce", "occupation", "blockade", "revival", "shortage",
    "depression", "plague", "scandal", "feud", "debate", "boycott", "project", "mission", "tour",
    "season", "era", "council", "conference", "summit", "famine", "drought", "voyage", "dispute",
    "regime", "presidency", "tenure", "career", "apprenticeship", "residency", "partnership",
    "alliance", "embargo", "heatwave", "winter", "summer", "lockdown", "quarantine", "ceasefire",
    "standoff", "uprising", "mutiny", "coup", "protest", "parade", "fair", "carnival", "expo",
    "championship", "league", "concert", "opera", "hearing", "inquiry", "audit", "census",
    "excavation", "exploration", "colonization", "settlement", "reconstruction", "renovation",
    "restoration", "voyage", "drought", "monarchy", "republic", "empire", "caliphate", "papacy",
    "boom", "slump", "shutdown", "blackout", "fever", "craze", "movement", "schism", "exodus",
)  # fmt: skip
_SVA_NOUNS = (
    ("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("horse", "horses"),
    ("rabbit", "rabbits"), ("monkey", "monkeys"), ("tiger", "tigers"), ("lion", "lions"),
    ("duck", "ducks"), ("goat", "goats"), ("boy", "boys"), ("girl", "girls"),
    ("nurse", "nurses"), ("doctor", "doctors"), ("lawyer", "lawyers"), ("student", "students"),
    ("soldier", "soldiers"), ("sailor", "sailors"), ("king", "kings"), ("queen", "queens"),
    ("baker", "bakers"), ("clerk", "clerks"), ("judge", "judges"), ("kettle", "kettles"),
    ("clock", "clocks"), ("engine", "engines"), ("pipe", "pipes"), ("candle", "candles"),
    ("window", "windows"), ("puppy", "puppies"), ("wolf", "wolves"), ("child", "children"),
)  # fmt: skip
_SVA_VERBS = (
    ("barks", "bark"), ("howls", "howl"), ("purrs", "purr"), ("chirps", "chirp"),
    ("sneezes", "sneeze"), ("yawns", "yawn"), ("giggles", "giggle"), ("snores", "snore"),
    ("whistles", "whistle"), ("winks", "wink"), ("nods", "nod"), ("frowns", "frown"),
    ("shrugs", "shrug"), ("waves", "wave"), ("glows", "glow"), ("sparkles", "sparkle"),
    ("rusts", "rust"), ("leaks", "leak"), ("drips", "drip"), ("squeaks", "squeak"),
    ("growls", "growl"), ("hops", "hop"), ("dives", "dive"), ("skates", "skate"),
    ("bakes", "bake"), ("knits", "knit"), ("sews", "sew"), ("hikes", "hike"), ("jogs", "jog"),
    ("sails", "sail"), ("surfs", "surf"), ("wakes", "wake"), ("smells", "smell"),
)  # fmt: skip
_PREDICATES = (
    "a brilliant singer", "a gentle soul", "a clever student", "a loyal companion",
    "a skilled painter", "an honest worker", "a cheerful neighbour", "a strong swimmer",
    "a calm leader", "a talented musician", "a kind host", "a brave climber",
    "a careful planner", "an excellent baker", "a quiet reader", "a generous donor",
    "a fast runner", "a proud owner", "a wise judge", "a patient listener",
)  # fmt: skip
_CENTURIES = tuple(range(1, 100))

_MIN_POOL = 4

_GT_MAX_SPAN = 99
"""Longest Greater-Than span in years (99: any later year of the same century). Spans of at
most 20 years were tried and made the evaluation metric transfer worse, not better."""


@dataclass(frozen=True)
class CurriculumVocabulary:
    """Slot fillers of the curriculum, all disjoint from the evaluation vocabulary.

    Attributes:
        female_names / male_names: First names (gendered pronoun, IOI).
        places / objects: IOI places and objects.
        event_nouns: Greater-Than event nouns.
        centuries: Greater-Than centuries (the YY of ``CCYY``).
        sva_nouns: ``(singular, plural)`` subject nouns.
        sva_verbs: ``(singular, plural)`` verb forms.
        predicates: Gendered-pronoun predicates ("a brilliant singer").
        removed: Candidates dropped because the evaluation uses them (``"kind 'word'"``).
        shared: Evaluation words the curriculum uses on purpose, by set (``{"names": [...]}``;
            empty when :attr:`CurriculumConfig.shared` is).
        ioi_names: Names of IOI sentences (both gendered pools, plus every shared evaluation
            name); empty means ``female_names + male_names``.
    """

    female_names: tuple[str, ...]
    male_names: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    event_nouns: tuple[str, ...]
    centuries: tuple[int, ...]
    sva_nouns: tuple[tuple[str, str], ...]
    sva_verbs: tuple[tuple[str, str], ...]
    predicates: tuple[str, ...]
    removed: tuple[str, ...] = field(default=())
    shared: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ioi_names: tuple[str, ...] = ()

    @property
    def names_for_ioi(self) -> tuple[str, ...]:
        """The IOI name pool (:attr:`ioi_names`, else both gendered pools)."""
        return self.ioi_names or self.female_names + self.male_names

    def words(self) -> list[str]:
        """Every single word the curriculum puts into a slot (predicate words included)."""
        out = [*self.female_names, *self.male_names, *self.names_for_ioi]
        out += [*self.places, *self.objects]
        out += list(self.event_nouns)
        out += [w for pair in self.sva_nouns + self.sva_verbs for w in pair]
        out += [w for p in self.predicates for w in p.split()]
        return list(dict.fromkeys(out))

    def required_strings(self) -> list[str]:
        """Strings a suite tokenizer should keep as single tokens.

        Each word with its leading space, the pronouns, and the century tokens (``" 19"``).
        """
        centuries = [f" {c:02d}" for c in self.centuries]
        return [" " + w for w in self.words()] + [" she", " he"] + centuries

    def to_dict(self) -> dict[str, Any]:
        """Manifest entry: the pools and what was removed."""
        return {
            "female_names": list(self.female_names),
            "male_names": list(self.male_names),
            "places": list(self.places),
            "objects": list(self.objects),
            "event_nouns": list(self.event_nouns),
            "centuries": list(self.centuries),
            "sva_nouns": [list(p) for p in self.sva_nouns],
            "sva_verbs": [list(p) for p in self.sva_verbs],
            "predicates": list(self.predicates),
            "ioi_names": list(self.names_for_ioi),
            "removed_because_evaluation_uses_them": list(self.removed),
            "shared_with_evaluation": {k: list(v) for k, v in self.shared.items()},
        }


def build_vocabulary(
    evaluation: Mapping[str, Iterable[str]], shared: Iterable[str] = ()
) -> CurriculumVocabulary:
    """Build the curriculum's pools, removing everything the evaluation uses but ``shared``.

    Args:
        evaluation: The output of :func:`circuit_atlas.tasks.evaluation_vocabulary` (every set
            is used; comparison is case-insensitive; ``years`` removes whole centuries).
        shared: Evaluation sets the curriculum may use (:data:`SHAREABLE`): ``names`` adds every
            evaluation name to the IOI pool and the Gendered Pronoun names to the pool of their
            gender; ``places`` / ``objects`` add the IOI places / objects. Words of a shared set
            are not removed from the other pools either.

    Returns:
        The :class:`CurriculumVocabulary`.

    Raises:
        ConfigError: If a pool keeps fewer than 4 entries (the message names the pool), or a
            shared set is not shareable.
    """
    shared = tuple(dict.fromkeys(shared))
    bad = [k for k in shared if k not in SHAREABLE]
    if bad:
        raise ConfigError(f"cannot share evaluation set(s) {bad}; shareable: {list(SHAREABLE)}")
    allowed = {w.lower() for k in shared for w in evaluation.get(k, ())}
    banned = {w.lower() for words in evaluation.values() for w in words} - allowed
    eval_centuries = {int(y) // 100 for y in evaluation.get("years", ()) if str(y).isdigit()}
    removed: list[str] = []

    def keep(kind: str, items: Iterable[Any], words_of: Callable[[Any], list[str]]) -> tuple:
        kept = []
        for item in dict.fromkeys(items):
            clash = [w for w in words_of(item) if w.lower() in banned and w not in _EXEMPT]
            if clash:
                removed.append(f"{kind} {item!r}")
            else:
                kept.append(item)
        if len(kept) < _MIN_POOL:
            raise ConfigError(
                f"curriculum pool {kind!r} keeps only {len(kept)} entries after removing the "
                f"evaluation vocabulary; need {_MIN_POOL}"
            )
        return tuple(kept)

    one = lambda w: [w]  # noqa: E731
    centuries = tuple(c for c in _CENTURIES if c not in eval_centuries)
    removed += [f"century {c}" for c in _CENTURIES if c in eval_centuries]
    if not centuries:
        raise ConfigError("every curriculum century is used by the evaluation years")
    female = keep("female name", _FEMALE, one)
    male = keep("male name", _MALE, one)
    places = keep("place", _PLACES, one)
    objects = keep("object", _OBJECTS, one)
    shared_words: dict[str, tuple[str, ...]] = {}
    ioi_names: tuple[str, ...] = ()
    if "names" in shared:
        eval_female = tuple(sorted(set(evaluation.get("female_names", ())) - set(female)))
        eval_male = tuple(sorted(set(evaluation.get("male_names", ())) - set(male)))
        female, male = female + eval_female, male + eval_male
        eval_names = tuple(sorted(set(evaluation.get("names", ()))))
        ioi_names = tuple(dict.fromkeys(female + male + eval_names))
        shared_words["names"] = eval_names
    if "places" in shared:
        shared_words["places"] = tuple(sorted(evaluation.get("places", ())))
        places = tuple(dict.fromkeys(places + shared_words["places"]))
    if "objects" in shared:
        shared_words["objects"] = tuple(sorted(evaluation.get("objects", ())))
        objects = tuple(dict.fromkeys(objects + shared_words["objects"]))
    return CurriculumVocabulary(
        female_names=female,
        male_names=male,
        places=places,
        objects=objects,
        event_nouns=keep("event noun", _EVENT_NOUNS, one),
        centuries=centuries,
        sva_nouns=keep("sva noun", _SVA_NOUNS, list),
        sva_verbs=keep("sva verb", _SVA_VERBS, list),
        predicates=keep("predicate", _PREDICATES, str.split),
        removed=tuple(removed),
        shared=shared_words,
        ioi_names=ioi_names,
    )


# --- one generator per task --------------------------------------------------------------------

IOI_TEMPLATES = (
    "Today {B} and {A} sat in the {PLACE}. {B} gave the {OBJECT} to {A}.",
    "When {B} and {A} reached the {PLACE}, {B} passed the {OBJECT} to {A}.",
    "Once {B} met {A} at the {PLACE}, and {B} handed a {OBJECT} to {A}.",
    "Later, {B} and {A} walked to the {PLACE}. {B} offered a {OBJECT} to {A}.",
    "At the {PLACE}, {B} and {A} talked for hours. Then {B} said goodbye to {A}.",
    "Soon {B} and {A} found a {OBJECT} near the {PLACE}. {B} gave it to {A}.",
    "Before {B} and {A} left the {PLACE}, {B} threw the {OBJECT} to {A}.",
    "Yesterday {B} and {A} cleaned the {PLACE}, and {B} brought a {OBJECT} to {A}.",
    "While {B} and {A} waited at the {PLACE}, {B} showed the {OBJECT} to {A}.",
    "Last week {B} visited the {PLACE} with {A}. There {B} gave a {OBJECT} to {A}.",
)
"""IOI stories: {A} is the indirect object, {B} the subject; ABBA order swaps the first two.
None contains an evaluation template (checked by :func:`held_out_violations`)."""

GT_TEMPLATES = (
    "The {NOUN} went on from the year {START} to the year {END}.",
    "The {NOUN} began in {START} and ended in {END}.",
    "From {START} to {END}, the {NOUN} went on.",
    "The {NOUN} started in the year {START} and ended in the year {END}.",
)
"""Year ranges whose end year is later than the start year, in the same century. The
evaluation's frame ("The {noun} lasted from the year …") is held out."""

SVA_TEMPLATES = (
    "Today the {N} {V}.",
    "Sometimes the {N} beside the {N2} {V}.",
    "In the story, the {N} above the {N2} {V}.",
    "Every day the {N} that the {N2} watched {V}.",
    "Here the {N} with the {N2} {V}.",
)
"""Agreement with the head noun; {N2} (an attractor) has a random number. Each frame opens with
an adverbial, so none is one of Marvin & Linzen's evaluation templates."""

PRONOUN_TEMPLATES = (
    "Now {NAME} is {PRED}, and {PRON} knows it.",
    "So {NAME} was {PRED}, wasn't {PRON}?",
    "Everyone says {NAME} is {PRED}; {PRON} is.",
)
"""A name, a predicate and the matching pronoun. The evaluation's frame ("So {name} is
{predicate}, isn't") is held out."""

REPEAT_SPAN = (8, 40)
"""Shortest and longest random span of a repeated-tokens segment, in tokens."""


REPEAT_SHORT = ((10, 20), (3, 6))
"""``repeated-spans``: a span of 10–20 random ids repeated 3–6 times (most segments)."""

REPEAT_LONG = ((20, 60), 2, 0.3)
"""``repeated-spans``: the share (0.3) of segments that are a 20–60-id span repeated twice."""


def abba(template: str) -> str:
    """The ABBA form of a BABA IOI template: the first ``{B}`` and first ``{A}`` swap places."""
    return template.replace("{B}", "{X}", 1).replace("{A}", "{B}", 1).replace("{X}", "{A}", 1)


def _ioi(rng: random.Random, v: CurriculumVocabulary) -> str:
    io, s = rng.sample(v.names_for_ioi, 2)
    template = rng.choice(IOI_TEMPLATES)
    if rng.random() < 0.5:  # ABBA: the IO is mentioned first
        template = abba(template)
    return template.format(A=io, B=s, PLACE=rng.choice(v.places), OBJECT=rng.choice(v.objects))


def _greater_than(rng: random.Random, v: CurriculumVocabulary) -> str:
    century = rng.choice(v.centuries)
    start = rng.randint(1, 98)
    end = rng.randint(start + 1, min(99, start + _GT_MAX_SPAN))
    return rng.choice(GT_TEMPLATES).format(
        NOUN=rng.choice(v.event_nouns),
        START=f"{century:02d}{start:02d}",
        END=f"{century:02d}{end:02d}",
    )


def _sva(rng: random.Random, v: CurriculumVocabulary) -> str:
    plural = rng.random() < 0.5
    noun = rng.choice(v.sva_nouns)[int(plural)]
    attractor = rng.choice(v.sva_nouns)[int(rng.random() < 0.5)]
    verb = rng.choice(v.sva_verbs)[int(plural)]
    return rng.choice(SVA_TEMPLATES).format(N=noun, N2=attractor, V=verb)


def _pronoun(rng: random.Random, v: CurriculumVocabulary) -> str:
    female = rng.random() < 0.5
    name = rng.choice(v.female_names if female else v.male_names)
    return rng.choice(PRONOUN_TEMPLATES).format(
        NAME=name, PRED=rng.choice(v.predicates), PRON="she" if female else "he"
    )


def _repeated_tokens(rng: random.Random, pool: Sequence[int]) -> list[int]:
    """A random span of token ids followed by the same span again (length 2 × L)."""
    span = [pool[rng.randrange(len(pool))] for _ in range(rng.randint(*REPEAT_SPAN))]
    return span + span


def _repeated_spans(rng: random.Random, pool: Sequence[int]) -> list[int]:
    """A short random span repeated 3–6 times, or (30%) a long one repeated twice.

    Measured (benchmarks/induction_recipe.py, docs/training.md, 2026-12-04): with tied
    embeddings, rows of these segments grow an induction head in a 2 × 4 × 64 GPT-NeoX within
    ≈ 1 M tokens; the long spans make it reach back 60 positions (the demo's 2 × 60 score).
    """
    (lo, hi), reps, share = REPEAT_LONG
    if rng.random() >= share:
        (lo, hi), (r_lo, r_hi) = REPEAT_SHORT
        reps = rng.randint(r_lo, r_hi)
    span = [pool[rng.randrange(len(pool))] for _ in range(rng.randint(lo, hi))]
    return span * reps


@dataclass(frozen=True)
class CurriculumTask:
    """A registered curriculum: the task it helps and how its rows are made.

    Attributes:
        task: The evaluation task helped (registry name of :mod:`circuit_atlas.tasks`), or the
            name of a generic mechanism (``repeated-tokens``) when ``evaluated`` is False.
        templates: The sentence frames (for token-level curricula, a description).
        generate: ``(rng, vocabulary) -> sentence`` for text curricula.
        generate_ids: ``(rng, token pool) -> token ids`` for token-level curricula (the pool is
            every non-special id of the suite tokenizer).
        evaluated: Whether ``task`` is an evaluation task (else it trains a mechanism used by
            several tasks: repeated random spans train induction and copying of every token).
    """

    task: str
    templates: tuple[str, ...]
    generate: Callable[[random.Random, CurriculumVocabulary], str] | None = None
    generate_ids: Callable[[random.Random, Sequence[int]], list[int]] | None = None
    evaluated: bool = True


CURRICULA: Mapping[str, CurriculumTask] = {
    c.task: c
    for c in (
        CurriculumTask("ioi", IOI_TEMPLATES, _ioi),
        CurriculumTask("greater-than", GT_TEMPLATES, _greater_than),
        CurriculumTask("sva", SVA_TEMPLATES, _sva),
        CurriculumTask("gender-pronoun", PRONOUN_TEMPLATES, _pronoun),
        CurriculumTask(
            "repeated-tokens",
            (f"{{L random token ids}}{{the same L ids}}, L uniform in {list(REPEAT_SPAN)}",),
            generate_ids=_repeated_tokens,
            evaluated=False,
        ),
        CurriculumTask(
            "repeated-spans",
            (
                f"{{L random token ids}} × r, L uniform in {list(REPEAT_SHORT[0])}, r in "
                f"{list(REPEAT_SHORT[1])}; or ({REPEAT_LONG[2]:.0%}) L in {list(REPEAT_LONG[0])}"
                f", r = {REPEAT_LONG[1]}",
            ),
            generate_ids=_repeated_spans,
            evaluated=False,
        ),
    )
}
"""Curricula by the task (or mechanism) they help."""


def text_templates(tasks: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """The templates of the text curricula among ``tasks`` (default: all registered).

    Token-level curricula (``repeated-tokens``) and unknown names are left out.
    """
    names = CURRICULA if tasks is None else tasks
    return {t: CURRICULA[t].templates for t in names if t in CURRICULA and CURRICULA[t].generate}


def held_out_violations(
    templates: Mapping[str, Sequence[str]] | None = None,
    evaluation: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Curriculum templates that contain an evaluation template (slots and punctuation aside).

    Both sides are compared as :func:`circuit_atlas.tasks.template_frame` word sequences; a
    curriculum template violates the hold-out when an evaluation frame is a contiguous part of
    it (so "{B} gave a {OBJECT} to {A}" sharing function words is fine, the whole evaluation
    sentence is not).

    Args:
        templates: Curriculum templates per task (default: every text curriculum,
            :func:`text_templates`).
        evaluation: Evaluation templates per task (default:
            :func:`circuit_atlas.tasks.evaluation_templates`).

    Returns:
        One ``"task: curriculum template ⊇ evaluation template"`` line per violation.
    """
    from circuit_atlas.tasks import evaluation_templates, template_frame

    if templates is None:
        templates = text_templates()
    evaluation = evaluation_templates() if evaluation is None else evaluation
    frames = [(template_frame(e), e) for group in evaluation.values() for e in group]
    out = []
    for task, group in templates.items():
        for template in group:
            mine = template_frame(template)
            for frame, source in frames:
                n = len(frame)
                if any(mine[i : i + n] == frame for i in range(len(mine) - n + 1)):
                    out.append(f"{task}: {template!r} contains the evaluation's {source!r}")
    return out


class CurriculumSampler:
    """Rows of templated sentences for the batch sampler, determined by ``(seed, step, row)``.

    A row is ``<|endoftext|>`` followed by segments (each ended by ``<|endoftext|>``) of tasks
    drawn from ``config.tasks`` with ``config.task_weights(step)`` (the opening phase's weights
    before ``config.first_steps``, then ``config.weights``), cut to ``seq_len`` tokens: a templated
    sentence for a text curriculum, a repeated random span for ``repeated-tokens``.

    Args:
        config: Which tasks get sentences.
        vocabulary: The slot fillers.
        tokenizer: The suite tokenizer.
        seed: Run seed.

    Raises:
        UnknownNameError: If a task has no registered curriculum.
    """

    def __init__(
        self, config: CurriculumConfig, vocabulary: CurriculumVocabulary, tokenizer: Any, seed: int
    ) -> None:
        for task in config.tasks:
            if task not in CURRICULA:
                raise UnknownNameError(
                    f"no curriculum for task {task!r}; available: {', '.join(CURRICULA)}"
                )
        self.config = config
        self.tasks = tuple(config.tasks)
        self.weights = config.task_weights()
        self.vocabulary = vocabulary
        self.seed = seed
        self._backend = tokenizer.backend_tokenizer
        self._eos = int(tokenizer.eos_token_id)
        special = set(getattr(tokenizer, "all_special_ids", ())) | {self._eos}
        self._pool = [i for i in range(len(tokenizer)) if i not in special]

    def _segment(
        self, rng: random.Random, weights: Sequence[float] | None = None
    ) -> tuple[str, list[int]]:
        """One segment drawn from ``rng``: its text and its token ids.

        ``weights`` are the tasks' weights (default: the main phase's).
        """
        task = CURRICULA[rng.choices(self.tasks, weights=weights or self.weights)[0]]
        if task.generate_ids is not None:
            ids = task.generate_ids(rng, self._pool)
            return self._backend.decode(ids, skip_special_tokens=False), ids
        text = task.generate(rng, self.vocabulary)  # type: ignore[misc]
        return text, self._backend.encode(text, add_special_tokens=False).ids

    def sentence(self, rng: random.Random) -> str:
        """The text of one segment drawn from ``rng``."""
        return self._segment(rng)[0]

    def examples(self, n: int, seed: int = 0) -> list[str]:
        """``n`` example segments as text (for the manifest and the report)."""
        rng = random.Random(seed)
        return [self.sentence(rng) for _ in range(n)]

    def __call__(self, step: int, row: int, seq_len: int) -> list[int]:
        """Token ids (``seq_len`` of them) of curriculum row ``row`` of step ``step``."""
        state = np.random.SeedSequence([self.seed, step, row, 1]).generate_state(1)[0]
        rng = random.Random(int(state))
        weights = self.config.task_weights(step)
        ids = [self._eos]
        while len(ids) < seq_len:
            ids += self._segment(rng, weights)[1]
            ids.append(self._eos)
        return ids[:seq_len]
