"""Task datasets: the paper's four tasks on Pythia's tokenizer, custom files, a tiny BPE."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch

from circuit_atlas.errors import TaskDataError, UnknownNameError
from circuit_atlas.tasks import (
    GT_NOUNS,
    IOI_NAMES,
    IOI_OBJECTS,
    IOI_PLACES,
    TaskDataset,
    evaluation_vocabulary,
    get_task,
    list_tasks,
    make_dataset,
)
from circuit_atlas.tasks.greater_than import valid_years
from circuit_atlas.tasks.ioi import ABBA_TEMPLATES, BABA_TEMPLATES
from circuit_atlas.tasks.sva import SVA_CONDITIONS, read_pairs

PAPER_TASKS = ("ioi", "greater-than", "gender-pronoun", "sva")


def encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


@pytest.fixture(scope="module")
def datasets(pythia_tokenizer, data_dir) -> dict[str, TaskDataset]:
    return {name: make_dataset(name, pythia_tokenizer, data_dir=data_dir) for name in PAPER_TASKS}


# --- registry -----------------------------------------------------------------------------------


def test_registry_lists_the_five_tasks():
    assert list_tasks() == ["ioi", "greater-than", "gender-pronoun", "sva", "custom"]
    assert get_task("ioi").metric == "logit_diff"
    assert get_task("sva").metric == "prob_diff"
    assert (get_task("ioi").default_n, get_task("ioi").default_seed) == (70, 42)


def test_unknown_task_names_the_valid_ones(pythia_tokenizer):
    with pytest.raises(UnknownNameError, match="unknown task 'iio'.*ioi, greater-than"):
        make_dataset("iio", pythia_tokenizer)
    with pytest.raises(KeyError):  # UnknownNameError is also a KeyError
        get_task("nope")


def test_default_sizes(datasets):
    sizes = {name: len(d) for name, d in datasets.items()}
    assert sizes == {"ioi": 70, "greater-than": 200, "gender-pronoun": 100, "sva": 200}
    assert {name: d.metric for name, d in datasets.items()} == {
        "ioi": "logit_diff",
        "greater-than": "prob_diff",
        "gender-pronoun": "logit_diff",
        "sva": "prob_diff",
    }


def test_pythia_drops_nothing_but_unsplittable_sva_items(datasets):
    for name in ("ioi", "greater-than", "gender-pronoun"):
        assert datasets[name].dropped == ()
    assert all(d.startswith(("verb ", *SVA_CONDITIONS)) for d in datasets["sva"].dropped)


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_clean_and_corrupted_have_equal_length_and_real_text(datasets, pythia_tokenizer, name):
    d = datasets[name]
    assert d.clean.dtype == d.corrupted.dtype == torch.int64
    assert d.pad_id == pythia_tokenizer.pad_token_id == 1
    for i in range(len(d)):
        length = int(d.lengths[i])
        assert encode(pythia_tokenizer, d.clean_text[i]) == d.clean[i, :length].tolist()
        assert encode(pythia_tokenizer, d.corrupted_text[i]) == d.corrupted[i, :length].tolist()
        assert (d.clean[i, length:] == d.pad_id).all()
        assert (d.corrupted[i, length:] == d.pad_id).all()
        assert d.clean_text[i] != d.corrupted_text[i]


def test_no_bos_is_prepended(datasets, pythia_tokenizer):
    for d in datasets.values():
        assert (d.clean[:, 0] != pythia_tokenizer.bos_token_id).all()


# --- IOI ------------------------------------------------------------------------------------------


def test_ioi_word_pools_are_single_tokens_for_pythia(pythia_tokenizer):
    assert len(IOI_NAMES) == len(set(IOI_NAMES)) == 109
    assert len(IOI_PLACES) == len(IOI_OBJECTS) == 8
    for word in IOI_NAMES + IOI_PLACES + IOI_OBJECTS:
        assert len(encode(pythia_tokenizer, " " + word)) == 1, word


def test_ioi_templates():
    assert len(BABA_TEMPLATES) == len(ABBA_TEMPLATES) == 15
    assert ABBA_TEMPLATES[0] == "Then, [A] and [B] went to the [PLACE]. [B] gave a [OBJECT] to [A]"
    for t in BABA_TEMPLATES + ABBA_TEMPLATES:
        assert t.endswith(" [A]") and t.count("[A]") == 2 and t.count("[B]") == 2


def test_ioi_corruption_is_s2_to_io(datasets, pythia_tokenizer):
    d = datasets["ioi"]
    info = d.info
    for i in range(len(d)):
        clean, corrupted = d.clean[i], d.corrupted[i]
        differ = (clean != corrupted).nonzero().flatten().tolist()
        s2 = info["s2_pos"][i]
        assert differ == [s2]
        assert clean[s2] == d.wrong[i] and corrupted[s2] == d.answer[i]
        assert clean[info["io_pos"][i]] == d.answer[i]
        assert clean[info["s1_pos"][i]] == d.wrong[i]
        assert info["s1_pos"][i] < s2 and info["io_pos"][i] < s2
        assert d.answer[i] == encode(pythia_tokenizer, " " + info["io_names"][i])[0]
        assert d.wrong[i] == encode(pythia_tokenizer, " " + info["s_names"][i])[0]
        assert info["end_pos"][i] == d.lengths[i] - 1
        assert d.clean_text[i].endswith(" to") or d.clean_text[i].endswith(" said to")
    assert set(info["template_kind"]) == {"ABBA", "BABA"}
    assert int(d.lengths.max()) == 20  # the paper's max_seq_len 21 includes the final name


@pytest.mark.parametrize("kind", ["ABBA", "BABA"])
def test_ioi_single_family(pythia_tokenizer, kind):
    d = make_dataset("ioi", pythia_tokenizer, n=30, prompt_type=kind)
    assert set(d.info["template_kind"]) == {kind} and len(d.info["templates"]) == 15


def test_ioi_rejects_unknown_prompt_type(pythia_tokenizer):
    with pytest.raises(ValueError, match="prompt_type"):
        make_dataset("ioi", pythia_tokenizer, prompt_type="ABC")


def test_ioi_reproduces_the_arena_generator(datasets):
    # The first prompts of ARENA's IOIDataset(prompt_type="mixed", N=70, seed=42).sentences
    # (final name removed), regenerated by replaying its random draws (random.seed(42); shuffle
    # the 14 templates; per prompt: choice(template), 3 distinct choice(NAMES), choice(PLACES),
    # choice(OBJECTS)).
    d = datasets["ioi"]
    assert d.clean_text[:3] == (
        "Then, Alex and Anthony had a lot of fun at the school. Anthony gave a ring to",
        "Then, Connor and Roman were working at the house. Roman decided to give a basketball to",
        "Then, Eva and Mark were working at the store. Eva decided to give a bone to",
    )
    assert d.corrupted_text[0] == (
        "Then, Alex and Anthony had a lot of fun at the school. Alex gave a ring to"
    )


# --- Greater-Than ---------------------------------------------------------------------------------


def test_gt_valid_years_match_the_reference_rule(pythia_tokenizer):
    # Reference rule (get_valid_years): " abcd" -> 2 tokens, the second of 2 characters; then
    # drop the first and last valid year of each century.
    raw = []
    for year in range(1100, 1800):
        pieces = pythia_tokenizer.convert_ids_to_tokens(encode(pythia_tokenizer, f" {year}"))
        if len(pieces) == 2 and len(pieces[1]) == 2:
            raw.append(year)
    expected = [
        y for y in raw
        if y != min(r for r in raw if r // 100 == y // 100)
        and y != max(r for r in raw if r // 100 == y // 100)
    ]  # fmt: skip
    years, dropped = valid_years(pythia_tokenizer)
    assert years == expected and dropped == []
    assert len(years) == 456


def test_gt_prompts_years_and_signs(datasets, pythia_tokenizer):
    d = datasets["greater-than"]
    years = d.info["years"]
    assert set(years) <= set(valid_years(pythia_tokenizer)[0])
    assert [y % 100 for y in years[:97]] == list(range(2, 99))  # balanced YY cycle
    assert set(d.info["nouns"]) <= set(GT_NOUNS) and len(GT_NOUNS) == 120
    two_digit = [encode(pythia_tokenizer, f"{yy:02d}")[0] for yy in range(100)]
    assert d.group_tokens.tolist() == two_digit
    for i, year in enumerate(years):
        xx, yy = divmod(year, 100)
        assert d.clean_text[i].endswith(f"from the year {year} to the year {xx}")
        assert d.corrupted_text[i].endswith(f"from the year {xx}01 to the year {xx}")
        differ = (d.clean[i] != d.corrupted[i]).nonzero().flatten().tolist()
        assert len(differ) == 1
        assert d.clean[i, differ[0]] == two_digit[yy] and d.corrupted[i, differ[0]] == two_digit[1]
        assert d.wrong[i] == two_digit[yy] and d.answer[i] == two_digit[yy + 1]
    yy = torch.tensor(years) % 100
    expected = torch.where(torch.arange(100)[None, :] > yy[:, None], 1.0, -1.0)
    torch.testing.assert_close(d.group_signs, expected)


# --- Gendered Pronoun ---------------------------------------------------------------------------


def test_pronoun_token_ids(pythia_tokenizer):
    assert encode(pythia_tokenizer, " she") == [703]
    assert encode(pythia_tokenizer, " he") == [344]


def test_gender_pronoun_follows_the_csv(datasets, data_dir):
    d = datasets["gender-pronoun"]
    with open(data_dir / "tasks/gender-pronoun/gender-pronoun.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert d.clean_text == tuple(r["clean"] for r in rows)
    assert d.corrupted_text == tuple(r["corrupted"] for r in rows)
    assert d.answer.tolist() == [int(r["clean_answer_idx"]) for r in rows]
    assert d.wrong.tolist() == [int(r["corrupted_answer_idx"]) for r in rows]
    assert sorted(set(d.answer.tolist())) == [344, 703] and (d.answer != d.wrong).all()
    assert d.seed is None


# --- SVA ------------------------------------------------------------------------------------------


def test_sva_pairs_both_directions_and_signs(datasets, pythia_tokenizer, data_dir):
    d = datasets["sva"]
    pairs = {(s, p) for _, _, s, p in read_pairs(data_dir)}
    labels = d.info["labels"]
    assert set(labels) == {0, 1}
    k_sing = d.info["n_singular_verbs"]
    singular = torch.arange(len(d.group_tokens)) < k_sing
    is_id, are_id = encode(pythia_tokenizer, " is")[0], encode(pythia_tokenizer, " are")[0]
    for i, label in enumerate(labels):
        clean, corrupted = d.clean_text[i], d.corrupted_text[i]
        assert (clean, corrupted) in pairs if label == 0 else (corrupted, clean) in pairs
        agree = singular if label == 0 else ~singular
        torch.testing.assert_close(d.group_signs[i], torch.where(agree, 1.0, -1.0))
        assert (d.answer[i], d.wrong[i]) == ((is_id, are_id) if label == 0 else (are_id, is_id))
    for tok_id in d.group_tokens.tolist():
        assert pythia_tokenizer.decode([tok_id]).startswith(" ")


def test_sva_full_set_holds_every_pair_in_both_directions(pythia_tokenizer, data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="circuit_atlas.tasks"):
        d = make_dataset("sva", pythia_tokenizer, n=100_000, data_dir=data_dir)
    assert "only 12400 usable pairs" in caplog.text
    assert len(d) == d.info["pairs_available"] == 12400  # 2 x 6200 equal-length pairs
    directions = set(zip(d.clean_text, d.corrupted_text, strict=True))
    assert all((b, a) in directions for a, b in directions)


# --- determinism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ioi", "greater-than", "sva", "gender-pronoun"])
def test_same_seed_same_tensors_other_seed_differs(pythia_tokenizer, data_dir, name):
    a = make_dataset(name, pythia_tokenizer, seed=3, data_dir=data_dir)
    b = make_dataset(name, pythia_tokenizer, seed=3, data_dir=data_dir)
    c = make_dataset(name, pythia_tokenizer, seed=4, data_dir=data_dir)
    assert torch.equal(a.clean, b.clean) and torch.equal(a.corrupted, b.corrupted)
    assert torch.equal(a.answer, b.answer) and a.clean_text == b.clean_text
    assert a.clean_text != c.clean_text
    assert a.seed == 3


def test_generators_satisfy_any_n(pythia_tokenizer):
    assert len(make_dataset("ioi", pythia_tokenizer, n=500)) == 500
    assert len(make_dataset("greater-than", pythia_tokenizer, n=1000)) == 1000


def test_fixed_file_caps_n_with_a_warning(pythia_tokenizer, data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="circuit_atlas.tasks"):
        d = make_dataset("gender-pronoun", pythia_tokenizer, n=1000, data_dir=data_dir)
    assert len(d) == 100 and "asked for 1000 examples but only 100" in caplog.text


# --- custom tasks ---------------------------------------------------------------------------------

GOOD_ROWS = [
    {
        "clean": "When Mary and John went to the store, John gave a drink to",
        "corrupted": "When Mary and John went to the store, Mary gave a drink to",
        "answer": " Mary",
        "wrong_answer": " John",
    },
    {
        "clean": "So Lisa is such a good cook, isn't",
        "corrupted": "So Paul is such a good cook, isn't",
        "answer": " she",
        "wrong_answer": " he",
    },
]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_custom_csv_and_jsonl(tmp_path, pythia_tokenizer):
    from_csv = make_dataset(
        "custom", pythia_tokenizer, path=write_csv(tmp_path / "t.csv", GOOD_ROWS)
    )
    from_jsonl = make_dataset(
        "custom", pythia_tokenizer, path=write_jsonl(tmp_path / "t.jsonl", GOOD_ROWS)
    )
    for d in (from_csv, from_jsonl):
        assert d.task == "custom" and d.metric == "logit_diff" and len(d) == 2
        assert d.answer.tolist() == [encode(pythia_tokenizer, " Mary")[0], 703]
        assert d.wrong.tolist() == [encode(pythia_tokenizer, " John")[0], 344]
    assert torch.equal(from_csv.clean, from_jsonl.clean)


def test_custom_prob_diff(tmp_path, pythia_tokenizer):
    rows = [dict(r, metric="prob_diff") for r in GOOD_ROWS]
    d = make_dataset("custom", pythia_tokenizer, path=write_jsonl(tmp_path / "t.jsonl", rows))
    assert d.metric == "prob_diff"
    for i in range(len(d)):
        signs = dict(zip(d.group_tokens.tolist(), d.group_signs[i].tolist(), strict=True))
        assert signs[int(d.answer[i])] == 1.0 and signs[int(d.wrong[i])] == -1.0
        assert sum(abs(v) for v in signs.values()) == 2.0
    path = write_csv(tmp_path / "plain.csv", GOOD_ROWS)
    assert make_dataset("custom", pythia_tokenizer, path=path, metric="prob_diff").metric == (
        "prob_diff"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": " Maryanne"}, r"row 2, field 'answer': ' Maryanne' is not a single"),
        ({"wrong_answer": "John Smith"}, r"row 2, field 'wrong_answer'"),
        ({"corrupted": "So Lisa is such a good cook"}, r"row 2, fields 'clean'/'corrupted'"),
        ({"wrong_answer": " she"}, r"row 2, fields 'answer'/'wrong_answer'"),
        ({"metric": "accuracy"}, r"row 2, field 'metric'"),
    ],
)
def test_custom_bad_rows_name_file_row_and_field(tmp_path, pythia_tokenizer, change, message):
    rows = [GOOD_ROWS[0], dict(GOOD_ROWS[1], **change)]
    for path in (write_jsonl(tmp_path / "bad.jsonl", rows), write_csv(tmp_path / "bad.csv", rows)):
        with pytest.raises(TaskDataError, match=message) as err:
            make_dataset("custom", pythia_tokenizer, path=path)
        assert path.name in str(err.value)


def test_custom_bad_files(tmp_path, pythia_tokenizer):
    no_wrong = write_csv(tmp_path / "cols.csv", [{"clean": "a", "corrupted": "b", "answer": " c"}])
    with pytest.raises(TaskDataError, match=r"cols\.csv.*missing column.*wrong_answer"):
        make_dataset("custom", pythia_tokenizer, path=no_wrong)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(GOOD_ROWS[0]) + "\n{not json\n")
    with pytest.raises(TaskDataError, match=r"broken\.jsonl.*row 2 \(line 2\): not valid JSON"):
        make_dataset("custom", pythia_tokenizer, path=broken)
    missing_field = write_jsonl(tmp_path / "field.jsonl", [GOOD_ROWS[0], {"clean": "x"}])
    with pytest.raises(TaskDataError, match=r"field\.jsonl.*row 2: missing field 'corrupted'"):
        make_dataset("custom", pythia_tokenizer, path=missing_field)
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl",
        [dict(GOOD_ROWS[0], metric="logit_diff"), dict(GOOD_ROWS[1], metric="prob_diff")],
    )
    with pytest.raises(TaskDataError, match=r"row 2, field 'metric'.*one metric per task"):
        make_dataset("custom", pythia_tokenizer, path=mixed)
    with pytest.raises(TaskDataError, match="unknown custom task format '.txt'"):
        make_dataset("custom", pythia_tokenizer, path=write_csv(tmp_path / "t.txt", GOOD_ROWS))
    with pytest.raises(TaskDataError, match="needs path="):
        make_dataset("custom", pythia_tokenizer)
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        make_dataset("custom", pythia_tokenizer, path=tmp_path / "nowhere.csv")


# --- another tokenizer: a tiny BPE trained here -------------------------------------------------


def train_tiny_bpe(text: str, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([text], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)  # no pad token: padding uses id 0


@pytest.fixture(scope="module")
def tiny_tokenizer():
    story = (
        "Then, Mary and John went to the store. John gave a ring to Mary. "
        "When Mary and John were at the store, Mary gave a ring to John. "
        "So she is nice, isn't she? So he is kind, isn't he? "
        "The author likes the guard. The authors like the guards. "
    )
    return train_tiny_bpe(story * 40, vocab_size=400)


def test_tiny_tokenizer_ioi_drops_and_reports(tiny_tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="circuit_atlas.tasks"):
        d = make_dataset("ioi", tiny_tokenizer, n=20)
    assert set(d.info["io_names"]) | set(d.info["s_names"]) == {"Mary", "John"}
    assert "name ' Aaron'" in d.dropped and "place ' garden'" in d.dropped
    assert "name ' Mary'" not in d.dropped
    assert "ioi: dropped" in caplog.text and "' Aaron'" in caplog.text
    assert d.pad_id == 0 and len(d) == 20
    differ = (d.clean != d.corrupted).sum(-1)
    assert (differ == 1).all()


def test_tiny_tokenizer_without_names_or_pronouns_raises(data_dir):
    tok = train_tiny_bpe("the store ring and a to gave " * 50, vocab_size=300)
    with pytest.raises(TaskDataError, match="only 0 single-token names"):
        make_dataset("ioi", tok)
    with pytest.raises(TaskDataError, match="answer ' she' is not a single token"):
        make_dataset("gender-pronoun", tok, data_dir=data_dir)


def test_tiny_tokenizer_other_tasks(tiny_tokenizer, data_dir):
    with pytest.raises(TaskDataError, match="no valid years"):
        make_dataset("greater-than", tiny_tokenizer)
    pronoun = make_dataset("gender-pronoun", tiny_tokenizer, data_dir=data_dir)
    assert 0 < len(pronoun) < 100 and any(r.startswith("row ") for r in pronoun.dropped)
    assert (pronoun.answer != pronoun.wrong).all()
    sva = make_dataset("sva", tiny_tokenizer, data_dir=data_dir)
    assert len(sva) == 200 and any(r.startswith("verb ") for r in sva.dropped)
    for d in (pronoun, sva):
        for i in range(len(d)):
            length = int(d.lengths[i])
            assert len(encode(tiny_tokenizer, d.corrupted_text[i])) == length


# --- evaluation vocabulary ------------------------------------------------------------------------


def test_evaluation_vocabulary(data_dir):
    vocab = evaluation_vocabulary(data_dir)
    assert set(IOI_NAMES) <= vocab["names"] and {"Judy", "Karen"} <= vocab["names"]
    assert vocab["places"] == frozenset(IOI_PLACES) and vocab["objects"] == frozenset(IOI_OBJECTS)
    assert vocab["nouns"] == frozenset(GT_NOUNS)
    assert {"1100", "1750", "1799"} <= vocab["years"] and "1800" not in vocab["years"]
    assert {"likes", "like", "is", "are"} <= vocab["verbs"]
    assert {"author", "authors", "guard"} <= vocab["sva_nouns"]
    assert {"lasted", "necklace", "judy", "she", "isn't", "surgeons"} <= vocab["words"]
    assert all(isinstance(v, frozenset) for v in vocab.values())
