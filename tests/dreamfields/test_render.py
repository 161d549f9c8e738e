"""Rendering (spec §13, items 7–11, 14): closed forms, scene bounds, slab test, near/far, frustum Gaussians,
training vs evaluation intervals, and the packed (occupancy-grid) compositing against the dense path."""

import math

import pytest
import torch

from common.fields.base import FieldOutput
from common.rendering import ray_aabb, stratified_segments
from dreamfields.renderer import FAR, NEAR, DreamFieldsRenderer, frustum_gaussians, packed_composite


class ConstField(torch.nn.Module):
    """σ and colour constant everywhere."""

    def __init__(self, sigma: float, color=(0.2, 0.5, 0.9)):
        super().__init__()
        self.sigma, self.color = sigma, torch.tensor(color, dtype=torch.float64)

    def forward(self, x, d=None, cov=None):
        return FieldOutput(torch.full(x.shape[:-1], self.sigma, dtype=torch.float64), self.color.expand(*x.shape[:-1], 3))


def _axis_rays(n=4, dtype=torch.float64):
    o = torch.tensor([[0.0, 0.0, 4.0]], dtype=dtype).expand(n, 3)
    d = torch.tensor([[0.0, 0.0, -1.0]], dtype=dtype).expand(n, 3)
    return o, d


def _renderer(**kw):
    kw.setdefault("with_covariance", False)
    kw.setdefault("checkpoint_chunks", False)
    return DreamFieldsRenderer(**kw)


@pytest.mark.parametrize("jitter", [False, True])
def test_constant_density_closed_form(jitter):
    """Bounds off: T = exp(−σ(t_N − t_0)) over the sampled interval, C = c(1 − T), Σw = 1 − T."""
    r = _renderer(n_samples=16, intersect_box=False, mask_outside=False, jitter=jitter).train()
    o, d = _axis_rays()
    torch.manual_seed(0)
    out = r(ConstField(0.3), o, d, return_weights=True)
    torch.manual_seed(0)
    t0, t1 = stratified_segments(torch.full((4,), NEAR, dtype=torch.float64), torch.full((4,), FAR, dtype=torch.float64),
                                 16, jitter=jitter, mode="endpoints")
    expected_t = torch.exp(-0.3 * (t1[:, -1] - t0[:, 0]))
    torch.testing.assert_close(out.transmittance, expected_t.to(out.transmittance), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.rgb, (torch.tensor([0.2, 0.5, 0.9]) * (1 - expected_t[:, None])).to(out.rgb), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.weights.sum(-1), out.opacity)
    if not jitter:
        assert out.transmittance[0].item() == pytest.approx(math.exp(-0.3 * (FAR - NEAR)), rel=1e-6)


def test_zero_density_is_transparent_and_white_composite_is_one():
    r = _renderer(n_samples=8).eval()
    o, d = _axis_rays()
    out = r(ConstField(0.0), o, d)
    assert torch.all(out.transmittance == 1) and torch.all(out.rgb == 0)
    white = r(ConstField(0.0), o, d, background="white")
    assert torch.all(white.rgb == 1)


def test_scene_bounds_mask_density_and_box_intersection():
    r = _renderer(n_samples=16, intersect_box=True, jitter=False).train()
    x = torch.tensor([[0.5, 0.0, 0.0], [1.2, 0.0, 0.0], [0.0, -1.01, 0.3]])
    assert r._masked_density(torch.full((3,), 5.0), x).tolist() == [5.0, 0.0, 0.0]
    o = torch.tensor([[0.0, 0.0, 4.0], [3.0, 3.0, 4.0]], dtype=torch.float64)  # centre ray; a ray that misses the cube
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    out = r(ConstField(5.0), o, d)
    assert out.transmittance[0].item() == pytest.approx(math.exp(-5.0 * 2), rel=1e-5)
    assert out.transmittance[1].item() == 1.0


def test_bounds_mask_at_evaluation_without_box_intersection():
    """Evaluation samples [4−√3, 4+√3] (A13) and still masks: σ = 5 through the centre gives exp(−10)."""
    r = _renderer(n_samples=8, n_samples_eval=4000, intersect_box=True, intersect_box_eval=False).eval()
    o, d = _axis_rays(1)
    near, far, hit = r.ray_intervals(o, d)
    assert near.item() == pytest.approx(NEAR) and far.item() == pytest.approx(FAR) and hit.all()
    out = r(ConstField(5.0), o, d)
    assert out.transmittance.item() == pytest.approx(math.exp(-10.0), rel=0.02)  # quadrature error of 4000 segments
    r.train()
    near, far, _ = r.ray_intervals(o, d)
    assert near.item() == pytest.approx(3.0) and far.item() == pytest.approx(5.0)


