"""Every adapter's forward equals its HF class; the registry; the graph of each architecture."""

from __future__ import annotations

import pytest
import torch

from circuit_atlas.errors import TaskDataError, UnsupportedArchitectureError
from circuit_atlas.graph import Graph
from circuit_atlas.models.adapters import (
    ADAPTERS,
    from_hf,
    get_adapter,
    spec_from_hf_config,
    supported_model_types,
)
from circuit_atlas.models.gpt2 import PatchableGPT2
from circuit_atlas.models.llama import PatchableLlama
from circuit_atlas.models.protocol import PatchableModel
from circuit_atlas.models.sources import load_model
from tests.tiny import ARCHS, arch_model


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("heads,d_model", [(4, 32), (2, 48)])
def test_logits_equal_transformers_fp32(arch, heads, d_model):
    hf = arch_model(arch, heads=heads, d_model=d_model, dtype=torch.float32, scale=3.0)
    model = from_hf(hf)
    assert isinstance(model, PatchableModel)
    tokens = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(tokens).logits
        ours = model(tokens)
        at = model.run(tokens, torch.tensor([10, 4, 0]))
    assert ref.abs().max() > 0.5  # non-trivial logits, so the tolerance below means something
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(at, ref[torch.arange(3), torch.tensor([10, 4, 0])],
                               atol=1e-4, rtol=1e-4)  # fmt: skip


def test_adapter_classes_and_spec():
    gpt2 = from_hf(arch_model("gpt2", dtype=torch.float32))
    assert type(gpt2) is PatchableGPT2
    assert gpt2.spec.positional == "learned" and not gpt2.spec.parallel_residual
    assert gpt2.spec.tied_embeddings and gpt2.rotary_dims == 0
    llama = from_hf(arch_model("llama", heads=4, d_model=32, kv_heads=2, dtype=torch.float32))
    assert type(llama) is PatchableLlama
    assert llama.spec.norm == "rmsnorm" and llama.spec.gated_mlp and llama.spec.n_kv_heads == 2
    assert llama.rotary_dims == llama.spec.d_head
    olmo = from_hf(arch_model("olmo", dtype=torch.float32))
    assert olmo.spec.norm == "layernorm"
    w, b = olmo.norm_weights("attn", 0)  # non-parametric LayerNorm: ones and zeros
    torch.testing.assert_close(w, torch.ones_like(w), atol=0, rtol=0)
    torch.testing.assert_close(b, torch.zeros_like(b), atol=0, rtol=0)
    assert sorted(ADAPTERS) == supported_model_types() == list(sorted(ARCHS))


