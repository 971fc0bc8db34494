"""Curriculum hold-out rules: no evaluation template or prompt is ever trained on (issue 11).

The curriculum may share the evaluation's *vocabulary* (names, on purpose, recorded in the
manifest) but never its templates or prompts; repeated random-token rows are what they say.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from circuit_atlas.errors import ConfigError
from circuit_atlas.tasks import evaluation_templates, evaluation_vocabulary, make_dataset
from circuit_atlas.training import CurriculumConfig, build_vocabulary
from circuit_atlas.training.curriculum import (
    CURRICULA,
    CurriculumSampler,
    held_out_violations,
)


def test_registered_templates_hold_out_every_evaluation_template() -> None:
    assert held_out_violations() == []
    assert set(evaluation_templates()) == {"ioi", "greater-than", "gender-pronoun"}


def test_hold_out_check_catches_an_evaluation_template_whatever_its_slots() -> None:
    planted = {
        "ioi": ("Then, {X} and {Y} went to the {Z}; {X} gave a {W} to {Y}!",),
        "greater-than": ("Once, the {N} lasted from the year {S} to the year {E}.",),
        "gender-pronoun": ("So {NAME} is {PRED}, isn't {PRON}?",),
        "fine": ("{B} gave a {OBJECT} to {A}.", "The {N} lasted from {S} to {E}."),
    }
    found = held_out_violations(planted)
    assert len([v for v in found if v.startswith("ioi:")]) >= 1
    assert any(v.startswith("greater-than:") for v in found)
    assert any(v.startswith("gender-pronoun:") for v in found)
    assert not any(v.startswith("fine:") for v in found)  # shared function words are allowed


def test_shared_names_are_listed_and_nothing_else_is_shared(data_dir: Path) -> None:
    evaluation = evaluation_vocabulary(data_dir)
    vocabulary = build_vocabulary(evaluation, shared=("names",))
    assert set(vocabulary.shared["names"]) == set(evaluation["names"])
    assert set(evaluation["names"]) <= set(vocabulary.names_for_ioi)
    assert set(evaluation["female_names"]) <= set(vocabulary.female_names)
    assert set(evaluation["male_names"]) <= set(vocabulary.male_names)
    assert not set(vocabulary.female_names) & set(evaluation["male_names"])
    # every other pool stays disjoint from the evaluation's words
    banned = {w.lower() for k, words in evaluation.items() if k != "names" for w in words}
    banned -= {n.lower() for n in evaluation["names"]}
    others = [*vocabulary.places, *vocabulary.objects, *vocabulary.event_nouns]
    others += [w for pair in vocabulary.sva_nouns + vocabulary.sva_verbs for w in pair]
    assert others and not {w.lower() for w in others} & banned
    entry = vocabulary.to_dict()["shared_with_evaluation"]
    assert entry == {"names": sorted(evaluation["names"])}
    assert build_vocabulary(evaluation).shared == {}
    with pytest.raises(ConfigError, match="'years'"):
        build_vocabulary(evaluation, shared=("years",))
    with pytest.raises(ConfigError, match="not shareable"):
        CurriculumConfig(0.5, ("ioi",), shared=("verbs",))


def test_no_evaluation_prompt_appears_in_curriculum_text(data_dir: Path, pythia_tokenizer) -> None:
    evaluation = evaluation_vocabulary(data_dir)
    vocabulary = build_vocabulary(evaluation, shared=("names", "places", "objects"))
    prompts = []
    for task in ("ioi", "greater-than", "gender-pronoun", "sva"):
        data = make_dataset(task, pythia_tokenizer, n=100, data_dir=data_dir)
        prompts += [p.strip().lower() for p in data.clean_text + data.corrupted_text]
    rng = random.Random(0)
    texts = [
        CURRICULA[task].generate(rng, vocabulary).lower()
        for task in ("ioi", "greater-than", "gender-pronoun", "sva")
        for _ in range(500)
    ]
    hits = [(p, t) for t in texts for p in prompts if p in t]
    assert hits == []
    # the check can fail: an evaluation prompt planted in the text is found
    assert any(p in f"x {prompts[0]} y" for p in prompts)


def test_repeated_token_rows_repeat_their_span(pythia_tokenizer, data_dir: Path) -> None:
    vocabulary = build_vocabulary(evaluation_vocabulary(data_dir))
    config = CurriculumConfig(0.5, ("repeated-tokens",))
    sampler = CurriculumSampler(config, vocabulary, pythia_tokenizer, seed=1)
    eos = pythia_tokenizer.eos_token_id
    row = sampler(3, 0, 400)
    assert row[0] == eos and len(row) == 400
    segments, current = [], []
    for token in row[1:]:
        if token == eos:
            segments.append(current)
            current = []
        else:
            current.append(token)
    assert len(segments) >= 2
    for seg in segments:
        half = len(seg) // 2
        assert len(seg) % 2 == 0 and seg[:half] == seg[half:] and 8 <= half <= 40
    assert len({t for seg in segments for t in seg}) > 20  # random ids, not one token
    assert not CURRICULA["repeated-tokens"].evaluated


def test_repeated_span_rows_repeat_short_and_long_spans(pythia_tokenizer, data_dir: Path) -> None:
    vocabulary = build_vocabulary(evaluation_vocabulary(data_dir))
    config = CurriculumConfig(0.5, ("repeated-spans",))
    sampler = CurriculumSampler(config, vocabulary, pythia_tokenizer, seed=1)
    eos = pythia_tokenizer.eos_token_id
    segments = []
    for step in range(40):
        row = sampler(step, 0, 400)
        assert row[0] == eos and len(row) == 400
        parts = [[int(t) for t in part.split(",") if t] for part in
                 ",".join(str(t) for t in row[1:]).split(f",{eos},")]  # fmt: skip
        segments += parts[:-1]  # the last one may be cut
    shapes = set()
    for seg in segments:
        period = next(p for p in range(1, len(seg) + 1) if seg == (seg[:p] * len(seg))[: len(seg)])
        assert len(seg) % period == 0
        shapes.add((period, len(seg) // period))
    short = {(p, r) for p, r in shapes if 10 <= p <= 20 and 3 <= r <= 6}
    long = {(p, r) for p, r in shapes if 20 <= p <= 60 and r == 2}
    assert short and long and short | long == shapes  # spans vary; both kinds occur
    assert len({p for p, _ in shapes}) > 10
    assert not CURRICULA["repeated-spans"].evaluated


def _name_token_mismatches(templates: tuple[str, ...], tokenizer) -> list[str]:
    """Templates in which a name is not the space-prefixed token the evaluation's prompts use."""
    bad = []
    for template in templates:
        text = template.format(
            A="Mary", B="John", NAME="Mary", PLACE="park", OBJECT="ring", PRED="kind", PRON="she"
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for name in ("Mary", "John"):
            (space_id,) = tokenizer(" " + name, add_special_tokens=False)["input_ids"]
            if ids.count(space_id) != text.count(name):
                bad.append(template)
    return bad


def test_curriculum_names_are_the_tokens_the_evaluation_copies(pythia_tokenizer) -> None:
    # A sentence that opens with its name would train the copy of "Mary", while the evaluation's
    # IOI and Gendered Pronoun prompts read " Mary" (a different token).
    from circuit_atlas.training.curriculum import IOI_TEMPLATES, PRONOUN_TEMPLATES, abba

    swapped = tuple(abba(t) for t in IOI_TEMPLATES)
    assert swapped[0] == "Today {A} and {B} sat in the {PLACE}. {B} gave the {OBJECT} to {A}."
    templates = IOI_TEMPLATES + swapped + PRONOUN_TEMPLATES
    assert _name_token_mismatches(templates, pythia_tokenizer) == []
    # the check can fail: a template that opens with a name is caught
    assert _name_token_mismatches(("{B} gave the {OBJECT} to {A}.",), pythia_tokenizer) != []


def test_opening_phase_draws_its_own_weights(pythia_tokenizer, data_dir: Path) -> None:
    vocabulary = build_vocabulary(evaluation_vocabulary(data_dir), shared=("names",))
    config = CurriculumConfig(
        0.5, ("ioi", "greater-than"), (1.0, 1000.0), first_steps=5, first_weights=(1.0, 0.0)
    )
    sampler = CurriculumSampler(config, vocabulary, pythia_tokenizer, seed=0)

    def text(step: int) -> str:
        return pythia_tokenizer.decode(sampler(step, 0, 200))

    # Greater-Than sentences carry years; IOI sentences never do
    assert not any(ch.isdigit() for step in range(5) for ch in text(step))
    assert all(any(ch.isdigit() for ch in text(step)) for step in (5, 6, 50))
    # without an opening phase, the same (seed, step, row) gives the main phase's row
    main = CurriculumSampler(
        CurriculumConfig(0.5, ("ioi", "greater-than"), (1.0, 1000.0)), vocabulary,
        pythia_tokenizer, seed=0,
    )  # fmt: skip
    assert main(6, 0, 200) == sampler(6, 0, 200) and main(2, 0, 200) != sampler(2, 0, 200)


@pytest.mark.parametrize(
    ("first_steps", "first_weights", "match"),
    [(-1, (), "first_steps must be >= 0"), (10, (1.0,), "do not match tasks"),
     (10, (0.0, 0.0), "at least one > 0"), (10, (1.0, -1.0), "at least one > 0")],
)  # fmt: skip
def test_opening_phase_settings_are_checked(first_steps, first_weights, match) -> None:
    with pytest.raises(ConfigError, match=match):
        CurriculumConfig(0.5, ("ioi", "sva"), first_steps=first_steps, first_weights=first_weights)
