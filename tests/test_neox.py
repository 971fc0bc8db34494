"""Our patchable forward equals transformers' GPTNeoXForCausalLM on the same weights."""

from __future__ import annotations

import pytest
import torch

from circuit_atlas.errors import UnsupportedArchitectureError
from circuit_atlas.models.neox import PatchableGPTNeoX
from tests.tiny import hf_model


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("heads,d_model", [(4, 32), (2, 48)])
def test_logits_equal_transformers_fp32(parallel, heads, d_model):
    hf = hf_model(parallel=parallel, heads=heads, d_model=d_model, dtype=torch.float32, scale=3.0)
    model = PatchableGPTNeoX.from_hf(hf)
    tokens = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(tokens).logits
        ours = model(tokens)
    assert ref.abs().max() > 0.5  # non-trivial logits, so the tolerance below means something
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_run_reads_logits_at_positions():
    hf = hf_model(dtype=torch.float32)
    model = PatchableGPTNeoX.from_hf(hf)
    tokens = torch.randint(0, 64, (4, 7), generator=torch.Generator().manual_seed(1))
    positions = torch.tensor([6, 3, 0, 5])
    with torch.no_grad():
        full = hf(tokens).logits
        ours = model.run(tokens, positions)
    torch.testing.assert_close(ours, full[torch.arange(4), positions], atol=1e-4, rtol=1e-4)


def test_bf16_runs_and_stays_close():
    hf = hf_model(dtype=torch.float32, scale=1.0)
    ref = PatchableGPTNeoX.from_hf(hf)
    half = PatchableGPTNeoX.from_hf(hf.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    tokens = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = ref(tokens)
        b = half(tokens).float()
    assert torch.isfinite(b).all()
    assert (a - b).abs().max() < 0.05 * a.abs().max() + 0.05


def test_rejects_other_architectures():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=32))
    with pytest.raises(UnsupportedArchitectureError, match="gpt2"):
        PatchableGPTNeoX.from_hf(gpt2)
