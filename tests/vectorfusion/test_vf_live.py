"""LIVE pieces: component-wise placement, the stage loop (spec §7.2 test 18)."""

import numpy as np
import pytest
import torch

from vectorfusion.live import LIVESettings, draw, live_vectorize, place_paths, sparse_centres


def _two_discs(h: int = 64) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(h) + 0.5, indexing="ij")
    t = torch.ones(1, 3, h, h)
    d1 = ((xs - 20) ** 2 + (ys - 22) ** 2).sqrt() < 12
    d2 = ((xs - 44) ** 2 + (ys - 42) ** 2).sqrt() < 12
    t[0, :, d1] = torch.tensor([1.0, 0, 0])[:, None]
    t[0, :, d2] = torch.tensor([0.0, 0, 1])[:, None]
    return t


def test_sparse_init_picks_the_high_error_block_and_its_colour():
    target = torch.ones(1, 3, 64, 64)
    target[0, 1:, 30:50, 10:30] = 0.0  # a 20x20 red block on white
    white = torch.ones(1, 3, 64, 64)
    pts, rgba = place_paths(white, target, 1, 64.0, LIVESettings(radius=5.0))
    centre = pts[0].mean(0)
    assert 10 <= centre[0] <= 30 and 30 <= centre[1] <= 50
    assert torch.equal(rgba[0], torch.tensor([1.0, 0, 0, 1]))
    assert torch.allclose((pts[0] - centre).norm(dim=-1), torch.full((12,), 5.0), atol=1e-4)


def test_sparse_centres_components_then_uniform_fallback():
    err = np.zeros((32, 32))
    err[2:10, 2:10] = 1.0  # larger component first
    err[20:24, 20:24] = 1.0
    c = sparse_centres(err, 3, generator=torch.Generator().manual_seed(0))
    assert 2 <= c[0][0] <= 10 and 2 <= c[0][1] <= 10
    assert 20 <= c[1][0] <= 24 and 20 <= c[1][1] <= 24
    assert 0 <= c[2][0] <= 32 and 0 <= c[2][1] <= 32  # no error left: uniform
    assert len(sparse_centres(np.zeros((8, 8)), 2)) == 2


def _live_mse_ratio(iters: int) -> float:
    target = _two_discs()
    settings = LIVESettings(schedule=[2, 2], iters_per_stage=iters, radius=5.0)
    points, rgba = live_vectorize(target, settings, generator=torch.Generator().manual_seed(0))
    assert points.shape == (4, 12, 2) and torch.isfinite(points).all()
    image = draw(points, rgba, 64.0, 64).over(torch.ones(3))
    return float(((image - target) ** 2).mean() / ((1 - target) ** 2).mean())


def test_live_two_stages_fit_two_discs_quick():
    assert _live_mse_ratio(30) < 0.25


@pytest.mark.slow
def test_live_two_stages_fit_two_discs_spec():
    """Spec test 18 as written: schedule [2, 2], radius 5, 100 iterations per stage, MSE < 25% of blank."""
    assert _live_mse_ratio(100) < 0.25
