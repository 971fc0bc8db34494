"""Copy scores on IOI prompts (components.copy_score).

Reference tests: a tiny model whose block 0 writes nothing (so the residual after block 0 is the
embedding) and whose layer-1 head copies each name's embedding onto the same name's
unembedding scores copy 1 / negative copy 0, and its negation the opposite. The batched scores
equal a loop over heads and positions written the reference's way: TransformerLens-folded
weights (fold_ln, center_writing_weights, center_unembed), plain matmuls and ``torch.topk``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import circuit_atlas.components.copy_score as copy_module
from circuit_atlas.components.copy_score import copy_score_pair, copy_scores, name_positions
from circuit_atlas.components.hooked import trace
from circuit_atlas.models.configs import random_hf_model, tiny_config
from circuit_atlas.models.neox import PatchableGPTNeoX
from circuit_atlas.tasks.base import TaskDataset
from circuit_atlas.tasks.ioi import make_ioi
from tests.tiny import hf_model, patchable

V = 64
NAMES = list(range(10, 20))


def _toy_ioi(n: int = 6, seed: int = 0) -> TaskDataset:
    """IOI-shaped prompts over a 64-token vocabulary: names are tokens 10..19."""
    g = torch.Generator().manual_seed(seed)
    p = 9
    clean = torch.randint(20, V, (n, p), generator=g)
    io_pos, s1_pos, s2_pos = [], [], []
    io, s = [], []
    for i in range(n):
        a, b = torch.randperm(len(NAMES), generator=g)[:2].tolist()
        first, second = (1, 3) if i % 2 else (3, 1)  # ABBA and BABA orders
        clean[i, first], clean[i, second], clean[i, 6 + i % 2] = NAMES[a], NAMES[b], NAMES[b]
        io_pos.append(first)
        s1_pos.append(second)
        s2_pos.append(6 + i % 2)
        io.append(NAMES[a])
        s.append(NAMES[b])
    corrupted = clean.clone()
    corrupted[torch.arange(n), torch.tensor(s2_pos)] = torch.tensor(io)
    lengths = torch.tensor([p - (i % 2) for i in range(n)])
    return TaskDataset(
        "ioi",
        clean,
        corrupted,
        lengths,
        torch.tensor(io),
        torch.tensor(s),
        "logit_diff",
        info={"io_pos": tuple(io_pos), "s1_pos": tuple(s1_pos), "s2_pos": tuple(s2_pos)},
    )


def _copy_model() -> PatchableGPTNeoX:
    """Block 0 writes nothing; head 1.0 copies names, head 1.1 copies negated names."""
    cfg = tiny_config(vocab_size=V, hidden_size=64, num_attention_heads=2, num_hidden_layers=2)
    model = PatchableGPTNeoX.from_hf(random_hf_model(cfg, seed=2, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    eye = torch.eye(64, dtype=torch.float64)
    w = eye[:, torch.randperm(V, generator=g)]
    with torch.no_grad():
        model.W_E.copy_(eye)  # one-hot embeddings
        model.W_U.copy_(w)  # permuted one-hot unembedding
        l0, l1 = model.layers
        for p in (l0.W_O, l0.b_O, l0.W_in, l0.b_in, l0.W_out, l0.b_out):
            p.zero_()
        for lw in model.layers:
            lw.ln1_w.fill_(1.0)
            lw.ln1_b.zero_()
        model.lnf_w.fill_(1.0)
        model.lnf_b.zero_()
        l1.W_qkv[2].zero_()
        l1.W_O.zero_()
        # (x - mean x) for a one-hot x is e_t - 1/64: b_V = 1/64 makes v exactly one-hot.
        l1.b_qkv[2].fill_(1.0 / 64)
        for k, t in enumerate(NAMES):
            l1.W_qkv[2, :, t, k] = 1.0
            l1.W_O[0, k] = w[:, t]
            l1.W_O[1, k] = -w[:, t]
    return model


def _reference(model, data, top_k: int, negative: bool, full: bool) -> torch.Tensor:
    """The reference's loop, on TransformerLens-folded weights (fold_ln, centring)."""
    resid = trace(model, data.clean, record=("resid",)).resid[1]
    resid = resid - resid.mean(-1, keepdim=True)  # center_writing_weights centres every write
    w_u = model.lnf_w[:, None] * model.W_U
    w_u = w_u - w_u.mean(0)  # fold_ln centres the reading weights
    b_u = model.lnf_b @ model.W_U
    w_u, b_u = w_u - w_u.mean(-1, keepdim=True), b_u - b_u.mean()  # center_unembed
    sign = -1.0 if negative else 1.0
    out = torch.zeros(model.spec.n_layers, model.spec.n_heads)
    for layer, lw in enumerate(model.layers):
        for head in range(model.spec.n_heads):
            w_v = lw.ln1_w[:, None] * lw.W_qkv[2, head]
            b_v = lw.b_qkv[2, head, 0] + lw.ln1_b @ lw.W_qkv[2, head]
            w_v = w_v - w_v.mean(0)
            w_o = lw.W_O[head] - lw.W_O[head].mean(-1, keepdim=True)
            n_right = 0
            for i in range(len(data)):
                for key in ("io_pos", "s1_pos", "s2_pos"):
                    pos = data.info[key][i]
                    x = resid[i, pos]
                    if full:  # Wang et al.: blocks[1].ln1 / ln_final are LNPre after folding
                        x = F.layer_norm(x, (x.shape[-1],), eps=model.spec.layer_norm_eps)
                    o = sign * ((x @ w_v + b_v) @ w_o)
                    if full:
                        o = F.layer_norm(o, (o.shape[-1],), eps=model.spec.layer_norm_eps)
                    logits = o @ w_u + b_u
                    name = int(data.clean[i, pos])
                    n_right += name in torch.topk(logits, top_k).indices.tolist()
            out[layer, head] = n_right / (3 * len(data))
    return out


