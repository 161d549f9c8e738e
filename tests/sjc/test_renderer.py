"""SJC renderer (spec §2.2, T6, T7): Eq. (25) quadrature, a numpy reference, finite differences,
misses and chunking, the weight threshold, and agreement with common's VolumeRenderer."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.losses import emptiness_loss
from common.rendering import VolumeRenderer
from sjc.background import SphericalBackground
from sjc.cameras import SJCCameraSampler
from sjc.field import SJCVoxelField
from sjc.renderer import SJCRenderer, composite_weights


class ConstantDensityField(SJCVoxelField):
    """An SJC field with constant density σ₀ and constant features (for closed forms)."""

    def __init__(self, sigma0: float, feat=(0.5, -0.2, 0.1, 0.3)):
        super().__init__(resolution=10, channels=4)
        self.sigma0, self.feat = sigma0, torch.tensor(feat)

    def density(self, x):
        return torch.full(x.shape[:-1], self.sigma0, dtype=x.dtype) + 0 * self.density_grid_param.sum()

    def features(self, x):
        return self.feat.to(x).expand(*x.shape[:-1], 4)


def _camera(size=4, seed=0, fov=60.0):
    cams = SJCCameraSampler(size=size, fov_range=(fov, fov))
    return cams.sample(torch.Generator().manual_seed(seed))


def test_quadrature_weights_closed_form():
    w = composite_weights(torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64), 0.1)
    torch.testing.assert_close(w[0], torch.tensor([0.0951626, 0.1640192, 0.0361301], dtype=torch.float64), atol=1e-7, rtol=0)
    assert w.sum().item() == pytest.approx(0.2953119, abs=1e-7) == pytest.approx(1 - math.exp(-3.5 * 0.1), abs=1e-7)


@pytest.mark.parametrize("sigma0", [0.3, 4.0])
def test_constant_density_composites_closed_form(sigma0):
    field = ConstantDensityField(sigma0).double()
    renderer = SJCRenderer(weight_thresh=0.0)
    cam = _camera(size=6)
    o, d = (t.double() for t in cam.rays())
    bg = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    out = renderer(field, o, d, background=lambda dirs: bg.expand(dirs.shape[0], 4))
    step = renderer.step_size(field)
    from common.rendering import ray_aabb

    near, far, _ = ray_aabb(o.reshape(-1, 3), d.reshape(-1, 3), -1.0, 1.0)
    n = torch.floor((far - near) / step) + 1  # samples with j·d < length (lengths are not multiples of d here)
    A = 1 - torch.exp(-sigma0 * step * n)
    torch.testing.assert_close(out.opacity.reshape(-1), A, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.weights.sum(1), A, atol=1e-10, rtol=0)  # Σw + T_final = 1
    feat = field.feat.double()
    torch.testing.assert_close(out.image.reshape(-1, 4), A[:, None] * feat + (1 - A)[:, None] * bg, atol=1e-10, rtol=0)
    assert out.weights.shape == (36, out.n_samples) and out.n_samples == int(n.max())


def numpy_render(naive_trilinear, field: SJCVoxelField, bg_values: np.ndarray, o: np.ndarray, d: np.ndarray, step: float,
                 bg_depth: float = 10.0):
    """Pure numpy reference of spec §2.2 (weight_thresh = 0), one ray at a time."""
    dens = field.density_grid_param[0].detach().numpy()
    feats = field.feature_grid[0].detach().numpy()
    s = math.exp(field.d_scale.item())
    imgs, depths = [], []
    for r in range(o.shape[0]):
        tmin, tmax = -np.inf, np.inf
        for a in range(3):
            if abs(d[r, a]) < 1e-12:
                continue
            t0, t1 = (-1 - o[r, a]) / d[r, a], (1 - o[r, a]) / d[r, a]
            tmin, tmax = max(tmin, min(t0, t1)), min(tmax, max(t0, t1))
        tmin = max(tmin, 0.0)
        color, acc, depth, trans, j = np.zeros(feats.shape[0]), 0.0, 0.0, 1.0, 0
        while tmax > tmin and j * step < tmax - tmin:
            t = tmin + j * step
            p = o[r] + t * d[r]
            sigma = np.log1p(np.exp(s * naive_trilinear(dens, p)[0] - 1.0))
            alpha = 1 - np.exp(-sigma * step)
            w = alpha * trans
            color += w * naive_trilinear(feats, p)
            acc, depth, trans, j = acc + w, depth + w * t, trans * (1 - alpha), j + 1
        imgs.append(color + (1 - acc) * bg_values[r])
        depths.append(depth + (1 - acc) * bg_depth)
    return np.stack(imgs), np.array(depths)


def test_render_matches_numpy_reference(naive_trilinear):
    g = torch.Generator().manual_seed(3)
    field = SJCVoxelField(resolution=6, channels=4).double()
    with torch.no_grad():
        field.density_grid_param.copy_(2 * torch.randn(field.density_grid_param.shape, generator=g, dtype=torch.float64))
        field.d_scale.fill_(0.3)
    bg = SphericalBackground(4).double()
    cam = _camera(size=4, seed=5)
    o, d = (t.double().reshape(-1, 3) for t in cam.rays())
    out = SJCRenderer(weight_thresh=0.0)(field, o, d, background=bg)
    ref_img, ref_depth = numpy_render(naive_trilinear, field, bg(d).detach().numpy(), o.numpy(), d.numpy(), 0.5 * 2 / 6)
    np.testing.assert_allclose(out.image.detach().numpy(), ref_img, atol=1e-6)
    np.testing.assert_allclose(out.depth.detach().numpy(), ref_depth, atol=1e-6)


def test_zero_density_and_missing_rays_render_pure_background():
    field = SJCVoxelField(resolution=4, channels=4, density_shift=-200.0)  # softplus(-200) == 0 in float32
    bg = SphericalBackground(4)
    cam = _camera(size=4)
    o, d = cam.rays()
    out = SJCRenderer()(field, o, d, background=bg)
    torch.testing.assert_close(out.image, bg(d), atol=0, rtol=0)
    assert out.depth.eq(10.0).all()
    # rays pointing away from the box get no sample: background, depth 10, zero weights, finite emptiness
    o2 = torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    d2 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    field2 = SJCVoxelField(resolution=4, channels=4)
    out2 = SJCRenderer()(field2, o2, d2, background=bg)
    torch.testing.assert_close(out2.image, bg(d2))
    assert out2.weights.abs().sum() == 0 and out2.depth.eq(10.0).all() and torch.isfinite(emptiness_loss(out2.weights))
    # a camera inside the box starts marching at t = 0
    out3 = SJCRenderer(weight_thresh=0)(field2, torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]))
    step = 0.5 * 0.5  # half a voxel of the 4³ grid; the ray runs 1.0 inside the box: samples j·d < 1 -> j = 0..3
    assert out3.n_samples == 5 and (out3.weights[0] > 0).sum() == 4 and out3.weights[0, 4] == 0
    torch.testing.assert_close(out3.weights[0, 0], 1 - torch.exp(-field2.density(torch.zeros(1, 3))[0] * step))


def test_gradients_match_finite_differences():
    """T7: autograd of S(θ) = <g, render(θ)> against central differences, every parameter tensor."""
    g = torch.Generator().manual_seed(4)
    field = SJCVoxelField(resolution=4, channels=4).double()
    bg = SphericalBackground(4).double()
    with torch.no_grad():
        field.density_grid_param.copy_(torch.randn(field.density_grid_param.shape, generator=g, dtype=torch.float64))
        field.d_scale.fill_(0.2)
    renderer = SJCRenderer(weight_thresh=0.0)
    cam = _camera(size=4, seed=7)
    o, d = (t.double() for t in cam.rays())
    weights = torch.randn(4, 4, 4, generator=g, dtype=torch.float64)

    def S():
        out = renderer(field, o, d, background=bg)
        return (weights * out.image).sum() + 0.1 * out.depth.sum()

    params = {"density": field.density_grid_param, "features": field.feature_grid, "d_scale": field.d_scale,
              "background": bg.texture}
    grads = torch.autograd.grad(S(), list(params.values()))
    eps = 1e-6
    for (name, p), grad in zip(params.items(), grads):
        flat, gflat = p.data.view(-1), grad.reshape(-1)
        idx = torch.randperm(flat.numel(), generator=g)[:30]
        assert gflat.abs().max() > 1e-6, f"{name} got no gradient"
        for i in idx.tolist():
            orig = flat[i].item()
            with torch.no_grad():
                flat[i] = orig + eps
                plus = S().item()
                flat[i] = orig - eps
                minus = S().item()
                flat[i] = orig
            fd = (plus - minus) / (2 * eps)
            assert gflat[i].item() == pytest.approx(fd, rel=1e-4, abs=1e-8), (name, i)


def test_weight_threshold_and_chunking():
    torch.manual_seed(0)
    field = SJCVoxelField(resolution=12, channels=4)
    with torch.no_grad():
        field.density_grid_param.normal_(0, 3)
    cam = _camera(size=8, seed=2)
    o, d = cam.rays()
    bg = SphericalBackground(4)
    full = SJCRenderer(weight_thresh=0.0)(field, o, d, background=bg)
    fast = SJCRenderer(weight_thresh=1e-4)(field, o, d, background=bg)
    # skipped samples contribute at most Σ_{w ≤ 1e-4} w·|f| per ray
    small = torch.where(full.weights <= 1e-4, full.weights, torch.zeros_like(full.weights)).sum(1)
    bound = small * field.feature_grid.abs().max()
    assert ((fast.image - full.image).abs().reshape(-1, 4).amax(1) <= bound + 1e-6).all()
    torch.testing.assert_close(fast.opacity, full.opacity)  # the background weight uses the full Σw
    chunked = SJCRenderer(weight_thresh=1e-4, chunk=7)(field, o, d, background=bg)
    torch.testing.assert_close(chunked.image, fast.image, atol=1e-6, rtol=0)
    torch.testing.assert_close(chunked.weights, fast.weights, atol=1e-7, rtol=0)
    assert chunked.n_samples == fast.n_samples


def test_agrees_with_common_volume_renderer_on_the_same_field():
    """SJC's fixed-step, segment-start quadrature and common's stratified-midpoint renderer integrate the
    same field; both converge to the same image as the step shrinks (spec §2.2 vs common.rendering)."""
    torch.manual_seed(0)
    field = SJCVoxelField(resolution=10, channels=4).double()
    with torch.no_grad():  # a smooth blob of density
        xs = torch.linspace(-0.9, 0.9, 10, dtype=torch.float64)
        zz, yy, xx = torch.meshgrid(xs, xs, xs, indexing="ij")
        field.density_grid_param.copy_((6 * torch.exp(-(xx**2 + yy**2 + zz**2) / 0.3))[None, None])
        field.feature_grid.copy_(F.avg_pool3d(field.feature_grid, 3, 1, 1))
    bg = SphericalBackground(4).double()
    cam = _camera(size=6, seed=1)
    o, d = (t.double().reshape(-1, 3) for t in cam.rays())
    ours = SJCRenderer(step_ratio=0.02, weight_thresh=0.0)(field, o, d, background=bg)
    common = VolumeRenderer(n_samples=1024, bound=1.0, intersect_box=True, jitter=False, mask_outside=True,
                            chunk=64).double().eval()
    theirs = common(field, o, d, background=field.activate(bg(d)))
    torch.testing.assert_close(ours.opacity, theirs.opacity, atol=5e-3, rtol=0)
    torch.testing.assert_close(ours.image, theirs.rgb, atol=1e-2, rtol=0)
    # common's depth is Σ w t_mid without the background term
    torch.testing.assert_close(ours.depth - (1 - ours.opacity) * 10.0, theirs.depth, atol=1e-2, rtol=0)


def test_emptiness_gradients_reach_only_density_and_scale_and_clear_space():
    """T11: the emptiness term moves density and d_scale only, and 50 Adamax steps of it alone lower
    the mean weight by more than half."""
    torch.manual_seed(0)
    field = SJCVoxelField(resolution=8, channels=4)
    bg = SphericalBackground(4)
    with torch.no_grad():
        field.density_grid_param.normal_(0, 0.5)
    renderer = SJCRenderer()
    cams = [_camera(size=8, seed=s) for s in range(4)]

    def mean_weight():
        with torch.no_grad():
            return sum(renderer(field, *c.rays(), background=bg).weights.sum(1).mean() for c in cams) / len(cams)

    out = renderer(field, *cams[0].rays(), background=bg)
    emptiness_loss(out.weights, 10.0).backward()
    assert field.density_grid_param.grad.abs().sum() > 0 and field.d_scale.grad.abs() > 0
    assert field.feature_grid.grad is None and bg.texture.grad is None
    before = mean_weight()
    opt = torch.optim.Adamax(field.parameters(), lr=0.05)
    for i in range(50):
        opt.zero_grad()
        emptiness_loss(renderer(field, *cams[i % 4].rays(), background=bg).weights, 10.0).backward()
        opt.step()
    assert mean_weight() < 0.5 * before
