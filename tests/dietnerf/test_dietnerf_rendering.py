"""Rendering core of DietNeRF (specs/dietnerf.md §9.1): PE layout, quadrature closed forms, weights,
direction scaling, the importance-sampling pdf, coarse+fine outputs, rays, the strided grid, checkpointing."""

import math

import pytest
import torch

from common.fields.base import Field, FieldOutput
from dietnerf.field import NeRFMLPField, NeRFPositionalEncoding
from dietnerf.hierarchical import HierarchicalRenderer, composite_samples, sample_pdf
from dietnerf.rays import blender_intrinsics, image_rays, pixel_rays, sample_pixels, strided_grid


class SlabField(Field):
    """σ = σ_k on slab k (t along +z from the origin), constant colour per slab; zero elsewhere."""

    def __init__(self, slabs):  # [(a, b, sigma, rgb)]
        super().__init__()
        self.slabs = slabs

    def forward(self, x, d=None, cov=None):
        z = x[..., 2]
        sigma = torch.zeros_like(z)
        rgb = torch.zeros(*z.shape, 3, dtype=x.dtype)
        for a, b, s, c in self.slabs:
            inside = (z >= a) & (z < b)
            sigma = torch.where(inside, torch.full_like(z, s), sigma)
            rgb = torch.where(inside[..., None], torch.tensor(c, dtype=x.dtype), rgb)
        return FieldOutput(sigma, rgb)


