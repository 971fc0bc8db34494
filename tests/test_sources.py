"""Model sources: random init, local HF directories, local suites, and the offline hub cache.

The hub is unreachable here, so the hub path is exercised against a pre-populated cache directory
in the hub's own layout (``models--EleutherAI--pythia-70m/snapshots/<hash>/`` + ``refs/step{N}``)
with ``HF_HUB_OFFLINE=1``: the real ``from_pretrained`` resolves the revision through the refs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from circuit_atlas.errors import (
    InvalidCheckpointError,
    ModelSourceError,
    UnknownNameError,
    UnsupportedArchitectureError,
)
from circuit_atlas.models import (
    ModelSource,
    count_parameters,
    list_suite_checkpoints,
    list_suite_sizes,
    load_hf_model,
    load_model,
    neox_config,
    pythia_spec,
    random_hf_model,
    resolve_device,
    resolve_dtype,
    resolve_schedule,
    save_random_checkpoint,
    tiny_config,
)
from circuit_atlas.models.neox import PatchableGPTNeoX

TINY = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=128)
TINY_PARAMS = count_parameters(2, 32, 50304, d_mlp=128)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


@pytest.fixture(autouse=True)
def _no_hub_env(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)


# --- configs, devices, dtypes ----------------------------------------------------------------


def test_tiny_config_is_tiny_and_pythia_like():
    config = tiny_config()
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size) == (2, 4, 32)
    assert config.vocab_size == 50304 and config.use_parallel_residual
    assert tiny_config(hidden_size=64).hidden_size == 64


def test_device_and_dtype_resolution():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype(None) is torch.float32
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(UnknownNameError, match="'float8'.*bfloat16"):
        resolve_dtype("float8")


# --- random initialisation -------------------------------------------------------------------


def test_random_init_is_seeded_and_leaves_global_rng_alone(pythia_tokenizer):
    before = torch.random.get_rng_state()
    a = load_model(config=tiny_config(), seed=7, device="cpu", tokenizer=pythia_tokenizer)
    b = load_model(config=tiny_config(), seed=7, device="cpu", tokenizer=pythia_tokenizer)
    c = load_model(config=tiny_config(), seed=8, device="cpu", tokenizer=pythia_tokenizer)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert isinstance(a, PatchableGPTNeoX)
    assert_same_weights(a, b)
    assert not torch.equal(a.W_E, c.W_E)
    assert a.source == {
        "kind": "random", "name": "random", "step": None, "path": None, "revision": None,
        "repo_id": None, "seed": 7, "params": TINY_PARAMS, "tokens_per_step": None,
        "tokens": None, "weights_fingerprint": b.source["weights_fingerprint"],
    }  # fmt: skip
    assert a.source["weights_fingerprint"] != c.source["weights_fingerprint"]
    assert a.tokenizer is pythia_tokenizer
    assert a.spec.d_model == 32 and a.dtype == torch.float32


def test_random_init_from_dict_spec_and_pythia_name():
    from_dict = load_hf_model(config={**TINY, "vocab_size": 512}, seed=1, tokenizer=False)
    assert from_dict.model.config.vocab_size == 512
    assert from_dict.source.params == count_parameters(2, 32, 512, d_mlp=128)
    assert from_dict.tokenizer is None  # tokenizer=False: none wanted
    # A Pythia size name gives that size's architecture (checked on the config: no 70M weights).
    assert neox_config("pythia-70m").hidden_size == 512
    assert neox_config(pythia_spec("pythia-160m")).num_hidden_layers == 12
    source = ModelSource("suite", name="tiny", step=10, tokens_per_step=100)
    assert source.tokens == 1000 and source.to_dict()["tokens"] == 1000
    with pytest.raises(UnsupportedArchitectureError, match="'bert'.*supported: 'gpt2'"):
        load_hf_model(config={"model_type": "bert"}, tokenizer=False)


def test_bf16_option(pythia_tokenizer):
    fp32 = load_model(config=tiny_config(), seed=3, device="cpu", tokenizer=pythia_tokenizer)
    bf16 = load_model(config=tiny_config(), seed=3, device="cpu", dtype="bfloat16",
                      tokenizer=pythia_tokenizer)  # fmt: skip
    assert bf16.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    torch.testing.assert_close(bf16.W_E, fp32.W_E.to(torch.bfloat16), rtol=0, atol=0)
    tokens = torch.tensor([[0, 5, 17, 300]])
    torch.testing.assert_close(bf16(tokens).float(), fp32(tokens), rtol=0.05, atol=0.05)


# --- local HF directories --------------------------------------------------------------------


def test_local_directory_round_trip(tmp_path, pythia_tokenizer, monkeypatch):
    from transformers import GPTNeoXForCausalLM

    directory = save_random_checkpoint(tmp_path / "ckpt", tiny_config(), seed=5,
                                       tokenizer=pythia_tokenizer)  # fmt: skip
    assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()

    calls = []
    original = GPTNeoXForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        calls.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(GPTNeoXForCausalLM, "from_pretrained", classmethod(spy))
    model = load_model(path=directory, device="cpu")
    assert calls and all(kw.get("local_files_only") is True for kw in calls)

    reference = random_hf_model(tiny_config(), seed=5)
    assert_same_weights(model, PatchableGPTNeoX.from_hf(reference))
    tokens = torch.tensor([[0, 510, 3158, 8516, 30013]])
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens).logits, rtol=1e-5, atol=1e-5)
    assert model.source["kind"] == "local" and model.source["path"] == str(directory)
    assert model.tokenizer is not None and model.tokenizer is not pythia_tokenizer
    text = " Then, Mary and John went to the store"
    assert model.tokenizer(text)["input_ids"] == pythia_tokenizer(text)["input_ids"]


def test_local_directory_without_tokenizer_falls_back_to_data_dir(tmp_path, data_dir):
    from circuit_atlas.data import load_pythia_tokenizer

    directory = save_random_checkpoint(tmp_path / "ckpt", tiny_config(), seed=0)
    loaded = load_hf_model(path=directory, data_dir=data_dir)
    assert loaded.tokenizer is load_pythia_tokenizer(data_dir)


def test_local_directory_errors(tmp_path):
    from transformers import BertConfig

    with pytest.raises(ModelSourceError, match="nowhere.*does not exist"):
        load_model(path=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="empty.*no config.json"):
        load_model(path=tmp_path / "empty")
    BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2,
               intermediate_size=32).save_pretrained(tmp_path / "bert")  # fmt: skip
    with pytest.raises(UnsupportedArchitectureError, match="bert.*'bert'.*supported: 'gpt2'"):
        load_model(path=tmp_path / "bert")
    tiny_config().save_pretrained(tmp_path / "noweights")
    with pytest.raises(ModelSourceError, match="noweights"):
        load_model(path=tmp_path / "noweights")
    with pytest.raises(ModelSourceError, match="either path= .* or config="):
        load_model(path=tmp_path, config=tiny_config())
    with pytest.raises(ModelSourceError, match="needs a Pythia name"):
        load_model()


# --- local suites ----------------------------------------------------------------------------


@pytest.fixture()
def suite(tmp_path) -> Path:
    root = tmp_path / "suite"
    for step in (0, 10, 20):
        save_random_checkpoint(root / "tiny" / f"step{step}", tiny_config(), seed=step)
    (root / "suite.json").write_text(
        json.dumps({"tokens_per_step": 4096, "sizes": {"tiny": {"steps": [0, 10, 20]}}})
    )
    return root


def test_suite_checkpoints_and_loading(suite, pythia_tokenizer):
    assert list_suite_sizes(suite) == ["tiny"]
    assert list_suite_checkpoints(suite, "tiny") == [0, 10, 20]
    kw = dict(device="cpu", tokenizer=pythia_tokenizer)

    by_name = load_model("tiny", path=suite, step=10, **kw)
    assert by_name.source["kind"] == "suite" and by_name.source["step"] == 10
    assert by_name.source["tokens_per_step"] == 4096 and by_name.source["tokens"] == 40960
    assert_same_weights(by_name, PatchableGPTNeoX.from_hf(random_hf_model(tiny_config(), 10)))

    by_path = load_model(path=suite / "tiny" / "step20", **kw)
    assert (by_path.source["kind"], by_path.source["name"], by_path.source["step"]) == (
        "suite", "tiny", 20,
    )  # fmt: skip
    assert load_model(path=suite / "tiny", step=0, **kw).source["step"] == 0
    assert load_model("tiny", path=suite, **kw).source["step"] == 20  # last by default

    steps = list_suite_checkpoints(suite, "tiny")
    assert resolve_schedule({"kind": "linear", "n": 3}, steps) == [0, 10, 20]


def test_suite_errors(suite):
    with pytest.raises(InvalidCheckpointError, match="step 15 .*tiny.*nearest valid steps: 10, 20"):
        load_model("tiny", path=suite, step=15)
    with pytest.raises(
        ModelSourceError, match=r"no checkpoints for size 'huge'; sizes: \['tiny'\]"
    ):
        list_suite_checkpoints(suite, "huge")
    with pytest.raises(InvalidCheckpointError, match="step 10 does not match"):
        load_model(path=suite / "tiny" / "step20", step=10)


# --- the hub, through a pre-populated offline cache ------------------------------------------

FAKE_HASH = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(cache: Path, repo: str, refs: dict[str, int], tokenizer=None) -> None:
    """Write tiny random models into the HF hub cache layout, one snapshot per seed."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    for revision, seed in refs.items():
        commit = f"{seed:040x}"
        save_random_checkpoint(repo_dir / "snapshots" / commit, tiny_config(), seed=seed,
                               tokenizer=tokenizer)  # fmt: skip
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / revision).write_text(commit)


