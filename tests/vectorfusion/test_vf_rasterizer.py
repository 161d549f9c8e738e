"""Soft rasterizer: coverage, gradients, fill rules, strokes, compositing (spec §7.1 tests 1-9)."""

import math

import pytest
import torch
import torch.nn.functional as F

from vectorfusion.paths import Scene, Shape, path_area, polygon_to_cubic
from vectorfusion.rasterizer import SoftRasterizer, make_rasterizer, render, render_image
from vectorfusion.styles import circle_points

BLACK = torch.tensor([0.0, 0.0, 0.0, 1.0])
SQUARE = torch.tensor([[16.25, 16.25], [40.75, 16.25], [40.75, 40.75], [16.25, 40.75]])


def scene(*shapes: Shape, size: float = 64.0) -> Scene:
    return Scene(size, size, list(shapes), torch.ones(3))


def square_shape(points: torch.Tensor, fill=BLACK) -> Shape:
    kind = "linear" if points.shape[0] == 4 else "cubic"
    return Shape(points, closed=True, fill=fill, kind=kind)


def darkness(img: torch.Tensor) -> torch.Tensor:
    return (1 - img[0, 0]).sum()


def kappa_circle(c=(32.0, 32.0), r=20.0) -> torch.Tensor:
    k, pts = 0.5522847, []
    for i in range(4):
        a, b = i * math.pi / 2, (i + 1) * math.pi / 2
        p0 = torch.tensor([math.cos(a), math.sin(a)]) * r + torch.tensor(c)
        p3 = torch.tensor([math.cos(b), math.sin(b)]) * r + torch.tensor(c)
        pts += [p0, p0 + k * r * torch.tensor([-math.sin(a), math.cos(a)]),
                p3 - k * r * torch.tensor([-math.sin(b), math.cos(b)])]
    return torch.stack(pts)


def seg_dist(q: torch.Tensor, a, b) -> torch.Tensor:
    a, b = torch.tensor(a), torch.tensor(b)
    t = ((q - a) @ (b - a) / ((b - a) ** 2).sum()).clamp(0, 1)
    return (q - a - t[..., None] * (b - a)).norm(dim=-1)


CENTRES = torch.stack(torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5,
                                     indexing="xy"), -1)  # [64, 64, 2] (x, y)


@pytest.mark.parametrize("as_cubic", [False, True])
def test_square_coverage_is_analytic_area(as_cubic):
    pts = polygon_to_cubic(SQUARE) if as_cubic else SQUARE
    x = render_image(scene(square_shape(pts)))
    assert abs(darkness(x) - 601.0) < 1e-3 and abs(darkness(x) - 600.25) <= 1.0
    assert (x[0, 0, 18:39, 18:39] == 0).all()  # >= 1 px inside
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[15:42, 15:42] = False
    assert (x[0, 0][outside] == 1).all()
    assert abs(float(x[0, 0, 28, 16]) - 0.25) < 0.02  # left edge pixel: 25% covered
    assert abs(float(x[0, 0, 16, 16]) - 0.25) < 1e-6  # corner: 0.75 coverage (not 0.5625)


def test_cubic_square_matches_polygon_square():
    a = render_image(scene(square_shape(SQUARE)))
    b = render_image(scene(square_shape(polygon_to_cubic(SQUARE))))
    assert torch.allclose(a, b, atol=1e-5)


def test_circle_coverage_and_green_area():
    kappa = kappa_circle()
    ang = torch.arange(12) * (math.pi / 6)
    live = torch.tensor([32.0, 32.0]) + 20 * torch.stack([ang.cos(), ang.sin()], -1)
    assert torch.allclose(live, circle_points(torch.tensor([[32.0, 32.0]]))[0], atol=1e-5)
    for pts, area in [(kappa, 1256.99), (live, 1095.69)]:
        assert abs(float(path_area(pts.double())) - area) < 1e-2
        dark = darkness(render_image(scene(square_shape(pts))))
        assert abs(float(dark) - area) < 0.005 * area


