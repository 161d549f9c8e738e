import math

import pytest
import torch

from common.fields.base import Field, FieldOutput
from common.rendering import VolumeRenderer, composite, conical_frustum_gaussian, ray_aabb, stratified_segments


class ConstantField(Field):
    def __init__(self, sigma: float, color=(0.2, 0.4, 0.6)):
        super().__init__()
        self.sigma, self.c = sigma, torch.tensor(color)

    def forward(self, x, d=None, cov=None):
        return FieldOutput(torch.full(x.shape[:-1], self.sigma, dtype=x.dtype), self.c.to(x).expand(*x.shape[:-1], 3))


def _render(sigma, length=2.0, n=32, background=None, jitter=False):
    r = VolumeRenderer(n_samples=n, intersect_box=False, near=1.0, far=1.0 + length, mask_outside=False, jitter=jitter)
    r.train(jitter)
    o = torch.zeros(4, 3)
    d = torch.nn.functional.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    return r(ConstantField(sigma), o, d, background=background, return_weights=True)


@pytest.mark.parametrize("sigma", [0.3, 1.7])
@pytest.mark.parametrize("jitter", [False, True])
def test_constant_density_transmittance_closed_form(sigma, jitter):
    length = 2.0
    out = _render(sigma, length, jitter=jitter)
    expected_t = math.exp(-sigma * length)
    torch.testing.assert_close(out.transmittance, torch.full((4,), expected_t), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.weights.sum(-1), torch.full((4,), 1 - expected_t), atol=1e-5, rtol=1e-5)
    # premultiplied colour of a constant-colour medium is A·c
    torch.testing.assert_close(out.rgb, (1 - expected_t) * torch.tensor([0.2, 0.4, 0.6]).expand(4, 3), atol=1e-5, rtol=1e-5)


def test_zero_density_gives_background_exactly():
    bg = torch.rand(4, 3)
    out = _render(0.0, background=bg)
    assert torch.equal(out.rgb, bg)
    assert torch.equal(out.opacity, torch.zeros(4))


def test_composite_only_changes_transparent_pixels():
    c, a = torch.rand(5, 3), torch.tensor([0.0, 0.25, 0.5, 1.0, 1.0])
    b1, b2 = torch.rand(5, 3), torch.rand(5, 3)
    diff = composite(c, a, b1) - composite(c, a, b2)
    torch.testing.assert_close(diff, (1 - a)[:, None] * (b1 - b2))


