"""Spec §7 C (LMConv layer) and D5 (PONO)."""

import pytest
import torch
import torch.nn.functional as F

from lmconv.layers import LocallyMaskedConv2d, lmconv2d, lmconv2d_memory_efficient, pono
from lmconv.masks import build_mask
from lmconv.orders import random_order, rank_grid, raster

CASES = [(k, d, c) for k in (3, 5) for d in (1, 2) for c in (1, 3)]


def _data(c_in, k, h=5, w=7, c_out=4, b=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c_in, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64)
    return x, wt, bias


@pytest.mark.parametrize("k,d,c_in", CASES)
def test_all_ones_mask_is_conv2d(k, d, c_in):  # C1
    x, wt, bias = _data(c_in, k)
    ones = torch.ones(1, k * k, 35, dtype=torch.float64)
    ref = F.conv2d(x, wt, bias, padding=d * (k - 1) // 2, dilation=d)
    for fn in (lmconv2d, lmconv2d_memory_efficient):
        torch.testing.assert_close(fn(x, ones, wt, bias, d), ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("k,d,c_in", CASES)
def test_raster_equals_masked_conv2d(k, d, c_in):  # C2: all locations, borders included
    x, wt, bias = _data(c_in, k)
    ranks = rank_grid(raster(5, 7), 5, 7)
    for kind in ("A", "B"):
        wmask = torch.zeros(k, k, dtype=torch.float64)
        wmask[: k // 2] = 1
        wmask[k // 2, : k // 2 + (kind == "B")] = 1
        ref = F.conv2d(x, wt * wmask, bias, padding=d * (k - 1) // 2, dilation=d)
        out = lmconv2d(x, build_mask(ranks, k, d, kind).double(), wt, bias, d)
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)


def test_location_specific_reference():  # C3: naive loop with weights W ⊙ M[:, p] at each p
    k, d, h, w = 3, 1, 4, 5
    x, wt, bias = _data(2, k, h, w)
    m = build_mask(rank_grid(random_order(h, w, 7), h, w), k, d, "B").double()
    out = lmconv2d(x, m, wt, bias, d)
    xp = F.pad(x, (1, 1, 1, 1))
    for r in range(h):
        for c in range(w):
            wp = wt * m[0, :, r * w + c].view(1, 1, k, k)
            ref = torch.einsum("ocij,bcij->bo", wp, xp[:, :, r:r + k, c:c + k]) + bias
            torch.testing.assert_close(out[:, :, r, c], ref, atol=1e-12, rtol=0)


def test_memory_efficient_gradcheck_and_match():  # C4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    wm = torch.randn(3, 9, generator=g, dtype=torch.float64, requires_grad=True)
    for d in (1, 2):
        m = build_mask(rank_grid(random_order(4, 5, d), 4, 5), 3, d, "A").double()
        assert torch.autograd.gradcheck(lambda *a: lmconv2d_memory_efficient(a[0], m, a[1], a[2], d, a[3]),
                                        (x, wt, b, wm))
        gy = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
        ref = torch.autograd.grad(lmconv2d(x, m, wt, b, d, wm), (x, wt, b, wm), gy)
        got = torch.autograd.grad(lmconv2d_memory_efficient(x, m, wt, b, d, wm), (x, wt, b, wm), gy)
        for a, e in zip(got, ref):
            torch.testing.assert_close(a, e, atol=1e-10, rtol=0)


def test_mask_conditioning_is_a_ones_channel():  # C5
    x, wt, bias = _data(2, 3, 4, 5)
    wm = torch.randn(4, 9, dtype=torch.float64)
    m = build_mask(rank_grid(random_order(4, 5, 2), 4, 5), 3, 1, "A").double()
    ref = lmconv2d(torch.cat([x, torch.ones_like(x[:, :1])], 1), m, torch.cat([wt, wm.view(4, 1, 3, 3)], 1), bias)
    torch.testing.assert_close(lmconv2d(x, m, wt, bias, 1, wm), ref, atol=1e-12, rtol=0)


def test_module_and_bad_mask():
    layer = LocallyMaskedConv2d(2, 3, 3, mask_conditioning=True)
    assert layer.weight.shape == (3, 2, 3, 3) and layer.mask_weight.shape == (3, 9)
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="needs \\(1, 9, 16\\)"):
        layer(x, torch.ones(1, 9, 25))
    with pytest.raises(ValueError, match="odd"):
        LocallyMaskedConv2d(2, 3, 4)


def test_pono_is_per_location():  # D5
    z = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    y = pono(z)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 3, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(y.var(1), torch.ones(2, 3, 3, dtype=torch.float64), atol=1e-4, rtol=0)
    jac = torch.autograd.functional.jacobian(lambda t: pono(t), z[:1]).reshape(6, 9, 6, 9)  # [c, p, c', q]
    off = ~torch.eye(9, dtype=torch.bool)
    assert (jac.permute(1, 3, 0, 2)[off] == 0).all()
