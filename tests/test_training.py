"""Trainer tests: schedule, tokenizer, curriculum, manifest, determinism and resume (fast).

A micro GPT-NeoX (1 layer, 2 heads, d_model 32) is trained for a dozen steps on a 200 kB slice of
the real corpus; the whole file runs in well under 30 s on 2 cores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from circuit_atlas.errors import ConfigError, DataNotFoundError, UnknownNameError
from circuit_atlas.models.pythia import PYTHIA_STEPS
from circuit_atlas.training import (
    CurriculumConfig,
    SuiteManifest,
    TrainConfig,
    build_vocabulary,
    checkpoint_steps,
    get_size,
    learning_rate,
    load_tokenizer,
    train_suite,
)
from circuit_atlas.training.curriculum import CurriculumSampler
from circuit_atlas.training.data import corpus_files, read_corpus
from circuit_atlas.training.tokenizer import force_single_tokens, train_bpe

STEPS = 12
CONFIG = TrainConfig(
    sizes=("micro",),
    steps=STEPS,
    batch_size=2,
    seq_len=32,
    n_even=3,
    vocab_size=600,
    val_every=4,
    val_batches=1,
    state_every=5,
    curriculum=CurriculumConfig(
        0.5, ("ioi", "greater-than", "sva", "gender-pronoun", "repeated-tokens"), shared=("names",)
    ),
)
EVAL_TASKS = ["ioi", "greater-than", "sva", "gender-pronoun"]


class Killed(Exception):
    """Raised from the progress callback to simulate a kill mid-run."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name in ("brown.txt", "shakespeare.txt"):
        text = (data_dir / "corpus" / name).read_bytes()[:100_000]
        (folder / name).write_bytes(text)
    return folder


@pytest.fixture(scope="module")
def suite(tmp_path_factory, corpus: Path, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("suite") / "run"
    train_suite(CONFIG, corpus, out, data_dir=data_dir)
    return out


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


# --- schedule ----------------------------------------------------------------------------------


def test_checkpoint_steps_reproduce_pythia() -> None:
    assert checkpoint_steps(143_000, 143) == list(PYTHIA_STEPS)


def test_checkpoint_steps_small_run() -> None:
    assert checkpoint_steps(2000, 8) == [0, 1, 2, 4, 8, 16, 32, 64, 128, *range(250, 2001, 250)]
    assert checkpoint_steps(12, 3) == [0, 1, 2, 4, 8, 12]


def test_checkpoint_steps_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="n_even must be in"):
        checkpoint_steps(10, 11)
    with pytest.raises(ConfigError, match="total_steps must be >= 1, got 0"):
        checkpoint_steps(0, 1)


