"""Batched sender sweeps for path patching: one path patch per sender head, many per run.

The fast engine behind :func:`~circuit_atlas.components.path_patching.path_patching_effects`
(PAPER.md §5; Callum McDougall's ``path_patching.py``, ``_path_patch_single`` with
``direct_includes_mlps=True``, as ``get_ioi_consistency.py`` in curt-tigges/circuits-over-time
calls it). It also holds the receiver and head types and their validation, shared with the slow
reference :func:`~circuit_atlas.components.path_patching.path_patch` (which imports them from
here, so neither module imports the other in a cycle).

:func:`sweep_senders` path-patches one sender at a time, ``batch_senders`` of them stacked along
the batch dimension; it runs step 2 only at the receiver positions (frozen heads ⇒ positions
independent) and, for ``"end"`` receivers, step 3 only on the END row (a change at the last real
token reaches no other position; the other keys and values are the clean run's). It is tested
equal to :func:`~circuit_atlas.components.path_patching.path_patch` one sender at a time (steps
and receiver positions: see :mod:`circuit_atlas.components.path_patching`).

Shapes: ``L`` layers, ``h`` heads, ``b`` examples, ``p`` positions, ``d`` d_model, ``e`` d_head,
``K`` senders, ``w`` watched heads, ``V`` vocabulary.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from circuit_atlas.components.hooked import Trace, head_values, trace
from circuit_atlas.models.patchable import upcast
from circuit_atlas.tasks.base import TaskDataset, metric_values

__all__ = [
    "ExampleMetric",
    "Head",
    "Receiver",
    "ReceiverPositions",
    "RunCache",
    "SenderSweep",
    "end_metric_values",
    "sweep_senders",
]

Head = tuple[int, int]
"""An attention head ``(layer, head)``."""

Receiver = tuple[int, int, Literal["q", "k", "v"]] | Literal["resid_post"]
"""A head's query/key/value input ``(layer, head, "q"|"k"|"v")``, or the final residual stream."""

ReceiverPositions = Literal["end", "all"]
"""Where receivers are patched: each example's metric position, or every position."""

ExampleMetric = Callable[[Tensor, TaskDataset], Tensor]
"""``metric(logits (n, V) at the metric positions, data) -> (n,)`` per-example values."""

_QKV = {"q": 0, "k": 1, "v": 2}


class _Receivers(NamedTuple):
    heads: tuple[tuple[int, int, int], ...]  # (layer, head, 0|1|2 for q|k|v)
    resid_post: bool
    top: int  # the last receiver's layer (n_layers for resid_post): senders below it can reach

    def at(self, layer: int) -> list[tuple[int, int]]:
        return [(h, c) for lr, h, c in self.heads if lr == layer]


def _as_head(item: object, spec, what: str) -> Head:
    try:
        layer, head = (operator.index(i) for i in item)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a (layer, head) pair of ints, got {item!r}") from None
    if not (0 <= layer < spec.n_layers and 0 <= head < spec.n_heads):
        raise ValueError(
            f"{what} {(layer, head)} is outside the model ({spec.n_layers} layers × "
            f"{spec.n_heads} heads)"
        )
    return layer, head


def _heads(model, items: Iterable[object], what: str) -> tuple[Head, ...]:
    out: list[Head] = []
    for item in items:
        head = _as_head(item, model.spec, what)
        if head not in out:
            out.append(head)
    return tuple(out)


def _receivers(model, receivers: Receiver | Sequence[Receiver]) -> _Receivers:
    items = [receivers] if isinstance(receivers, str) else list(receivers)
    if not items:
        raise ValueError("receivers must not be empty")
    heads: list[tuple[int, int, int]] = []
    resid_post = False
    for item in items:
        if item == "resid_post":
            resid_post = True
            continue
        if not isinstance(item, (tuple, list)) or len(item) != 3 or item[2] not in _QKV:
            raise ValueError(
                f"a receiver is (layer, head, 'q'|'k'|'v') or 'resid_post', got {item!r}"
            )
        layer, head = _as_head(item[:2], model.spec, "receiver head")
        if (layer, head, _QKV[item[2]]) not in heads:
            heads.append((layer, head, _QKV[item[2]]))
    top = model.spec.n_layers if resid_post else max(layer for layer, _, _ in heads)
    return _Receivers(tuple(heads), resid_post, top)


