"""Grids: scene box, sizing and progressive scaling, activation, interpolation, Vox Imp (spec §8 A3, B, C, D)."""

import math

import pytest
import torch

from pureclipnerf.grids import (VoxExpField, VoxImpField, density_shift, grid_coords, grid_size, nearest_mask,
                                raw_to_alpha, scene_bbox, trilerp)


def test_scene_box_from_camera_frustums(pcn):  # A3
    lo, hi, origins = scene_bbox(pcn.camera(32), pcn.NEAR, pcn.FAR, n_poses=200)
    torch.testing.assert_close(lo, torch.tensor([-1.57, -1.57, -2.34]), atol=0.06, rtol=0)
    torch.testing.assert_close(hi, torch.tensor([1.57, 1.57, 1.60]), atol=0.06, rtol=0)
    assert (lo < -1).all() and (hi > 1).all()  # contains the unit sphere
    assert origins.shape == (200, 3)
    torch.testing.assert_close(origins.norm(dim=-1), torch.full((200,), 4.0))


def test_grid_size_and_progressive_schedule(pcn):  # B4
    lo, hi = pcn.box_tensors()
    voxel, ws = grid_size(lo, hi, 32768)
    assert ws == (29, 29, 37)
    assert abs(math.prod(ws) - 32768) / 32768 < 0.1 and math.prod(ws) <= 32768
    extent = hi - lo
    for a in range(3):  # axis ratios follow the box within one voxel
        assert abs(ws[a] - float(extent[a]) / voxel) < 1
    f = VoxExpField(num_voxels=32768, num_scales=4, bbox=pcn.BOX)
    assert f.start_voxels() == 2048 and int(f.num_voxels) == 2048
    assert [f.voxels_at_stage(k) for k in range(5)] == [2048, 4096, 8192, 16384, 32768]
    assert f.voxel_size > f.voxel_size_base and math.isclose(f.voxel_ratio, 16 ** (1 / 3), rel_tol=1e-6)


def test_upscale_is_exact_on_linear_fields_and_shifts_density(pcn):  # B5
    f = VoxExpField(num_voxels=4096, num_scales=1, bbox=pcn.BOX, maskout_near_cam=False)
    coef = torch.tensor([0.3, -0.7, 1.1])

    def linear(xyz):
        return xyz @ coef + 0.25

    with torch.no_grad():
        f.grid_density.copy_(linear(f.coords())[None])
        f.grid_color.copy_(torch.stack([linear(f.coords()), -linear(f.coords()), 2 * linear(f.coords())]))
    old_ws = f.world_size
    f.scale_to(4096)
    assert f.world_size != old_ws and f.grid_density.shape[1:] == f.world_size
    xyz = f.coords()
    torch.testing.assert_close(f.grid_density[0], linear(xyz) - 1.0, atol=1e-5, rtol=0)  # −1 after upscaling [C]
    torch.testing.assert_close(f.grid_color[1], -linear(xyz), atol=1e-5, rtol=0)


def test_density_shift_and_alpha_closed_forms():  # C7
    b = density_shift(1e-6)
    assert abs(b - (-13.81551)) < 1e-4
    zero = torch.zeros(1, dtype=torch.float64)
    torch.testing.assert_close(raw_to_alpha(zero, b, 1.0), torch.tensor([1e-6], dtype=torch.float64), rtol=1e-4, atol=0)
    torch.testing.assert_close(raw_to_alpha(zero, b, 0.5), torch.tensor([5e-7], dtype=torch.float64), rtol=1e-4, atol=0)
    raw = torch.linspace(-20, 20, 41, dtype=torch.float64)
    for delta in (0.5, 1.0, 2.52):
        other = 1 - (1 + torch.exp(raw + b)) ** (-delta)  # 1 − (1 + e^{σ+b})^{−δ}
        torch.testing.assert_close(raw_to_alpha(raw, b, delta), other, rtol=1e-6, atol=1e-12)
    x = torch.randn(6, dtype=torch.float64, requires_grad=True) * 3
    assert torch.autograd.gradcheck(lambda r: raw_to_alpha(r, b + 12.0, 0.7), (x.detach().requires_grad_(),))


