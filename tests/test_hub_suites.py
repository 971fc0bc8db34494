"""The hub-suite registry, branch-name schemes and the cached branch list (no network).

The hub is unreachable here: ``huggingface_hub.list_repo_refs`` is replaced by a fake, and the
offline path reads hand-built hub caches in the hub's own layout
(``models--org--name/refs/<branch>`` + ``snapshots/<commit>/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from circuit_atlas.errors import (
    InvalidCheckpointError,
    ModelSourceError,
    RevisionListError,
    UnknownNameError,
    UnsupportedArchitectureError,
)
from circuit_atlas.models import get_pythia, load_model, resolve_schedule
from circuit_atlas.models.adapters import ADAPTERS
from circuit_atlas.models.hub_suites import (
    HUB_SUITES,
    get_hub_suite,
    list_hub_models,
    resolve_hub_model,
)
from circuit_atlas.models.revisions import (
    REVISION_SCHEMES,
    get_revision_scheme,
    list_repo_revisions,
)

# Two branch names per suite as its publisher writes them, with the step and tokens they mean.
BRANCHES = {
    "olmo": [("step20000-tokens84B", 20000, 84_000_000_000), ("step0-tokens0B", 0, 0)],
    "olmo-2": [("stage1-step120000-tokens252B", 120000, 252_000_000_000),
               ("step150-tokens1B", 150, 1_000_000_000)],
    "crfm-gpt2": [("checkpoint-400000", 400000, None), ("checkpoint-10", 10, None)],
    "smollm2": [("step-125000", 125000, None), ("step-250000", 250000, None)],
    "amber": [("ckpt_000", 0, None), ("ckpt_359", 359, None)],
}


@pytest.fixture(autouse=True)
def _no_hub_env(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)


def fake_refs(cache: Path, repo: str, branches, snapshot=None) -> None:
    """Write hub-cache refs for ``branches`` (each pointing at one commit)."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    commit = "ab" * 20
    (repo_dir / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    for branch in branches:
        (repo_dir / "refs" / branch).write_text(commit)


def test_every_scheme_parses_its_example_and_rejects_other_names():
    for scheme in REVISION_SCHEMES.values():
        assert scheme.parse(scheme.example) is not None, scheme.name
        assert scheme.parse("main") is None
    assert get_revision_scheme("step-tokens").parse("step20000-tokens84B") == (20000, 84 * 10**9)
    assert get_revision_scheme("step").parse("step20000-tokens84B") is None  # fullmatch only
    assert get_revision_scheme("ckpt").parse("ckpt_007") == (7, None)
    with pytest.raises(UnknownNameError, match="unknown revision scheme 'nope'; valid: step"):
        get_revision_scheme("nope")


def test_every_suite_is_well_formed():
    for suite in HUB_SUITES.values():
        assert suite.revisions in REVISION_SCHEMES and suite.sizes and suite.verified
        assert suite.supported == (suite.architecture in ADAPTERS)
        for size in suite.sizes:
            assert suite.default_seed in suite.seeds(size)
            assert set(suite.tokens_per_step) <= set(suite.sizes)
        json.dumps(suite.to_dict())
    assert [s.name for s in HUB_SUITES.values() if not s.supported] == ["olmo-2"]


@pytest.mark.parametrize("name", [n for n in HUB_SUITES if n != "pythia"])
def test_every_suite_reads_its_branch_list_from_a_hand_built_hub_cache(name, tmp_path,
                                                                        monkeypatch):
    suite = get_hub_suite(name)
    branches = BRANCHES[name]
    size = suite.sizes[0]
    model = suite.model(size)
    fake_refs(tmp_path / "hub", model.repo_id, ["main"] + [b for b, _, _ in branches])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoints = model.checkpoints(revisions_dir=tmp_path / "rev", hub_cache_dir=tmp_path / "hub")
    per_step = suite.tokens_per_step.get(size)
    expected = sorted((s, b, t if per_step is None else s * per_step) for b, s, t in branches)
    assert [(c.step, c.revision, c.tokens) for c in checkpoints] == expected
    steps = [c.step for c in checkpoints]
    assert resolve_schedule("all", steps) == sorted(steps)  # named schedules apply to any suite
    assert resolve_schedule("final", steps) == [max(steps)]


def test_pythia_is_the_published_list_and_polypythias_seeds_are_registered():
    pythia = resolve_hub_model("pythia-160m", seed=3)
    assert pythia.repo_id == "EleutherAI/pythia-160m-seed3" and pythia.name == "pythia-160m-seed3"
    assert pythia.base_name == "pythia-160m"
    checkpoints = pythia.checkpoints()  # no hub, no cache: the published 154
    assert len(checkpoints) == 154 and checkpoints[-1].revision == "step143000"
    assert checkpoints[-1].tokens == 299_892_736_000
    assert get_pythia("pythia-410m-seed9").repo_id == "EleutherAI/pythia-410m-seed9"
    assert get_pythia("pythia-160m-data-seed2").variant == "data-seed2"
    assert get_hub_suite("pythia").seeds("1b") == (0,)
    with pytest.raises(UnknownNameError, match=r"pythia-1b has no seed 1; seeds: 0"):
        resolve_hub_model("pythia-1b", seed=1)


def test_names_seeds_and_unknown_names():
    crfm = resolve_hub_model("CRFM-GPT2-small-seed49")
    assert (crfm.repo_id, crfm.seed, crfm.name) == (
        "stanford-crfm/battlestar-gpt2-small-x49", 49, "crfm-gpt2-small-seed49")
    assert resolve_hub_model("crfm-gpt2-small").seed == 21  # the suite's original run
    assert resolve_hub_model("olmo-2-13b").suite.name == "olmo-2"  # not olmo + size "2-13b"
    assert "amber-7b" in list_hub_models()
    with pytest.raises(UnknownNameError, match="unknown hub model 'olmo-3b'; valid: pythia-14m"):
        resolve_hub_model("olmo-3b")
    with pytest.raises(UnknownNameError, match="unknown hub suite 'gpt5'"):
        get_hub_suite("gpt5")


def test_duplicate_steps_are_an_error_unless_a_prefix_is_preferred():
    olmo2 = get_revision_scheme("stage1-step-tokens")
    kept = olmo2.checkpoints(["step150-tokens1B", "stage1-step150-tokens1B"])
    assert [c.revision for c in kept] == ["stage1-step150-tokens1B"]
    kept = olmo2.checkpoints(["stage1-step150-tokens1B", "step150-tokens1B"])
    assert [c.revision for c in kept] == ["stage1-step150-tokens1B"]
    with pytest.raises(ModelSourceError, match="'step07' and 'step7' both name step 7"):
        get_revision_scheme("step").checkpoints(["step7", "step07"])


# --- where the branch list comes from ---------------------------------------------------------


def _fake_hub(monkeypatch, branches, calls):
    import huggingface_hub

    def list_repo_refs(repo_id, **kwargs):
        calls.append(repo_id)
        return SimpleNamespace(branches=[SimpleNamespace(name=b) for b in branches])

    monkeypatch.setattr(huggingface_hub, "list_repo_refs", list_repo_refs)


def test_branch_list_is_asked_once_cached_and_read_offline(tmp_path, monkeypatch):
    calls: list[str] = []
    _fake_hub(monkeypatch, ["main", "ckpt_001", "ckpt_000"], calls)
    first = list_repo_revisions("LLM360/Amber", revisions_dir=tmp_path)
    assert first.source == "hub" and first.branches == ("ckpt_000", "ckpt_001", "main")
    cached = json.loads((tmp_path / "LLM360--Amber.json").read_text())
    assert cached["branches"] == ["ckpt_000", "ckpt_001", "main"]
    assert cached["repo_id"] == "LLM360/Amber" and cached["fetched_at"] == first.fetched_at

    second = list_repo_revisions("LLM360/Amber", revisions_dir=tmp_path)
    assert second.source == "cache" and second.branches == first.branches and calls == [
        "LLM360/Amber"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert list_repo_revisions("LLM360/Amber", revisions_dir=tmp_path).source == "cache"
    assert calls == ["LLM360/Amber"]  # offline never asks
    with pytest.raises(RevisionListError, match="cannot refresh the revisions of LLM360/Amber"):
        list_repo_revisions("LLM360/Amber", revisions_dir=tmp_path, refresh=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    _fake_hub(monkeypatch, ["ckpt_000", "ckpt_001", "ckpt_002"], calls)
    assert list_repo_revisions("LLM360/Amber", revisions_dir=tmp_path,
                               refresh=True).branches[-1] == "ckpt_002"
    assert list_repo_revisions("LLM360/Amber", revisions_dir=tmp_path).branches[-1] == "ckpt_002"


def test_unreachable_hub_falls_back_to_the_hub_cache_then_fails_clearly(tmp_path, monkeypatch,
                                                                        caplog):
    import huggingface_hub

    def down(repo_id, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "list_repo_refs", down)
    fake_refs(tmp_path / "hub", "LLM360/Amber", ["ckpt_005"])
    listing = list_repo_revisions("LLM360/Amber", revisions_dir=tmp_path / "rev",
                                  hub_cache_dir=tmp_path / "hub")
    assert listing.source == "hub-cache" and listing.branches == ("ckpt_005",)
    assert "only what was downloaded" in caplog.text
    assert not (tmp_path / "rev").exists()  # a partial list is never cached as the full one
    with pytest.raises(RevisionListError,
                       match=r"revisions of allenai/OLMo-1B-hf are unknown: no cached list at .*"
                             r"network is unreachable.*never guesses"):
        list_repo_revisions("allenai/OLMo-1B-hf", revisions_dir=tmp_path / "rev",
                            hub_cache_dir=tmp_path / "hub")
    (tmp_path / "rev").mkdir()
    (tmp_path / "rev" / "LLM360--Amber.json").write_text("{not json")
    with pytest.raises(RevisionListError, match="Amber.json' of LLM360/Amber is unreadable"):
        list_repo_revisions("LLM360/Amber", revisions_dir=tmp_path / "rev")


# --- loading a non-Pythia suite from a hand-built hub cache ------------------------------------


def _gpt2(seed: int):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=64, n_positions=32)
    return transformers.GPT2LMHeadModel(cfg).eval()


def test_load_a_crfm_gpt2_checkpoint_offline_by_step(tmp_path, monkeypatch):
    repo = "stanford-crfm/battlestar-gpt2-small-x49"
    repo_dir = tmp_path / "hub" / ("models--" + repo.replace("/", "--"))
    models = {}
    for step, seed in ((100, 1), (200, 2)):
        commit = f"{seed:040x}"
        models[step] = _gpt2(seed)
        models[step].save_pretrained(repo_dir / "snapshots" / commit)
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / f"checkpoint-{step}").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kw = dict(cache_dir=tmp_path / "hub", revisions_dir=tmp_path / "rev", tokenizer=False,
              device="cpu")
    model = load_model("crfm-gpt2-small-seed49", step=100, **kw)
    assert model.source["kind"] == "hub" and model.source["revision"] == "checkpoint-100"
    assert model.source["repo_id"] == repo and len(model.source["weights_fingerprint"]) == 64
    ids = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(model(ids), models[100](ids).logits, rtol=1e-5, atol=1e-5)
    assert load_model("crfm-gpt2-small-seed49", **kw).source["step"] == 200  # last by default
    with pytest.raises(InvalidCheckpointError, match="step 150 is not a checkpoint of "
                                                     "crfm-gpt2-small-seed49.*100, 200"):
        load_model("crfm-gpt2-small-seed49", step=150, **kw)


def test_unsupported_architecture_is_refused_before_any_download(tmp_path, monkeypatch):
    import huggingface_hub

    def forbidden(*args, **kwargs):
        raise AssertionError("the hub must not be asked")

    monkeypatch.setattr(huggingface_hub, "list_repo_refs", forbidden)
    with pytest.raises(UnsupportedArchitectureError, match="suite 'olmo-2'.*model_type 'olmo2'"):
        load_model("olmo-2-1b", step=150, revisions_dir=tmp_path)
