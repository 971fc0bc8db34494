"""Copy-suppression score of attention heads: copy-suppression-preserving ablation (CSPA).

PAPER.md §4 "Copy suppression (CSPA)"; McDougall et al. (2023), "Copy Suppression:
Comprehensively Understanding an Attention Head", §4. Reproduces ``get_cspa_results``,
``get_top_predicted_semantically_similar_tokens``, ``project``/``gram_schmidt``,
``get_result_mean`` and ``get_performance_recovered`` of callummcdougall/SERI-MATS-2023-
Streamlit-pages ``transformer_lens/rs/callum2/cspa/cspa_functions.py``, as vendored and driven by
curt-tigges/circuits-over-time ``utils/cspa_functions.py``, ``utils/cspa_main.py``
(``get_cspa_for_model``) and ``configs/cspa/*.yml``. For a head ``(l, h)``:

* **Mean**: its output (W_O slice, no b_O) averaged over sequences per position, ``mean[q]``.
  The paper averages over the first **100** of 500 OpenWebText sequences (seed 6, 1,000 tokens,
  BOS first); only positions < 61 are used, i.e. 100 sequences × 61 tokens (``mean_tokens``).
* **Evaluation**: the first **17** of those sequences cut to **61** tokens (``tokens``) — "mean
  over 100 sequences; evaluated on 17 sequences × 61 tokens".
* **QK part**: at destination ``q`` the logit lens of the stream *before layer l* (centred,
  over the clean final LayerNorm scale, times the folded and centred unembedding, no bias)
  scores each source ``k ≤ q`` by its token's logit. Function-word sources
  (:data:`FUNCTION_STRINGS`) are masked; each token counts once (first occurrence) when the
  ``K_q``-th best logit is found, ``K_q = ceil(K·(q+1))`` for a fraction (0.05: 1–4 sources at
  61 tokens) or ``K`` for an int; every source within 1e-6 of it is kept (repeats too). Quirk
  kept: with fewer than ``K_q`` candidates the threshold is the −1e9 mask and *every* source is
  kept, function words included.
* **OV part**: for a kept source, ``A[q,k]·(v_k W_O − mean[q])`` is projected on the unit
  direction of its token's unembedding (final LayerNorm weight folded in, centred over d_model
  and over the vocabulary: TransformerLens ``fold_ln``, ``center_writing_weights``,
  ``center_unembed``), keeping only a negative component (``only_keep_negative_components``);
  with ``K_semantic > 1`` on the Gram–Schmidt span of the kept neighbours' unembeddings. So
  ``cspa[q] = mean[q]·Σ_k A[q,k] + Σ_{k kept} proj(A[q,k]·(v_k W_O − mean[q]))``.
* **Effect**: the reference adds the head's change to the final residual stream and unembeds it
  with the clean final LayerNorm scale (direct effect: ``effect="direct"``, default);
  ``effect="total"`` (not in the reference) reruns the later layers instead.
* **Score**: ``1 − mean KL(clean ‖ CSPA) / mean KL(clean ‖ mean-ablated)`` over every (sequence,
  position), position 0 included (``kl_div_cspa_to_orig``); may leave [0, 1].
* **Layers**: ``start_layer`` 2 (70m) or 6 (160m) on a hard-coded 12×12 grid; here
  ``min_layer`` (default 2) or ``layers``, any model shape.

Deviations: (1) ``K_semantic > 1`` with negative-only projection is refused by the reference
(here ``ValueError``); without it the neighbours come from
:func:`~circuit_atlas.components.cspa_data.semantic_neighbours`, which rebuilds the unpublished
semantic dict (data deviations: see :mod:`circuit_atlas.components.cspa_data`). (2) Computation:
one clean trace per batch for all heads; kept sources are gathered sparsely (no ``(b, p, p, d)``
or ``(p, p, V)`` tensor); KL from the logit change ``δ`` as ``log E_p[exp(δ − E_p δ)]``.

Shapes: ``L`` layers, ``h`` heads, ``b`` sequences, ``p`` positions, ``d`` d_model, ``e`` d_head,
``V`` vocabulary, ``K`` semantic neighbours, ``n`` kept (sequence, destination, source) triples.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from circuit_atlas.components.cspa_data import (
    FUNCTION_STRINGS,
    corpus_tokens,
    function_token_ids,
    semantic_neighbours,
)
from circuit_atlas.components.hooked import head_values, trace

__all__ = [
    "DEFAULT_MIN_LAYER",
    "FUNCTION_STRINGS",
    "Effect",
    "corpus_tokens",
    "cspa_scores",
    "function_token_ids",
    "semantic_neighbours",
]

logger = logging.getLogger(__name__)

Effect = Literal["direct", "total"]
"""``direct``: the head's change reaches the logits only directly, through the clean final
LayerNorm scale (the reference). ``total``: later layers are rerun on the changed stream."""

DEFAULT_MIN_LAYER = 2
"""The paper scores layers ≥ 2 (``configs/cspa/70m-canonical.yml``: ``start_layer: 2``)."""

_MASK = -1e9  # the reference's value for masked logit-lens entries
_TIE = 1e-6  # sources within this many logits of the K-th best are kept
_GS_EPS = 1e-6  # Gram-Schmidt drops directions shorter than this
_KL_ROWS = 16  # positions whose (V,) logit changes are built and reduced together (in cache)


# ---------------------------------------------------------------------------------- scores
@torch.no_grad()
def cspa_scores(
    model,
    tokens: Tensor,
    *,
    mean_tokens: Tensor | None = None,
    layers: Sequence[int] | None = None,
    min_layer: int = DEFAULT_MIN_LAYER,
    k_unembeddings: float | int | None = 0.05,
    k_semantic: int = 1,
    only_keep_negative_components: bool = True,
    semantic: Tensor | None = None,
    function_tokens: Sequence[int] | Tensor | None = None,
    effect: Effect = "direct",
    batch_size: int = 8,
) -> Tensor:
    """CSPA score (fraction of a head's mean-ablation effect that copy suppression explains).

    See the module docstring for the definition and the reference it reproduces. The paper's
    protocol: ``toks = corpus_tokens(corpus, tok, n_sequences=100, seq_len=61, seed=6)``, then
    ``cspa_scores(model, toks[:17], mean_tokens=toks)``.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        tokens: ``(n, p)`` int64 evaluation sequences (the paper: 17 × 61).
        mean_tokens: ``(m, p')`` int64 with ``p' ≥ p``: sequences whose head outputs give the
            per-position mean (first ``p`` positions; the paper: 100 sequences); default
            ``tokens``.
        layers: Layers to score (default: ``min_layer`` … last).
        min_layer: First layer scored when ``layers`` is None (the paper: 2).
        k_unembeddings: Sources kept per destination: a float in (0, 1] is a fraction
            (``ceil(k·(q+1))``), an int a count, None keeps every source (no QK part).
        k_semantic: Unembedding directions per source (1 = the source token's own).
        only_keep_negative_components: Keep only the negative component of the projection.
        semantic: ``(V, ≥ k_semantic)`` int64 neighbour table (−1 = none), column 0 the token
            itself; default :func:`semantic_neighbours` of ``model.tokenizer``.
        function_tokens: Token ids never selected as sources; default
            :func:`function_token_ids` of ``model.tokenizer``.
        effect: ``direct`` (the reference) or ``total`` (rerun later layers).
        batch_size: Sequences per forward pass (memory ~ ``6·batch_size·p·V`` floats).

    Returns:
        ``(n_layers, n_heads)`` float32 scores; NaN for heads not scored and for heads whose
        mean ablation changes nothing (0/0).

    Raises:
        ValueError: For bad token shapes/ids, layers out of range or none selected, an invalid
            ``k_unembeddings``/``k_semantic``/``batch_size``/``effect``, negative-only
            projection with ``k_semantic > 1``, or a ``semantic`` table of the wrong shape.
    """
    spec = model.spec
    n_layers, n_heads, vocab = spec.n_layers, spec.n_heads, spec.vocab_size
    tokens = _check_tokens(tokens, vocab, "tokens")
    p = tokens.shape[1]
    if mean_tokens is None:
        mean_tokens = tokens
    mean_tokens = _check_tokens(mean_tokens, vocab, "mean_tokens")
    if mean_tokens.shape[1] < p:
        raise ValueError(f"mean_tokens has {mean_tokens.shape[1]} positions, tokens need {p}")
    chosen = _check_layers(layers, min_layer, n_layers)
    _check_k(k_unembeddings)
    if isinstance(k_semantic, bool) or not isinstance(k_semantic, int) or k_semantic < 1:
        raise ValueError(f"k_semantic must be an int >= 1, got {k_semantic!r}")
    if only_keep_negative_components and k_semantic > 1:
        raise ValueError(
            f"only_keep_negative_components needs k_semantic == 1 (got {k_semantic}), as in the "
            "reference"
        )
    if effect not in ("direct", "total"):
        raise ValueError(f"effect must be 'direct' or 'total', got {effect!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    table = _semantic_table(model, semantic, k_semantic)
    fn = function_token_ids(model.tokenizer) if function_tokens is None else function_tokens
    fn = torch.as_tensor(fn, dtype=torch.long).flatten()

    started = time.perf_counter()
    means = _head_means(model, mean_tokens[:, :p], chosen, batch_size)  # (len(chosen), h, p, e)
    kl = torch.zeros(2, n_layers, n_heads, dtype=torch.float64)  # (ablated | cspa, L, h)
    for lo in range(0, tokens.shape[0], batch_size):
        _score_batch(
            model, tokens[lo : lo + batch_size], means, chosen, kl, table, fn,
            k_unembeddings, only_keep_negative_components, effect,
        )
    scores = torch.full((n_layers, n_heads), float("nan"))
    for layer in chosen:
        ablated, cspa = kl[0, layer], kl[1, layer]
        scores[layer] = torch.where(ablated > 0, 1 - cspa / ablated, float("nan")).float()
    logger.info(
        "CSPA: %d heads, %d x %d tokens, %.1f s",
        len(chosen) * n_heads, tokens.shape[0], p, time.perf_counter() - started,
    )
    return scores


def _check_tokens(tokens: Tensor, vocab: int, name: str) -> Tensor:
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"{name} must be an integer (batch, pos) tensor, got {shape}")
    if tokens.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(tokens.shape)}")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab:
        raise ValueError(f"{name} ids must lie in [0, {vocab}), got [{lo}, {hi}]")
    return tokens.long()


def _check_layers(layers: Sequence[int] | None, min_layer: int, n_layers: int) -> list[int]:
    if layers is None:
        if not 0 <= min_layer:
            raise ValueError(f"min_layer must be >= 0, got {min_layer}")
        chosen = list(range(min_layer, n_layers))
        if not chosen:
            raise ValueError(
                f"min_layer={min_layer} leaves no layer of a {n_layers}-layer model; pass "
                "min_layer=0 or layers=..."
            )
        return chosen
    chosen = sorted({int(x) for x in layers})
    bad = [x for x in chosen if not 0 <= x < n_layers]
    if bad or not chosen:
        raise ValueError(f"layers {list(layers)} must be non-empty and within [0, {n_layers})")
    return chosen


def _check_k(k: float | int | None) -> None:
    if k is None:
        return
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise ValueError(f"k_unembeddings must be a float, an int or None, got {k!r}")
    if isinstance(k, int) and k < 1 or isinstance(k, float) and not 0 < k <= 1:
        raise ValueError(f"k_unembeddings must be an int >= 1 or a float in (0, 1], got {k!r}")


def _semantic_table(model, semantic: Tensor | None, k: int) -> Tensor:
    vocab = model.spec.vocab_size
    if semantic is None:
        if k > 1 and model.tokenizer is None:
            logger.warning("CSPA: no tokenizer, k_semantic=%d uses the source token only", k)
        return semantic_neighbours(model.tokenizer, vocab, k).to(model.device)
    if semantic.dim() != 2 or semantic.shape[0] != vocab or semantic.shape[1] < k:
        raise ValueError(
            f"semantic must be (vocab={vocab}, >= k_semantic={k}), got {tuple(semantic.shape)}"
        )
    return semantic[:, :k].long().to(model.device)


def _head_means(model, tokens: Tensor, layers: list[int], batch_size: int) -> Tensor:
    """Per-position mean head outputs, before W_O: ``(len(layers), h, p, e)``.

    ``get_result_mean`` with ``keep_seq_dim=True`` is the mean of each head's output
    ``z·W_O`` (no b_O); that is ``mean(z)·W_O``, so the mean of ``z = pattern·v`` is kept, in
    float32 or wider, and mapped through W_O where a d_model vector is needed.
    """
    spec = model.spec
    row = {layer: i for i, layer in enumerate(layers)}
    work = torch.promote_types(model.dtype, torch.float32)
    sums = torch.zeros(len(layers), spec.n_heads, tokens.shape[1], spec.d_head, dtype=work,
                       device=model.device)

    def observe(layer: int, before: Tensor, step) -> None:
        if layer in row:
            z = step.pattern.to(work) @ head_values(model, layer, before).to(work)  # (h, b, p, e)
            sums[row[layer]] += z.sum(1)

    last = max(layers)
    for lo in range(0, tokens.shape[0], batch_size):
        batch = tokens[lo : lo + batch_size].to(model.device)
        rope = model.rotary(batch.shape[1])
        model.walk(model.embed(batch), rope, stop=last + 1, observe=observe)
    return sums / tokens.shape[0]


def _score_batch(
    model, tokens, means, layers, kl, table, fn, k_unemb, only_neg, effect, lowrank=True
) -> None:
    """Add one batch's summed KLs ``(ablated | cspa)`` per head to ``kl`` ``(2, L, h)``.

    ``means``: ``(len(layers), h, p, e)`` from :func:`_head_means`. With the direct effect and
    one unembedding direction per source (the paper's setting) the logit changes are built
    through each head's ``(e, V)`` OV-unembedding product and the sources' ``(p, V)``
    unembedding rows (:func:`_lowrank_kl`) instead of one ``(d, V)`` product per head and
    variant (:func:`_dense_shifts`, used otherwise and with ``lowrank=False``); the two are
    equal up to rounding (tested).
    """
    spec = model.spec
    tokens = tokens.to(model.device)
    record = ("resid", "patterns", "logits") + (("mlp",) if not spec.parallel_residual else ())
    clean = trace(model, tokens, record=record)
    work = torch.promote_types(model.dtype, torch.float32)
    logp = torch.log_softmax(clean.logits.to(work), dim=-1)  # (b, p, V)
    probs = logp.exp()
    clean.logits = None
    final = clean.resid[-1].to(work)
    sigma = model.norm_scale(final)  # (b, p, 1) the final norm's divisor
    src_ids = table[tokens]  # (b, p, K)
    u_src = _unembed_directions(model, src_ids, work)  # (b, p, K, d)
    fn_src = torch.isin(tokens, fn.to(tokens.device))  # (b, p)
    first = _first_occurrence(tokens)  # (b, p)
    rope = model.rotary(tokens.shape[1]) if effect == "total" else None
    w_u = model.unembedding.to(work)
    w_f = model.norm_weights("final")[0].to(work)
    lowrank = lowrank and effect == "direct" and table.shape[1] == 1
    if lowrank:
        # Each source's unit unembedding direction through the frozen final norm: (b, k, V).
        norm = u_src[:, :, 0].norm(dim=-1, keepdim=True)
        unit = torch.where(norm > _GS_EPS, u_src[:, :, 0] / norm.clamp_min(_GS_EPS), 0.0)
        src_logits = (model.center(unit) * w_f) @ w_u
    for row, layer in enumerate(layers):
        resid = clean.resid[layer]
        x_hat = resid.to(work)
        x_hat = model.center(x_hat) / sigma
        ll = torch.einsum("bqd,bkjd->bqkj", x_hat, u_src)  # (b, q, k, K) logit lens
        kept = _kept_sources(ll, src_ids, fn_src, first, k_unemb)
        idx, basis = _kept_basis(kept, u_src)  # (n, 3), (n, K, d)
        values = head_values(model, layer, resid).to(work)  # (h, b, p, e)
        w_o = model.ov(layer)[2].to(work)  # (h, e, d)
        if lowrank:
            ov_logits = (model.center(w_o) * w_f) @ w_u  # (h, e, V)
        patterns = clean.patterns[layer].to(work)  # (h, b, q, k)
        for head in range(spec.n_heads):
            pattern = patterns[head]
            z_mean = means[row, head].to(work)  # (p, e)
            if lowrank:
                found = _lowrank_kl(
                    pattern, values[head], z_mean, w_o[head], ov_logits[head], src_logits,
                    idx, basis, only_neg, sigma, logp, probs,
                )
            else:
                shift = _dense_shifts(
                    model, layer, clean, pattern, values[head], z_mean, w_o[head], idx, basis,
                    only_neg, effect, sigma, w_f, w_u, rope, logp,
                )
                found = _kl_from_shift(logp, probs, shift)
                del shift
            kl[:, layer, head] += found.sum((1, 2)).double().cpu()


def _lowrank_kl(
    pattern, values, z_mean, w_o, ov_logits, src_logits, idx, basis, only_neg, sigma, logp,
    probs,
) -> Tensor:
    """Per-position KLs ``(2, b, q)`` of the mean-ablated and the CSPA head, built low-rank.

    Both changes of the head's output are made of ``z·W_O`` terms for ``e``-vectors ``z``
    (``mean − orig`` and ``Σ_k A·mean − orig``: the head's OV row space) plus, for CSPA, the
    kept sources' projections, each a multiple of its source's unit unembedding direction. So
    the logit change (through the frozen final norm) is ``z·(W_O → logits)`` plus
    ``S·(sources → logits)`` with ``S (b, q, k)`` the projection coefficients (the reference's
    ``project`` with one direction per source), both divided by the norm's scale. The
    ``(rows, V)`` changes are built and turned into KLs a few positions at a time, so that
    they stay in cache and no ``(2, b, q, V)`` tensor exists.

    Args:
        pattern: ``(b, q, k)`` the head's attention.
        values: ``(b, k, e)`` its value vectors.
        z_mean: ``(p, e)`` the mean of ``pattern·values`` over the mean sequences.
        w_o: ``(e, d)`` the head's W_O.
        ov_logits: ``(e, V)`` ``center(W_O) ⊙ w_f · W_U``.
        src_logits: ``(b, k, V)`` the sources' unit directions through the same map.
        idx: ``(n, 3)`` kept (b, q, k) triples.
        basis: ``(n, 1, d)`` their unit directions.
        only_neg: Keep only negative components.
        sigma: ``(b, q, 1)`` the clean final norm's divisor.
        logp: ``(b, q, V)`` clean log-probabilities.
        probs: ``(b, q, V)`` their exponential.
    """
    b, p, _ = pattern.shape
    z = pattern @ values  # (b, q, e): the head's output before W_O
    rows = torch.stack((z_mean - z, pattern.sum(-1, keepdim=True) * z_mean - z)) / sigma
    out = values @ w_o  # (b, k, d) per-source output
    bi, qi, ki = idx.unbind(-1)
    vec = pattern[bi, qi, ki, None] * (out[bi, ki] - (z_mean @ w_o)[qi])  # (n, d)
    coef = (vec * basis[:, 0]).sum(-1)
    if only_neg:
        coef = coef.clamp(max=0)
    coefs = pattern.new_zeros(b, p, p)
    coefs[bi, qi, ki] = coef  # (b, q, k): idx holds each triple once
    coefs /= sigma
    kl = pattern.new_empty(2, b, p)
    for s in range(b):
        for q0 in range(0, p, _KL_ROWS):
            q = slice(q0, q0 + _KL_ROWS)
            shift = rows[:, s, q] @ ov_logits  # (2, r, V)
            shift[1].addmm_(coefs[s, q], src_logits[s])
            kl[:, s, q] = _kl_from_shift(logp[s, q], probs[s, q], shift)
    return kl


def _dense_shifts(
    model, layer, clean, pattern, values, z_mean, w_o, idx, basis, only_neg, effect, sigma,
    w_f, w_u, rope, logp,
) -> Tensor:
    """Logit changes ``(2, b, q, V)`` (mean-ablated | CSPA) from the d_model outputs.

    The general path (any ``k_semantic``, the total effect): each variant's change of the
    head's output is unembedded with one ``(d, V)`` product.
    """
    out = values @ w_o  # (b, k, d) per-source output
    mean = z_mean @ w_o  # (p, d)
    orig = pattern @ out  # (b, q, d)
    cspa = _cspa_output(out, pattern, mean, idx, basis, only_neg)
    deltas = torch.stack((mean.expand_as(orig) - orig, cspa - orig))  # (2, b, q, d)
    if effect == "direct":
        scaled = model.center(deltas) / sigma * w_f
        return scaled @ w_u  # (2, b, q, V) logit change, frozen final LayerNorm
    return _rerun_logits(model, layer, clean, deltas, rope).to(logp.dtype) - logp


def _unembed_directions(model, ids: Tensor, work: torch.dtype) -> Tensor:
    """Effective unembedding ``(…, d)`` of ``ids`` (−1 → 0).

    The final LayerNorm weight is folded in and the result centred over ``d_model`` and over the
    vocabulary (TransformerLens ``fold_ln``, ``center_unembed``):
    ``P(w ⊙ (W_U[:, s] − mean_s' W_U[:, s']))``.
    """
    w_u = model.unembedding
    u = w_u.T[ids.clamp(min=0)].to(work) - w_u.mean(1, dtype=work)
    u = u * model.norm_weights("final")[0].to(work)
    u = model.center(u)
    return u * (ids >= 0).unsqueeze(-1).to(work)


def _first_occurrence(tokens: Tensor) -> Tensor:
    """``(b, p)`` True where a token appears for the first time in its row."""
    p = tokens.shape[1]
    same = tokens[:, :, None] == tokens[:, None, :]  # (b, q, k)
    earlier = torch.ones(p, p, dtype=torch.bool, device=tokens.device).tril(-1)
    return ~(same & earlier).any(-1)


def _kept_sources(
    ll: Tensor, src_ids: Tensor, fn_src: Tensor, first: Tensor, k: float | int | None
) -> Tensor:
    """QK part: ``(b, q, k, K)`` True for the (source, neighbour) pairs kept at each destination.

    ``get_top_predicted_semantically_similar_tokens`` with ``keep_self_attn=True``.
    """
    b, p, _, n_sem = ll.shape
    future = torch.ones(p, p, dtype=torch.bool, device=ll.device).triu(1)  # (q, k): k > q
    if k is None:
        return (~future)[None, :, :, None] & (src_ids >= 0)[:, None]
    ll = ll.masked_fill(fn_src[:, None, :, None], _MASK)
    ll = ll.masked_fill(future[None, :, :, None], _MASK)
    ll = ll.masked_fill((src_ids < 0)[:, None], _MASK)
    ranked = ll.masked_fill(~first[:, None, :, None], _MASK).flatten(2)  # (b, q, k·K)
    if isinstance(k, int):
        k_q = [k] * p
    else:
        k_q = [math.ceil(k * (q + 1)) for q in range(p)]
    k_q = torch.tensor([min(x, p * n_sem) for x in k_q], device=ll.device)
    top = ranked.topk(int(k_q.max()), dim=-1).values  # (b, q, max K_q)
    threshold = top.gather(-1, (k_q - 1).view(1, p, 1).expand(b, p, 1))  # (b, q, 1)
    return ll + _TIE >= threshold[..., None]


def _kept_basis(kept: Tensor, u_src: Tensor) -> tuple[Tensor, Tensor]:
    """Kept ``(b, q, k)`` triples ``(n, 3)`` with k ≤ q, and bases ``(n, K, d)``.

    The basis is the Gram-Schmidt orthonormalisation of the kept neighbours' unembeddings
    (``gram_schmidt``; directions shorter than 1e-6 become 0).
    """
    p = kept.shape[1]
    causal = torch.ones(p, p, dtype=torch.bool, device=kept.device).tril()
    idx = (kept.any(-1) & causal).nonzero()  # (n, 3)
    b, q, k = idx.unbind(-1)
    basis = u_src[b, k] * kept[b, q, k].unsqueeze(-1).to(u_src.dtype)  # (n, K, d)
    for i in range(basis.shape[1]):
        vec = basis[:, i]
        for j in range(i):
            vec = vec - (vec * basis[:, j]).sum(-1, keepdim=True) * basis[:, j]
        norm = vec.norm(dim=-1, keepdim=True)
        basis[:, i] = torch.where(norm > _GS_EPS, vec / norm.clamp_min(_GS_EPS), 0.0)
    return idx, basis


def _cspa_output(
    out: Tensor, pattern: Tensor, mean: Tensor, idx: Tensor, basis: Tensor, only_neg: bool
) -> Tensor:
    """OV part: the head's CSPA output ``(b, q, d)``.

    Args:
        out: ``(b, k, d)`` per-source output ``v_k W_O``.
        pattern: ``(b, q, k)`` attention.
        mean: ``(p, d)`` per-position mean output.
        idx: ``(n, 3)`` kept (b, q, k) triples.
        basis: ``(n, K, d)`` their orthonormal directions (rows may be 0).
        only_neg: Keep only negative components.
    """
    b, p, d = out.shape
    result = pattern.sum(-1, keepdim=True) * mean  # Σ_k A[q,k]·mean[q]
    bi, qi, ki = idx.unbind(-1)
    vec = pattern[bi, qi, ki, None] * (out[bi, ki] - mean[qi])  # (n, d)
    coef = torch.einsum("nd,nkd->nk", vec, basis)
    if only_neg:
        coef = coef.clamp(max=0)
    proj = torch.einsum("nk,nkd->nd", coef, basis)
    return result.view(b * p, d).index_add(0, bi * p + qi, proj).view(b, p, d)


def _rerun_logits(model, layer: int, clean, deltas: Tensor, rope) -> Tensor:
    """Logits ``(2, b, p, V)`` with the head's output changed by ``deltas`` ``(2, b, p, d)``.

    The residual stream after ``layer`` is rebuilt and the later layers are rerun.
    """
    spec = model.spec
    n_var, b, p, d = deltas.shape
    deltas = deltas.to(model.dtype).reshape(n_var * b, p, d)
    after = clean.resid[layer + 1].repeat(n_var, 1, 1)  # (2b, p, d)
    if spec.parallel_residual:
        resid = after + deltas
    else:  # the MLP of this layer reads the changed attention output
        before = clean.resid[layer].repeat(n_var, 1, 1)
        mlp = clean.mlp[layer].repeat(n_var, 1, 1)
        attn = after - before - mlp + deltas
        resid = before + attn + model.mlp(layer, model.mlp_input(before, attn))
    resid = model.walk(resid, rope, start=layer + 1)
    return model.unembed(resid).view(n_var, b, p, -1)


def _kl_from_shift(logp: Tensor, probs: Tensor, shift: Tensor) -> Tensor:
    """``KL(p ‖ q)`` ``(n, …)`` where ``log q = log p + shift`` up to a per-row constant.

    ``logp``, ``probs``: ``(…, V)``; ``shift``: ``(n, …, V)``.
    ``KL = logsumexp(log p + δ) − E_p[δ]`` (``kl_div`` of the reference, ground truth first).
    Writes into ``shift``.
    """
    mean_shift = torch.einsum("n...v,...v->n...", shift, probs)
    shift += logp
    top = shift.amax(-1, keepdim=True)  # in-place logsumexp: ~2x faster than torch's on CPU
    return shift.sub_(top).exp_().sum(-1).log_() + top.squeeze(-1) - mean_shift
