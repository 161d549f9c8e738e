"""Cameras of the paper and the fixed-step grid renderer (spec §8 A1–A2, E11–E14)."""

import math

import torch

from common.cameras import get_rays, pose_spherical
from pureclipnerf.grids import VoxExpField, raw_to_alpha
from pureclipnerf.render import VoxelGridRenderer
from pureclipnerf.system import default_camera


def test_pose_and_focal():  # A1, A2
    c2w = pose_spherical(0.0, 30.0, 4.0)
    torch.testing.assert_close(c2w[:3, 3], torch.tensor([0.0, 3.4641, 2.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(-c2w[:3, 2], -c2w[:3, 3] / 4, atol=1e-5, rtol=0)
    assert c2w[2, 1] > 0
    torch.testing.assert_close(pose_spherical(30.0, 45.0, 4.0)[:3, 3], torch.tensor([1.4142, 2.4495, 2.8284]), atol=1e-4, rtol=0)
    cam = default_camera()
    assert math.isclose(cam.base_focal * 32 / cam.width, 1111.1111 * 32 / 800, rel_tol=1e-5)
    assert cam.focal_mult_range == (1.0, 1.0) and cam.elevation_range == (30.0, 30.0)
    f = 1111.1111 * 32 / 800
    o, d = get_rays(c2w, 32, 32, f)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(32, 32))
    centre = o[15:17, 15:17].reshape(-1, 3), d[15:17, 15:17].reshape(-1, 3)
    t = -(centre[0] * centre[1]).sum(-1)  # closest approach to the origin
    dist = (centre[0] + t[:, None] * centre[1]).norm(dim=-1)
    assert (dist < 0.07).all()


def _central_ray():
    c2w = pose_spherical(0.0, 30.0, 4.0)
    o = c2w[:3, 3][None]
    return o, torch.nn.functional.normalize(-o, dim=-1)


def test_homogeneous_box_transmittance(pcn):  # E11
    f = VoxExpField(num_voxels=20**3, num_scales=0, bbox=pcn.BOX, occupancy_mask=False)
    s = 5.0
    with torch.no_grad():
        f.grid_density.fill_(s)
    r = VoxelGridRenderer(fast_color_thres=0.0, early_stop_T=0.0)
    o, d = _central_ray()
    t, valid, step = r.sample_intervals(f, o, d)
    assert math.isclose(step, 0.5 * f.voxel_size, rel_tol=1e-9)
    torch.testing.assert_close(t[0, 1:] - t[0, :-1], torch.full((t.shape[1] - 1,), step), atol=1e-5, rtol=0)
    from common.rendering.aabb import ray_aabb
    near, far, _ = ray_aabb(o, d, f.xyz_min, f.xyz_max)
    length = float(far.clamp_max(pcn.FAR) - near.clamp_min(pcn.NEAR))
    x = o + t[0, :, None] * d
    inside = ((x >= f.xyz_min) & (x <= f.xyz_max)).all(-1) & valid[0]
    assert int(valid.sum()) == math.ceil(length / step)
    out = r(f, o, d, background=None)
    alpha = raw_to_alpha(torch.tensor(s), f.shift, 0.5 * f.voxel_ratio)
    expected_t = (1 - alpha) ** int(inside.sum())
    assert out.t_last.item() > 0.01
    torch.testing.assert_close(out.t_last, expected_t.reshape(1), rtol=1e-4, atol=1e-6)
    weights_sum = 1 - out.t_last  # Σw + T_last = 1 for a homogeneous medium
    torch.testing.assert_close(out.opacity + out.t_last, torch.ones(1))
    torch.testing.assert_close(out.rgb.sum(-1) / 3, weights_sum * 0.5, atol=1e-5, rtol=0)  # grey colour 0.5


def test_early_stop(pcn):  # E12
    f = VoxExpField(num_voxels=20**3, num_scales=0, bbox=pcn.BOX, occupancy_mask=False)
    with torch.no_grad():
        f.grid_density.fill_(-50.0)
        f.grid_density[0, :, :, 8:12] = 20.0  # a very dense slab
    r = VoxelGridRenderer(fast_color_thres=0.0, early_stop_T=1e-3)
    o, d = _central_ray()
    dens, col = f.raw_grids()
    t, valid, _ = r.sample_intervals(f, o, d)
    out = r(f, o, d)
    assert out.t_last.item() < 1e-3
    # rebuild the weights to check nothing counts after the crossing sample
    x = o + t[0, :, None] * d
    from pureclipnerf.grids import trilerp
    alpha = raw_to_alpha(trilerp(dens, x, f.xyz_min, f.xyz_max)[:, 0], f.shift, 0.5 * f.voxel_ratio) * valid[0]
    T = torch.cumprod(torch.cat([torch.ones(1), 1 - alpha[:-1]]), 0)
    first_below = int((T < 1e-3).nonzero()[0])
    assert T[first_below - 1] >= 1e-3
    truncated = torch.prod(1 - alpha[:first_below])
    torch.testing.assert_close(out.t_last, truncated.reshape(1), rtol=1e-3, atol=1e-9)


def test_free_space_samples_get_no_gradient(pcn):  # E13
    f = VoxExpField(num_voxels=20**3, num_scales=0, bbox=pcn.BOX, occupancy_mask=False)
    with torch.no_grad():
        f.grid_density.fill_(-20.0)  # α ≈ 1e-15 < 1e-7 everywhere
        f.grid_density[0, 8:12, 8:12, 8:12] = 10.0
    r = VoxelGridRenderer()
    o, d = get_rays(pose_spherical(0.0, 30.0, 4.0), 16, 16, 1111.1111 * 16 / 800)
    out = r(f, o, d)
    out.rgb.sum().backward()
    g = f.grid_density.grad[0]
    assert g[8:12, 8:12, 8:12].abs().sum() > 0
    far_away = torch.ones_like(g, dtype=torch.bool)
    far_away[7:13, 7:13, 7:13] = False  # vertices not adjacent to the dense block only ever see α < 1e-7
    assert g[far_away].abs().sum() == 0


def test_empty_grid_renders_white(pcn):  # E14
    f = VoxExpField(num_voxels=20**3, num_scales=0, bbox=pcn.BOX)
    o, d = get_rays(pose_spherical(45.0, 30.0, 4.0), 8, 8, 1111.1111 * 8 / 800)
    out = VoxelGridRenderer()(f, o, d)
    torch.testing.assert_close(out.rgb, torch.ones(8, 8, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.transmittance, torch.ones(8, 8), atol=1e-4, rtol=0)
    assert out.rgb.shape == (8, 8, 3) and out.depth.shape == (8, 8)
    with torch.no_grad():  # chunked evaluation path = one-shot path
        big = VoxelGridRenderer(chunk=7)(f, o, d)
    torch.testing.assert_close(big.rgb, out.rgb.detach())


def test_field_interface_density_is_metric(pcn):
    """As a common Field the grid reports σ with 1 − exp(−σ·Δt) = α for the metric spacing Δt."""
    f = VoxExpField(num_voxels=20**3, num_scales=0, bbox=pcn.BOX)
    with torch.no_grad():
        f.grid_density.fill_(12.0)
    x = torch.zeros(1, 3)
    sigma = f(x).density
    dt = 0.5 * f.voxel_size
    alpha = raw_to_alpha(torch.tensor(12.0), f.shift, 0.5 * f.voxel_ratio)
    torch.testing.assert_close(1 - torch.exp(-sigma * dt), alpha.reshape(1), rtol=1e-5, atol=0)
    assert f(torch.tensor([[0.0, 0.0, 5.0]])).density.item() == 0.0  # outside the box