def test_learning_rate_warmup_and_cosine_floor() -> None:
    kwargs = {"warmup_frac": 0.1, "min_ratio": 0.1}
    assert learning_rate(0, 100, 1.0, **kwargs) == pytest.approx(0.1)
    assert learning_rate(9, 100, 1.0, **kwargs) == pytest.approx(1.0)
    assert learning_rate(10, 100, 1.0, **kwargs) == pytest.approx(1.0)
    assert learning_rate(99, 100, 1.0, **kwargs) == pytest.approx(0.1)
    rates = [learning_rate(s, 100, 1.0, **kwargs) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


# --- config ------------------------------------------------------------------------------------


def test_config_validation_names_the_bad_value() -> None:
    with pytest.raises(UnknownNameError, match="unknown model size 'huge'"):
        TrainConfig(sizes=("huge",))
    with pytest.raises(ConfigError, match="curriculum fraction must be in"):
        CurriculumConfig(fraction=1.5, tasks=("ioi",))
    with pytest.raises(ConfigError, match="do not match tasks"):
        CurriculumConfig(fraction=0.5, tasks=("ioi", "sva"), weights=(1.0,))
    assert CurriculumConfig(0.5, ("ioi", "sva")).task_weights() == (1.0, 1.0)
    with pytest.raises(ConfigError, match="steps must be >= 1, got 0"):
        TrainConfig(steps=0, n_even=1)
    assert TrainConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_size_config_is_pythia_architecture() -> None:
    config = get_size("tiny").hf_config(1000)
    assert config.model_type == "gpt_neox"
    assert config.use_parallel_residual is True
    assert config.tie_word_embeddings is False
    # 16 rotary dimensions per head, as in Pythia (25% of 64); tiny heads have 16 dimensions
    assert config.rope_parameters["partial_rotary_factor"] == pytest.approx(1.0)
    medium = get_size("medium").hf_config(1000)
    assert medium.rope_parameters["partial_rotary_factor"] == pytest.approx(0.25)


# --- tokenizer ---------------------------------------------------------------------------------


def test_force_single_tokens_only_adds(corpus: Path) -> None:
    base = train_bpe([t.text for t in read_corpus(corpus_files(corpus))], 400)
    text = "It was the best of times, it was the worst of times."
    wanted = [" Zanzibar", " Quixotically", "37"]
    forced, which = force_single_tokens(base, wanted)
    for word in wanted:
        assert len(forced.encode(word).ids) == 1, word
    assert set(which) == set(wanted)
    assert forced.encode(text).ids == base.encode(text).ids
    assert forced.get_vocab_size() > base.get_vocab_size()


def test_force_single_tokens_rejects_impossible_string(corpus: Path) -> None:
    base = train_bpe([t.text for t in read_corpus(corpus_files(corpus))], 300)
    with pytest.raises(ConfigError, match="cannot make these strings single tokens"):
        force_single_tokens(base, [" two words"])


def test_read_corpus_budget_takes_a_share_of_every_file(corpus: Path) -> None:
    files = corpus_files(corpus)
    whole = read_corpus(files)
    part = read_corpus(files, max_bytes=50_000)
    assert [t.name for t in part] == [t.name for t in whole] == ["brown.txt", "shakespeare.txt"]
    assert 40_000 < sum(len(t.text.encode()) for t in part) <= 50_000
    for a, b in zip(part, whole, strict=True):
        assert b.text.startswith(a.text) and a.sha256 == b.sha256 and a.text.endswith("\n")


def test_years_split_like_gpt_neox(suite: Path) -> None:
    tok = load_tokenizer(suite)
    assert tok.tokenize(" 1732") == ["Ġ17", "32"]
    assert tok.eos_token_id == 0 and tok.pad_token_id == 1


# --- curriculum --------------------------------------------------------------------------------


def test_curriculum_avoids_every_evaluation_word(data_dir: Path) -> None:
    from circuit_atlas.tasks import evaluation_vocabulary

    evaluation = evaluation_vocabulary(data_dir)
    banned = {w.lower() for words in evaluation.values() for w in words}
    vocabulary = build_vocabulary(evaluation)
    used = {w.lower() for w in vocabulary.words()} - {"a", "an", "the"}
    assert used and not used & banned
    eval_centuries = {int(y) // 100 for y in evaluation["years"]}
    assert not set(vocabulary.centuries) & eval_centuries
    assert vocabulary.removed  # some candidates were in the evaluation and had to go


def test_curriculum_sampler_is_deterministic(suite: Path, data_dir: Path) -> None:
    from circuit_atlas.tasks import evaluation_vocabulary

    tok = load_tokenizer(suite)
    vocabulary = build_vocabulary(evaluation_vocabulary(data_dir))
    sampler = CurriculumSampler(CONFIG.curriculum, vocabulary, tok, seed=3)
    row = sampler(5, 0, 64)
    assert len(row) == 64 and row[0] == tok.eos_token_id
    assert sampler(5, 0, 64) == row
    assert sampler(6, 0, 64) != row
    with pytest.raises(UnknownNameError, match="no curriculum for task 'nope'"):
        CurriculumSampler(CurriculumConfig(0.5, ("nope",)), vocabulary, tok, seed=0)


# --- the trainer -------------------------------------------------------------------------------


def test_suite_layout_and_manifest(suite: Path, data_dir: Path) -> None:
    from circuit_atlas.models.sources import list_suite_checkpoints, load_hf_model

    expected = checkpoint_steps(STEPS, CONFIG.n_even)
    assert list_suite_checkpoints(suite, "micro") == expected
    manifest = json.loads((suite / "suite.json").read_text())
    assert manifest["tokens_per_step"] == CONFIG.batch_size * CONFIG.seq_len
    assert manifest["seed"] == CONFIG.seed
    record = manifest["sizes"]["micro"]
    assert record["steps"] == expected and record["complete"] is True
    assert record["n_params"] > record["n_params_non_embedding"] > 0
    assert [h["step"] for h in record["history"]] == expected
    assert all(math.isfinite(h["train_loss"]) for h in record["history"][1:])
    cur = manifest["curriculum"]
    assert cur["helped_tasks"] == EVAL_TASKS and cur["generic"] == ["repeated-tokens"]
    assert cur["unhelped_tasks"] == [] and cur["shared"] == ["names"]
    assert set(cur["weights"]) == set(CONFIG.curriculum.tasks)
    from circuit_atlas.tasks import evaluation_vocabulary

    shared = cur["vocabulary"]["shared_with_evaluation"]
    assert shared == {"names": sorted(evaluation_vocabulary(data_dir)["names"])}
    assert manifest["tokenizer"]["kind"] == "bpe"
    assert [f["name"] for f in manifest["data"]["files"]] == ["brown.txt", "shakespeare.txt"]
    assert not (suite / "micro" / "last").exists()  # resumable state removed once complete
    loaded = load_hf_model(path=suite, name="micro", step=8)
    assert loaded.source.kind == "suite" and loaded.source.step == 8
    assert loaded.source.tokens == 8 * CONFIG.tokens_per_step
    assert loaded.tokenizer is not None and len(loaded.tokenizer) == len(load_tokenizer(suite))
    assert SuiteManifest.read(suite).sizes["micro"].steps == expected


def test_training_lowers_the_loss(suite: Path) -> None:
    history = json.loads((suite / "suite.json").read_text())["sizes"]["micro"]["history"]
    assert history[-1]["train_loss"] < history[1]["train_loss"] - 0.1
    assert history[-1]["val_loss"] is not None


def test_training_is_deterministic_and_resumable(
    suite: Path, corpus: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"

    def kill_at_7(event) -> None:
        if event.event == "step" and event.step == 7:
            raise Killed

    with pytest.raises(Killed):
        train_suite(CONFIG, corpus, out, data_dir=data_dir, progress=kill_at_7)
    assert (out / "micro" / "step4").is_dir() and not (out / "micro" / "step8").exists()
    events = []
    train_suite(CONFIG, corpus, out, data_dir=data_dir, progress=events.append)
    starts = [e for e in events if e.event == "start"]
    assert starts[0].step == 5  # continued from the state saved at step 5, not from scratch
    for step in checkpoint_steps(STEPS, CONFIG.n_even):
        ours = _weights(out / "micro" / f"step{step}")
        reference = _weights(suite / "micro" / f"step{step}")
        assert ours.keys() == reference.keys()
        for name in ours:
            torch.testing.assert_close(ours[name], reference[name], rtol=0, atol=0)
    before = (out / "suite.json").read_text()
    train_suite(CONFIG, corpus, out, data_dir=data_dir)  # complete: nothing to do
    assert json.loads((out / "suite.json").read_text())["sizes"] == json.loads(before)["sizes"]


def test_resume_with_another_config_is_refused(suite: Path, corpus: Path, data_dir: Path) -> None:
    changed = TrainConfig.from_dict({**CONFIG.to_dict(), "seed": 1})
    with pytest.raises(ConfigError, match=r"seed: 0 -> 1"):
        train_suite(changed, corpus, suite, data_dir=data_dir)


def test_missing_corpus_is_reported(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        train_suite(CONFIG, tmp_path / "nope", tmp_path / "out", data_dir=data_dir)


def test_cli_curriculum_weights_and_train_command(tmp_path: Path, corpus: Path, data_dir: Path):
    from typer.testing import CliRunner

    from circuit_atlas.cli import app
    from circuit_atlas.training.cli import parse_curriculum

    parsed = parse_curriculum(0.5, "greater-than:2, ioi")
    assert parsed.tasks == ("greater-than", "ioi") and parsed.weights == (2.0, 1.0)
    assert not parse_curriculum(0.0, "ioi").active
    with pytest.raises(ConfigError, match="curriculum weight 'x' of task 'ioi'"):
        parse_curriculum(0.5, "ioi:x")
    phased = parse_curriculum(0.5, "greater-than:2,ioi", first="ioi:3", first_steps=40)
    assert phased.first_steps == 40 and phased.first_weights == (0.0, 3.0)
    assert phased.task_weights(39) == (0.0, 3.0) and phased.task_weights(40) == (2.0, 1.0)
    assert TrainConfig.from_dict(TrainConfig(curriculum=phased).to_dict()).curriculum == phased
    with pytest.raises(ConfigError, match=r"\['sva'\], which are not in"):
        parse_curriculum(0.5, "ioi", first="sva", first_steps=10)
    out = tmp_path / "cli-suite"
    args = ["train", "--out", str(out), "--corpus", str(corpus), "--sizes", "micro",
            "--steps", "3", "--n-even", "1", "--batch-size", "2", "--seq-len", "16",
            "--vocab-size", "600", "--data-dir", str(data_dir), "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "micro:" in result.output and (out / "micro" / "step3" / "config.json").is_file()


def test_cli_trains_one_suite_per_seed(tmp_path: Path, corpus: Path, data_dir: Path):
    from typer.testing import CliRunner

    from circuit_atlas.cli import app
    from circuit_atlas.models import list_suite_checkpoints

    out = tmp_path / "seeded"
    args = ["train", "--out", str(out), "--corpus", str(corpus), "--sizes", "micro",
            "--steps", "2", "--n-even", "1", "--batch-size", "2", "--seq-len", "16",
            "--vocab-size", "600", "--data-dir", str(data_dir), "--no-progress",
            "--seeds", "0,1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for seed in (0, 1):
        assert list_suite_checkpoints(out / f"seed{seed}", "micro")[-1] == 2
        assert json.loads((out / f"seed{seed}" / "suite.json").read_text())["seed"] == seed
    a = (out / "seed0" / "micro" / "step2" / "model.safetensors").read_bytes()
    b = (out / "seed1" / "micro" / "step2" / "model.safetensors").read_bytes()
    assert a != b  # different runs, not one run copied
    bad = CliRunner().invoke(app, args[:-1] + ["0,x"])
    assert bad.exit_code == 2 and "--seeds: 'x' is not a non-negative integer" in bad.output