def test_offline_hub_cache(tmp_path, monkeypatch, pythia_tokenizer):
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "EleutherAI/pythia-70m", {"step143000": 11, "step1000": 12},
                   tokenizer=pythia_tokenizer)  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    final = load_model("pythia-70m", device="cpu")  # default: the final checkpoint
    assert_same_weights(final, PatchableGPTNeoX.from_hf(random_hf_model(tiny_config(), 11)))
    assert final.source == {
        "kind": "pythia", "name": "pythia-70m", "step": 143000, "path": None,
        "revision": "step143000", "repo_id": "EleutherAI/pythia-70m", "seed": None,
        "params": TINY_PARAMS, "tokens_per_step": 2_097_152, "tokens": 299_892_736_000,
        "weights_fingerprint": final.source["weights_fingerprint"],
    }  # fmt: skip
    assert len(final.source["weights_fingerprint"]) == 64
    assert final.tokenizer.name_or_path == "EleutherAI/pythia-70m"  # from the cache snapshot

    early = load_model("EleutherAI/pythia-70m", step=1000, device="cpu", dtype=torch.bfloat16)
    assert early.dtype == torch.bfloat16 and early.source["revision"] == "step1000"
    expected = random_hf_model(tiny_config(), 12, dtype="bfloat16")
    assert_same_weights(early, PatchableGPTNeoX.from_hf(expected))

    with pytest.raises(ModelSourceError, match="EleutherAI/pythia-70m at revision step2000"):
        load_model("pythia-70m", step=2000)


