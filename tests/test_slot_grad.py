"""SlotFanout (one norm + q/k/v GEMM, per-slot gradients in backward) equals 3h real copies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from circuit_atlas.models.slot_grad import SlotFanout


@pytest.mark.parametrize("rms,clip", [(False, None), (True, None), (False, 1.5), (True, 1.5)])
def test_slot_fanout_equals_materialised_copies(rms, clip):
    g = torch.Generator().manual_seed(0)
    b, p, d, h, e, eps = 2, 5, 12, 3, 4, 1e-5
    resid = torch.randn(b, p, d, generator=g, dtype=torch.float64)
    ln_w = 1 + 0.3 * torch.randn(d, generator=g, dtype=torch.float64)
    ln_b = torch.zeros(d, dtype=torch.float64) if rms else 0.3 * torch.randn(d, generator=g,
                                                                              dtype=torch.float64)
    w = torch.randn(3, h, d, e, generator=g, dtype=torch.float64)
    bias = torch.randn(3, h, 1, e, generator=g, dtype=torch.float64)
    upstream = torch.randn(3, h, b, p, e, generator=g, dtype=torch.float64)

    # Slow reference: a separate leaf per q/k/v slot, each normed and projected on its own.
    copies = resid.expand(3 * h, b, p, d).clone().requires_grad_(True)
    if rms:
        normed = copies * torch.rsqrt(copies.pow(2).mean(-1, keepdim=True) + eps) * ln_w
    else:
        normed = F.layer_norm(copies, (d,), ln_w, ln_b, eps)
    slow = torch.matmul(normed.view(3 * h, b * p, d), w.view(3 * h, d, e)).view(3, h, b * p, e)
    slow = (slow + bias).view(3, h, b, p, e)
    if clip is not None:  # OLMo's clip_qkv
        assert (slow.abs() > clip).any()
        slow = slow.clamp(-clip, clip)
    (slow * upstream).sum().backward()

    got = {}
    leaf = resid.clone().requires_grad_(True)
    fast = SlotFanout.apply(leaf, ln_w, ln_b, w, bias, eps, lambda grad: got.update(g=grad), rms,
                            clip)  # fmt: skip
    (fast * upstream).sum().backward()
    torch.testing.assert_close(fast, slow.detach(), atol=1e-12, rtol=1e-10)
    assert copies.grad.abs().max() > 1e-2
    torch.testing.assert_close(got["g"], copies.grad, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(leaf.grad, copies.grad.sum(0), atol=1e-12, rtol=1e-10)
