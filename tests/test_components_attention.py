"""Induction / duplicate-token / previous-token scores (components.attention_scores).

Reference tests: a model whose layer-0 head attends to the previous token (rotary q/k biases)
and copies its identity, and whose layer-1 head matches the current token against that copy,
is an induction circuit by construction; its scores are known in closed form. The diagonal
offsets and query ranges are checked on hand-made patterns, and the batched scores against a
loop over Hugging Face's own attention probabilities.
"""

from __future__ import annotations

import math

import pytest
import torch

from circuit_atlas.components.attention_scores import (
    attention_scores,
    diagonal_scores,
    repeated_tokens,
)
from circuit_atlas.models.configs import random_hf_model, tiny_config
from circuit_atlas.models.neox import PatchableGPTNeoX
from tests.tiny import hf_model, patchable

VOCAB = 512
D_MODEL = 256
BLOCK = 96  # width of the token-identity block (and of the previous-token block after it)
SEQ = 20
SEED = 3  # a seed whose two random halves have no repeated token (checked below)


def _induction_model(used: list[int]) -> PatchableGPTNeoX:
    """Layer 0 head 0: previous-token head copying the token block into the next block.

    Layer 1 head 0: induction head (query = current token block, key = previous-token block, on
    the non-rotary head dims). Layer 0 head 1 and layer 1 head 1 keep random q/k weights. The
    ``used`` tokens get orthonormal identity vectors, so non-matching keys score exactly 0.
    """
    cfg = tiny_config(
        vocab_size=VOCAB,
        hidden_size=D_MODEL,
        num_attention_heads=2,
        num_hidden_layers=2,
        intermediate_size=64,
        rotary_pct=0.25,
    )
    model = PatchableGPTNeoX.from_hf(random_hf_model(cfg, seed=0, dtype=torch.float64))
    e = model.spec.d_head  # 128
    r = model.rotary_dims  # 32 rotary dims per head
    g = torch.Generator().manual_seed(0)
    u = torch.randn(VOCAB, BLOCK, generator=g, dtype=torch.float64)
    u = u - u.mean(-1, keepdim=True)  # zero mean: LayerNorm only rescales the residual stream
    basis = torch.randn(BLOCK, len(used), generator=g, dtype=torch.float64)
    u[used] = torch.linalg.qr(basis - basis.mean(0))[0].T  # orthonormal, zero-mean rows
    u = u / u.norm(dim=-1, keepdim=True)
    eye = torch.eye(BLOCK, dtype=torch.float64)
    with torch.no_grad():
        model.W_E.zero_()
        model.W_E[:, :BLOCK] = u
        for lw in model.layers:
            for p in (lw.ln1_w, lw.ln2_w):
                p.fill_(1.0)
            for p in (lw.ln1_b, lw.ln2_b, lw.W_in, lw.b_in, lw.W_out, lw.b_out, lw.b_O):
                p.zero_()
        l0, l1 = model.layers
        # previous-token head: constant q and k (biases) on the rotary dims, q = R(-1) k, so that
        # q_i . k_j = k . R(j - i + 1) k peaks at j = i - 1.
        l0.W_qkv[:, 0].zero_()
        l0.b_qkv[:, 0].zero_()
        # Only the three fastest rotary frequencies (1, 0.56, 0.32 rad per token): their
        # cosines never all return near 1 within 40 tokens, so offset 1 wins by a wide margin.
        cos, sin = model.rotary(2)
        k_full = torch.zeros(e, dtype=torch.float64)
        k_full[:3] = 14.0
        q_full = model.rotate(k_full, cos[1], -sin[1])
        l0.b_qkv[0, 0, 0] = q_full
        l0.b_qkv[1, 0, 0] = k_full
        # LayerNorm maps a unit, zero-mean residual to 16x it (sqrt(d_model) = 16).
        l0.W_qkv[2, 0, :BLOCK, :BLOCK] = eye / 16.0
        l0.W_O[0].zero_()
        l0.W_O[0, :BLOCK, BLOCK : 2 * BLOCK] = eye
        l0.W_qkv[2, 1].zero_()  # head 0.1: random q/k, writes nothing
        l0.b_qkv[2, 1].zero_()
        l0.W_O[1].zero_()
        # induction head: layer-1 residual = [u_t, u_prev, 0], |.| = sqrt(2) -> LN scale 16/sqrt(2)
        scale = 1.9
        l1.W_qkv[:2, 0].zero_()
        l1.b_qkv[:2, 0].zero_()
        l1.W_qkv[0, 0, :BLOCK, r : r + BLOCK] = eye * scale
        l1.W_qkv[1, 0, BLOCK : 2 * BLOCK, r : r + BLOCK] = eye * scale
        l1.W_qkv[2].zero_()
        l1.b_qkv[2].zero_()
    return model


