"""The edge-graph forward passes of a patchable model: plain, gradient-hooked and patched.

:class:`SlotForward` is mixed into :class:`~circuit_atlas.models.patchable.PatchableTransformer`
and runs its building blocks (``embed``, ``qkv``, ``attend``, ``mlp``, ``unembed``) over the slot
layout of :class:`~circuit_atlas.graph.Graph`: :meth:`SlotForward.run` records forward slots,
reports every backward slot's own input gradient (``slot_hook``), edits forward slots
(EAP-IG-activations) or evaluates ``k`` circuits at once (:class:`Patch`).

Shapes use ``b`` batch, ``p`` positions, ``d`` d_model, ``h`` heads, ``f`` forward slots, ``s``
backward slots, ``k`` circuits evaluated together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from circuit_atlas.models.slot_grad import (
    SlotFanout,
    bind_logits_slot,
    bind_one_slot,
    bind_slots,
)

__all__ = ["OutputEdit", "Patch", "SlotForward", "SlotHook"]

SlotHook = Callable[[int, Tensor], None]
"""Called with (first backward slot, gradient ``(s, b, p, d)``) when slot inputs get gradients."""

OutputEdit = Callable[[int, Tensor], Tensor]
"""Called with (first forward slot, output ``(f, b, p, d)``); returns the output to use."""


@dataclass
class Patch:
    """An edge-level intervention for :meth:`PatchableTransformer.run`.

    Attributes:
        keep: ``(k, n_forward, n_backward)`` float in {0, 1}: 1 keeps an edge's circuit-run
            value, 0 replaces the parent's contribution with ``alt``. Non-edges are ignored.
        alt: Alternative parent outputs ``(n_forward, b, p, d)`` (the corrupted run, for
            interchange ablation) or ``(n_forward, 1, 1, d)`` (mean ablation, with
            ``broadcast=True``); None means zero ablation.
        broadcast: ``alt`` is one value per forward slot, shared by every example and position.
    """

    keep: Tensor
    alt: Tensor | None
    broadcast: bool = False


class SlotForward:
    """The edge-graph forward passes (a mixin of ``PatchableTransformer``)."""

    # ------------------------------------------------------------------ forward passes
    def forward(self, tokens: Tensor) -> Tensor:
        """Plain forward: logits ``(b, p, vocab)`` at every position (float of model dtype)."""
        b, p = tokens.shape
        pos = torch.arange(p, device=tokens.device).expand(b, p)
        resid = self.run(tokens, None, return_resid=True)
        return self.unembed(resid[torch.arange(b)[:, None], pos])

    def run(
        self,
        tokens: Tensor,
        positions: Tensor | None,
        *,
        embed: Tensor | None = None,
        patch: Patch | None = None,
        record: Tensor | None = None,
        slot_hook: SlotHook | None = None,
        edit_output: OutputEdit | None = None,
        return_resid: bool = False,
    ) -> Tensor:
        """Run the model over its slot graph, optionally patched edge by edge.

        Args:
            tokens: ``(b, p)`` int64 token ids (right-padded; causal attention makes padding
                after an example's last token irrelevant).
            positions: ``(b,)`` int64 position at which logits are read; None with
                ``return_resid`` only.
            embed: ``(b, p, d)`` ``input`` node values to use instead of :meth:`embed`
                (EAP-IG-inputs).
            patch: Edge-level intervention over ``k`` circuits; the batch is evaluated once per
                circuit (effective batch ``k·b``). Runs without autograd.
            record: A ``(n_forward, b, p, d)`` buffer that receives every forward slot's output.
            slot_hook: When given, ``slot_hook(first_slot, grad)`` is called during backward
                with each backward slot's own input gradient: ``(3h, b, p, d)`` for a layer's
                q/k/v slots (reconstructed by ``SlotFanout``, never stored), ``(1, b, p, d)``
                for an MLP slot and for the logits slot (zero outside ``positions``).
            edit_output: Replaces forward-slot outputs as they are produced (EAP-IG-activations).
            return_resid: Return the final residual stream ``(b, p, d)`` instead of logits.

        Returns:
            Logits ``(k·b, vocab)`` at ``positions`` (rows ordered circuit-major), or the residual.
        """
        if patch is not None:
            if record is not None or slot_hook is not None or edit_output is not None:
                raise ValueError("a patched run takes no record, slot_hook or edit_output")
            return self._run_patched(tokens, positions, embed, patch)
        g = self.graph
        spec = self.spec
        h = spec.n_heads
        x = self.embed(tokens) if embed is None else embed
        b, p, d = x.shape
        rope = self.rotary(p)

        def emit(first: int, out: Tensor) -> Tensor:
            if edit_output is not None:
                out = edit_output(first, out)
            if record is not None:
                record[first : first + out.shape[0]] = out.detach()
            return out

        x = emit(0, x.unsqueeze(0))[0]
        if slot_hook is not None and not x.requires_grad:
            x = x.detach().requires_grad_(True)  # gradients flow from the input onwards
        resid = x
        for layer in range(spec.n_layers):
            f0 = g.layer_forward_start(layer)
            s0 = g.layer_backward_start(layer)
            if slot_hook is not None:
                # Every slot reads the residual stream: compute the norm and q/k/v once, and
                # recover each slot's own input gradient in backward (see SlotFanout).
                lw = self.layers[layer]
                qkv = SlotFanout.apply(
                    resid,
                    lw.ln1_w,
                    lw.ln1_b,
                    lw.W_qkv,
                    lw.b_qkv,
                    spec.layer_norm_eps,
                    bind_slots(slot_hook, s0),
                    self._rms,
                    spec.clip_qkv,
                )
                mlp_in = resid * 1.0
                if spec.parallel_residual:
                    mlp_in.register_hook(bind_one_slot(slot_hook, s0 + 3 * h))
            else:
                qkv = self.qkv(layer, resid[None, None])
                mlp_in = resid
            heads = emit(f0, self.attend(layer, qkv, rope))
            attn = heads.sum(0) + self.layers[layer].b_O
            if spec.parallel_residual:
                mlp = emit(f0 + h, self.mlp(layer, mlp_in).unsqueeze(0))[0]
                resid = resid + attn + mlp
            else:
                if slot_hook is not None:  # sequential residual: the MLP reads this layer's heads
                    mlp_in = mlp_in + attn
                    mlp_in.register_hook(bind_one_slot(slot_hook, s0 + 3 * h))
                else:
                    mlp_in = resid + attn
                mlp = emit(f0 + h, self.mlp(layer, mlp_in).unsqueeze(0))[0]
                resid = resid + attn + mlp
        if return_resid:
            return resid
        rows = torch.arange(b, device=resid.device)
        pos = positions.to(resid.device)
        final = resid[rows, pos]  # (b, d)
        if slot_hook is not None:
            final = final.unsqueeze(0) * 1.0
            final.register_hook(bind_logits_slot(slot_hook, g.logits_backward, b, p, rows, pos))
            final = final[0]
        return self.unembed(final)

    @torch.no_grad()
    def _run_patched(
        self, tokens: Tensor, positions: Tensor, embed: Tensor | None, patch: Patch
    ) -> Tensor:
        """A patched run of ``k`` circuits: logits ``(k·b, vocab)`` at ``positions``.

        Each backward slot s of the circuit run receives
        ``alt_resid + Σ_u keep[u, s] · (out_u − alt_u)``, where ``alt_resid`` is the residual
        stream made of the alternative outputs (plus biases). This equals
        ``bias + Σ_u [keep·out_u + (1 − keep)·alt_u]`` and lets nodes with no kept outgoing
        edge in any of the ``k`` circuits be skipped entirely: their output never reaches a
        child. Small circuits therefore cost only the nodes they contain.
        """
        g, spec = self.graph, self.spec
        h = spec.n_heads
        x = self.embed(tokens) if embed is None else embed
        b, p, d = x.shape
        rope = self.rotary(p)
        keep = patch.keep.to(x.dtype)  # (k, f, s)
        k = keep.shape[0]
        needed = (keep.amax(dim=(0, 2)) > 0).tolist()  # forward slots some circuit reads
        deltas = x.new_zeros((g.n_forward, k, b, p, d))  # out − alt of needed slots
        alt = patch.alt

        def alt_of(first: int, n: int) -> Tensor | None:
            return None if alt is None else alt[first : first + n]  # (n, b|1, p|1, d)

        def put(index: list[int], out: Tensor) -> None:  # out (n, k, b, p, d)
            a = None if alt is None else alt[index].unsqueeze(1)
            deltas[index] = out if a is None else out - a

        def slot_inputs(n_u: int, slots: list[int], base: Tensor) -> Tensor:
            drop_in = keep[:, :n_u, slots].transpose(1, 2)  # (k, S, n_u)
            cur = deltas[:n_u].view(n_u, k, b * p * d).transpose(0, 1)  # (k, n_u, b·p·d)
            corr = torch.bmm(drop_in, cur).view(k, len(slots), b, p, d).transpose(0, 1)
            return corr + base  # (S, k, b, p, d)

        if needed[0]:
            put([0], x[None, None].expand(1, k, b, p, d))
        alt_resid = x.new_zeros((1, 1, d)) if alt is None else alt_of(0, 1)[0]
        for layer in range(spec.n_layers):
            f0 = g.layer_forward_start(layer)
            s0 = g.layer_backward_start(layer)
            lw = self.layers[layer]
            sel = [i for i in range(h) if needed[f0 + i]]
            need_mlp = needed[f0 + h]
            if sel:
                slots = [s0 + j * h + i for j in range(3) for i in sel]
                qkv_in = slot_inputs(f0, slots, alt_resid).reshape(3, len(sel), k * b, p, d)
                out = self.attend(layer, self.qkv(layer, qkv_in, heads=sel), rope, heads=sel)
                put([f0 + i for i in sel], out.view(len(sel), k, b, p, d))
            alt_attn = lw.b_O if alt is None else alt_of(f0, h).sum(0) + lw.b_O
            if need_mlp:
                if spec.parallel_residual:
                    mlp_in = slot_inputs(f0, [s0 + 3 * h], alt_resid)[0]
                else:
                    mlp_in = slot_inputs(f0 + h, [s0 + 3 * h], alt_resid + alt_attn)[0]
                out = self.mlp(layer, mlp_in.reshape(k * b, p, d))
                put([f0 + h], out.view(1, k, b, p, d))
            alt_resid = alt_resid + alt_attn
            if alt is not None:
                alt_resid = alt_resid + alt_of(f0 + h, 1)[0]
        rows = torch.arange(b, device=x.device)
        pos = positions.to(x.device)
        final_alt = alt_resid.expand(b, p, d)[rows, pos]  # (b, d)
        cur = deltas[:, :, rows, pos]  # (f, k, b, d)
        drop_in = keep[:, :, g.logits_backward]  # (k, f)
        final = torch.einsum("kf,fkbd->kbd", drop_in, cur) + final_alt
        return self.unembed(final.reshape(k * b, d))