def _pair(model, clean: Tensor, corrupted: Tensor) -> tuple[Tensor, Tensor]:
    if clean.dim() != 2 or clean.shape != corrupted.shape:
        raise ValueError(
            f"clean and corrupted must be (batch, pos) of one shape, got {tuple(clean.shape)} "
            f"and {tuple(corrupted.shape)}"
        )
    return clean.to(model.device), corrupted.to(model.device)


@dataclass(frozen=True)
class SenderSweep:
    """One path patch per sender head, read at each example's END (metric) position.

    Attributes:
        senders: The sender heads, in order.
        resid: ``(K, b, d)`` final residual stream at END after path-patching sender k.
        clean_resid: ``(b, d)`` the clean run's final residual stream at END.
        corrupted_resid: ``(b, d)`` the corrupted run's.
        patterns: ``(K, w, b, p)`` attention of the watched heads from END to every position in
            step 3 (zero beyond END), or None without watched heads.
        clean_patterns: ``(w, b, p)`` the same in the clean run, or None.
        clean_heads: ``(L, h, b, d)`` every head's clean output (through W_O, no b_O) at END
            (reused by the self-repair runs).
    """

    senders: tuple[Head, ...]
    resid: Tensor
    clean_resid: Tensor
    corrupted_resid: Tensor
    patterns: Tensor | None
    clean_patterns: Tensor | None
    clean_heads: Tensor | None = None


@dataclass
class _Run:
    """One recorded forward run: the trace, head outputs at the END positions, lazily ``z``."""

    tokens: Tensor
    ends: Tensor
    trace: Trace  # resid, patterns, mlp
    end_heads: Tensor  # (L, h, b, 1, d)
    z: Tensor | None = None  # (L, h, b, p, e)


class RunCache:
    """Forward runs shared by the sweeps of one model and dataset (issue 10, "reuse the traces").

    Every sweep needs a recorded clean run and a recorded corrupted run; the IOI algorithm runs
    four sweeps on the same prompts (direct effects, the two S-inhibition sweeps, the tertiary
    sweep), so passing one cache to all of them runs each distinct prompt set once. Runs are
    keyed by the token tensor (identity, checked for equal contents and END positions on a hit);
    the cache keeps them alive, so drop it when the dataset is done.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple, _Run] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, model, tokens: Tensor, ends: Tensor) -> _Run:
        """The recorded run of ``tokens`` (computed on the first request)."""
        key = (id(model), tokens.data_ptr(), tuple(tokens.shape), tokens.dtype)
        hit = self._runs.get(key)
        if hit is not None and torch.equal(hit.tokens, tokens) and torch.equal(hit.ends, ends):
            return hit
        rows = torch.arange(tokens.shape[0], device=model.device)
        kept: list[Tensor] = []
        run = trace(model, tokens, record=("resid", "patterns", "mlp"),
                    head_edit=_capture(kept, rows, ends[:, None]))  # fmt: skip
        self._runs[key] = _Run(tokens, ends.clone(), run, torch.stack(kept))
        return self._runs[key]

    def site_values(self, model, run: _Run) -> Tensor:
        """Per-head ``z`` of ``run`` at every position, ``(L, h, b, p, e)`` (computed once)."""
        if run.z is None:
            run.z = _site_values(model, run.trace)
        return run.z


def _site_values(model, run: Trace) -> Tensor:
    """Per-head ``z`` (before W_O) at every position: ``(L, h, b, p, e)``."""
    return torch.stack([torch.matmul(run.patterns[layer].to(run.resid.dtype),
                                     head_values(model, layer, run.resid[layer]))
                        for layer in range(model.spec.n_layers)])  # fmt: skip


def _capture(store: list[Tensor], rows: Tensor, sites: Tensor) -> Callable[[int, Tensor], Tensor]:
    """A head edit that keeps each layer's head outputs at the sites, ``(h, b, s, d)``."""

    def edit(layer: int, out: Tensor) -> Tensor:
        store.append(out[:, rows[:, None], sites])
        return out

    return edit