def _render_slab(field, n=4096, near=2.0, far=6.0, background="none"):
    r = HierarchicalRenderer(n_samples=n, n_importance=0, near=near, far=far, perturb=False, background=background)
    o = torch.zeros(1, 3, dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    return r(field, None, o, d).coarse


def test_positional_encoding_layout():
    x = torch.randn(5, 3, dtype=torch.float64)
    enc = NeRFPositionalEncoding(10).double()
    g = enc(x)
    assert g.shape == (5, 63) and enc.out_dim == 63
    torch.testing.assert_close(g[:, :3], x)  # raw input first, no π
    for k in range(10):
        torch.testing.assert_close(g[:, 3 + 6 * k: 6 + 6 * k], torch.sin(2.0 ** k * x))
        torch.testing.assert_close(g[:, 6 + 6 * k: 9 + 6 * k], torch.cos(2.0 ** k * x))
    assert NeRFPositionalEncoding(4).out_dim == 27


@pytest.mark.parametrize("sigma0", [0.5, 2.0, 10.0])
def test_render_constant_slab_closed_form(sigma0):
    a, b, c = 3.0, 4.5, (0.2, 0.5, 0.9)
    out = _render_slab(SlabField([(a, b, sigma0, c)]))
    acc = 1 - math.exp(-sigma0 * (b - a))
    assert abs(float(out.acc) - acc) < 5e-3
    torch.testing.assert_close(out.rgb[0], torch.tensor(c, dtype=torch.float64) * acc, atol=5e-3, rtol=0)
    L = b - a
    depth = a * (1 - math.exp(-sigma0 * L)) + 1 / sigma0 - math.exp(-sigma0 * L) * (L + 1 / sigma0)
    assert abs(float(out.depth) - depth) < 1e-2


def test_render_two_slabs_compositing():
    (s1, c1), (s2, c2) = (1.5, (1.0, 0.0, 0.0)), (3.0, (0.0, 0.0, 1.0))
    out = _render_slab(SlabField([(2.5, 3.0, s1, c1), (4.0, 5.0, s2, c2)]))
    a1, a2 = 1 - math.exp(-s1 * 0.5), 1 - math.exp(-s2 * 1.0)
    expect = torch.tensor(c1) * a1 + (1 - a1) * torch.tensor(c2) * a2
    torch.testing.assert_close(out.rgb[0].float(), expect, atol=5e-3, rtol=0)


def _tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return NeRFMLPField(pos_freqs=4, dir_freqs=2, width=32, depth=2, skips=[], view_width=16, **kw)


def test_weights_properties():
    field = _tiny()
    with torch.no_grad():
        field.trunk.out.bias.fill_(1.0)  # non-trivial density
    r = HierarchicalRenderer(16, 16, perturb=True).train()
    o = torch.randn(64, 3) * 0.1 + torch.tensor([0.0, 0.0, 4.0])
    d = torch.nn.functional.normalize(torch.randn(64, 3) * 0.2 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    out = r(field, _tiny(1), o, d)
    for rp in (out.coarse, out.fine):
        assert (rp.weights >= 0).all() and (rp.weights.sum(-1) <= 1 + 1e-6).all()
        torch.testing.assert_close(rp.acc, rp.weights.sum(-1))
        assert rp.rgb.min() >= 0 and rp.rgb.max() <= 1 + 1e-6
        assert (rp.z_vals[:, 1:] >= rp.z_vals[:, :-1]).all()
    # transmittance is non-increasing: T_i = 1 - cumulative weight before i
    trans = 1 - torch.cumsum(out.fine.weights, -1)
    assert (trans[:, 1:] <= trans[:, :-1] + 1e-6).all()
    # empty space renders exactly white with zero opacity
    empty = composite_samples(torch.zeros(3, 8), torch.rand(3, 8, 3), torch.linspace(2, 6, 8).expand(3, 8), torch.ones(3))
    assert torch.equal(empty[0], torch.ones(3, 3)) and torch.equal(empty[1], torch.zeros(3))
    # a huge density at the first sample takes all the weight
    sig = torch.zeros(2, 8)
    sig[:, 0] = 1e6
    w = composite_samples(sig, torch.rand(2, 8, 3), torch.linspace(2, 6, 8).expand(2, 8), torch.ones(2))[3]
    assert torch.allclose(w[:, 0], torch.ones(2), atol=1e-6)


def test_direction_scaling_invariance():
    field, fine = _tiny(), _tiny(1)
    o = torch.tensor([[0.1, -0.2, 4.0], [0.3, 0.1, 3.8]])
    d = torch.tensor([[0.0, 0.05, -1.0], [-0.1, 0.0, -1.0]])
    s = 2.5
    a = HierarchicalRenderer(16, 8, near=2.0, far=6.0).eval()(field, fine, o, d)
    b = HierarchicalRenderer(16, 8, near=2.0 / s, far=6.0 / s).eval()(field, fine, o, d * s)
    torch.testing.assert_close(a.rgb, b.rgb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.fine.acc, b.fine.acc, atol=1e-5, rtol=1e-5)


def test_sample_pdf():
    bins = torch.linspace(0, 10, 11).expand(4, 11)
    w = torch.zeros(4, 10)
    w[:, 3] = 1.0
    s = sample_pdf(bins, w, 64, det=False, eps=0.0)
    assert ((s >= 3) & (s <= 4)).all()  # one-hot weights: every sample in that bin
    s = sample_pdf(bins, w, 128, det=True)  # with NeRF's 1e-5 padding, all but the extreme quantiles
    assert ((s >= 3) & (s <= 4)).float().mean() >= 0.97
    # deterministic quantiles of a known piecewise-constant pdf: mass 1/4 on [0,1], 3/4 on [1,3]
    q = sample_pdf(torch.tensor([[0.0, 1.0, 3.0]]), torch.tensor([[1.0, 3.0]]), 5, det=True, eps=0.0)
    expect = torch.tensor([[0.0, 1.0, 1 + 2 * (0.5 - 0.25) / 0.75, 1 + 2 * (0.75 - 0.25) / 0.75, 3.0]])
    torch.testing.assert_close(q, expect)
    # range, sortedness after the merge, no gradient
    wg = torch.rand(4, 10, requires_grad=True)
    s = sample_pdf(bins, wg, 32)
    assert s.min() >= 0 and s.max() <= 10 and not s.requires_grad
    merged, _ = torch.sort(torch.cat([bins[:, :-1], s], -1), -1)
    assert (merged[:, 1:] >= merged[:, :-1]).all()


def test_hierarchical_outputs():
    coarse, fine = _tiny(0), _tiny(1)
    calls = {"c": 0, "f": 0}
    coarse.register_forward_hook(lambda m, i, o: calls.__setitem__("c", calls["c"] + i[0].shape[0]))
    fine.register_forward_hook(lambda m, i, o: calls.__setitem__("f", calls["f"] + i[0].shape[0]))
    r = HierarchicalRenderer(n_samples=12, n_importance=20).train()
    o = torch.tensor([[0.0, 0.0, 4.0]]).expand(5, 3)
    d = torch.nn.functional.normalize(torch.randn(5, 3) * 0.1 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    out = r(coarse, fine, o, d)
    assert out.coarse.rgb.shape == (5, 3) and out.fine.rgb.shape == (5, 3) and out.rgb is out.fine.rgb
    assert out.fine.weights.shape == (5, 32) and calls == {"c": 5 * 12, "f": 5 * 32}
    loss = ((out.fine.rgb - 0.3) ** 2).mean() + ((out.coarse.rgb - 0.3) ** 2).mean()
    loss.backward()
    for net in (coarse, fine):
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.norm()) for g in grads) > 0


def test_get_rays():
    f800 = 0.5 * 800 / math.tan(0.5 * 0.6911112)
    assert abs(f800 - 1111.111) < 1e-2
    f = 0.5 * 400 / math.tan(0.5 * 0.6911112)
    assert abs(f - 555.5555) < 1e-2
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    o, d = image_rays(c2w, blender_intrinsics(f, 400, 400), 400, 400)
    torch.testing.assert_close(d[200, 200], torch.tensor([0.0, 0.0, -1.0]))
    torch.testing.assert_close(d[0, 0], torch.tensor([-200 / f, 200 / f, -1.0]))
    assert torch.equal(o, c2w[:3, 3].expand(400, 400, 3))
    # rotation applies to directions; normalisation and the pixel-centre offset are options
    rot = torch.tensor([[0.0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    _, dr = pixel_rays(rot, blender_intrinsics(f, 400, 400), torch.tensor([0.0]), torch.tensor([200.0]))
    torch.testing.assert_close(dr[0], torch.tensor([0.0, -200 / f, -1.0]))
    _, dn = pixel_rays(c2w, blender_intrinsics(f, 400, 400), torch.tensor([199.5]), torch.tensor([199.5]), 0.5, True)
    torch.testing.assert_close(dn[0], torch.tensor([0.0, 0.0, -1.0]))


def test_strided_jittered_grid():
    g = torch.Generator().manual_seed(0)
    ys, xs = strided_grid(400, 400, 168, 168, "jittered_stride", g)
    assert ys.numel() * xs.numel() == 28224 and 0.15 <= 28224 / 400**2 <= 0.20
    for v in (ys, xs):
        torch.testing.assert_close(v[1:] - v[:-1], torch.full((167,), 2.0), atol=1e-4, rtol=0)
        assert 0 <= v[0] < 64 and v.min() >= 0 and v.max() <= 399
    ys2, xs2 = strided_grid(400, 400, 168, 168, "jittered_stride", g)
    assert float(xs2[0]) != float(xs[0]) and float(ys[0]) != float(xs[0])  # jitter differs per call and per axis
    ys, xs = strided_grid(400, 400, 168, 168, "full_linspace")
    torch.testing.assert_close(xs, torch.linspace(0, 399, 168))
    with pytest.raises(ValueError, match="at most the image size"):
        strided_grid(16, 16, 32, 8)


def test_precrop_pixels():
    g = torch.Generator().manual_seed(0)
    r, c = sample_pixels(400, 400, 1024, 0.5, g)
    assert r.min() >= 100 and r.max() <= 299 and c.min() >= 100 and c.max() <= 299
    assert len(set((r * 400 + c).tolist())) == 1024  # without replacement
    r, c = sample_pixels(400, 400, 1024, None, g)
    assert r.max() > 299 or r.min() < 100


def test_checkpointed_render_matches_plain():
    o = torch.tensor([[0.0, 0.0, 4.0]]).expand(6, 3)
    d = torch.nn.functional.normalize(torch.randn(6, 3) * 0.2 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    results = []
    for ckpt in (False, True):
        coarse, fine = _tiny(0), _tiny(1)
        r = HierarchicalRenderer(8, 8, checkpoint=ckpt, net_chunk=20).train()
        out = r(coarse, fine, o, d, generator=torch.Generator().manual_seed(3))
        (out.fine.rgb.sum() + out.coarse.rgb.sum()).backward()
        results.append((out.fine.rgb.detach(), [p.grad.clone() for p in list(coarse.parameters()) + list(fine.parameters())]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-7)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_xavier_init():
    f = NeRFMLPField(width=64, depth=3, skips=[1])
    for m in f.modules():
        if isinstance(m, torch.nn.Linear):
            assert torch.count_nonzero(m.bias) == 0
    # hidden layers use gain sqrt(2), outputs gain 1: compare the uniform bound sqrt(6/(fan_in+fan_out))·gain
    hidden, out = f.trunk.hidden[1], f.trunk.out
    bound = lambda m, gain: gain * math.sqrt(6.0 / (m.in_features + m.out_features))  # noqa: E731
    assert hidden.weight.abs().max() <= bound(hidden, math.sqrt(2)) and hidden.weight.abs().max() > bound(hidden, 1.0)
    assert out.weight.abs().max() <= bound(out, 1.0)