def test_point_gradient_is_local_to_edges():
    pts = SQUARE.clone().requires_grad_(True)
    x = render_image(scene(square_shape(pts)))[0, 0]
    edges = [(SQUARE[i].tolist(), SQUARE[(i + 1) % 4].tolist()) for i in range(4)]
    dist = torch.stack([seg_dist(CENTRES, a, b) for a, b in edges])  # [4, 64, 64]
    far = (dist >= 1).all(0)
    (g,) = torch.autograd.grad((far * x).sum(), pts, retain_graph=True)
    assert (g == 0).all()
    (g,) = torch.autograd.grad((~far * x).sum(), pts, retain_graph=True)
    assert g.abs().sum() > 0
    # top-right vertex (index 1): incident edges are top (0) and right (1)
    far_v = (dist[0] > 1) & (dist[1] > 1)
    (g,) = torch.autograd.grad((far_v * x).sum(), pts)
    assert (g[1] == 0).all() and g.abs().sum() > 0


def test_edge_motion_gradient_matches_finite_difference():
    cubic = polygon_to_cubic(SQUARE)  # right edge: points 3 (corner), 4, 5, 6 (corner)
    right = [3, 4, 5, 6]
    pts = cubic.clone().requires_grad_(True)
    darkness(render_image(scene(square_shape(pts)))).backward()
    gx, gy = float(pts.grad[right, 0].sum()), float(pts.grad[right, 1].sum())
    assert 23.0 <= gx <= 25.0 + 1e-4 and abs(gy) < 1

    def area_at(dx: float) -> float:
        moved = cubic.clone()
        moved[right, 0] += dx
        return float(darkness(render_image(scene(square_shape(moved)))))

    fd = (area_at(0.1) - area_at(-0.1)) / 0.2
    assert abs(fd - 24.5) < 1.5 and abs(gx - fd) < 0.05 * fd


def test_point_gradient_matches_finite_difference_float64():
    g = torch.Generator().manual_seed(0)
    ang = torch.arange(12, dtype=torch.float64) * (math.pi / 6)
    base = 32 + (15 + 3 * torch.rand(12, generator=g, dtype=torch.float64))[:, None] * torch.stack(
        [ang.cos(), ang.sin()], -1)
    weights = torch.rand(64, 64, generator=g, dtype=torch.float64)
    fill = torch.tensor([0.2, 0.5, 0.9, 0.8], dtype=torch.float64)

    def loss(p: torch.Tensor) -> torch.Tensor:
        sc = Scene(64.0, 64.0, [Shape(p, fill=fill)], torch.ones(3, dtype=torch.float64))
        return (render(sc, samples_per_curve=16).over(sc.background)[0] * weights).sum()

    pts = base.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(pts), pts)
    eps = 1e-5
    for i, j in [(0, 0), (1, 1), (4, 0), (7, 1), (11, 0)]:
        plus, minus = base.clone(), base.clone()
        plus[i, j] += eps
        minus[i, j] -= eps
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        assert abs(float(grad[i, j] - fd)) < 1e-4 * max(1.0, abs(float(fd)))


def test_colour_and_alpha_gradients():
    rgb = torch.tensor([0.3, 0.6, 0.9], requires_grad=True)
    alpha = torch.tensor([1.0], requires_grad=True)
    out = render(scene(square_shape(SQUARE, torch.cat([rgb, alpha]))))
    cov = out.alpha.detach()  # opaque: A = coverage
    out.over(torch.ones(3))[0, 0].sum().backward()
    assert abs(float(rgb.grad[0]) - float(cov.sum())) < 1e-4 * float(cov.sum())
    a = torch.tensor([0.5], requires_grad=True)
    render(scene(square_shape(SQUARE, torch.cat([rgb.detach(), a])))).over(torch.ones(3))[0, 0].sum().backward()
    assert abs(float(a.grad) - float((cov * (0.3 - 1)).sum())) < 1e-3


