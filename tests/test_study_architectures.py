"""Studies over any adapter (issue 13, part 6): train or randomly initialise GPT-2 and Llama
suites, then run a whole study over a GPT-2 suite and write its report.

The GPT-2 suite is trained by ``circuit-atlas train --arch gpt2`` (size ``tiny``: 2 layers,
4 heads, d_model 64; 4 steps on a 100 kB slice of the real corpus, BPE vocabulary of 600), and
``circuit-atlas run`` computes behaviour, circuits (EAP-IG, the fast search) and every component
score for each of its checkpoints; ``circuit-atlas report`` writes the page. About 20 s on 2 cores.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from circuit_atlas.cli import app
from circuit_atlas.errors import ConfigError, UnknownNameError, UnsupportedArchitectureError
from circuit_atlas.models.gpt2 import PatchableGPT2
from circuit_atlas.models.llama import PatchableLlama
from circuit_atlas.models.sources import load_hf_model, load_model
from circuit_atlas.store import ResultsStore
from circuit_atlas.training import ARCHITECTURES, SuiteManifest, TrainConfig, get_size, train_suite
from circuit_atlas.training.schedule import checkpoint_steps
from tests.test_study_helpers import COMPONENTS

runner = CliRunner()
STEPS, N_EVEN = 4, 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name in ("brown.txt", "shakespeare.txt"):
        (folder / name).write_bytes((data_dir / "corpus" / name).read_bytes()[:50_000])
    return folder


@pytest.fixture(scope="module")
def gpt2_suite(tmp_path_factory, corpus: Path, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("gpt2") / "suite"
    args = ["train", "--arch", "gpt2", "--out", str(out), "--corpus", str(corpus),
            "--sizes", "tiny", "--steps", str(STEPS), "--n-even", str(N_EVEN),
            "--batch-size", "2", "--seq-len", "32", "--vocab-size", "600",
            "--data-dir", str(data_dir), "--threads", "1", "--no-progress"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


# --- training and random initialisation ---------------------------------------------------------


def test_every_architecture_builds_its_hf_config():
    from circuit_atlas.models.adapters import spec_from_hf_config

    assert set(ARCHITECTURES) == {"gpt_neox", "gpt2", "llama"}
    size = get_size("tiny")
    for arch, parallel in (("gpt_neox", True), ("gpt2", False), ("llama", False)):
        config = size.hf_config(600, arch=arch)
        spec = spec_from_hf_config(config)  # the adapter accepts every option the builder sets
        assert config.model_type == arch
        assert (spec.n_layers, spec.n_heads, spec.d_model, spec.d_mlp) == (2, 4, 64, 256)
        assert spec.parallel_residual is parallel and spec.vocab_size == 600
    gpt2 = spec_from_hf_config(size.hf_config(600, arch="gpt2"))
    assert gpt2.positional == "learned" and gpt2.tied_embeddings
    llama = spec_from_hf_config(size.hf_config(600, arch="llama"))
    assert llama.norm == "rmsnorm" and llama.gated_mlp and llama.rotary_pct == 1.0
    with pytest.raises(UnknownNameError, match="'bert'.*gpt_neox, gpt2, llama"):
        size.hf_config(600, arch="bert")
    with pytest.raises(ConfigError, match="arch must be one of gpt_neox, gpt2, llama, got 'gpt3'"):
        TrainConfig(arch="gpt3")  # type: ignore[arg-type]


def test_train_gpt2_records_the_architecture(gpt2_suite: Path):
    manifest = json.loads((gpt2_suite / "suite.json").read_text())
    assert manifest["architecture"] == "gpt2" and manifest["config"]["arch"] == "gpt2"
    record = manifest["sizes"]["tiny"]
    assert record["steps"] == checkpoint_steps(STEPS, N_EVEN) and record["complete"]
    config = json.loads((gpt2_suite / "tiny" / f"step{STEPS}" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    # Tied embeddings are one matrix: the non-embedding count subtracts it once.
    rows = config["vocab_size"]  # the BPE's 600 merges plus the forced task words, padded
    assert record["n_params"] - record["n_params_non_embedding"] == rows * 64
    model = load_model(path=gpt2_suite, name="tiny", step=STEPS, device="cpu")
    assert isinstance(model, PatchableGPT2) and model.spec.architecture == "gpt2"
    assert SuiteManifest.read(gpt2_suite).architecture == "gpt2"
    history = record["history"]
    assert history[-1]["train_loss"] < history[1]["train_loss"]  # it trained


def test_resume_with_another_architecture_is_refused(gpt2_suite: Path, corpus: Path,
                                                     data_dir: Path):
    config = TrainConfig.from_dict(SuiteManifest.read(gpt2_suite).config)
    changed = TrainConfig.from_dict({**config.to_dict(), "arch": "llama"})
    with pytest.raises(ConfigError, match=r"another config \(arch: 'gpt2' -> 'llama'\)"):
        train_suite(changed, corpus, gpt2_suite, data_dir=data_dir)


def test_train_llama_suite(tmp_path: Path, corpus: Path, data_dir: Path):
    config = TrainConfig(sizes=("micro",), arch="llama", steps=2, n_even=1, batch_size=2,
                         seq_len=16, vocab_size=600, val_batches=0)
    manifest = train_suite(config, corpus, tmp_path / "llama", data_dir=data_dir)
    assert manifest.architecture == "llama"
    model = load_model(path=tmp_path / "llama", name="micro", step=2, device="cpu")
    assert isinstance(model, PatchableLlama) and model.spec.norm == "rmsnorm"


@pytest.mark.parametrize(("config", "cls"), [
    ({"model_type": "gpt2", "n_layer": 2, "n_head": 4, "n_embd": 32, "vocab_size": 97},
     PatchableGPT2),
    ({"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "hidden_size": 32, "intermediate_size": 64, "vocab_size": 97},
     PatchableLlama),
])  # fmt: skip
def test_random_init_of_other_architectures(config: dict, cls: type):
    model = load_model(config=config, seed=3, tokenizer=False, device="cpu")
    assert isinstance(model, cls) and model.source["kind"] == "random"
    hf = load_hf_model(config=config, seed=3, tokenizer=False).model
    tokens = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.forward(tokens), hf(tokens).logits, rtol=1e-4, atol=1e-4)
    again = load_model(config=config, seed=3, tokenizer=False, device="cpu")
    assert again.source["weights_fingerprint"] == model.source["weights_fingerprint"]
    with pytest.raises(UnsupportedArchitectureError, match="'bert'"):
        load_model(config={"model_type": "bert"}, tokenizer=False)


# --- a study over a GPT-2 suite, end to end ------------------------------------------------------

STUDY = """\
name = "gpt2-study"
data_dir = "{data_dir}"
analyses = ["behaviour", "circuit", "components"]

