"""SJC voxel field: trilinear sampling at voxel centres with zero padding (spec T5), activation order,
init values, relation to common's sampler, background texture lookup."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.fields.voxel import trilinear_sample
from sjc.background import SphericalBackground, direction_to_uv
from sjc.field import SJCVoxelField, sample_grid


def test_sampler_matches_naive_reference_on_a_non_cubic_grid(naive_trilinear):
    g = torch.Generator().manual_seed(0)
    field = SJCVoxelField(resolution=(5, 6, 7), channels=4).double()
    with torch.no_grad():
        field.feature_grid.copy_(torch.randn(field.feature_grid.shape, generator=g, dtype=torch.float64))
    assert field.feature_grid.shape == (1, 4, 7, 6, 5)  # stored (1, C, Nz, Ny, Nx)
    pts = torch.rand(1000, 3, generator=g, dtype=torch.float64) * 2 - 1
    got = sample_grid(field.feature_grid, pts, field.aabb_min, field.aabb_max)
    grid = field.feature_grid[0].detach().numpy()
    ref = np.stack([naive_trilinear(grid, p) for p in pts.numpy()])
    np.testing.assert_allclose(got.detach().numpy(), ref, atol=1e-6)
    # exact voxel centres return the stored values
    i, j, k = 3, 1, 5  # x, y, z indices
    centre = torch.tensor([[-1 + (i + 0.5) * 2 / 5, -1 + (j + 0.5) * 2 / 6, -1 + (k + 0.5) * 2 / 7]], dtype=torch.float64)
    torch.testing.assert_close(field.features(centre)[0], field.feature_grid[0, :, k, j, i], atol=1e-12, rtol=0)


def test_density_interpolates_raw_values_then_activates(naive_trilinear):
    g = torch.Generator().manual_seed(1)
    field = SJCVoxelField(resolution=(5, 6, 7), channels=3).double()
    with torch.no_grad():
        field.density_grid_param.copy_(3 * torch.randn(field.density_grid_param.shape, generator=g, dtype=torch.float64))
        field.d_scale.fill_(0.4)
    pts = torch.rand(200, 3, generator=g, dtype=torch.float64) * 2 - 1
    raw = np.stack([naive_trilinear(field.density_grid_param[0].detach().numpy(), p) for p in pts.numpy()])[:, 0]
    expected = F.softplus(torch.from_numpy(raw) * math.exp(0.4) - 1.0)
    torch.testing.assert_close(field.density(pts), expected, atol=1e-9, rtol=0)
    # activating first and interpolating after would differ
    assert not torch.allclose(field.density(pts), torch.from_numpy(raw).clamp(min=0), atol=1e-3)


def test_init_values_and_parameters():
    torch.manual_seed(0)
    field = SJCVoxelField(resolution=20, channels=4)
    pts = torch.rand(500, 3) * 2 - 1
    torch.testing.assert_close(field.density(pts), torch.full((500,), 0.313262), atol=1e-6, rtol=0)
    assert abs(field.feature_grid.std().item() - 1.0) < 0.02 and abs(field.feature_grid.mean().item()) < 0.02
    assert field.d_scale.item() == 0.0 and field.d_scale.requires_grad
    assert {n for n, _ in field.named_parameters()} == {"density_grid_param", "feature_grid", "d_scale"}
    assert field.voxel_size == pytest.approx(0.1) and SJCVoxelField(resolution=100).voxel_size == pytest.approx(0.02)
    assert set(field.state_dict()) == {"density_grid_param", "feature_grid", "d_scale"}  # aabb buffers not persisted


def test_pixel_colour_map_and_bad_arguments():
    field = SJCVoxelField(resolution=4, channels=3, feature_activation="sigmoid_pm1")
    c = field.features(torch.rand(100, 3) * 2 - 1)
    assert c.shape == (100, 3) and c.min() > -1 and c.max() < 1
    for kwargs in ({"resolution": 1}, {"channels": 0}, {"bbox_len": 0.0}, {"feature_activation": "relu"}):
        with pytest.raises(ValueError):
            SJCVoxelField(**kwargs)


def test_relation_to_common_trilinear_sample():
    """Common's sampler puts corner voxel centres on the box corners and clamps; SJC's puts voxel i at
    −1 + (i + ½)Δ. Inside the hull of the centres they agree once common's bound shrinks by Δ/2."""
    n = 6
    field = SJCVoxelField(resolution=n, channels=2).double()
    g = torch.Generator().manual_seed(2)
    inner = 1 - 1 / n  # outermost centre
    pts = (torch.rand(300, 3, generator=g, dtype=torch.float64) * 2 - 1) * inner
    ours = sample_grid(field.feature_grid, pts, field.aabb_min, field.aabb_max)
    theirs = trilinear_sample(field.feature_grid[0], pts, bound=inner)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    # outside that hull SJC blends towards 0 while common clamps to the border value
    corner = torch.tensor([[0.999, 0.999, 0.999]], dtype=torch.float64)
    assert not torch.allclose(sample_grid(field.feature_grid, corner, field.aabb_min, field.aabb_max),
                              trilinear_sample(field.feature_grid[0], corner, bound=inner))


def test_background_spherical_lookup():
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    uv = direction_to_uv(d)
    torch.testing.assert_close(uv, torch.tensor([[0.0, 0.5], [1.0, 0.5], [0.5, 0.5], [0.5, 0.75], [0.5, 1.0]]))
    bg = SphericalBackground(channels=2, resolution=4).double()
    with torch.no_grad():
        bg.texture.copy_(torch.arange(32, dtype=torch.float64).view(1, 2, 4, 4))
    # u = 0.5, v = 0.5 -> grid (0, 0): the centre of the 4×4 texture, mean of the 4 central texels
    out = bg(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
    tex = bg.texture[0]
    torch.testing.assert_close(out[0], tex[:, 1:3, 1:3].mean(dim=(1, 2)))
    # u indexes the width: direction with u = 5/8 (texel column 2 centre), v = 0.5 (between rows 1, 2)
    polar = 5 / 8 * math.pi
    out = bg(torch.tensor([[math.sin(polar), 0.0, math.cos(polar)]], dtype=torch.float64))
    torch.testing.assert_close(out[0], tex[:, 1:3, 2].mean(dim=1))
    assert bg(torch.randn(3, 5, 3).double()).shape == (3, 5, 2)
    assert SphericalBackground(3, init_value=1.0).texture.eq(1.0).all()
