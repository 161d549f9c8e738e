"""The pose distribution π (specs/dietnerf.md §9.2): pose_spherical, hemisphere sampler statistics, interpolation."""

import math

import pytest
import torch

from common.cameras import pose_spherical as common_pose_spherical
from dietnerf.poses import PoseSampler, interpolate3, interpolate_pose, matrix_to_quaternion, pose_spherical, quaternion_to_matrix


def _assert_rotation(R, atol=1e-5):
    eye = torch.eye(3).expand_as(R)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye, atol=atol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[:-2]), atol=atol, rtol=0)


def test_pose_spherical_matches_closed_form():
    p = pose_spherical(torch.tensor(0.0), torch.tensor(-30.0), torch.tensor(4.0))
    torch.testing.assert_close(p[:3, 3], torch.tensor([0.0, 3.4641, 2.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(pose_spherical(torch.tensor(0.0), torch.tensor(-90.0), torch.tensor(4.0))[:3, 3],
                               torch.tensor([0.0, 0.0, 4.0]), atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(0)
    th, ph = torch.rand(200, generator=g) * 360 - 180, -torch.rand(200, generator=g) * 89
    r = 3 + torch.rand(200, generator=g)
    P = pose_spherical(th, ph, r)
    t, e = torch.deg2rad(th), torch.deg2rad(-ph)
    centre = r[:, None] * torch.stack([t.sin() * e.cos(), t.cos() * e.cos(), e.sin()], -1)
    torch.testing.assert_close(P[:, :3, 3], centre, atol=1e-4, rtol=0)
    _assert_rotation(P[:, :3, :3])
    # the same cameras as common.cameras (elevation = -φ), away from the pole
    torch.testing.assert_close(P, common_pose_spherical(th, -ph, r), atol=1e-4, rtol=0)


@pytest.mark.parametrize("mode", ["angle", "area"])
def test_uniform_pose_sampler(mode):
    s = PoseSampler(elevation_sampling=mode)
    P = s.sample(10000, torch.Generator().manual_seed(0))
    o = P[:, :3, 3]
    r = o.norm(dim=-1)
    assert r.min() >= 3.5 - 1e-5 and r.max() <= 4.5 + 1e-5
    assert (o[:, 2] >= -1e-6).all()
    fwd = -P[:, :3, 2]
    assert torch.linalg.cross(o, fwd, dim=-1).norm(dim=-1).max() < 1e-5  # principal ray through the origin
    assert ((fwd * o).sum(-1) < 0).all()
    assert (P[:, 2, 1] >= -1e-6).all()  # camera up axis points to world +z
    az = torch.atan2(o[:, 0], o[:, 1])  # θ: sinθ on x, cosθ on y
    hist = torch.histc(az, bins=8, min=-math.pi, max=math.pi) / 10000
    assert (hist - 0.125).abs().max() < 0.015
    elev = torch.asin((o[:, 2] / r).clamp(-1, 1))
    stat = torch.rad2deg(elev) / 90 if mode == "angle" else o[:, 2] / r  # uniform in angle, or in z/r
    assert ((torch.histc(stat, bins=5, min=0, max=1) / 10000) - 0.2).abs().max() < 0.02


def test_interpolate3():
    g = torch.Generator().manual_seed(1)
    pool = pose_spherical(torch.rand(3, generator=g) * 360 - 180, -torch.rand(3, generator=g) * 80, 3.5 + torch.rand(3, generator=g))
    p1, p2, p3 = pool
    torch.testing.assert_close(interpolate_pose(p1, p2, torch.tensor(0.0)), p1, atol=1e-5, rtol=0)
    torch.testing.assert_close(interpolate_pose(p1, p2, torch.tensor(1.0)), p2, atol=1e-5, rtol=0)
    a = torch.linspace(0, 1, 11)
    mid = interpolate_pose(p1.expand(11, 4, 4), p2.expand(11, 4, 4), a)
    _assert_rotation(mid[:, :3, :3])
    torch.testing.assert_close(mid[:, :3, 3], (1 - a[:, None]) * p1[:3, 3] + a[:, None] * p2[:3, 3])
    # interp3 stays in the convex hull of the three centres: barycentric weights are non-negative
    a1, a2 = torch.rand(500, generator=g), torch.rand(500, generator=g)
    P = interpolate3(p1.expand(500, 4, 4), p2.expand(500, 4, 4), p3.expand(500, 4, 4), a1, a2)
    _assert_rotation(P[:, :3, :3])
    bary = torch.stack([(1 - a1) * (1 - a2), a1 * (1 - a2), a2], -1)
    torch.testing.assert_close(P[:, :3, 3], bary @ pool[:, :3, 3], atol=1e-5, rtol=0)
    # the sampler draws 3 distinct poses of its pool
    s = PoseSampler(mode="interpolate3")
    with pytest.raises(ValueError, match="at least 3 known poses"):
        s.sample(1)
    s.set_pool(pool)
    _assert_rotation(s.sample(20, g)[:, :3, :3])


def test_quaternion_round_trip():
    P = PoseSampler().sample(100, torch.Generator().manual_seed(2))
    R = P[:, :3, :3]
    torch.testing.assert_close(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-5, rtol=0)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # a 180° rotation (trace -1): the hard case
    torch.testing.assert_close(quaternion_to_matrix(matrix_to_quaternion(flip)), flip, atol=1e-6, rtol=0)
