"""Autograd helpers of the patchable forward: per-slot input gradients without copies.

:class:`SlotFanout` computes a layer's attention norm and q/k/v projection once from the
residual stream, as if each of the layer's ``3h`` q/k/v backward slots received its own copy, and
in backward reports every slot's own input gradient. The ``bind_*`` helpers adapt a
:data:`~circuit_atlas.models.patchable.SlotHook` to tensor hooks.

Shapes use ``b`` batch, ``p`` positions, ``d`` d_model, ``h`` heads, ``e`` d_head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["SlotFanout", "bind_slots", "bind_one_slot", "bind_logits_slot", "upcast"]


def upcast(x: Tensor) -> Tensor:
    """Upcast half-precision tensors to float32 (norms and softmax run in float32)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def bind_slots(hook: Callable[[int, Tensor], None], first: int) -> Callable[[Tensor], None]:
    """A tensor hook passing ``(first, grad)`` on; ``grad`` is ``(n_slots, b, p, d)``."""

    def fn(grad: Tensor) -> None:
        hook(first, grad)

    return fn


def bind_one_slot(hook: Callable[[int, Tensor], None], first: int) -> Callable[[Tensor], None]:
    """A tensor hook for one slot's ``(b, p, d)`` gradient, passed on as ``(1, b, p, d)``."""

    def fn(grad: Tensor) -> None:
        hook(first, grad.unsqueeze(0))

    return fn


def bind_logits_slot(
    hook: Callable[[int, Tensor], None], first: int, b: int, p: int, rows: Tensor, pos: Tensor
) -> Callable[[Tensor], None]:
    """A tensor hook for the logits slot: ``(1, b, d)`` at the read positions → ``(1, b, p, d)``."""

    def fn(grad: Tensor) -> None:  # grad (1, b, d) at the read positions only
        full = grad.new_zeros((1, b, p, grad.shape[-1]))
        full[0, rows, pos] = grad[0]
        hook(first, full)

    return fn


class SlotFanout(torch.autograd.Function):
    """Shared norm + q/k/v projection whose backward reports every slot's own gradient.

    Forward: ``resid (b, p, d)`` → ``qkv (3, h, b, p, e)``, computed once as if the 3h q/k/v
    slots each received ``resid``. The norm is LayerNorm (``rms=False``: centre, divide by the
    standard deviation, ``· w + b``) or RMSNorm (``rms=True``: divide by the root mean square,
    ``· w``). With ``clip``, q, k and v are clamped to ``[−clip, clip]`` (OLMo's ``clip_qkv``).
    Backward: each slot's gradient with respect to its own input is
    ``J_normᵀ (dqkv_s · W_sᵀ)``; these ``(3h, b, p, d)`` gradients go to ``hook`` and their sum
    is the gradient of ``resid``. Equivalent to materialising 3h copies of the residual stream
    (tested), without storing them.
    """

    @staticmethod
    def forward(ctx, resid, ln_w, ln_b, w_qkv, b_qkv, eps, hook, rms=False, clip=None):  # noqa: D102
        x = upcast(resid)
        if rms:
            rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
            xhat = x * rstd
            y = (xhat * upcast(ln_w)).to(resid.dtype)
        else:
            mu = x.mean(-1, keepdim=True)
            var = x.var(-1, unbiased=False, keepdim=True)
            rstd = torch.rsqrt(var + eps)
            xhat = (x - mu) * rstd
            y = (xhat * upcast(ln_w) + upcast(ln_b)).to(resid.dtype)
        three, h, d, e = w_qkv.shape
        b, p, _ = resid.shape
        w = w_qkv.permute(2, 0, 1, 3).reshape(d, three * h * e)
        qkv = (y.reshape(b * p, d) @ w).view(b * p, three, h, e).permute(1, 2, 0, 3)
        qkv = (qkv + b_qkv).reshape(three, h, b, p, e)
        inside = None
        if clip is not None:  # OLMo's clip_qkv: clamp q, k and v; no gradient where clamped
            inside = qkv.abs() <= clip
            qkv = qkv.clamp(-clip, clip)
        ctx.save_for_backward(xhat, rstd, ln_w, w_qkv, inside)
        ctx.hook = hook
        ctx.rms = rms
        return qkv

    @staticmethod
    def backward(ctx, dqkv):  # noqa: D102
        xhat, rstd, ln_w, w_qkv, inside = ctx.saved_tensors
        if inside is not None:
            dqkv = dqkv * inside
        three, h, b, p, e = dqkv.shape
        d = w_qkv.shape[2]
        dy = torch.bmm(
            dqkv.reshape(three * h, b * p, e), w_qkv.reshape(three * h, d, e).transpose(1, 2)
        )  # (3h, b·p, d): gradient of each slot's norm output
        g = upcast(dy).view(three * h, b, p, d) * upcast(ln_w)
        if ctx.rms:
            dx = rstd * (g - xhat * (g * xhat).mean(-1, keepdim=True))
        else:
            dx = rstd * (g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True))
        dx = dx.to(dqkv.dtype)
        ctx.hook(dx)
        return dx.sum(0), None, None, None, None, None, None, None, None