def test_background_gradient():
    bg = torch.tensor([0.2, 0.4, 0.6], requires_grad=True)
    out = render(scene(square_shape(SQUARE, torch.tensor([0.0, 0.0, 0.0, 0.5]))))
    out.over(bg).sum().backward()
    assert torch.allclose(bg.grad, (1 - out.alpha).sum().expand(3), rtol=1e-5)


def _two_squares(first, second):
    a = torch.tensor([[10.0, 10], [40, 10], [40, 40], [10, 40]])
    return scene(square_shape(a, first), square_shape(a + 14, second))


def test_compositing_order():
    red, blue = torch.tensor([1.0, 0, 0, 1]), torch.tensor([0.0, 0, 1, 1])
    x = render_image(_two_squares(red, blue))[0, :, 30, 30]
    assert torch.allclose(x, torch.tensor([0.0, 0, 1]), atol=1e-6)
    x = render_image(_two_squares(blue, red))[0, :, 30, 30]
    assert torch.allclose(x, torch.tensor([1.0, 0, 0]), atol=1e-6)
    out = render(_two_squares(torch.tensor([1.0, 0, 0, 0.5]), torch.tensor([0.0, 0, 1, 0.5])))
    assert torch.allclose(out.over(torch.ones(3))[0, :, 30, 30], torch.tensor([0.5, 0.25, 0.75]),
                          atol=1e-6)
    assert torch.allclose(out.rgba()[30, 30], torch.tensor([1 / 3, 0, 2 / 3, 0.75]), atol=1e-6)


def _stroke(width):
    pts = torch.tensor([[12.0, 32.5], [25.0, 32.5], [39.0, 32.5], [52.0, 32.5]])
    return Shape(pts, closed=False, stroke=BLACK, stroke_width=width)


def test_stroke_coverage_and_width_gradient():
    w = torch.tensor(6.0, requires_grad=True)
    x = render_image(scene(_stroke(w)))
    dark = darkness(x)
    assert abs(float(dark.detach()) - (240 + math.pi * 9)) < 0.01 * 268.27
    col = x.detach()[0, 0, :, 32]
    assert float(col[32]) == 0 and abs(float(col[29]) - 0.5) < 0.02 and float(col[25]) == 1
    dark.backward()
    assert abs(float(w.grad) - (40 + 3 * math.pi)) < 0.05 * 49.42


def test_stroke_point_gradient_only_near_border():
    pts = torch.tensor([[12.0, 32.5], [25.0, 32.5], [39.0, 32.5], [52.0, 32.5]], requires_grad=True)
    x = render_image(scene(Shape(pts, closed=False, stroke=BLACK, stroke_width=6.0)))[0, 0]
    d = seg_dist(CENTRES, [12.0, 32.5], [52.0, 32.5])
    far = (d - 3).abs() >= 1  # more than 1 px from the stroke border
    (g,) = torch.autograd.grad((far * x).sum(), pts, retain_graph=True)
    assert (g == 0).all()
    (g,) = torch.autograd.grad(((~far) * x * CENTRES[..., 0]).sum(), pts)
    assert g.abs().sum() > 0


@pytest.mark.parametrize("width", [0.0, 0.4])
def test_thin_and_zero_width_strokes(width):
    w = torch.tensor(width, requires_grad=True)
    x = render_image(scene(_stroke(w)))
    dark = darkness(x)
    assert abs(float(dark.detach()) - 40 * width) < 1.0 + 2 * width  # a band of area ~ 40 w
    if width == 0.0:
        assert float(dark.detach()) == 0
    else:
        dark.backward()
        assert torch.isfinite(w.grad) and w.grad > 0


def _pentagram(rule):
    k = torch.arange(5)
    ang = torch.deg2rad(-90.0 + 144.0 * k)
    pts = 32 + 25 * torch.stack([ang.cos(), ang.sin()], -1)
    return Shape(pts, closed=True, fill=BLACK, fill_rule=rule, kind="linear")


