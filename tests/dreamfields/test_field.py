"""Encoding, MLP and baseline parameterisations (spec §13, items 12, 13, 15, 24)."""

import math

import pytest
import torch

from common.fields import RandomFourierEncoding, VoxelGridField
from common.fields.mlp import ResidualBlock
from common.losses import total_variation
from dreamfields.baselines import PixelImage, VolSDFField, eikonal_loss, laplace_cdf
from dreamfields.system import dream_field


def test_ipe_reduces_to_fourier_features_and_damps_by_frequency_norm():
    enc = RandomFourierEncoding(16, 8.0).double()
    W = enc.basis
    x = torch.randn(5, 3, dtype=torch.float64)
    plain = torch.cat([torch.sin(x @ W.T), torch.cos(x @ W.T)], -1)
    torch.testing.assert_close(enc(x, torch.zeros(5, 3, 3, dtype=torch.float64)), plain)
    s2 = 0.01
    damp = torch.exp(-0.5 * s2 * (W**2).sum(-1))  # exp(−½ s²‖ω‖²)
    iso = enc(x, s2 * torch.eye(3, dtype=torch.float64).expand(5, 3, 3))
    torch.testing.assert_close(iso, plain * torch.cat([damp, damp]))
    assert enc(x, 1e4 * torch.eye(3, dtype=torch.float64).expand(5, 3, 3)).abs().max() < 1e-12


def test_random_fourier_basis():
    enc = RandomFourierEncoding()  # K = 128 + 3 axes, L = 8
    W = enc.basis
    assert W.shape == (131, 3) and enc.out_dim == 262
    torch.testing.assert_close(W[:3], torch.eye(3))
    norms = W[3:].norm(dim=-1)
    assert norms.min() >= 1.0 - 1e-6 and norms.max() <= 2.0**8 + 1e-4
    torch.testing.assert_close(W[3:] / norms[:, None], torch.nn.functional.normalize(W[3:], dim=-1))  # unit directions
    assert torch.equal(RandomFourierEncoding().basis, W)  # same seed, same basis
    assert "basis" in dict(enc.named_buffers()) and "basis" in enc.state_dict()
    assert not any(True for _ in enc.parameters())
    official = RandomFourierEncoding(basis_kind="official")
    assert torch.equal(official.basis, official.basis.round())  # ref impl: integer frequencies


def test_default_mlp_parameter_count_and_structure():
    field = dream_field()
    assert sum(p.numel() for p in field.parameters()) == 315_396  # spec §2.5 / A11
    blocks = [m for m in field.modules() if isinstance(m, ResidualBlock)]
    norms = [m for m in field.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(blocks) == 4 and len(norms) == 4 and all(isinstance(next(iter(b.children())), torch.nn.LayerNorm) for b in blocks)
    x = torch.randn(7, 128)
    for b in blocks:  # zeroing the second Linear makes every block the identity (residual check)
        with torch.no_grad():
            b.fc2.weight.zero_()
            b.fc2.bias.zero_()
        torch.testing.assert_close(b(x), x)


def test_default_mlp_init_and_outputs():
    field = dream_field()
    for m in field.modules():
        if isinstance(m, torch.nn.Linear):
            assert torch.all(m.bias == 0)
        if isinstance(m, torch.nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    fc1 = field.trunk.blocks[0].fc2  # fan_in 256
    assert fc1.weight.std().item() == pytest.approx(math.sqrt(1 / 256), rel=0.1)
    out = field(torch.rand(4, 9, 3) * 2 - 1, None, 1e-4 * torch.eye(3).expand(4, 9, 3, 3))
    assert out.density.shape == (4, 9) and out.color.shape == (4, 9, 3)
    assert torch.all(out.density >= 0) and torch.all((out.color > 0) & (out.color < 1))
    # LeCun init: σ ≈ softplus(≈0) ≈ 0.69 at the start (spec §2.5)
    assert out.density.mean().item() == pytest.approx(math.log(2), abs=0.5)


def test_voxel_trilinear_lookup_at_nodes_is_exact():
    grid = VoxelGridField(resolution=5, density_activation="none", color_activation="none")
    with torch.no_grad():
        grid.density_grid_param.copy_(torch.randn_like(grid.density_grid_param))
        grid.feature_grid.copy_(torch.randn_like(grid.feature_grid))
    lin = torch.linspace(-1, 1, 5)
    iz, iy, ix = 1, 3, 4
    x = torch.tensor([[lin[ix], lin[iy], lin[iz]]])
    out = grid(x)
    torch.testing.assert_close(out.density[0], grid.density_grid_param[0, iz, iy, ix])
    torch.testing.assert_close(out.color[0], grid.feature_grid[:, iz, iy, ix])


def test_total_variation_and_pixel_image():
    assert total_variation(torch.full((1, 4, 8, 8), 0.3), dims=2, power=2).item() == 0.0
    img = PixelImage(size=8)
    rgb, alpha = img()
    assert rgb.shape == (1, 3, 8, 8) and alpha.shape == (1, 1, 8, 8)
    assert torch.all(rgb <= alpha + 1e-7)  # premultiplied
    with pytest.raises(ValueError):
        PixelImage(size=1)


def test_volsdf_density_and_eikonal():
    field = VolSDFField(RandomFourierEncoding(8, 4.0), width=16, hidden=16, n_blocks=1, beta_init=0.1)
    d = torch.linspace(-1, 1, 101)
    sigma = field.sdf_to_density(d)
    alpha = 1 / field.beta
    assert field.sdf_to_density(torch.zeros(1)).item() == pytest.approx(alpha.item() / 2)
    assert torch.all(sigma.diff() <= 0)  # decreasing in d
    assert laplace_cdf(torch.tensor([-50.0, 50.0]), torch.tensor(1.0)).tolist() == pytest.approx([0.0, 1.0], abs=1e-12)
    pts = torch.rand(256, 3) * 2 - 1
    assert eikonal_loss(lambda x: x.norm(dim=-1) - 0.5, pts).item() == pytest.approx(0.0, abs=1e-10)
    # sphere initialisation: d(x) = ‖x‖ − r exactly, so the Eikonal loss starts at 0
    torch.testing.assert_close(field.sdf(pts), pts.norm(dim=-1) - 0.5)
    assert eikonal_loss(field.sdf, pts).item() == pytest.approx(0.0, abs=1e-8)
    assert field.surface_density() == pytest.approx(5.0, rel=1e-5)
    loss = eikonal_loss(lambda x: 2 * x.norm(dim=-1), pts)  # ‖∇d‖ = 2 -> (2 − 1)² = 1
    assert loss.item() == pytest.approx(1.0, rel=1e-5)