@pytest.mark.parametrize("full", [False, True])
def test_hand_built_copy_heads(full):
    model, data = _copy_model(), _toy_ioi()
    pos = copy_scores(model, data, full_layer_norm=full)
    neg = copy_scores(model, data, negative=True, full_layer_norm=full)
    assert pos.shape == (2, 2) and pos.dtype == torch.float32
    torch.testing.assert_close(pos[1], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(neg[1], torch.tensor([0.0, 1.0]))
    # top_k = 1 still hits (the name is the single largest logit).
    torch.testing.assert_close(copy_scores(model, data, top_k=1)[1, 0], torch.tensor(1.0))


@pytest.mark.parametrize(("negative", "full", "top_k"), [(False, False, 5), (True, True, 12)])
def test_batched_equals_folded_loop_reference(negative, full, top_k, monkeypatch):
    model = patchable(hf_model(layers=3, heads=4, d_model=32, vocab=V, seed=5))
    data = _toy_ioi(n=7, seed=1)
    got = copy_scores(model, data, top_k=top_k, negative=negative, full_layer_norm=full)
    ref = _reference(model, data, top_k, negative, full)
    torch.testing.assert_close(got, ref)
    assert 0 < float(got.sum()) and float(got.min()) < 1  # a non-trivial comparison
    monkeypatch.setattr(copy_module, "_CHUNK_ELEMENTS", 1)  # one head per block of logits
    torch.testing.assert_close(
        copy_scores(model, data, top_k=top_k, negative=negative, full_layer_norm=full), got
    )


@pytest.mark.parametrize("full", [False, True])
def test_pair_equals_each_sign_against_the_loop_reference(full):
    """Both signs from one set of logits (logits(−o) = 2·b_f·W_U − logits(o))."""
    model = patchable(hf_model(layers=3, heads=4, d_model=32, vocab=V, seed=5))
    data = _toy_ioi(n=7, seed=1)
    pos, neg = copy_score_pair(model, data, top_k=12, full_layer_norm=full)
    torch.testing.assert_close(pos, _reference(model, data, 12, False, full))
    torch.testing.assert_close(neg, _reference(model, data, 12, True, full))
    assert not torch.equal(pos, neg)


def test_folded_and_full_layer_norm_differ():
    # The LayerNorm biases make the two conventions rank differently on random weights.
    model = patchable(hf_model(layers=3, heads=4, d_model=32, vocab=V, seed=5))
    data = _toy_ioi(n=7, seed=1)
    a = copy_scores(model, data, top_k=12)
    b = copy_scores(model, data, top_k=12, full_layer_norm=True)
    assert not torch.equal(a, b)


def test_real_ioi_prompts_with_pythia_tokenizer(pythia_tokenizer):
    cfg = tiny_config(hidden_size=32, num_attention_heads=4, num_hidden_layers=2)
    model = PatchableGPTNeoX.from_hf(random_hf_model(cfg, seed=0))
    data = make_ioi(pythia_tokenizer, n=4, seed=42)
    rows, pos = name_positions(data)
    names = data.clean[rows, pos]
    assert torch.equal(names[:4], data.answer) and torch.equal(names[4:], data.wrong.repeat(2))
    got = copy_scores(model, data, negative=True)
    torch.testing.assert_close(got, _reference(model, data, 5, True, False))


def test_argument_errors():
    model, data = _copy_model(), _toy_ioi()
    with pytest.raises(ValueError, match=r"top_k must be in \[1, 64\], got 0"):
        copy_scores(model, data, top_k=0)
    with pytest.raises(ValueError, match=r"lacks \['io_pos', 's1_pos', 's2_pos'\]"):
        copy_scores(model, TaskDataset(**{**data.__dict__, "info": {}}))
    with pytest.raises(ValueError, match="rebuild it with make_ioi"):
        copy_scores(model, data.select(slice(0, 3)))
    info = {**data.info, "s2_pos": (8,) * len(data)}
    with pytest.raises(ValueError, match="name position 8 of prompt 1 is outside its 8 tokens"):
        copy_scores(model, TaskDataset(**{**data.__dict__, "info": info}))
