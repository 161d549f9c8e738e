"""ZeroForge geometry: query grid order, view sampling, camera bases (specs/zeroforge.md §9 A, E18–19)."""

import math

import torch

from zeroforge.generator import decode_grid
from zeroforge.geometry import camera_basis, cell_centres, eval_views, eye_directions, make_grid, sample_views


def test_make_grid_range_and_order():
    N = 5
    grid = make_grid(N)
    assert grid.shape == (N ** 3, 3)
    assert grid.min() == -0.5 and grid.max() == 0.5
    lin = torch.linspace(-0.5, 0.5, N)
    g = grid.view(N, N, N, 3)
    for i, j, k in [(0, 1, 2), (4, 0, 3), (2, 2, 2)]:
        assert torch.equal(g[i, j, k], torch.stack([lin[i], lin[j], lin[k]]))  # x slowest
    c = cell_centres(32)
    assert math.isclose(float(c.min()), -0.5 + 1 / 64, abs_tol=1e-6) and math.isclose(float(c.max()), 0.5 - 1 / 64, abs_tol=1e-6)


def test_decoded_grid_orientation_round_trip():
    N = 6
    out = decode_grid(lambda p, s: p[..., 0] + 0 * s[:, :1], torch.zeros(2, 3), N, chunk=50)  # stub decoder: p_x
    lin = torch.linspace(-0.5, 0.5, N)
    assert out.shape == (2, N, N, N)
    for i in range(N):
        assert torch.allclose(out[:, i], lin[i].expand(2, N, N))


def test_sample_views_uniform_on_sphere():
    g = torch.Generator().manual_seed(0)
    theta, phi = sample_views(20000, g)
    hist = torch.histc(torch.cos(theta), bins=10, min=-1, max=1) / 20000
    assert (hist - 0.1).abs().max() < 0.02
    hist_phi = torch.histc(phi, bins=10, min=0, max=2 * math.pi) / 20000
    assert (hist_phi - 0.1).abs().max() < 0.02 and phi.min() >= 0 and phi.max() < 2 * math.pi
    assert eye_directions(theta, phi).mean(0).norm() < 0.03


def test_camera_bases_orthonormal_including_poles():
    theta = torch.tensor([0.0, 1e-6, 0.7, math.pi / 2, math.pi - 1e-6, math.pi])
    phi = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    for up in ("y", "z"):
        basis = camera_basis(eye_directions(theta, phi, up), up)
        assert torch.allclose(basis @ basis.transpose(1, 2), torch.eye(3).expand(6, 3, 3), atol=1e-5)
        assert torch.allclose(torch.linalg.det(basis), torch.ones(6), atol=1e-5)
    e = eye_directions(torch.tensor([math.pi / 2]), torch.tensor([0.0]))
    assert torch.allclose(e, torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-6)  # e = (sinθ sinφ, cosθ, sinθ cosφ)
    th, ph = eval_views()
    assert len(th) == 4 and torch.allclose(th, torch.full((4,), math.radians(60)))