def test_trilerp_reads_vertices_and_cell_centres(pcn):  # C8
    lo, hi = pcn.box_tensors()
    ws = (5, 7, 4)  # non-cubic: catches an xyz -> (z, y, x) mistake
    grid = torch.randn(2, *ws)
    xyz = grid_coords(lo, hi, ws)  # [5, 7, 4, 3]
    out = trilerp(grid, xyz.reshape(-1, 3), lo, hi)  # [P, 2]
    torch.testing.assert_close(out, grid.reshape(2, -1).T, atol=1e-5, rtol=0)
    centre = (xyz[1, 2, 0] + xyz[2, 3, 1]) / 2
    corners = grid[:, 1:3, 2:4, 0:2].reshape(2, -1).mean(-1)
    torch.testing.assert_close(trilerp(grid, centre[None], lo, hi)[0], corners, atol=1e-5, rtol=0)
    mask = torch.zeros(ws, dtype=torch.bool)
    mask[4, 6, 3] = True
    assert nearest_mask(mask, xyz[4, 6, 3][None] - 0.01, lo, hi).item() is True


def test_pe_grid_and_mlps(pcn):  # D9, D10
    f = VoxImpField(num_voxels=16**3, bbox=pcn.BOX)
    x = torch.tensor([[0.3, -0.2, 0.9]])
    pe = f.encoder(x)[0]
    assert pe.shape == (63,)
    torch.testing.assert_close(pe[:3], x[0])
    assert math.isclose(float(pe[3]), math.sin(0.3), abs_tol=1e-6)
    assert math.isclose(float(pe[3 + 9]), math.sin(0.3 * 512), abs_tol=1e-4)
    assert math.isclose(float(pe[3 + 10]), math.sin(-0.2), abs_tol=1e-6)  # coordinate-major
    assert math.isclose(float(pe[33]), math.cos(0.3), abs_tol=1e-6)  # cosines start at 33
    assert f.pe.shape == (63, *f.world_size) and not f.pe.requires_grad
    assert all(not n.startswith("pe") for n, _ in f.named_parameters())
    assert "pe" not in f.state_dict()  # recomputed from the grid size
    shapes = [tuple(m.weight.shape) for m in f.density_mlp if isinstance(m, torch.nn.Linear)]
    assert shapes == [(128, 63), (128, 128), (1, 128)]
    assert [tuple(m.weight.shape) for m in f.color_mlp if isinstance(m, torch.nn.Linear)][-1] == (3, 128)
    assert any(isinstance(m, torch.nn.ReLU) for m in f.density_mlp)
    assert f.density_mlp[-1].bias.abs().sum() == 0 and f.color_mlp[-1].bias.abs().sum() == 0
    f.occupancy[:2] = False  # masked-out vertices: raw density −100, α < 1e-30
    dens, logits = f.raw_grids()
    assert (dens[0, :2] == -100).all() and (logits[:, :2] == 0).all()
    assert f.alpha_grid(dens)[:2].max() < 1e-30


def test_occupancy_only_shrinks_and_near_camera_maskout(pcn):
    lo, hi = pcn.box_tensors()
    _, _, origins = scene_bbox(pcn.camera(32), pcn.NEAR, pcn.FAR, n_poses=100)
    f = VoxExpField(num_voxels=20**3, num_scales=1)
    f.build(lo, hi, origins, pcn.NEAR)
    dead = f.grid_density[0] < -50
    assert dead.any() and not dead[f.world_size[0] // 2, f.world_size[1] // 2].any()  # only the upper corners
    assert dead[..., -1].any() and not dead[..., 0].any()
    f.update_occupancy()  # mask &= maxpool3(α) > 1e-7: dead voxels whose whole 3³ neighbourhood is dead
    core = -torch.nn.functional.max_pool3d(-dead[None, None].float(), 3, 1, 1)[0, 0] > 0.5
    assert core.any() and torch.equal(f.occupancy, ~core)
    before = f.occupancy.float().mean()
    f.scale_to(f.voxels_at_stage(1))
    assert f.occupancy.shape == f.world_size and f.occupancy.float().mean() <= before + 0.02


def test_bad_grid_arguments(pcn):
    with pytest.raises(ValueError, match="bbox"):
        VoxExpField(bbox=[[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="empty scene box"):
        VoxExpField(num_voxels=1000, bbox=[[0, 0, 0], [1, -1, 1]])
    with pytest.raises(RuntimeError, match="build"):
        VoxImpField(num_voxels=1000).raw_grids()
