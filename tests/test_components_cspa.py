"""CSPA scores (components.cspa) against heads built by hand and a slow reference."""

from __future__ import annotations

import functools
import math

import pytest
import torch

import circuit_atlas.components.cspa as cspa_module
from circuit_atlas.components.cspa import (
    FUNCTION_STRINGS,
    _head_means,
    corpus_tokens,
    cspa_scores,
    function_token_ids,
    semantic_neighbours,
)
from circuit_atlas.components.hooked import head_values, trace
from circuit_atlas.data import corpus_paths
from circuit_atlas.errors import DataNotFoundError
from circuit_atlas.models.neox import PatchableGPTNeoX
from circuit_atlas.models.spec import ModelSpec
from tests.tiny import arch_model, hf_model, patchable

# ------------------------------------------------------------------ a head built by hand
V = 40  # tokens; 0 is BOS; token t ≥ 1 "predicts" F[t]
F = [0] + [t % (V - 1) + 1 for t in range(1, V)]


def hand_model(ov: str) -> PatchableGPTNeoX:
    """One layer, one head, no MLP; d_model = 2V: an identity block and a prediction block.

    The embedding of t writes 6·e_t (identity) and 6·e_{V+F[t]} (prediction); the unembedding
    reads the prediction block, so the residual stream predicts F[t]. The head's query reads the
    prediction block and its key the identity block (with a BOS sink), so it attends to earlier
    tokens that the stream predicts. Its OV writes ∓e_{V+s} for an attended token s
    (``suppress``: copy suppression; ``copy``: positive copying), or a random vector
    (``random``), or nothing (``zero``).
    """
    d = 2 * V
    spec = ModelSpec(architecture="gpt_neox", n_layers=1, n_heads=1, d_model=d, d_mlp=4,
                     vocab_size=V, rotary_pct=0.0)
    model = PatchableGPTNeoX(spec).double()
    lw = model.layers[0]
    w_q, w_k, w_v = lw.W_qkv[0, 0], lw.W_qkv[1, 0], lw.W_qkv[2, 0]
    with torch.no_grad():
        for t in range(V):
            model.W_E[t, t] = 6.0
            if t:
                model.W_E[t, V + F[t]] = 6.0
            model.W_U[V + t, t] = 1.0
            w_q[V + t, t] = 2.6
            w_k[t, t] = 1.0
            w_v[t, t] = 1.0
        lw.b_qkv[0, 0, 0, V] = 1.0  # BOS sink: a constant query dimension ...
        w_k[0, V] = 6.0  # ... read by BOS's key
        if ov == "random":
            g = torch.Generator().manual_seed(0)
            lw.W_O[0, 1:V] = torch.randn(V - 1, d, generator=g, dtype=torch.float64)
        elif ov in ("suppress", "copy"):
            for s in range(1, V):
                lw.W_O[0, s, V + s] = -1.0 if ov == "suppress" else 1.0
    return model


def hand_tokens(n=60, p=16, seed=1):
    tokens = torch.randint(1, V, (n, p), generator=torch.Generator().manual_seed(seed))
    tokens[:, 0] = 0
    return tokens


def test_hand_built_heads():
    tokens = hand_tokens()
    kw = dict(mean_tokens=tokens, layers=[0], function_tokens=[0])
    suppress = cspa_scores(hand_model("suppress"), tokens[:20], **kw)
    copy = cspa_scores(hand_model("copy"), tokens[:20], **kw)
    copy_both_signs = cspa_scores(
        hand_model("copy"), tokens[:20], only_keep_negative_components=False, **kw
    )
    rand = cspa_scores(hand_model("random"), tokens[:20], **kw)
    zero = cspa_scores(hand_model("zero"), tokens[:20], **kw)
    assert suppress.shape == (1, 1) and suppress.dtype == torch.float32
    assert 0.99 < suppress.item() <= 1.0  # pure copy suppression: the whole effect is kept
    # Positive copying: every kept component is positive and dropped, so CSPA = mean ablation.
    torch.testing.assert_close(copy.item(), 0.0, atol=1e-6, rtol=0)
    assert 0.99 < copy_both_signs.item() <= 1.0
    assert -0.2 < rand.item() < 0.2
    assert math.isnan(zero.item())  # no effect to explain: 0/0


# ------------------------------------------------------------------ slow reference
def effective_unembedding(model):
    """(d, V) TransformerLens fold_ln + centred W_U: LayerNorm weight folded, centred twice."""
    w = model.lnf_w[:, None] * (model.W_U - model.W_U.mean(1, keepdim=True))
    return w - w.mean(0, keepdim=True)