@torch.no_grad()
def sweep_senders(
    model,
    clean: Tensor,
    corrupted: Tensor,
    ends: Tensor,
    senders: Iterable[Head],
    receivers: Receiver | Sequence[Receiver],
    *,
    receiver_positions: ReceiverPositions = "end",
    watch: Iterable[Head] = (),
    batch_senders: int = 16,
    direct_includes_mlps: bool = True,
    cache: RunCache | None = None,
) -> SenderSweep:
    """Path-patch each sender head alone into ``receivers``, many senders per batched run.

    Equals :func:`path_patch` called once per sender (same step 2 and step 3), read at ``ends``.

    Args:
        model: A :class:`~circuit_atlas.models.protocol.PatchableModel`.
        clean: ``(b, p)`` int64 clean tokens.
        corrupted: ``(b, p)`` int64 corrupted tokens.
        ends: ``(b,)`` int64 position where each example is read (``lengths − 1``); the
            receiver positions for ``"end"``.
        senders: Heads, each path-patched on its own.
        receivers: As for :func:`path_patch`.
        receiver_positions: ``"end"`` (patch receivers at ``ends``) or ``"all"``.
        watch: Heads whose attention from END is returned (e.g. the name movers).
        batch_senders: Senders stacked along the batch dimension of one run.
        direct_includes_mlps: As for :func:`path_patch`.
        cache: Recorded runs to reuse and extend (:class:`RunCache`); None records both runs
            for this sweep only.

    Returns:
        A :class:`SenderSweep`.

    Raises:
        ValueError: For a bad receiver, sender or watched head, ``ends`` out of range, an unknown
            ``receiver_positions`` or ``batch_senders`` < 1.
    """
    clean, corrupted = _pair(model, clean, corrupted)
    if receiver_positions not in ("end", "all"):
        raise ValueError(f"receiver_positions must be 'end' or 'all', got {receiver_positions!r}")
    if batch_senders < 1:
        raise ValueError(f"batch_senders must be >= 1, got {batch_senders}")
    senders = _heads(model, senders, "sender")
    watch = _heads(model, watch, "watched head")
    rec = _receivers(model, receivers)
    b, p = clean.shape
    ends = ends.to(model.device).long()
    if ends.shape != (b,) or (b and (ends.min() < 0 or ends.max() >= p)):
        raise ValueError(f"ends must be (b,) = ({b},) positions in [0, {p}), got {ends.tolist()}")
    rows = torch.arange(b, device=model.device)
    n_layers, parallel = model.spec.n_layers, model.spec.parallel_residual
    cache = cache if cache is not None else RunCache()
    base_run, alt_run = cache.get(model, clean, ends), cache.get(model, corrupted, ends)
    base, alt = base_run.trace, alt_run.trace
    if receiver_positions == "end":  # head outputs (through W_O) at END, kept while tracing
        sites = ends[:, None]
        clean_site, alt_site = base_run.end_heads, alt_run.end_heads  # (L, h, b, 1, d)
        site_attn = clean_site.sum(1)
    else:  # every position: keep z (d_head wide) instead of the head outputs
        sites = None
        clean_site = cache.site_values(model, base_run)
        alt_site = cache.site_values(model, alt_run)
        site_attn = torch.stack([model.through_o(layer, clean_site[layer])
                                 for layer in range(n_layers)])  # fmt: skip
    site_attn = site_attn + torch.stack([model.attn_out_bias(layer)
                                         for layer in range(n_layers)])[:, None, None]  # fmt: skip
    pick = (lambda t: t[:, rows[:, None], sites]) if sites is not None else (lambda t: t)
    site_mlp, site_embed = pick(base.mlp), pick(base.resid[:1])[0]  # (L, b, s, d), (b, s, d)
    kv = _clean_keys_values(model, base, rec) if rec.heads and sites is not None else {}

    clean_pat = None
    if watch:
        clean_pat = torch.stack([base.patterns[wl, wh][rows, ends] for wl, wh in watch])
    resid_out, pat_out = [], []
    for start in range(0, len(senders), batch_senders):
        chunk = senders[start : start + batch_senders]
        k = len(chunk)
        # Step 2 at the receiver sites only: heads frozen, so positions do not interact.
        x = site_embed.expand(k, *site_embed.shape)
        inputs: dict[int, Tensor] = {}
        for layer in range(rec.top):
            inputs[layer] = x
            attn = site_attn[layer].expand_as(x)
            mine = [(i, sh) for i, (sl, sh) in enumerate(chunk) if sl == layer]
            if mine:
                attn = attn.clone()
                for i, sh in mine:
                    diff = alt_site[layer, sh] - clean_site[layer, sh]  # (b, s, d) or (b, s, e)
                    attn[i] += diff if sites is not None else diff @ model.ov(layer)[2][sh]
            # Blocks whose sender has not yet changed this MLP's input keep the clean MLP.
            moved = [
                i for i, (sl, _) in enumerate(chunk) if sl < layer or (sl == layer and not parallel)
            ]
            mlp = site_mlp[layer].expand_as(x)
            if direct_includes_mlps and moved:
                mlp = mlp.clone()
                mlp[moved] = model.mlp(layer, model.mlp_input(x, attn)[moved])
            x = x + attn + mlp
        inputs[rec.top] = x  # the last receiver layer's input (the final stream for resid_post)
        # Step 3: clean run with the receivers' inputs replaced.
        if rec.heads:
            final, pats = _step3(model, base, ends, inputs, rec, watch, k, kv, sites is not None)
        else:
            final = base.resid[n_layers][rows, ends].expand(k, b, -1)
            pats = None if clean_pat is None else clean_pat.expand(k, *clean_pat.shape)
        if rec.resid_post:
            final = x[:, :, 0] if sites is not None else x[:, rows, ends]
        resid_out.append(final)
        if pats is not None:
            pat_out.append(pats)
    d = model.spec.d_model
    return SenderSweep(
        senders=senders,
        resid=torch.cat(resid_out) if resid_out else base.resid.new_zeros(0, b, d),
        clean_resid=base.resid[n_layers][rows, ends],
        corrupted_resid=alt.resid[n_layers][rows, ends],
        patterns=(torch.cat(pat_out) if pat_out else clean_pat.new_zeros(0, *clean_pat.shape))
        if watch
        else None,
        clean_patterns=clean_pat,
        clean_heads=base_run.end_heads[:, :, :, 0],
    )


