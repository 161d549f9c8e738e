import math

import pytest
import torch

from common.fields import (
    FourierEncoding,
    IntegratedPositionalEncoding,
    MLPField,
    PositionalEncoding,
    RandomFourierEncoding,
    VoxelGridField,
    trilinear_sample,
)


def test_ipe_with_zero_covariance_equals_fourier_features():
    enc = IntegratedPositionalEncoding(0, 6)
    x = torch.randn(10, 3)
    plain = enc(x)
    torch.testing.assert_close(enc(x, torch.zeros(10, 3)), plain)
    torch.testing.assert_close(enc(x, torch.zeros(10, 3, 3)), plain)
    # and the features are exactly sin/cos of W x
    w = enc.basis
    torch.testing.assert_close(plain, torch.cat([torch.sin(x @ w.T), torch.cos(x @ w.T)], -1))


@pytest.mark.parametrize("enc", [IntegratedPositionalEncoding(0, 5), RandomFourierEncoding(num_random=16, seed=3)])
def test_isotropic_covariance_damps_each_frequency(enc):
    s = 0.07
    x = torch.randn(6, 3)
    cov_full = (s**2) * torch.eye(3).expand(6, 3, 3)
    damped = enc(x, cov_full)
    k = enc.basis.shape[0]
    factor = torch.exp(-0.5 * s**2 * (enc.basis**2).sum(-1))  # exp(-½ s² ‖ω‖²)
    torch.testing.assert_close(damped[:, :k], enc(x)[:, :k] * factor)
    torch.testing.assert_close(damped[:, k:], enc(x)[:, k:] * factor)
    torch.testing.assert_close(enc(x, torch.full((6, 3), s**2)), damped)  # diagonal form agrees


def test_random_fourier_basis_magnitudes_and_size():
    enc = RandomFourierEncoding(num_random=128, max_log2=8, seed=0)
    assert enc.out_dim == 262  # 131 frequencies incl. the 3 axis ones (specs/dreamfields.md §2.4)
    mags = enc.basis[3:].norm(dim=-1)
    assert mags.min() >= 1.0 - 1e-5 and mags.max() <= 2**8 + 1e-3
    again = RandomFourierEncoding(num_random=128, max_log2=8, seed=0)
    assert torch.equal(enc.basis, again.basis)


def test_positional_encoding_dims_and_values():
    enc = PositionalEncoding(10)
    assert enc.out_dim == 63
    x = torch.tensor([[0.5, -0.25, 1.0]])
    out = enc(x)
    torch.testing.assert_close(out[0, :3], x[0])
    torch.testing.assert_close(out[0, 3 + 30 * 0 + 1 * 3 + 0], torch.sin(torch.tensor(2 * 0.5)))  # sin(2^1 x)


def test_parameter_counts_match_papers():
    dreamfields = MLPField(RandomFourierEncoding(), backbone="residual", view_dependent=False)
    assert sum(p.numel() for p in dreamfields.parameters()) == 315_396  # specs/dreamfields.md §2.5
    nerf_simplified = MLPField(PositionalEncoding(10), view_dependent=False)
    assert sum(p.numel() for p in nerf_simplified.parameters()) == 494_084  # thesis "494K"


def _manual_trilinear(grid, p, bound):
    c, dz, dy, dx = grid.shape
    idx = (p / bound + 1) / 2 * torch.tensor([dx - 1, dy - 1, dz - 1])
    i0 = idx.floor().long().clamp(max=torch.tensor([dx - 2, dy - 2, dz - 2]))
    f = idx - i0
    out = torch.zeros(c)
    for a in (0, 1):
        for b in (0, 1):
            for e in (0, 1):
                w = (f[0] if a else 1 - f[0]) * (f[1] if b else 1 - f[1]) * (f[2] if e else 1 - f[2])
                out += w * grid[:, i0[2] + e, i0[1] + b, i0[0] + a]
    return out


def test_trilinear_matches_hand_written_interpolation():
    g = torch.Generator().manual_seed(0)
    grid = torch.randn(2, 5, 6, 7, generator=g)  # C, Dz, Dy, Dx
    pts = (torch.rand(20, 3, generator=g) * 2 - 1) * 1.5
    out = trilinear_sample(grid, pts, bound=1.5)
    ref = torch.stack([_manual_trilinear(grid, p, 1.5) for p in pts])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_voxel_grid_gradients_reach_the_grid():
    field = VoxelGridField(resolution=[4, 5, 6], feature_dim=8, mlp_hidden=16)
    out = field(torch.rand(30, 3) * 2 - 1)
    (out.density.sum() + out.color.sum()).backward()
    assert field.density_grid_param.grad.abs().sum() > 0 and field.feature_grid.grad.abs().sum() > 0
    assert out.color.shape == (30, 3)


def test_view_dependent_field_needs_directions():
    f = MLPField(PositionalEncoding(2), width=8, depth=2, skips=[], view_dependent=True)
    with pytest.raises(ValueError, match="view directions"):
        f(torch.zeros(2, 3))
    out = f(torch.zeros(2, 3), torch.tensor([[0.0, 0.0, 1.0]] * 2))
    assert out.color.shape == (2, 3) and (out.density >= 0).all()
