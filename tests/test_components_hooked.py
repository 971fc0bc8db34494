"""The component-score forward (components.hooked.trace) equals the model's own forward."""

from __future__ import annotations

import pytest
import torch

from circuit_atlas.components.hooked import head_values, trace
from tests.tiny import ARCHS, arch_model, hf_model, patchable


@pytest.mark.parametrize("parallel", [True, False])
def test_trace_equals_hf_forward(parallel):
    hf = hf_model(parallel=parallel, layers=3)
    model = patchable(hf)
    tokens = torch.randint(0, 64, (3, 7), generator=torch.Generator().manual_seed(0))
    t = trace(model, tokens, record=("logits", "resid", "heads", "mlp", "patterns"))
    torch.testing.assert_close(t.logits, hf(tokens).logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(t.logits, model(tokens), rtol=1e-9, atol=1e-9)
    # The residual stream is the sum of the embedding, every head, every b_O and every MLP.
    b_o = sum(layer.b_O for layer in model.layers)
    total = t.resid[0] + t.heads.sum((0, 1)) + t.mlp.sum(0) + b_o
    torch.testing.assert_close(t.resid[-1], total)
    torch.testing.assert_close(t.patterns.sum(-1), torch.ones_like(t.patterns.sum(-1)))
    assert torch.all(t.patterns.triu(1) == 0)
    # Head outputs are pattern-weighted values through W_O.
    v = head_values(model, 1, t.resid[1])  # (h, b, p, e)
    out = torch.einsum("hbqk,hbke,hed->hbqd", t.patterns[1].double(), v, model.layers[1].W_O)
    torch.testing.assert_close(out, t.heads[1])


def test_edits_propagate():
    model = patchable(hf_model(layers=2))
    tokens = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(1))
    base = trace(model, tokens, record=("logits", "heads"))
    same = trace(model, tokens, head_edit=lambda layer, out: out,
                 qkv_edit=lambda layer, x: x.clone())
    torch.testing.assert_close(same.logits, base.logits)

    def zero_head(layer, out):
        out = out.clone()
        if layer == 0:
            out[1] = 0
        return out

    edited = trace(model, tokens, record=("logits", "heads"), head_edit=zero_head)
    assert torch.all(edited.heads[0, 1] == 0)
    assert not torch.allclose(edited.logits, base.logits)
    with pytest.raises(ValueError, match="cannot record"):
        trace(model, tokens, record=("attn_scores",))


@pytest.mark.parametrize("arch", ARCHS[1:])
def test_trace_equals_hf_forward_on_every_adapter(arch):
    """The residual walker equals HF's forward on GPT-2 and the Llama family too."""
    hf = arch_model(arch, layers=3, heads=4, d_model=32)
    model = patchable(hf)
    tokens = torch.randint(0, 64, (3, 7), generator=torch.Generator().manual_seed(0))
    t = trace(model, tokens, record=("logits", "resid", "heads", "mlp", "patterns"))
    torch.testing.assert_close(t.logits, hf(tokens).logits, rtol=1e-6, atol=1e-6)
    b_o = sum(model.attn_out_bias(layer) for layer in range(3))
    total = t.resid[0] + t.heads.sum((0, 1)) + t.mlp.sum(0) + b_o
    torch.testing.assert_close(t.resid[-1], total)
    v = head_values(model, 1, t.resid[1])  # (h, b, p, e)
    out = torch.einsum("hbqk,hbke,hed->hbqd", t.patterns[1].double(), v, model.ov(1)[2])
    torch.testing.assert_close(out, t.heads[1])
