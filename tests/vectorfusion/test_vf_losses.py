"""LIVE's losses on known shapes: Xing (eq. 6.6), the UDF weighting (eq. 6.5), the L1 fit (spec §7.2 tests 13, 18)."""

import math

import pytest
import torch

from vectorfusion.losses import (XING_WEIGHT, l1_pixelate_loss, udf_loss, udf_weight, xing_loss,
                                 xing_loss_per_segment)
from vectorfusion.styles import circle_points


def test_xing_zero_on_live_circle_init():
    pts = circle_points(torch.tensor([[300.0, 300.0], [20.0, 580.0]]), 20.0)
    assert float(xing_loss(pts)) == 0.0
    assert XING_WEIGHT == 1e-5


def test_xing_known_values_on_two_segment_path():
    pts = torch.tensor([[[0.0, 0], [1, 0], [1, 1], [2, -1], [3, -1], [3, -2]]], dtype=torch.float64,
                       requires_grad=True)
    per_seg = xing_loss_per_segment(pts)
    assert torch.allclose(per_seg, torch.tensor([[2 / math.sqrt(5), 2 / math.sqrt(13)]], dtype=torch.float64),
                          atol=1e-6)
    loss = xing_loss(pts)
    assert abs(float(loss.detach()) - (2 / math.sqrt(5) + 2 / math.sqrt(13)) / 2) < 1e-5
    loss.backward()
    assert torch.isfinite(pts.grad).all() and pts.grad.abs().sum() > 0


def test_xing_self_intersecting_vs_simple_path():
    """A segment whose handles cross (a loop) is penalised; a convex cubic is not."""
    simple = torch.tensor([[[0.0, 0], [10, -10], [20, -10], [30, 0], [20, 10], [10, 10]]])  # a lens, both convex
    looped = torch.tensor([[[0.0, 0], [30, -10], [0, -10], [30, 0], [20, 10], [10, 10]]])  # handles cross
    assert float(xing_loss(simple)) == 0.0
    assert float(xing_loss_per_segment(looped)[0, 0]) > 0.5
    assert float(xing_loss(looped)) > 0.25


def test_xing_degenerate_path_is_finite():
    pts = torch.full((2, 12, 2), 5.0, requires_grad=True)
    loss = xing_loss(pts)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pts.grad).all()
    assert float(xing_loss(torch.zeros(0, 12, 2))) == 0.0


def _disc(h: int, cx: float, cy: float, r: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(h) + 0.5, indexing="ij")
    return (((xs - cx) ** 2 + (ys - cy) ** 2).sqrt() < r).float()


def test_udf_weight_is_one_on_boundary_and_zero_far_away():
    sil = _disc(64, 32, 32, 10)
    w = udf_weight(sil)
    assert w.shape == (64, 64) and float(w.min()) >= 0 and float(w.max()) == pytest.approx(1.0)
    inside = sil > 0.5
    out = 1 - sil
    touching = torch.zeros_like(sil, dtype=torch.bool)  # an outside 4-neighbour: the pixel edge is the boundary
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        touching |= torch.roll(out, (dy, dx), (0, 1)) > 0.5
    boundary = inside & touching
    assert boundary.sum() > 20 and torch.allclose(w[boundary], torch.ones_like(w[boundary]))
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    far = ((xs - 32) ** 2 + (ys - 32) ** 2).sqrt() > 10 + 11  # >= 10 px from the circle (plus a pixel)
    assert float(w[far].abs().max()) == 0.0
    # monotone: closer to the boundary weighs more
    assert float(w[32, 32 + 15]) > float(w[32, 32 + 18]) > 0


def test_udf_weight_degenerate_silhouettes_and_previous_map():
    prev = torch.full((16, 16), 0.7)
    assert float(udf_weight(torch.zeros(16, 16)).abs().max()) == 0.0
    assert float(udf_weight(torch.ones(16, 16)).abs().max()) == 0.0
    assert torch.allclose(udf_weight(torch.zeros(16, 16), prev), prev)
    w = udf_weight(_disc(16, 8, 8, 4), prev)
    assert float(w.max()) == 1.0 and float(w.min()) >= 0.7 - 1e-6  # added and clipped to [0, 1]


def test_udf_loss_value_and_weighting():
    target = torch.zeros(1, 3, 4, 4)
    image = torch.zeros(1, 3, 4, 4)
    image[0, :, 0, 0] = 1.0  # one pixel off by 1 in all channels: sum_c = 3
    ones = torch.ones(4, 4)
    assert float(udf_loss(image, target, ones)) == pytest.approx(3 / 16 / 3)
    w = torch.zeros(4, 4)
    assert float(udf_loss(image, target, w)) == 0.0  # zero weight: pixel ignored
    w[0, 0] = 0.5
    assert float(udf_loss(image, target, w)) == pytest.approx(0.5 * 3 / 16 / 3)


def test_l1_pixelate_loss():
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.25)
    assert float(l1_pixelate_loss(a, b)) == pytest.approx(0.25)