def test_ray_aabb_hand_computed():
    o = torch.tensor([[-3.0, 0.0, 0.0], [0.0, -5.0, 0.5], [0.0, 0.0, 0.0], [-3.0, 2.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    near, far, hit = ray_aabb(o, d, -1.0, 1.0)
    torch.testing.assert_close(near[:3], torch.tensor([2.0, 4.0, 0.0]))  # inside → near clamps at 0
    torch.testing.assert_close(far[:3], torch.tensor([4.0, 6.0, 1.0]))
    assert hit.tolist() == [True, True, True, False]
    # diagonal ray through the corner region: entry at x=-1, exit where y hits 1
    o2, d2 = torch.tensor([[-2.0, -1.5, 0.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    n2, f2, h2 = ray_aabb(o2, d2, -1.0, 1.0)
    torch.testing.assert_close(n2, torch.tensor([1.0]))
    torch.testing.assert_close(f2, torch.tensor([2.5]))


def test_rays_missing_the_box_get_zero_weight():
    r = VolumeRenderer(n_samples=16, bound=1.0, intersect_box=True).eval()
    o = torch.tensor([[-3.0, 2.0, 0.0], [-3.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    out = r(ConstantField(5.0), o, d, return_weights=True)
    assert torch.all(out.weights[0] == 0) and out.opacity[0] == 0
    assert out.opacity[1] > 0.99


def test_stratified_segments_cover_interval_in_order():
    near, far = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    for mode in ("bins", "endpoints"):
        t0, t1 = stratified_segments(near, far, 8, jitter=True, mode=mode, generator=torch.Generator().manual_seed(0))
        assert torch.all(t1 >= t0) and torch.all(t0[:, 1:] >= t0[:, :-1])
    t0, t1 = stratified_segments(near, far, 4, jitter=False)
    torch.testing.assert_close(t0[0], torch.tensor([1.0, 1.5, 2.0, 2.5]))
    torch.testing.assert_close(t1[1], torch.tensor([3.0, 4.0, 5.0, 6.0]))


def test_chunked_rendering_matches_unchunked():
    field = ConstantField(0.8)
    o, d = torch.zeros(50, 3), torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    a = VolumeRenderer(n_samples=8, intersect_box=False, near=0.5, far=2.5, chunk=7).eval()(field, o, d)
    b = VolumeRenderer(n_samples=8, intersect_box=False, near=0.5, far=2.5, chunk=1000).eval()(field, o, d)
    torch.testing.assert_close(a.rgb, b.rgb)


def test_frustum_gaussian_matches_mipnerf_formulas():
    o, d = torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]])
    t0, t1 = torch.tensor([[2.0]]), torch.tensor([[2.2]])
    mean, cov = conical_frustum_gaussian(o, d, t0, t1, torch.tensor([0.01]), diagonal=True)
    tm, td = 2.1, 0.1
    mu = tm + 2 * tm * td**2 / (3 * tm**2 + td**2)
    var_t = td**2 / 3 - (4 / 15) * td**4 * (12 * tm**2 - td**2) / (3 * tm**2 + td**2) ** 2
    var_r = 0.01**2 * (tm**2 / 4 + (5 / 12) * td**2 - (4 / 15) * td**4 / (3 * tm**2 + td**2))
    torch.testing.assert_close(mean[0, 0], torch.tensor([0.0, 0.0, mu]))
    torch.testing.assert_close(cov[0, 0], torch.tensor([var_r, var_r, var_t]))


def test_render_gradient_matches_finite_differences():
    from common.fields.voxel import VoxelGridField

    torch.manual_seed(0)
    field = VoxelGridField(resolution=4, init_density=0.0, init_std=0.5).double()
    r = VolumeRenderer(n_samples=6, bound=1.0).double().eval()
    o = torch.tensor([[-3.0, 0.1, 0.2]], dtype=torch.float64)
    d = torch.tensor([[1.0, 0.05, -0.02]], dtype=torch.float64)

    def f(grid):
        field.density_grid_param.data = grid
        return r(field, o, d, background=1.0).rgb.sum()

    base = field.density_grid_param.detach().clone().requires_grad_(True)
    field.density_grid_param = torch.nn.Parameter(base)
    loss = r(field, o, d, background=1.0).rgb.sum()
    (grad,) = torch.autograd.grad(loss, field.density_grid_param)
    idx = grad.abs().flatten().argmax()
    eps = 1e-6
    g = base.detach().clone().flatten()
    plus, minus = g.clone(), g.clone()
    plus[idx] += eps
    minus[idx] -= eps
    with torch.no_grad():
        fd = (f(plus.reshape(base.shape)) - f(minus.reshape(base.shape))) / (2 * eps)
    assert grad.flatten()[idx].abs() > 1e-4
    torch.testing.assert_close(grad.flatten()[idx], fd, rtol=1e-4, atol=1e-7)


def test_occupancy_grid_renderer_cpu_path_is_the_reference():
    from common.rendering import OccupancyGridRenderer

    field = ConstantField(0.8)
    o = torch.tensor([[-3.0, 0.1, 0.0], [0.0, -3.0, 0.2]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    a = OccupancyGridRenderer(grid_resolution=8, n_samples=16).eval()(field, o, d)
    b = VolumeRenderer(n_samples=16).eval()(field, o, d)
    torch.testing.assert_close(a.rgb, b.rgb)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nerfacc occupancy grids need CUDA")
def test_occupancy_grid_matches_dense_path_on_cuda():
    from common.fields.voxel import VoxelGridField
    from common.rendering import OccupancyGridRenderer

    torch.manual_seed(0)
    field = VoxelGridField(resolution=16, init_density=0.0, init_std=0.5).cuda()
    o = torch.tensor([[-3.0, 0.1, 0.0]]).repeat(64, 1).cuda()
    d = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0]]) + 0.05 * torch.randn(64, 3), dim=-1).cuda()
    occ = OccupancyGridRenderer(grid_resolution=32, n_samples=512, occ_threshold=0.0, early_stop_eps=0.0).cuda().eval()
    dense = VolumeRenderer(n_samples=512).cuda().eval()
    torch.testing.assert_close(occ(field, o, d).opacity, dense(field, o, d).opacity, atol=1e-2, rtol=0)
