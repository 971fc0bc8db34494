"""Copy scores of every head on IOI prompts: name movers and negative name movers (PAPER.md §4).

The copy score asks whether a head's OV circuit, fed the token representation that layer 0
builds, writes the token's own unembedding direction: take the residual stream after block 0
(``blocks.0.hook_resid_post``) at the IO, S1 and S2 positions of the IOI prompts, apply the head's
value (``W_V`` + ``b_V``) and output (``W_O``, no ``b_O``) maps, optionally negate, unembed, and
count the positions whose own name token is among the top-k logits.

Source followed: ``compute_copy_score`` in ``utils/component_evaluation.py`` /
``utils/backup_analysis.py`` of curt-tigges/circuits-over-time (the paper's code), itself a port of
Wang et al.'s ``check_copy_circuit`` (Redwood's IOI notebook). The paper's models are loaded in
TransformerLens with ``fold_ln=True``, ``center_writing_weights=True``, ``center_unembed=True``,
and the reference then applies **no** LayerNorm ("layernorm already folded in"). With folded
weights that computes, in the original weights' terms,

``logits = ((o − mean(o)) ⊙ w_f + b_f) · W_U`` with ``o = sign · (((x − mean(x)) ⊙ w_1 + b_1) ·
W_V + b_V) · W_O``,

where ``x`` is the residual stream after block 0, ``(w_1, b_1)`` the head's layer's attention
LayerNorm and ``(w_f, b_f)`` the final LayerNorm: each LayerNorm's centring and affine map are
applied, its division by the standard deviation is not (fold_ln moves ``w`` and ``b`` into the
weights and the centring into ``W_V``/``W_O``; ``center_unembed`` only shifts every logit of a
position equally, which leaves the ranking unchanged). This is ``full_layer_norm=False``, the
default. Wang et al.'s original (``model.ln_final(o)`` and ``blocks[1].ln1`` on the residual)
applies the full LayerNorms instead: ``full_layer_norm=True``. The two differ only through the
relative size of the LayerNorm biases (``b_1``, ``b_V``, ``b_f``) and the unscaled signal.

Other choices, all as in the reference: ``b_V`` is added, ``b_O`` is not; the negative score
negates the head's output before the final LayerNorm; the name of a position is its token
(IO at the IO position, S at S1 and S2); the score is the fraction of the ``3N`` positions that
hit. Deviations: the score is a fraction in [0, 1] (the reference reports percent, and its
thresholds are 10% → 0.10 and 75% → 0.75); a hit is decided on token ids, with ties in favour
of the name (its rank is the number of tokens with a strictly larger logit), where the reference
decodes ``torch.topk``'s ids and compares strings.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuit_atlas.components.hooked import trace
from circuit_atlas.models.patchable import upcast

__all__ = ["IOI_WORDS", "copy_score_pair", "copy_scores", "name_positions"]

IOI_WORDS: tuple[str, ...] = ("io_pos", "s1_pos", "s2_pos")
"""The ``TaskDataset.info`` keys of the three name positions of an IOI prompt."""

_CHUNK_ELEMENTS = 1 << 25
"""Upper bound on the elements of one block of logits ``(heads, positions, vocab)``."""


def name_positions(data) -> tuple[Tensor, Tensor]:
    """The IO, S1 and S2 positions of IOI prompts.

    Args:
        data: An IOI :class:`~circuit_atlas.tasks.base.TaskDataset`
            (:func:`circuit_atlas.tasks.ioi.make_ioi`).

    Returns:
        ``(rows, positions)``: ``(3N,)`` int64 example indices and token positions, all IO
        positions first, then all S1, then all S2.

    Raises:
        ValueError: If ``data.info`` lacks ``io_pos``/``s1_pos``/``s2_pos`` (not IOI data), if
            their lengths differ from the number of prompts (e.g. after ``select``), or if a
            position is outside its prompt.
    """
    info = getattr(data, "info", None) or {}
    missing = [k for k in IOI_WORDS if k not in info]
    if missing:
        raise ValueError(
            f"copy scores need IOI data with name positions in info; task "
            f"{getattr(data, 'task', None)!r} lacks {missing}"
        )
    n = len(data)
    for key in IOI_WORDS:
        if len(info[key]) != n:
            raise ValueError(
                f"info[{key!r}] has {len(info[key])} positions for {n} prompts (a selected "
                "dataset keeps the full dataset's info; rebuild it with make_ioi)"
            )
    rows = torch.arange(n).repeat(len(IOI_WORDS))
    pos = torch.tensor([p for key in IOI_WORDS for p in info[key]], dtype=torch.int64)
    bad = (pos < 0) | (pos >= data.lengths[rows])
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"name position {int(pos[k])} of prompt {int(rows[k])} is outside its "
            f"{int(data.lengths[rows[k]])} tokens"
        )
    return rows, pos


def _layer_norm(model, x: Tensor, w: Tensor, b: Tensor, eps: float, full: bool) -> Tensor:
    """The model's norm over the last dim; without the division by the scale unless ``full``.

    LayerNorm centres ``x``; RMSNorm does not (``model.center``).
    """
    centred = model.center(x)
    if full:
        centred = centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
    return centred * w + b


@torch.no_grad()
def copy_scores(
    model,
    data,
    *,
    top_k: int = 5,
    negative: bool = False,
    full_layer_norm: bool = False,
) -> Tensor:
    """Copy score (or negative copy score) of every head on IOI prompts (PAPER.md §4).

    One forward pass gives the residual stream after block 0 (``trace(...).resid[1]``); the rest
    uses weights only (:func:`copy_score_pair`, which gives both signs for the cost of one).

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        data: IOI prompts from :func:`circuit_atlas.tasks.ioi.make_ioi` (the paper: N = 70);
            the clean prompts are used.
        top_k: A position hits when its name token is among the ``top_k`` largest logits (the
            paper: 5).
        negative: Negate each head's output (negative name movers).
        full_layer_norm: Apply the full LayerNorms (Wang et al.'s ``check_copy_circuit``)
            instead of the paper's folded-LayerNorm computation (see the module docstring).

    Returns:
        ``(n_layers, n_heads)`` float32 CPU fractions in [0, 1] of the ``3N`` name positions that
        hit. The paper reports percent: a name mover has copy score > 0.10 (10%).

    Raises:
        ValueError: If ``data`` is not IOI data (see :func:`name_positions`), or ``top_k`` is not
            in ``[1, vocab]``.
    """
    signs = (-1.0,) if negative else (1.0,)
    return _scores(model, data, top_k, full_layer_norm, signs)[0]


@torch.no_grad()
def copy_score_pair(
    model, data, *, top_k: int = 5, full_layer_norm: bool = False
) -> tuple[Tensor, Tensor]:
    """The copy score and the negative copy score of every head, sharing their logits.

    Negating a head's output negates its centred (and, with ``full_layer_norm``, normalised)
    final-norm input, so ``logits(−o) = 2·b_f·W_U − logits(o)``: one set of logits gives both.

    Args and raises: as :func:`copy_scores`.

    Returns:
        ``(copy, negative_copy)``, each ``(n_layers, n_heads)`` float32 CPU fractions.
    """
    pos, neg = _scores(model, data, top_k, full_layer_norm, (1.0, -1.0))
    return pos, neg


def _scores(model, data, top_k: int, full: bool, signs: tuple[float, ...]) -> list[Tensor]:
    """Copy scores for each sign in ``signs`` (``(n_layers, n_heads)`` each).

    A head's logits are ``sign · (v·M)/s + b_f·W_U`` with ``v`` its value vectors at the name
    positions, ``M = (center(W_O) ⊙ w_f)·W_U`` ``(e, V)`` (the centring of the final norm moved
    into W_O's rows, where it is linear) and ``s`` the norm's scale (1 unless ``full``): one
    ``(P, e) × (e, V)`` product per head instead of ``(P, d) × (d, V)``, built in blocks of
    heads so that at most ``2**25`` logits exist at once.
    """
    vocab = model.spec.vocab_size
    if not 1 <= top_k <= vocab:
        raise ValueError(f"top_k must be in [1, {vocab}], got {top_k}")
    rows, pos = name_positions(data)
    clean = data.clean
    names = clean[rows, pos].to(model.device)  # (P,) the name token at each position
    resid = trace(model, clean, record=("resid",)).resid[1]  # (n, p, d) after block 0
    x = upcast(resid[rows.to(model.device), pos.to(model.device)])  # (P, d)
    eps = model.spec.layer_norm_eps
    w_f, b_f = (upcast(t) for t in model.norm_weights("final"))
    w_u = upcast(model.unembedding)
    bias = b_f @ w_u  # (V,) every position's logits share it
    n_pos = x.shape[0]
    block = max(1, _CHUNK_ELEMENTS // (n_pos * vocab))
    out = [torch.empty(model.spec.n_layers, model.spec.n_heads) for _ in signs]
    for layer in range(model.spec.n_layers):
        w_1, b_1 = (upcast(t) for t in model.norm_weights("attn", layer))
        w_v, b_v, w_o = (upcast(t) for t in model.ov(layer))
        x_ln = _layer_norm(model, x, w_1, b_1, eps, full)  # (P, d)
        v = torch.matmul(x_ln, w_v) + b_v  # (h, P, e)
        w_oc = model.center(w_o)  # (h, e, d): center(v·W_O) = v·center(W_O)
        hits: list[list[Tensor]] = [[] for _ in signs]
        for start in range(0, v.shape[0], block):
            heads = slice(start, start + block)
            logits = torch.matmul(v[heads], (w_oc[heads] * w_f) @ w_u)  # (c, P, V)
            if full:  # the norm's scale of the centred output, the same for both signs
                o = torch.matmul(v[heads], w_oc[heads])  # (c, P, d)
                logits /= torch.sqrt(o.pow(2).mean(-1, keepdim=True) + eps)
            for i, sign in enumerate(signs):
                if i == 0:
                    logits = logits.mul_(sign).add_(bias)
                else:  # sign·L + b from (previous sign)·L + b: 2b − (L + b) for the flip
                    logits = logits.neg_().add_(bias, alpha=2.0)
                own = logits.gather(-1, names[None, :, None].expand(logits.shape[0], -1, 1))
                kth = logits.topk(top_k, dim=-1, sorted=False).values.amin(-1, keepdim=True)
                # own >= the k-th largest logit <=> fewer than k tokens are strictly above it
                hits[i].append((own >= kth)[..., 0].float().mean(-1))  # (c,)
        for i in range(len(signs)):
            out[i][layer] = torch.cat(hits[i]).cpu()
    return out