def test_learned_positions_refuse_longer_prompts():
    model = from_hf(arch_model("gpt2", dtype=torch.float32))  # 64 positions
    with pytest.raises(TaskDataError, match="65 token positions exceed the 64 learned positions"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_grouped_query_attention_is_ungrouped_per_head():
    """Each query head has its own k/v slots; heads of one group share K/V weights (copies)."""
    hf = arch_model("llama", heads=4, d_model=32, kv_heads=2, dtype=torch.float32)
    model = from_hf(hf)
    w_q, _, w_k, _ = model.qk(0)
    w_v, _, _ = model.ov(0)
    assert w_k.shape == (4, 32, 8) and w_v.shape == (4, 32, 8)
    torch.testing.assert_close(w_k[0], w_k[1], atol=0, rtol=0)  # group 0: heads 0, 1
    torch.testing.assert_close(w_v[2], w_v[3], atol=0, rtol=0)  # group 1: heads 2, 3
    assert not torch.equal(w_k[1], w_k[2]) and not torch.equal(w_q[0], w_q[1])
    k_proj = hf.model.layers[0].self_attn.k_proj.weight  # (g·e, d)
    torch.testing.assert_close(w_k[3], k_proj[8:16].T, atol=0, rtol=0)
    names = set(model.graph.edge_names)
    assert {"input->a0.h0<k>", "input->a0.h1<k>", "input->a0.h1<v>"} <= names


def test_gpt2_small_graph_counts_equal_eap_ig():
    """GPT-2 small (12 × 12, sequential residual): EAP-IG/MIB's 158 nodes and 32,491 edges."""
    from transformers import GPT2Config

    g = Graph.from_spec(spec_from_hf_config(GPT2Config()))  # GPT-2 small by default; no weights
    assert (g.n_nodes, g.n_edges) == (158, 32_491)
    # The 144 edges more than Pythia-160m's 32,347 are each head into its own layer's MLP.
    assert "a3.h7->m3" in g.edge_index_by_name
    parallel = Graph(12, 12, parallel_residual=True)
    assert g.n_edges - parallel.n_edges == 12 * 12 and "a3.h7->m3" not in parallel.edge_names


@pytest.mark.parametrize("arch", ["llama", "qwen2", "olmo"])
def test_llama_family_graph_is_sequential_with_per_head_kv(arch):
    hf = arch_model(arch, layers=3, heads=4, d_model=32, kv_heads=1, dtype=torch.float32)
    g = Graph.from_spec(spec_from_hf_config(hf.config))
    # Sequential residual, 3 layers × 4 heads: 1 + 3·5 + 1 nodes; per-head q/k/v inputs.
    assert g.n_nodes == 17
    assert g.n_edges == Graph(3, 4, parallel_residual=False).n_edges
    assert g.n_backward == 3 * (3 * 4 + 1) + 1


def test_unsupported_model_type_names_it_and_lists_supported():
    from transformers import BertConfig

    listed = "supported: 'gpt2', 'gpt_neox', 'llama', 'olmo', 'qwen2'"
    with pytest.raises(UnsupportedArchitectureError, match=f"'bert'.*{listed}"):
        spec_from_hf_config(BertConfig())
    with pytest.raises(UnsupportedArchitectureError, match="None"):
        get_adapter(None)


def test_unsupported_options_are_refused():
    from transformers import GPT2Config, LlamaConfig

    with pytest.raises(UnsupportedArchitectureError, match="activation 'swish2'.*supported: gelu"):
        spec_from_hf_config(GPT2Config(activation_function="swish2"))
    with pytest.raises(UnsupportedArchitectureError, match="scale_attn_by_inverse_layer_idx"):
        spec_from_hf_config(GPT2Config(scale_attn_by_inverse_layer_idx=True))
    scaled = LlamaConfig(rope_parameters={"rope_type": "yarn", "factor": 2.0,
                                          "rope_theta": 10000.0})  # fmt: skip
    with pytest.raises(UnsupportedArchitectureError, match="rope_type='yarn'"):
        spec_from_hf_config(scaled)


def test_olmo_clip_qkv_equals_transformers():
    hf = arch_model("olmo", heads=4, d_model=32, clip_qkv=0.5, dtype=torch.float32, scale=3.0)
    model = from_hf(hf)
    assert model.spec.clip_qkv == 0.5
    tokens = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(tokens).logits
        torch.testing.assert_close(model(tokens), ref, atol=1e-4, rtol=1e-4)
        qkv = model.qkv(0, model.embed(tokens)[None, None])
        unclipped = from_hf(arch_model("olmo", heads=4, d_model=32, dtype=torch.float32,
                                       scale=3.0))(tokens)  # fmt: skip
    assert qkv.abs().max() == 0.5  # the clamp is active on these weights
    assert (unclipped - ref).abs().max() > 1e-2


@pytest.mark.parametrize("rope", [
    {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 16, "rope_theta": 500000.0},
])  # fmt: skip
def test_scaled_rotary_of_llama_3(rope):
    """Llama 3.x's ``llama3`` (and ``linear``) rotary frequencies: the forward still equals HF."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, num_attention_heads=2, num_key_value_heads=1,
                      num_hidden_layers=2, intermediate_size=48, vocab_size=64,
                      max_position_embeddings=64, rope_parameters=rope)  # fmt: skip
    hf = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.mul_(3.0) if p.dim() > 1 else p.add_(0.3 * torch.randn_like(p))
    model = from_hf(hf)
    assert model.spec.rope_type == rope["rope_type"]
    e = model.spec.d_head
    default = 1.0 / rope["rope_theta"] ** (torch.arange(0, e, 2).float() / e)
    assert not torch.allclose(model.inv_freq, default)  # the scaling changed the frequencies
    tokens = torch.randint(0, 64, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_load_model_reads_a_local_directory_of_each_architecture(arch, tmp_path):
    hf = arch_model(arch, dtype=torch.float32, scale=3.0)
    hf.save_pretrained(tmp_path / arch)
    model = load_model(path=tmp_path / arch, device="cpu", tokenizer=False)
    assert type(model) is ADAPTERS[arch].model_class and model.spec.architecture == arch
    assert model.source["kind"] == "local" and model.source["weights_fingerprint"]
    tokens = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-4, rtol=1e-4)


def test_load_model_refuses_an_unsupported_directory(tmp_path):
    from transformers import BertConfig

    BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2,
               intermediate_size=32).save_pretrained(tmp_path / "bert")  # fmt: skip
    with pytest.raises(UnsupportedArchitectureError, match="bert.*'bert'.*supported: 'gpt2'"):
        load_model(path=tmp_path / "bert")


@pytest.mark.parametrize("arch", ARCHS[1:])
def test_bf16_runs_and_stays_close(arch):
    hf = arch_model(arch, heads=4, d_model=32, dtype=torch.float32, scale=1.0)
    ref = from_hf(hf)
    half = from_hf(hf.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    tokens = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = ref(tokens), half(tokens).float()
    assert torch.isfinite(b).all()
    assert (a - b).abs().max() < 0.05 * a.abs().max() + 0.05