def _clean_keys_values(model, base: Trace, rec: _Receivers) -> dict[int, tuple[Tensor, Tensor]]:
    """Rotated keys and values ``(h, b, p, e)`` of the clean run from the first receiver on."""
    cos, sin = model.rotary(base.resid.shape[2])
    out = {}
    for layer in range(min(layer for layer, _, _ in rec.heads), model.spec.n_layers):
        qkv = model.qkv(layer, base.resid[layer][None, None])  # (3, h, b, p, e)
        out[layer] = model.rotate(qkv[1], cos, sin), qkv[2]
    return out


def _step3(model, base: Trace, ends: Tensor, inputs: dict[int, Tensor], rec: _Receivers,
           watch: tuple[Head, ...], k: int, kv: dict[int, tuple[Tensor, Tensor]],
           end_only: bool) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """Step 3 for ``k`` senders from the first receiver's layer on (earlier layers are clean).

    With ``end_only`` (receivers at END) only each example's END row is recomputed: a change at
    the last real token reaches no other position, so keys and values elsewhere are the clean
    run's (``kv``). Otherwise every position is recomputed.

    Returns the final residual stream at END ``(k, b, d)`` and watched patterns ``(k, w, b, p)``.
    """
    spec = model.spec
    h, e, d = spec.n_heads, spec.d_head, spec.d_model
    b, p = base.resid.shape[1:3]
    s = 1 if end_only else p
    rows = torch.arange(b, device=ends.device)
    first = min(layer for layer, _, _ in rec.heads)
    cos, sin = model.rotary(p)  # (p, r)
    if end_only:
        cos, sin = cos[ends].repeat(k, 1)[:, None], sin[ends].repeat(k, 1)[:, None]  # (k·b, 1, r)
        hidden = torch.arange(p, device=ends.device)[None, :] > ends[:, None]  # (b, p)
        at_end = ends.view(1, b, 1, 1).expand(h, b, k, 1)
        x = base.resid[first][rows, ends][:, None]  # (b, 1, d)
    else:
        hidden = torch.ones(p, p, dtype=torch.bool, device=ends.device).triu(1)
        x = base.resid[first]
    x = x.expand(k, b, s, d).reshape(k * b, s, d)
    pats = [base.patterns[wl, wh][rows, ends].expand(k, b, p) if wl < first else None
            for wl, wh in watch]  # fmt: skip
    for layer in range(first, spec.n_layers):
        qkv = model.qkv(layer, x[None, None])  # (3, h, k·b, s, e)
        for head, c in rec.at(layer):
            patched_in = inputs[layer].reshape(1, 1, k * b, s, d)
            qkv[c, head] = model.qkv(layer, patched_in, heads=[head])[c, 0]
        q, key = model.rotate(qkv[0], cos, sin), model.rotate(qkv[1], cos, sin)
        if end_only:  # queries (h, b, k, e) against the clean keys, END's own key replaced
            keys, values = kv[layer]  # (h, b, p, e)
            q, key, val = (t.view(h, k, b, e).transpose(1, 2) for t in (q, key, qkv[2]))
            scores = torch.matmul(q, keys.transpose(-1, -2))  # (h, b, k, p)
            scores = scores.scatter(-1, at_end, (q * key).sum(-1, keepdim=True))
            pattern = model.attention_pattern(scores, hidden[None, :, None, :])
            weights = pattern.to(values.dtype)
            v_end = values[:, rows, ends][:, :, None]  # (h, b, 1, e)
            z = torch.matmul(weights, values) + weights.gather(-1, at_end) * (val - v_end)
            z = z.transpose(1, 2).reshape(h, k * b, 1, e)
            from_end = pattern.transpose(1, 2)  # (h, k, b, p)
        else:
            scores = torch.matmul(q, key.transpose(-1, -2))  # (h, k·b, p, p)
            pattern = model.attention_pattern(scores, hidden)
            z = torch.matmul(pattern.to(qkv.dtype), qkv[2])  # (h, k·b, p, e)
            from_end = pattern.view(h, k, b, p, p)[:, :, rows, ends]  # (h, k, b, p)
        attn = model.through_o(layer, z) + model.attn_out_bias(layer)
        mlp = model.mlp(layer, model.mlp_input(x, attn))
        x = x + attn + mlp
        for i, (wl, wh) in enumerate(watch):
            if wl == layer:
                pats[i] = from_end[wh]
    final = x.view(k, b, s, d)[:, rows, 0 if end_only else ends]
    return final, (torch.stack(pats, 1) if watch else None)


def end_metric_values(
    model, resid: Tensor, data: TaskDataset, metric: ExampleMetric | None = None
) -> Tensor:
    """Per-example task metric from final residual streams at the metric position.

    Args:
        model: The model (its final LayerNorm and unembedding are applied).
        resid: ``(K, n, d)`` final residual stream at ``data.metric_positions``.
        data: The dataset (``n`` examples).
        metric: ``metric(logits (n, V), data) -> (n,)``; None for
            :func:`~circuit_atlas.tasks.base.metric_values` (logit differences are then read
            through the two unembedding columns only, without the full vocabulary).

    Returns:
        ``(K, n)`` metric values (float32, float64 for float64 models).
    """
    if metric is None and data.metric == "logit_diff":
        x = upcast(model.final_norm(resid))
        w_u = upcast(model.unembedding)
        direction = w_u[:, data.answer.to(model.device)] - w_u[:, data.wrong.to(model.device)]
        out = (x * direction.T).sum(-1)
        return out if out.dtype == torch.float64 else out.float()
    fn = metric or metric_values
    return torch.stack([fn(model.unembed(r), data) for r in resid])
