"""Edge attribution: EAP, EAP-IG (inputs and activations), clean-corrupted, and exact patching.

For an edge u → v the attribution score is (hannamw/EAP-IG ``attribute.py``; PAPER.md §3.2)

    score(u→v) = (1/N)(1/m) Σ_x Σ_k ⟨ a_u(x_corr) − a_u(x_clean), ∂L/∂(input of v) at point k ⟩

summed over positions and d_model and averaged over examples x and gradient points k, with
L = −metric (the ``loss=True`` convention), so a positive score means that patching the edge
with its corrupted value lowers the task metric. The gradient points are:

* ``EAP``: the clean run (m = 1).
* ``EAP-IG-inputs``: only the input embedding is interpolated,
  z_k = e_corr + (k/m)(e_clean − e_corr) for k = 0 … m−1 (EAP-IG HEAD; the same points as the
  pinned commit's e_clean + (k/m)(e_corr − e_clean), k = 1 … m). The paper uses m = 30.
* ``EAP-IG-activations``: for the input, each layer's attention block and each MLP in turn,
  that component's output is set to α·clean + (1−α)·corrupted, α = k/m, k = 1 … m, and gradients
  of every edge are accumulated over all (1 + 2L)·m runs (EAP-IG HEAD
  ``get_scores_ig_activations``).
  On models without learned position embeddings (GPT-NeoX, Llama, Qwen2, OLMo) the reference
  drops part of these gradients; ``layer0_gradients="reference"`` reproduces that (see
  :data:`Layer0Gradients`).
* ``clean-corrupted``: the clean and the corrupted run (m = 2).
* ``exact``: no gradients — score(u→v) = mean metric(clean) − mean metric(clean with only u→v
  patched), i.e. L(patched) − L(clean), one circuit evaluation per edge (the slow reference).

Gradient points are batched: up to ``steps_per_pass`` points share one forward/backward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from circuit_atlas.evaluation import _check, _repeat, evaluate_circuits, record_outputs
from circuit_atlas.graph import Graph
from circuit_atlas.models.protocol import PatchableModel
from circuit_atlas.tasks.base import TaskDataset, metric_values

__all__ = ["LAYER0_GRADIENTS", "METHODS", "Layer0Gradients", "Method", "attribute"]

log = logging.getLogger(__name__)

Method = Literal["EAP", "EAP-IG-inputs", "EAP-IG-activations", "clean-corrupted", "exact"]
"""Attribution methods (names as in hannamw/EAP-IG HEAD)."""

METHODS: tuple[str, ...] = (
    "EAP",
    "EAP-IG-inputs",
    "EAP-IG-activations",
    "clean-corrupted",
    "exact",
)

Layer0Gradients = Literal["consistent", "reference"]
"""How ``EAP-IG-activations`` treats layer-0 inputs in the runs that interpolate the ``input`` node.

* ``consistent`` (default): every backward slot gets the gradient of the metric at every one of
  the (1 + 2L)·m points, as the method's definition says.
* ``reference``: reproduce hannamw/EAP-IG HEAD (@ 795f560, ``get_scores_ig_activations``). Its
  input-interpolation hook returns ``α·clean + (1−α)·corrupted`` built from detached
  activations, a tensor that does not require grad. On a model whose residual stream before
  layer 0 is that embedding alone (no learned position embedding added by a parameter), the
  layer-0 ``hook_q_input``/``hook_k_input``/``hook_v_input`` (and, with GPT-NeoX's parallel
  residual, ``hook_mlp_in``) receive no gradient in those m runs: TransformerLens' backward hooks
  never fire there. Edges into those slots are then averaged over (1 + 2L)·m points of which m
  contributed nothing; every other edge is unchanged. On models with learned positions (GPT-2)
  the position embedding carries the gradient and both settings agree.