def slow_scores(model, tokens, mean_tokens, layers, k, table, fn, only_neg, effect):
    """One head, destination and source at a time; logits from a fresh forward per head."""
    spec = model.spec
    b_n, p = tokens.shape
    means = trace(model, mean_tokens[:, :p], record=("heads",)).heads.mean(2)  # (L, h, p, d)
    clean = trace(model, tokens, record=("resid", "patterns", "heads", "logits"))
    w_eff = effective_unembedding(model)
    final = clean.resid[-1]
    sigma = torch.sqrt(final.var(-1, unbiased=False, keepdim=True) + spec.layer_norm_eps)
    logp = clean.logits.log_softmax(-1)
    scores = torch.full((spec.n_layers, spec.n_heads), float("nan"), dtype=torch.float64)
    for layer in layers:
        x = clean.resid[layer]
        x_hat = (x - x.mean(-1, keepdim=True)) / sigma
        values = head_values(model, layer, x)
        for head in range(spec.n_heads):
            out = values[head] @ model.layers[layer].W_O[head]  # (b, k, d)
            pattern = clean.patterns[layer, head]
            mean = means[layer, head]
            new = torch.zeros_like(out)
            for b in range(b_n):
                row = tokens[b].tolist()
                for q in range(p):
                    keep = kept_pairs(row, q, x_hat[b, q], w_eff, k, table, fn)
                    total = mean[q] * pattern[b, q].sum()
                    for src in range(q + 1):
                        dirs = [w_eff[:, table[row[src], j]] for j in sorted(keep.get(src, ()))]
                        vec = pattern[b, q, src] * (out[b, src] - mean[q])
                        for e in gram_schmidt(dirs):
                            c = vec @ e
                            total = total + (min(c, 0.0) if only_neg else c) * e
                    new[b, q] = total
            orig = clean.heads[layer, head]
            kls = []
            for replacement in (mean.expand_as(orig), new):
                if effect == "direct":
                    resid = final + replacement - orig
                    normed = (resid - resid.mean(-1, keepdim=True)) / sigma
                    logits = (normed * model.lnf_w + model.lnf_b) @ model.W_U
                else:
                    def edit(l, o, layer=layer, head=head, replacement=replacement):
                        if l != layer:
                            return o
                        o = o.clone()
                        o[head] = replacement
                        return o
                    logits = trace(model, tokens, head_edit=edit).logits
                logq = logits.log_softmax(-1)
                kls.append((logp.exp() * (logp - logq)).sum(-1).mean())
            scores[layer, head] = 1 - kls[1] / kls[0]
    return scores


def kept_pairs(row, q, x_hat, w_eff, k, table, fn):
    """{source: {neighbour slots}} kept at destination q (the reference's QK rules)."""
    everything = {}
    for src in range(q + 1):
        slots = {j for j in range(table.shape[1]) if table[row[src], j] >= 0}
        everything[src] = slots
    if k is None:
        return everything
    cands = [(float(x_hat @ w_eff[:, table[row[src], j]]), src, j)
             for src, slots in everything.items() for j in slots if row[src] not in fn]
    valid = [c for c in cands if row.index(row[c[1]]) == c[1]]
    k_q = k if isinstance(k, int) else math.ceil(k * (q + 1))
    if len(valid) < k_q:  # fewer candidates than K: the reference keeps every source
        return everything
    threshold = sorted((c[0] for c in valid), reverse=True)[k_q - 1]
    keep = {}
    for value, src, j in cands:
        if value + 1e-6 >= threshold:
            keep.setdefault(src, set()).add(j)
    return keep


def gram_schmidt(vectors):
    basis = []
    for v in vectors:
        for e in basis:
            v = v - (v @ e) * e
        if v.norm() > 1e-6:
            basis.append(v / v.norm())
    return basis


def random_table(vocab, k, seed):
    g = torch.Generator().manual_seed(seed)
    table = torch.stack([torch.randperm(vocab, generator=g)[:k] for _ in range(vocab)])
    table[:, 0] = torch.arange(vocab)
    table[table[:, 0] % 3 == 0, -1] = -1  # some rows have fewer neighbours
    for t in range(vocab):  # no token twice in a row
        seen = [t]
        for j in range(1, k):
            if table[t, j] in seen:
                table[t, j] = -1
            seen.append(int(table[t, j]))
    return table