def test_hub_cache_from_hf_home_and_cache_dir(tmp_path, monkeypatch, data_dir):
    from circuit_atlas.data import load_pythia_tokenizer

    fake_hub_cache(tmp_path / "home" / "hub", "EleutherAI/pythia-160m", {"step512": 3})
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    loaded = load_hf_model("pythia-160m", step=512, data_dir=data_dir)
    assert_same_weights(loaded.model, random_hf_model(tiny_config(), 3))
    assert loaded.tokenizer is load_pythia_tokenizer(data_dir)  # no tokenizer in the cache

    monkeypatch.delenv("HF_HOME")
    explicit = load_hf_model("pythia-160m", step=512, cache_dir=tmp_path / "home" / "hub",
                             data_dir=data_dir)  # fmt: skip
    assert explicit.source.revision == "step512"


def test_invalid_hub_step_fails_before_any_download(monkeypatch):
    from transformers import GPTNeoXForCausalLM

    def forbidden(*args, **kwargs):
        raise AssertionError("from_pretrained must not be called")

    monkeypatch.setattr(GPTNeoXForCausalLM, "from_pretrained", forbidden)
    with pytest.raises(InvalidCheckpointError,
                       match="step 1500 is not a checkpoint of pythia-70m; "
                             "nearest valid steps: 1000, 2000"):  # fmt: skip
        load_model("pythia-70m", step=1500)
    with pytest.raises(UnknownNameError, match="pythia-15m"):
        load_model("pythia-15m")