def test_fill_rules_on_self_intersecting_path():
    tip = (13, 31)  # row, col inside the top point of the star
    even = render_image(scene(_pentagram("evenodd")))[0, 0]
    nonzero = render_image(scene(_pentagram("nonzero")))[0, 0]
    assert float(even[32, 32]) == 1 and float(even[tip]) == 0
    assert float(nonzero[32, 32]) == 0 and float(nonzero[tip]) == 0
    cubic = Shape(polygon_to_cubic(_pentagram("evenodd").points), fill=BLACK, fill_rule="evenodd")
    assert torch.allclose(render_image(scene(cubic))[0, 0], even, atol=1e-5)


def test_output_scaling_matches_area_resize():
    pts = circle_points(torch.tensor([[40.0, 55.0], [80.0, 60.0]]), radius=30.0)
    fills = torch.tensor([[0.9, 0.1, 0.1, 0.8], [0.1, 0.3, 0.9, 0.7]])
    sc = Scene(120.0, 120.0, [Shape(p, fill=f) for p, f in zip(pts, fills)], torch.ones(3))
    small = render_image(sc, 40, 40)
    big = F.avg_pool2d(render_image(sc), 3)
    assert small.shape == (1, 3, 40, 40) and (small - big).abs().mean() < 0.01


def test_memory_bound_chunks_do_not_change_result():
    pts = circle_points(torch.tensor([[30.0, 30.0]]), radius=20.0)[0]
    sc = scene(Shape(pts, fill=BLACK))
    assert torch.equal(render_image(sc, max_elements=64), render_image(sc))


def test_degenerate_path_renders_nothing_with_finite_gradient():
    pts = torch.full((12, 2), 30.0, requires_grad=True)
    other = (SQUARE * 0.5).requires_grad_(True)
    sc = scene(square_shape(other), Shape(pts, fill=BLACK, stroke=BLACK, stroke_width=0.0))
    x = render_image(sc)
    assert torch.equal(x, render_image(scene(square_shape(SQUARE * 0.5))))
    g_pts, g_other = torch.autograd.grad(x.sum(), [pts, other], allow_unused=True)
    assert g_pts is None or (g_pts == 0).all()
    assert torch.isfinite(g_other).all()


def test_nan_control_points_raise_clear_error():
    pts = SQUARE.clone()
    pts[2, 0] = float("nan")
    with pytest.raises(ValueError, match="shape 0 points contains NaN"):
        render(scene(square_shape(pts)))


def test_module_and_backend_selection():
    from vectorfusion.diffvg_backend import diffvg_available

    sc = scene(square_shape(SQUARE))
    assert torch.equal(SoftRasterizer()(sc, 64, 64).alpha, render(sc).alpha)
    with pytest.raises(ValueError, match="unknown rasterizer backend"):
        make_rasterizer("bogus")
    if not diffvg_available():
        assert isinstance(make_rasterizer("auto"), SoftRasterizer)
        with pytest.raises(ImportError, match="built from source"):
            make_rasterizer("diffvg")


def test_diffvg_agrees_with_soft():
    pytest.importorskip("pydiffvg")
    pts = circle_points(torch.tensor([[24.0, 30.0], [40.0, 34.0]]), radius=14.0)
    fills = torch.tensor([[0.9, 0.1, 0.1, 0.8], [0.1, 0.3, 0.9, 0.7]])
    sc = scene(*[Shape(p, fill=f) for p, f in zip(pts, fills)], square_shape(SQUARE * 0.5))
    soft = make_rasterizer("soft")(sc, 64, 64).over(sc.background)
    diffvg = make_rasterizer("diffvg")(sc, 64, 64).over(sc.background)
    assert (soft - diffvg).abs().mean() < 0.01  # 2x2 jittered samples vs signed distance