def test_slab_intersection_and_jittered_endpoints():
    o, d = _axis_rays(1)
    near, far, hit = ray_aabb(o, d)
    assert near.item() == pytest.approx(3.0) and far.item() == pytest.approx(5.0) and hit.item()
    g = torch.Generator().manual_seed(0)
    t0, t1 = stratified_segments(near.expand(64), far.expand(64), 32, jitter=True, mode="endpoints", generator=g)
    mid = (t0 + t1) / 2
    assert torch.all(mid >= 3.0) and torch.all(mid <= 5.0)
    edges = torch.cat([t0, t1[:, -1:]], dim=1)
    assert torch.all(edges.diff(dim=1) >= 0)


def test_near_far_bound_every_cube_corner():
    corners = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    cams = torch.nn.functional.normalize(torch.randn(500, 3, generator=g, dtype=torch.float64), dim=-1) * 4
    dist = (cams[:, None] - corners[None]).norm(dim=-1)
    assert dist.min() >= NEAR - 1e-9 and dist.max() <= FAR + 1e-9
    diag = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64) / math.sqrt(3) * 4  # camera on a diagonal
    d = (diag[:, None] - corners[None]).norm(dim=-1)
    assert d.min().item() == pytest.approx(NEAR) and d.max().item() == pytest.approx(FAR)


@pytest.mark.parametrize("frustum", ["mipnerf", "official"])
def test_frustum_covariance_is_symmetric_psd(frustum):
    g = torch.Generator().manual_seed(0)
    o = torch.randn(5, 3, generator=g, dtype=torch.float64)
    d = torch.nn.functional.normalize(torch.randn(5, 3, generator=g, dtype=torch.float64), dim=-1)
    t0 = 2 + torch.rand(5, 7, generator=g, dtype=torch.float64)
    t1 = t0 + 0.1
    _, cov = frustum_gaussians(o, d, t0, t1, torch.full((5,), 0.01, dtype=torch.float64), frustum)
    torch.testing.assert_close(cov, cov.transpose(-1, -2))
    assert torch.linalg.eigvalsh(cov).min() > -1e-12


def test_frustum_small_segment_limits():
    o = torch.zeros(1, 3, dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    t_mu, t_delta, rdot = 3.0, 1e-4, 0.01
    t0, t1 = torch.tensor([[t_mu - t_delta]], dtype=torch.float64), torch.tensor([[t_mu + t_delta]], dtype=torch.float64)
    mean, cov = frustum_gaussians(o, d, t0, t1, torch.tensor([rdot], dtype=torch.float64))
    assert cov[0, 0, 2, 2].item() == pytest.approx(t_delta**2 / 3, rel=1e-6)  # σ_t² along d
    assert cov[0, 0, 0, 0].item() == pytest.approx(rdot**2 * t_mu**2 / 4, rel=1e-6)  # σ_r² across
    _, off = frustum_gaussians(o, d, t0, t1, torch.tensor([rdot], dtype=torch.float64), "official")
    pitch = rdot * math.sqrt(12) / 2
    assert off[0, 0, 0, 0].item() == pytest.approx((pitch * t_mu) ** 2 / 144, rel=1e-9)


def test_field_receives_full_covariance_for_random_fourier_features():
    """RFF damping needs ωᵀΣω with the off-diagonal terms: the renderer passes [R, S, 3, 3]."""
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x, d=None, cov=None):
            seen["cov"] = cov
            return FieldOutput(torch.zeros(x.shape[:-1]), torch.zeros(*x.shape[:-1], 3))

    r = DreamFieldsRenderer(n_samples=4, checkpoint_chunks=False).train()
    o = torch.tensor([[0.3, -4.0, 1.0]])
    r(Probe(), o, torch.nn.functional.normalize(-o, dim=-1), radii=torch.tensor([0.01]))
    assert seen["cov"].shape == (1, 4, 3, 3)
    assert seen["cov"][0, 0, 0, 1].abs() > 0  # an oblique ray has off-diagonal covariance
    r.cov_scale = 4.0
    first = seen["cov"].clone()
    torch.manual_seed(0)
    r(Probe(), o, torch.nn.functional.normalize(-o, dim=-1), radii=torch.tensor([0.01]), jitter=False)
    a = seen["cov"]
    r.cov_scale = 1.0
    r(Probe(), o, torch.nn.functional.normalize(-o, dim=-1), radii=torch.tensor([0.01]), jitter=False)
    torch.testing.assert_close(a, 4.0 * seen["cov"])
    assert first.shape == a.shape