def test_hand_built_induction_circuit_scores_known_values():
    tokens = repeated_tokens(VOCAB, seq_len=SEQ, low=0, high=VOCAB, seed=SEED)
    for row in tokens:
        assert len(set(row[:SEQ].tolist())) == SEQ, "the test needs halves without repeats"
    model = _induction_model(sorted(set(tokens.flatten().tolist())))
    s = attention_scores(model, seq_len=SEQ, low=0, high=VOCAB, seed=SEED)
    assert set(s) == {"induction", "duplicate_token", "previous_token"}
    for v in s.values():
        assert v.shape == (2, 2) and v.dtype == torch.float32
    # Head 0.0 puts (almost) all attention on the previous token at every query 1..2n-1.
    torch.testing.assert_close(s["previous_token"][0, 0], torch.tensor(1.0), atol=1e-3, rtol=0)
    assert s["previous_token"][0, 1] < 0.3  # random q/k: near-uniform attention
    # Head 1.0: queries n+1..2n-1 attend to key i+1 (weight 1); query n (token t_0) matches
    # keys 0 and 1 equally (key 0 copied t_0 onto itself), so weight 1/2; the reference's
    # diagonal also holds query n-1 -> key 0, where nothing matches and attention is uniform
    # over n keys (weight 1/n). Mean over these n + 1 entries:
    expected = (SEQ - 1 + 0.5 + 1 / SEQ) / (SEQ + 1)
    torch.testing.assert_close(s["induction"][1, 0], torch.tensor(expected), atol=2e-3, rtol=0)
    # Its duplicate-token diagonal holds only query n -> key 0 (weight 1/2) out of n entries.
    torch.testing.assert_close(
        s["duplicate_token"][1, 0], torch.tensor(0.5 / SEQ), atol=2e-3, rtol=0
    )
    assert s["induction"][0, 0] < 0.01 and s["induction"][1, 1] < 0.3


def test_diagonal_offsets_and_query_ranges_on_hand_made_patterns():
    n = 4
    p = 2 * n
    pattern = torch.zeros(1, 3, 1, p, p)
    for q in range(p):
        pattern[0, 0, 0, q, max(q - 1, 0)] = 1.0  # previous token (query 0: itself)
        pattern[0, 1, 0, q, q - n + 1 if q >= n else q] = 1.0  # induction in the 2nd half
        pattern[0, 2, 0, q, q - n if q >= n else q] = 1.0  # duplicate token in the 2nd half
    s = diagonal_scores(pattern, n)
    # previous-token diagonal: queries 1..2n-1, all hit.
    torch.testing.assert_close(s["previous_token"][0], torch.tensor([1.0, 0.0, 0.0]))
    # induction diagonal (offset n-1): n + 1 entries; query n-1 -> key 0 misses for head 1.
    torch.testing.assert_close(s["induction"][0], torch.tensor([0.0, n / (n + 1), 0.0]))
    # duplicate-token diagonal (offset n): n entries, all hit for head 2; head 1 hits none.
    torch.testing.assert_close(s["duplicate_token"][0], torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="patterns must be"):
        diagonal_scores(pattern, n + 1)


def test_batched_scores_equal_loop_over_hf_attentions():
    hf = hf_model(layers=2, heads=4, vocab=64)
    hf.set_attn_implementation("eager")
    model = patchable(hf)
    n, batch = 6, 3
    s = attention_scores(model, seq_len=n, batch=batch, low=2, high=64, seed=5)
    tokens = repeated_tokens(64, seq_len=n, batch=batch, low=2, high=64, seed=5)
    with torch.no_grad():
        attn = hf(tokens, output_attentions=True).attentions  # per layer (b, h, q, k)
    for name, offset in (("induction", n - 1), ("duplicate_token", n), ("previous_token", 1)):
        ref = torch.zeros(2, 4)
        for layer in range(2):
            for head in range(4):
                vals = [
                    float(attn[layer][b, head, i + offset, i])
                    for b in range(batch)
                    for i in range(2 * n - offset)
                ]
                ref[layer, head] = sum(vals) / len(vals)
        torch.testing.assert_close(s[name], ref, rtol=1e-6, atol=1e-6)


def test_repeated_tokens_are_seeded_and_in_range():
    a = repeated_tokens(1000, seq_len=7, batch=2, low=100, high=20000, seed=1)
    b = repeated_tokens(1000, seq_len=7, batch=2, low=100, high=20000, seed=1)
    c = repeated_tokens(1000, seq_len=7, batch=2, low=100, high=20000, seed=2)
    assert a.shape == (2, 14) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[:, :7], a[:, 7:])
    assert int(a.min()) >= 100 and int(a.max()) < 1000  # high capped at the vocabulary
    state = torch.random.get_rng_state()
    repeated_tokens(1000, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, r"token range \[low=100, min\(high=20000, vocab=64\)\) is empty"),
        ({"low": 2, "high": 2}, "is empty"),
        ({"low": -1}, "low must be >= 0, got -1"),
        ({"low": 2, "seq_len": 1}, "seq_len must be >= 2, got 1"),
        ({"low": 2, "batch": 0}, "batch must be >= 1, got 0"),
    ],
)
def test_argument_errors(kwargs, match):
    model = patchable(hf_model(layers=1, vocab=64))
    with pytest.raises(ValueError, match=match):
        attention_scores(model, **kwargs)


def test_previous_token_head_margin_is_wide():
    # The rotary construction of head 0.0 favours offset 1 over every other offset < 2*SEQ by a
    # wide margin (so its near-one score is not luck).
    model = _induction_model([0])
    cos, sin = model.rotary(2 * SEQ)
    b = model.layers[0].b_qkv[:, 0, 0]  # (3, e)
    q = model.rotate(b[0].expand(2 * SEQ, -1), cos, sin)
    k = model.rotate(b[1].expand(2 * SEQ, -1), cos, sin)
    scores = (q @ k.T) / math.sqrt(model.spec.d_head)  # (query, key)
    i = 2 * SEQ - 1
    gap = scores[i, i - 1] - torch.cat([scores[i, : i - 1], scores[i, i:]]).max()
    assert gap > 8.0