@pytest.mark.parametrize(
    "parallel,k,k_sem,only_neg,effect",
    [
        (True, 0.05, 1, True, "direct"),  # the paper's setting: the low-rank path
        (False, 0.05, 1, True, "direct"),
        (True, 0.3, 1, False, "direct"),
        (True, None, 1, True, "direct"),
        (False, 0.3, 1, True, "total"),
        (True, 2, 3, False, "direct"),
        (True, None, 2, False, "total"),
    ],
)
def test_fast_equals_slow_reference(parallel, k, k_sem, only_neg, effect):
    model = patchable(hf_model(layers=3, heads=4, parallel=parallel, seed=3))
    g = torch.Generator().manual_seed(4)
    mean_tokens = torch.randint(0, 16, (5, 11), generator=g)  # small ids: repeated tokens
    mean_tokens[:, 0] = 0
    tokens = mean_tokens[:3, :9]
    table = random_table(64, k_sem, seed=5)
    fn = [0, 1, 2]
    fast = cspa_scores(
        model, tokens, mean_tokens=mean_tokens, layers=[1, 2], k_unembeddings=k,
        k_semantic=k_sem, only_keep_negative_components=only_neg, semantic=table,
        function_tokens=fn, effect=effect, batch_size=2,
    )
    slow = slow_scores(model, tokens, mean_tokens, [1, 2], k, table, fn, only_neg, effect)
    torch.testing.assert_close(fast, slow.float(), rtol=1e-5, atol=1e-6, equal_nan=True)
    assert torch.isnan(fast[0]).all() and not torch.isnan(fast[1:]).any()


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt_neox-sequential", "llama", "gpt2"])
def test_lowrank_path_equals_dense_path(arch, monkeypatch):
    """The paper's setting through each head's (e, V) OV product = the (d, V) product per
    variant, on every norm and residual wiring (RMSNorm has no centring)."""
    if arch.startswith("gpt_neox"):
        hf = hf_model(layers=3, heads=4, parallel=arch == "gpt_neox", seed=3)
    else:
        hf = arch_model(arch, layers=3, heads=4, d_model=32, seed=3)
    model = patchable(hf)
    g = torch.Generator().manual_seed(4)
    mean_tokens = torch.randint(0, 16, (5, 11), generator=g)
    tokens = mean_tokens[:3, :9]
    kw = dict(mean_tokens=mean_tokens, layers=[1, 2], function_tokens=[0, 1, 2], batch_size=2,
              semantic=random_table(64, 1, seed=5))  # fmt: skip
    lowrank = cspa_scores(model, tokens, **kw)
    dense_batch = functools.partial(cspa_module._score_batch, lowrank=False)
    monkeypatch.setattr(cspa_module, "_score_batch", dense_batch)
    dense = cspa_scores(model, tokens, **kw)
    assert dense[1:].abs().min() > 1e-4
    torch.testing.assert_close(lowrank, dense, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_full_span_reproduces_the_head():
    """Keeping every source and projecting on a spanning set of unembeddings changes nothing."""
    d = 8
    model = patchable(hf_model(layers=2, heads=2, d_model=d, seed=7))
    tokens = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(8))
    table = torch.stack([torch.randperm(64, generator=torch.Generator().manual_seed(t))[:d]
                         for t in range(64)])
    table[:, 0] = torch.arange(64)
    table[:, 1:] = torch.where(table[:, 1:] == table[:, :1], (table[:, 1:] + 1) % 64, table[:, 1:])
    for effect in ("direct", "total"):
        scores = cspa_scores(
            model, tokens, min_layer=0, k_unembeddings=None, k_semantic=d,
            only_keep_negative_components=False, semantic=table, function_tokens=[],
            effect=effect,
        )
        torch.testing.assert_close(scores, torch.ones(2, 2), atol=1e-6, rtol=0)


def test_keep_all_fraction_equals_no_qk_and_batching():
    model = patchable(hf_model(layers=2, heads=4, seed=9))
    tokens = torch.randint(0, 64, (5, 12), generator=torch.Generator().manual_seed(10))
    kw = dict(min_layer=0, function_tokens=[0, 3])
    everything = cspa_scores(model, tokens, k_unembeddings=None, **kw)
    torch.testing.assert_close(cspa_scores(model, tokens, k_unembeddings=1.0, **kw), everything)
    base = cspa_scores(model, tokens, **kw)
    torch.testing.assert_close(cspa_scores(model, tokens, batch_size=1, **kw), base)
    torch.testing.assert_close(cspa_scores(model, tokens, batch_size=64, **kw), base)