def test_packed_composite_matches_dense_rendering():
    """The occupancy-grid path's compositing (plain torch) equals the dense nerfacc path on the same samples."""
    import nerfacc

    g = torch.Generator().manual_seed(0)
    R, S = 6, 10
    t0, t1 = stratified_segments(torch.full((R,), 3.0), torch.full((R,), 5.0), S, jitter=True, mode="endpoints", generator=g)
    sigma = torch.rand(R, S, generator=g) * 3
    sigma[2] = 0.0
    color = torch.rand(R, S, 3, generator=g)
    w, _, _ = nerfacc.render_weight_from_density(t0, t1, sigma)
    keep = torch.rand(R, S, generator=g) > 0.3  # a packed subset (skipped samples), rays in order
    keep[4] = False  # a ray with no samples at all
    ray_idx = torch.arange(R)[:, None].expand(R, S)[keep]
    rgb, opacity, weights = packed_composite(t0[keep], t1[keep], sigma[keep], color[keep], ray_idx, R)
    w_ref, _, _ = nerfacc.render_weight_from_density(t0, t1, sigma * keep)
    torch.testing.assert_close(weights, w_ref[keep], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opacity, w_ref.sum(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rgb, (w_ref[..., None] * color).sum(1), rtol=1e-5, atol=1e-6)
    assert opacity[4] == 0 and opacity[2] == 0
    full_rgb, full_op, _ = packed_composite(t0.flatten(), t1.flatten(), sigma.flatten(), color.reshape(-1, 3),
                                            torch.arange(R).repeat_interleave(S), R)
    torch.testing.assert_close(full_op, w.sum(-1), rtol=1e-5, atol=1e-6)


def test_occupancy_grid_option_falls_back_to_dense_on_cpu():
    dense = _renderer(n_samples=8, jitter=False).eval()
    occ = _renderer(n_samples=8, jitter=False, occupancy_grid=True).eval()
    o, d = _axis_rays()
    torch.testing.assert_close(occ(ConstField(1.0), o, d).rgb, dense(ConstField(1.0), o, d).rgb)
    occ.update_occupancy(ConstField(1.0), step=0)  # no-op off CUDA


def test_occupancy_path_matches_dense_path_when_the_grid_skips_nothing(monkeypatch):
    """The packed (CUDA) code path, run on CPU with nerfacc's traversal replaced by the dense samples: same
    render, transmittance and centre of mass as the dense path."""
    from dreamfields.system import dream_field

    torch.manual_seed(0)
    field = dream_field()
    dense = DreamFieldsRenderer(n_samples=16, checkpoint_chunks=False, jitter=False).train()
    occ = DreamFieldsRenderer(n_samples=16, checkpoint_chunks=False, jitter=False, occupancy_grid=True).train()
    o = torch.tensor([[0.2, -4.0, 1.0], [0.0, 0.3, 4.0], [3.0, 3.0, 3.0]])
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0, -0.2], [0.0, -0.05, -1.0], [0.0, 0.0, -1.0]]), dim=-1)
    radii = torch.full((3,), 0.002)

    def fake_sampling(rays_o, rays_d, sigma_fn=None, render_step_size=None, stratified=False, alpha_thre=0.0,
                      early_stop_eps=0.0):
        near, far, hit = dense.ray_intervals(rays_o, rays_d)
        t0, t1 = stratified_segments(near, far, 16, jitter=False, mode="endpoints")
        keep = hit[:, None].expand_as(t0)  # the grid would skip rays that miss the box
        idx = torch.arange(rays_o.shape[0])[:, None].expand_as(t0)
        sigma_fn(t0[keep], t1[keep], idx[keep])  # exercised as nerfacc would
        return idx[keep], t0[keep], t1[keep]

    monkeypatch.setattr(occ, "_use_occupancy", lambda rays_o: True)
    monkeypatch.setattr(occ.estimator, "sampling", fake_sampling)
    a = dense(field, o, d, radii=radii, return_com=True)
    b = occ(field, o, d, radii=radii, return_com=True)
    torch.testing.assert_close(b.rgb, a.rgb, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.opacity, a.opacity, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.density_com, a.density_com, rtol=1e-4, atol=1e-5)
    assert b.opacity[2] == 0  # the ray that misses the cube
    b.opacity.sum().backward()  # differentiable to the field
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())