"""

LAYER0_GRADIENTS: tuple[str, ...] = ("consistent", "reference")


def attribute(
    model: PatchableModel,
    graph: Graph | None,
    data: TaskDataset,
    *,
    method: Method = "EAP-IG-inputs",
    ig_steps: int = 30,
    batch_size: int = 32,
    steps_per_pass: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    layer0_gradients: Layer0Gradients = "consistent",
) -> Tensor:
    """Score every edge of the model's graph for the task metric.

    Args:
        model: The model.
        graph: Its graph (None = ``model.graph``).
        data: Paired clean/corrupted prompts with the metric.
        method: One of :data:`METHODS`.
        ig_steps: m, the number of integrated-gradient points (EAP-IG methods; default 30 as
            in the paper).
        batch_size: Examples per pass.
        steps_per_pass: Gradient points evaluated together in one forward/backward (default:
            as many as keep a pass at about 64 rows). 1 = one step at a time.
        progress: Called with (done, total) batches.
        layer0_gradients: ``EAP-IG-activations`` only: ``consistent`` (the definition) or
            ``reference`` (hannamw/EAP-IG HEAD's dropped layer-0 gradients on rotary models;
            :data:`Layer0Gradients`). Ignored by the other methods.

    Returns:
        ``(n_edges,)`` float32 signed scores in metric units (logits or probabilities), in the
        graph's edge order.

    Raises:
        ValueError: For an unknown method or ``layer0_gradients`` value, or ``ig_steps`` < 1.
    """
    g = _check(model, graph)
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")
    if layer0_gradients not in LAYER0_GRADIENTS:
        raise ValueError(
            f"unknown layer0_gradients {layer0_gradients!r}; choose one of {LAYER0_GRADIENTS}"
        )
    if ig_steps < 1:
        raise ValueError(f"ig_steps must be >= 1, got {ig_steps}")
    if method == "exact":
        return _exact(model, g, data, batch_size=batch_size)
    scores = torch.zeros((g.n_forward, g.n_backward), dtype=torch.float32, device=model.device)
    n_batches = -(-len(data) // batch_size)
    n_points = 1
    for i, batch in enumerate(data.batches(batch_size)):
        batch = batch.to(model.device)
        n_points = _accumulate(
            model, g, batch, scores, method, ig_steps, steps_per_pass, layer0_gradients
        )
        if progress is not None:
            progress(i + 1, n_batches)
    scores /= len(data) * n_points
    scores *= g.valid.to(scores.device)
    return scores[g.edge_src.to(scores.device), g.edge_dst.to(scores.device)].cpu()


def _points(method: str, m: int) -> list[float]:
    """Interpolation coefficients α (0 = clean, 1 = corrupted) of the gradient points."""
    if method == "EAP":
        return [0.0]
    if method == "clean-corrupted":
        return [0.0, 1.0]
    return [1.0 - k / m for k in range(m)]  # EAP-IG-inputs: e_corr + (k/m)(e_clean − e_corr)


def _accumulate(
    model,
    g: Graph,
    batch: TaskDataset,
    scores: Tensor,
    method: str,
    m: int,
    steps_per_pass: int | None,
    layer0_gradients: str = "consistent",
) -> int:
    """Add Σ_points Σ_examples ⟨diff, grad⟩ of one batch to ``scores``.

    Returns:
        The number of gradient points per example.
    """
    b, p = batch.clean.shape
    _, corr_out = record_outputs(model, batch.corrupted, batch.metric_positions)
    if method == "EAP":
        # The single gradient point is the clean run itself: record it in the same pass.
        clean_out = torch.empty_like(corr_out)
        state = {"diff": None}
        hook = _score_hook(g, scores, b, p, state)
        with torch.enable_grad():
            logits = model.run(
                batch.clean, batch.metric_positions, slot_hook=hook, record=clean_out
            )
            state["diff"] = (corr_out - clean_out).float()
            (-metric_values(logits, batch).sum()).backward()
        return 1
    _, clean_out = record_outputs(model, batch.clean, batch.metric_positions)
    state = {"diff": (corr_out - clean_out).float()}  # (f, b, p, d)
    slot_hook = _score_hook(g, scores, b, p, state)

    if method == "EAP-IG-activations":
        dropped = _reference_dropped_slots(model, g) if layer0_gradients == "reference" else ()
        return _ig_activations(
            model, g, batch, clean_out, corr_out, slot_hook, m, steps_per_pass, dropped
        )
    alphas = _points(method, m)
    per_pass = steps_per_pass or max(1, min(len(alphas), 64 // max(b, 1)))
    e_clean = model.embed(batch.clean)
    e_corr = model.embed(batch.corrupted)
    for start in range(0, len(alphas), per_pass):
        chunk = torch.tensor(
            alphas[start : start + per_pass], dtype=e_clean.dtype, device=e_clean.device
        )
        r = len(chunk)
        embed = e_clean[None] + chunk[:, None, None, None] * (e_corr - e_clean)[None]
        embed = embed.reshape(r * b, p, -1)
        tokens = batch.clean.repeat(r, 1)
        positions = batch.metric_positions.repeat(r)
        with torch.enable_grad():
            logits = model.run(tokens, positions, embed=embed, slot_hook=slot_hook)
            loss = -metric_values(logits, _repeat(batch, r)).sum()
            loss.backward()
    return len(alphas)


def _score_hook(g: Graph, scores: Tensor, b: int, p: int, state: dict):
    """Slot hook adding ⟨diff_u, grad_s⟩ into ``scores[u, s]`` (``state["diff"]`` read lazily)."""
    h = g.n_heads

    def hook(first: int, grad: Tensor) -> None:
        # grad (s, r·b, p, d): sum the r stacked points first (the score is linear in grad).
        s = grad.shape[0]
        grad = grad.float()
        if grad.shape[1] != b:
            grad = grad.view(s, -1, b, p, grad.shape[-1]).sum(1)
        if first == g.logits_backward:
            n_u = g.n_forward
        else:
            layer = first // (3 * h + 1)
            n_u = g.layer_forward_start(layer) + (0 if g.parallel_residual else h)
        diff = state["diff"][:n_u].reshape(n_u, -1)  # (u, b·p·d)
        # (u, b·p·d) @ (b·p·d, s): one GEMM, no copies of either operand
        scores[:n_u, first : first + s] += diff @ grad.reshape(s, -1).T

    return hook


def _reference_dropped_slots(model, g: Graph) -> tuple[int, ...]:
    """Backward slots that get no gradient in the reference's input-interpolation runs.

    Those whose input is the ``input`` node's output alone, with no parameter in between:
    layer 0's q/k/v (and its MLP under the parallel residual), on models without learned
    position embeddings (:data:`Layer0Gradients`).
    """
    if model.spec.positional == "learned":
        return ()
    slots = list(range(g.layer_backward_start(0), g.layer_backward_start(0) + 3 * g.n_heads))
    if g.parallel_residual:
        slots.append(g.mlp_backward(0))
    return tuple(slots)


def _without(slot_hook, dropped: tuple[int, ...]):
    """A slot hook that zeroes the gradient of the ``dropped`` backward slots, then adds."""

    def hook(first: int, grad: Tensor) -> None:
        inside = [b - first for b in dropped if first <= b < first + grad.shape[0]]
        if inside:
            grad = grad.clone()
            grad[inside] = 0
        slot_hook(first, grad)

    return hook


def _ig_activations(
    model,
    g: Graph,
    batch: TaskDataset,
    clean_out: Tensor,
    corr_out: Tensor,
    slot_hook,
    m: int,
    steps_per_pass: int | None,
    dropped: tuple[int, ...] = (),
) -> int:
    """EAP-IG-activations: interpolate one component group's output at a time.

    ``dropped``: backward slots whose gradient the runs interpolating the ``input`` node leave
    out (:func:`_reference_dropped_slots`; empty = the consistent definition).
    """
    h = g.n_heads
    groups = [(0, 1)]
    for layer in range(g.n_layers):
        f0 = g.layer_forward_start(layer)
        groups += [(f0, h), (f0 + h, 1)]
    b = batch.clean.shape[0]
    alphas = [k / m for k in range(1, m + 1)]
    per_pass = steps_per_pass or max(1, min(m, 64 // max(b, 1)))
    for first, size in groups:
        for start in range(0, m, per_pass):
            chunk = torch.tensor(
                alphas[start : start + per_pass], dtype=model.dtype, device=model.device
            )
            r = len(chunk)
            clean_g = clean_out[first : first + size]  # (size, b, p, d)
            corr_g = corr_out[first : first + size]
            mixed = (
                chunk[None, :, None, None, None] * clean_g[:, None]
                + (1 - chunk[None, :, None, None, None]) * corr_g[:, None]
            )
            mixed = mixed.reshape(size, r * b, *clean_g.shape[2:])

            def edit(f: int, out: Tensor, first=first, mixed=mixed) -> Tensor:
                return mixed if f == first else out

            hook = _without(slot_hook, dropped) if first == 0 and dropped else slot_hook
            with torch.enable_grad():
                logits = model.run(
                    batch.clean.repeat(r, 1),
                    batch.metric_positions.repeat(r),
                    slot_hook=hook,
                    edit_output=edit,
                )
                loss = -metric_values(logits, _repeat(batch, r)).sum()
                loss.backward()
    return len(groups) * m  # the reference divides by its total_steps = (1 + 2L)·m


def _exact(model, g: Graph, data: TaskDataset, *, batch_size: int) -> Tensor:
    """Exact per-edge activation patching: one circuit (all edges but one) per edge."""
    n = g.n_edges
    full = torch.ones(n, dtype=torch.bool)
    base = evaluate_circuits(model, g, data, full, batch_size=batch_size)
    out = torch.empty(n)
    chunk = 256
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk))
        masks = full.repeat(len(idx), 1)
        masks[torch.arange(len(idx)), idx] = False
        out[idx] = base - evaluate_circuits(model, g, data, masks, batch_size=batch_size)
    return out