[[models]]
kind = "suite"
path = "suite"
schedule = "all"

[[tasks]]
name = "ioi"
n = 6

[[tasks]]
name = "greater-than"
n = 6

[attribution]
method = "EAP-IG-inputs"
ig_steps = 2

[circuit]
threshold = 0.8
search = "fast"

[run]
device = "cpu"
batch_size = 6
threads = 1
"""


def test_study_over_a_gpt2_suite_end_to_end(gpt2_suite: Path, data_dir: Path):
    from circuit_atlas.graph import Graph

    root = gpt2_suite.parent
    study = root / "study.toml"
    study.write_text(textwrap.dedent(STUDY.format(data_dir=data_dir) + COMPONENTS))
    result = runner.invoke(app, ["run", str(study), "-r", str(root / "results"), "--no-progress"])
    assert result.exit_code == 0, result.output
    steps = checkpoint_steps(STEPS, N_EVEN)
    assert f"{len(steps)} units done, 0 already there, 0 failed" in result.output
    store = ResultsStore(root / "results")
    units = store.table("units").sort_values("step")
    assert units["step"].tolist() == steps and set(units["status"]) == {"complete"}
    spec = json.loads(units["spec"].iloc[0])
    assert spec["architecture"] == "gpt2" and spec["positional"] == "learned"
    n_edges = Graph(2, 4, parallel_residual=False).n_edges  # each MLP reads its own layer's heads
    circuits = store.table("circuits")
    assert len(circuits) == 2 * len(steps) and set(circuits["n_edges_total"]) == {n_edges}
    assert len(store.table("edges")) == 2 * len(steps) * n_edges
    assert store.table("edges")["score"].abs().sum() > 0  # attribution ran on the GPT-2 forward
    scores = store.table("component_scores")
    assert not scores.empty and set(scores["step"]) == set(steps)
    from circuit_atlas.components import COMPONENTS as KINDS

    assert set(scores["component"]) == set(KINDS)
    induction = scores[scores["component"] == "induction"]["score"]
    assert len(induction) == len(steps) * 2 * 4 and (induction > 0).all()  # every head, scored
    out = root / "report.html"
    result = runner.invoke(app, ["report", str(root / "results"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "suite-tiny" in page and "report: gpt2-study" in page  # the model, the study
    assert "Component scores over training" in page and "<img" in page