def test_means_match_trace():
    model = patchable(hf_model(layers=3, heads=2, parallel=False, seed=11))
    tokens = torch.randint(0, 64, (7, 6), generator=torch.Generator().manual_seed(12))
    means = _head_means(model, tokens, [0, 2], batch_size=3)  # (2, h, p, e), before W_O
    ref = trace(model, tokens, record=("heads",)).heads.mean(2)  # (L, h, p, d)
    w_o = torch.stack([model.ov(layer)[2] for layer in (0, 2)])  # (2, h, e, d)
    torch.testing.assert_close(means @ w_o, ref[[0, 2]])


def test_argument_errors():
    model = patchable(hf_model(layers=2, heads=2))
    tokens = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="leaves no layer of a 2-layer model"):
        cspa_scores(model, tokens)  # the paper's min_layer=2
    with pytest.raises(ValueError, match=r"layers \[2\] must be"):
        cspa_scores(model, tokens, layers=[2])
    with pytest.raises(ValueError, match="integer"):
        cspa_scores(model, tokens.float(), min_layer=0)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 64\)"):
        cspa_scores(model, tokens + 60, min_layer=0)
    with pytest.raises(ValueError, match="mean_tokens has 3 positions"):
        cspa_scores(model, tokens, mean_tokens=tokens[:, :3], min_layer=0)
    for bad in (0.0, 1.5, 0, True, "5%"):
        with pytest.raises(ValueError, match="k_unembeddings"):
            cspa_scores(model, tokens, min_layer=0, k_unembeddings=bad)
    with pytest.raises(ValueError, match="needs k_semantic == 1"):
        cspa_scores(model, tokens, min_layer=0, k_semantic=2)
    with pytest.raises(ValueError, match="k_semantic must be"):
        cspa_scores(model, tokens, min_layer=0, k_semantic=0)
    with pytest.raises(ValueError, match="semantic must be"):
        cspa_scores(model, tokens, min_layer=0, k_semantic=2, semantic=torch.zeros(64, 1).long(),
                    only_keep_negative_components=False)
    with pytest.raises(ValueError, match="effect must be"):
        cspa_scores(model, tokens, min_layer=0, effect="indirect")
    with pytest.raises(ValueError, match="batch_size"):
        cspa_scores(model, tokens, min_layer=0, batch_size=0)


# ------------------------------------------------------------------ data and tokenizer helpers
def test_corpus_tokens(tmp_path, pythia_tokenizer, data_dir):
    tok = pythia_tokenizer
    corpus = corpus_paths(data_dir)
    a = corpus_tokens(corpus, tok, n_sequences=4, seq_len=30, seed=6)
    assert a.shape == (4, 30) and a.dtype == torch.int64
    assert torch.all(a[:, 0] == 0) and torch.all(a[:, 1:] != 0)  # BOS, then text
    torch.testing.assert_close(corpus_tokens(corpus, tok, n_sequences=4, seq_len=30, seed=6), a)
    assert not torch.equal(corpus_tokens(corpus, tok, n_sequences=4, seq_len=30, seed=7), a)
    no_bos = corpus_tokens(corpus, tok, n_sequences=2, seq_len=30, seed=6, prepend_bos=False)
    assert torch.all(no_bos[:, 0] != 0)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match="nowhere"):
        corpus_tokens(missing, tok, n_sequences=1, seq_len=10, seed=0)
    small = tmp_path / "small"
    small.mkdir()
    (small / "a.txt").write_text("one line\ntwo short lines\n")
    with pytest.raises(ValueError, match="small.*too small"):
        corpus_tokens(small, tok, n_sequences=1, seq_len=50, seed=0)


def test_function_tokens_and_semantic_neighbours(pythia_tokenizer):
    tok = pythia_tokenizer
    fn = function_token_ids(tok)
    enc = [tok.encode(s, add_special_tokens=False) for s in FUNCTION_STRINGS]
    assert set(fn.tolist()) == {e[0] for e in enc if len(e) == 1}
    assert {0, 187, 247, 510} <= set(fn.tolist())  # <|endoftext|>, "\n", " a", "The"
    assert function_token_ids(None).numel() == 0

    table = semantic_neighbours(tok, 50304, 4)
    assert table.shape == (50304, 4)
    torch.testing.assert_close(table[:, 0], torch.arange(50304))

    def ids(*words):
        return [tok.encode(w, add_special_tokens=False)[0] for w in words]

    ring = ids(" ring")[0]
    assert table[ring].tolist() == ids(" ring", "ring", " rings", "rings")
    assert table[ids("<|endoftext|>")[0], 1:].eq(-1).all()
    assert torch.equal(semantic_neighbours(None, 10, 3)[:, 1:], torch.full((10, 2), -1))
