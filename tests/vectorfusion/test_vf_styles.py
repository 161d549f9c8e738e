"""Style initialisers and pixel art (spec §7.1 test 10, §7.2 tests 11 and 14)."""

import math

import torch

from vectorfusion.pixelart import (SATURATION_WEIGHT, pixel_scene, random_pixel_colors,
                                   render_pixel_grid, saturation_penalty)
from vectorfusion.rasterizer import render
from vectorfusion.styles import STYLE_SUFFIX, icon_scene, random_circles, random_strokes, sketch_scene


def test_iconographic_init_is_live_circles():
    g = torch.Generator().manual_seed(0)
    pts, rgba = random_circles(64, generator=g)
    assert pts.shape == (64, 12, 2) and rgba.shape == (64, 4)
    centres = pts.mean(1)  # the 12 points are symmetric about the centre
    rel = pts - centres[:, None]
    assert torch.allclose(rel.norm(dim=-1), torch.full((64, 12), 20.0), atol=1e-4)
    ang = torch.atan2(rel[..., 1], rel[..., 0])
    want = torch.remainder(torch.arange(12) * math.pi / 6 + math.pi, 2 * math.pi) - math.pi
    assert torch.allclose(torch.cos(ang - want), torch.ones(64, 12), atol=1e-5)
    assert ((centres >= 0) & (centres <= 600)).all()
    assert ((rgba[:, 3] >= 0.7) & (rgba[:, 3] <= 1)).all() and ((rgba >= 0) & (rgba <= 1)).all()
    sc = icon_scene(pts, rgba, order=torch.arange(63, -1, -1))
    assert len(sc.shapes) == 64 and sc.shapes[0].points.data_ptr() == pts[63].data_ptr()


def test_sketch_init():
    pts = random_strokes(16, 5, generator=torch.Generator().manual_seed(0))
    assert pts.shape == (16, 16, 2)
    steps = (pts[:, 1:] - pts[:, :-1]).abs()
    assert (steps <= 0.05 * 600 + 1e-4).all()
    sc = sketch_scene(pts)
    s = sc.shapes[0]
    assert len(sc.shapes) == 16 and s.fill is None and not s.closed
    assert torch.equal(s.stroke, torch.tensor([0.0, 0, 0, 1])) and float(s.width_tensor()) == 6
    assert float(sketch_scene(pts, stroke_width_is_diffvg_halfwidth=True).shapes[0].stroke_width) == 12
    assert STYLE_SUFFIX["sketch"].startswith("minimal 2d line drawing")


def test_pixel_grid_renderer_gives_exact_grid():
    g = torch.Generator().manual_seed(0)
    colors = random_pixel_colors(32, 32, generator=g)
    colors[..., 3] = 1
    out = render_pixel_grid(colors, 64, 64)  # 2-px cells
    img = out.over(torch.ones(3))[0]  # [3, 64, 64]
    want = torch.kron(colors[..., :3].permute(2, 0, 1).contiguous(), torch.ones(1, 2, 2))
    assert torch.allclose(img, want, atol=1e-6)
    assert torch.allclose(torch.nn.functional.avg_pool2d(img, 2), colors[..., :3].permute(2, 0, 1),
                          atol=1e-6)
    translucent = random_pixel_colors(32, 32, generator=g)
    img = render_pixel_grid(translucent, 64, 64).over(torch.ones(3))[0]
    c, a = translucent[..., :3], translucent[..., 3:]
    want = torch.kron((a * c + 1 - a).permute(2, 0, 1).contiguous(), torch.ones(1, 2, 2))
    assert torch.allclose(img, want, atol=1e-6)


def test_pixel_grid_on_fractional_cells_matches_soft_rasterizer_inside_cells():
    colors = random_pixel_colors(8, 8, generator=torch.Generator().manual_seed(1))
    colors.requires_grad_(True)
    sc = pixel_scene(colors, torch.ones(3))  # 600 canvas: 75-px cells, 7.5 px at 60 px output
    exact = render_pixel_grid(colors, 60, 60).over(sc.background)[0]
    soft = render(sc, 60, 60).over(sc.background)[0]
    centre = torch.arange(60) + 0.5
    off = torch.remainder(centre, 7.5)
    interior_1d = (off >= 1) & (off <= 6.5)  # pixel centre >= 1 px from a cell border
    mask = interior_1d[:, None] & interior_1d[None, :]
    cell = colors.detach()
    per_pixel = cell[(centre // 7.5).long()][:, (centre // 7.5).long()]  # [60, 60, 4]
    want = (per_pixel[..., :3] * per_pixel[..., 3:] + 1 - per_pixel[..., 3:]).permute(2, 0, 1)
    assert torch.allclose(exact[:, mask], want[:, mask], atol=1e-6)
    assert torch.allclose(soft[:, mask], want[:, mask], atol=1e-6)
    assert all(not s.points.requires_grad for s in sc.shapes)
    exact.sum().backward()
    assert colors.grad is not None and torch.isfinite(colors.grad).all()


def test_saturation_penalty():
    white, grey = torch.ones(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1
    assert float(saturation_penalty(white)) == 1.0 and float(saturation_penalty(grey)) == 0.0
    # I = 2x - 1 = (1, -1, -1) for pure red, so (1/3)(1 + 1 + 1) = 1 (spec §7.2.14 says 1/3; the
    # formula of §2.2, which we follow, gives 1).
    assert abs(float(saturation_penalty(red)) - 1.0) < 1e-6
    assert SATURATION_WEIGHT == 0.05
