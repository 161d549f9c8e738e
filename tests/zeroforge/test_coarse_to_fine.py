"""Coarse-to-fine decoding (one MISE level) for inference: the same hard voxels as the dense pass on shapes
larger than a coarse cell, exact logits where it decodes, and far fewer decoder calls."""

import math

import pytest
import torch
from torch import nn

from zeroforge.generator import decode_grid, decode_grid_coarse_to_fine


class CountingDecoder(nn.Module):
    """``(points [B, P, 3], s [B, d]) -> [B, P]``, counting the points it is asked for."""

    def __init__(self, field) -> None:
        super().__init__()
        self.field, self.latent_dim, self.calls = field, 4, 0

    def forward(self, pts, s):
        self.calls += pts.shape[0] * pts.shape[1]
        return self.field(pts, s)


def sphere(pts, s):  # o = r − |p| (radius from the latent), inside where o > γ
    return s[:, None, 0] - pts.norm(dim=-1)


def smooth_random(pts, s):  # sum of low-frequency waves with latent-dependent phases (features ≥ ~0.25 wide)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, 3, generator=g) * 2 * math.pi * 0.6
    a = torch.rand(6, generator=g)
    return (a * torch.sin(pts @ w.T + s[:, None, :1] * 3 + torch.arange(6.0))).sum(-1) * 0.3


@pytest.mark.parametrize("field,radii,band,max_calls", [
    (sphere, (0.2, 0.31, 0.45), 0, 0.25),  # convex: MISE's rule alone is exact
    (smooth_random, (0.0, 0.5, 1.0), 1, 0.99),  # wiggly, on a coarse 9³: exact with a one-cell margin
])
def test_same_hard_voxels_fewer_calls(field, radii, band, max_calls):
    s = torch.tensor(radii)[:, None].expand(-1, 4).contiguous()
    dec = CountingDecoder(field)
    dense = decode_grid(dec, s, 33)
    dense_calls, dec.calls = dec.calls, 0
    logits, n_decoded = decode_grid_coarse_to_fine(dec, s, 33, gamma=0.05, coarse_resolution=9, chunk=500, band=band)
    assert torch.equal(logits > 0.05, dense > 0.05)
    assert dec.calls == len(radii) * 9 ** 3 + int(n_decoded.sum())
    assert dec.calls < max_calls * dense_calls  # a surface is a thin shell of the grid
    exact = torch.isclose(logits, dense, atol=1e-6)
    assert int(exact.view(len(radii), -1).sum(1).min()) >= int(n_decoded.min())  # decoded points carry exact logits


def test_empty_and_full_shapes_decode_nothing_fine():
    dec = CountingDecoder(sphere)
    s = torch.tensor([[-1.0] * 4, [2.0] * 4])  # all outside / all inside
    logits, n_decoded = decode_grid_coarse_to_fine(dec, s, 17, 0.05, 5)
    assert n_decoded.tolist() == [0, 0] and dec.calls == 2 * 5 ** 3
    assert not bool((logits[0] > 0.05).any()) and bool((logits[1] > 0.05).all())


def test_mise_rule_on_a_wiggly_field_misses_few_voxels_and_the_margin_costs_more():
    s = torch.tensor([[0.0] * 4, [0.5] * 4, [1.0] * 4])
    dense = decode_grid(CountingDecoder(smooth_random), s, 33) > 0.05
    l0, n0 = decode_grid_coarse_to_fine(CountingDecoder(smooth_random), s, 33, 0.05, 9, band=0)
    _, n1 = decode_grid_coarse_to_fine(CountingDecoder(smooth_random), s, 33, 0.05, 9, band=1)
    assert float(((l0 > 0.05) != dense).float().mean()) < 1e-3
    assert 0 < int(n0.sum()) < int(n1.sum())


@pytest.mark.parametrize("coarse", [1, 16, 20])
def test_bad_coarse_resolution(coarse):
    with pytest.raises(ValueError, match="coarse_resolution"):
        decode_grid_coarse_to_fine(CountingDecoder(sphere), torch.ones(1, 4), 16, 0.05, coarse)


def test_system_generate_coarse_to_fine_matches_dense(make_zeroforge):
    system = make_zeroforge().eval()
    with torch.no_grad():  # put the surface inside the grid: γ at the median logit of the first shape
        cond = system.clip.encode_text(["a cube"])
        o = decode_grid(system.decoder, system.flow.sample(torch.zeros(1, 8), cond), 16)
        system.hparams.gamma = float(o.median())
    _, dense = system.generate(["a cube", "a torus"], "zero", 24)
    _, c2f = system.generate(["a cube", "a torus"], "zero", 24, coarse_resolution=12)
    assert 0.05 < float(dense[0].mean()) < 0.95
    assert float((dense == c2f).float().mean()) > 0.99
