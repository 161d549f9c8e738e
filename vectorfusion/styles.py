"""Style initialisers: icon circles and sketch strokes (specs/vectorfusion.md §1.4, §2.1-2.3).

Paths are kept as fixed-size parameter tensors (``points [P, N, 2]``, colours ``[P, 4]``) plus a
draw-order permutation ``order [P]`` (spec §2.9 [NS]); :func:`icon_scene` and
:func:`sketch_scene` build the :class:`~vectorfusion.paths.Scene` the rasterizer draws. Pixel art
lives in :mod:`vectorfusion.pixelart`.
"""

import math

import torch
from torch import Tensor

from vectorfusion.paths import Scene, Shape

STYLE_SUFFIX = {
    "iconography": "minimal flat 2d vector icon. lineal color. on a white background. "
                   "trending on artstation",
    "pixelart": "pixel art. trending on artstation",
    "sketch": "minimal 2d line drawing. trending on artstation",
}
"""Prompt suffixes appended to the caption per style [S] (spec §1.4)."""


def circle_points(centers: Tensor, radius: float = 20.0, num_segments: int = 4) -> Tensor:
    """LIVE's circle: ``3S`` points evenly spaced on a circle (spec §2.1 [LIVE]).

    ``p_i = c + r (cos(2 pi i / 3S), sin(2 pi i / 3S))``; with S = 4 this is 12 points at 30°
    steps, enclosing 0.872 pi r^2 (not a true circle).

    Args:
        centers: ``[P, 2]`` centres in canvas px.
        radius: circle radius in canvas px (20 in the paper [S]).
        num_segments: cubic segments S per path (4 [S]).

    Returns:
        ``[P, 3S, 2]`` closed cubic control points.
    """
    ang = torch.arange(3 * num_segments, dtype=centers.dtype, device=centers.device)
    ang = ang * (2 * math.pi / (3 * num_segments))
    ring = torch.stack([ang.cos(), ang.sin()], dim=-1) * radius  # [3S, 2]
    return centers[:, None, :] + ring


def random_circles(num_paths: int, canvas_w: float = 600.0, canvas_h: float = 600.0,
                   radius: float = 20.0, num_segments: int = 4,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random iconographic init: circles with uniform centres, RGB ~ U(0,1), alpha ~ U(0.7,1).

    Used from scratch (64 paths, spec §1.3 [S]) and for path reinitialisation (spec §2.9).

    Args:
        num_paths: P.
        canvas_w: canvas width in px; centres are uniform over the canvas [NS].
        canvas_h: canvas height in px.
        radius: circle radius in px.
        num_segments: cubic segments per path.
        generator: random generator for reproducibility.

    Returns:
        ``(points [P, 3S, 2], rgba [P, 4])``.
    """
    u = torch.rand(num_paths, 2, generator=generator)
    centers = u * torch.tensor([canvas_w, canvas_h])
    rgb = torch.rand(num_paths, 3, generator=generator)
    alpha = 0.7 + 0.3 * torch.rand(num_paths, 1, generator=generator)
    return circle_points(centers, radius, num_segments), torch.cat([rgb, alpha], dim=-1)


def icon_scene(points: Tensor, rgba: Tensor, order: Tensor | None = None,
               background: Tensor | None = None, canvas_w: float = 600.0,
               canvas_h: float = 600.0) -> Scene:
    """Scene of filled, borderless closed cubic paths (iconography, spec §2.1).

    Args:
        points: ``[P, 3S, 2]`` control points (trainable).
        rgba: ``[P, 4]`` fill colours (trainable).
        order: ``[P]`` row indices in drawing order (back to front); None = row order.
        background: ``[3]`` background RGB, or None.
        canvas_w: canvas width in px.
        canvas_h: canvas height in px.
    """
    rows = range(points.shape[0]) if order is None else order.tolist()
    shapes = [Shape(points[i], closed=True, fill=rgba[i]) for i in rows]
    return Scene(canvas_w, canvas_h, shapes, background)


def random_strokes(num_paths: int = 16, num_segments: int = 5, canvas_w: float = 600.0,
                   canvas_h: float = 600.0, generator: torch.Generator | None = None) -> Tensor:
    """CLIPDraw-style random open strokes (spec §2.3 [NS]).

    ``p0 ~ U([0,W] x [0,H])``; every following control point is the previous one plus
    ``0.1 W (U(0,1) - 0.5)`` per axis.

    Args:
        num_paths: number of strokes (16 [S]).
        num_segments: cubic segments per stroke (5 [S]).
        canvas_w: canvas width in px.
        canvas_h: canvas height in px.
        generator: random generator.

    Returns:
        ``[P, 3S + 1, 2]`` open cubic control points.
    """
    size = torch.tensor([canvas_w, canvas_h])
    p0 = torch.rand(num_paths, 1, 2, generator=generator) * size
    steps = 0.1 * canvas_w * (torch.rand(num_paths, 3 * num_segments, 2, generator=generator) - 0.5)
    return torch.cat([p0, p0 + steps.cumsum(dim=1)], dim=1)


def sketch_scene(points: Tensor, width: float = 6.0, stroke_width_is_diffvg_halfwidth: bool = False,
                 background: Tensor | None = None, canvas_w: float = 600.0,
                 canvas_h: float = 600.0) -> Scene:
    """Scene of solid black open strokes of fixed width, no fill (sketch, spec §2.3).

    Args:
        points: ``[P, 3S + 1, 2]`` control points (the only trainable parameters).
        width: stroke width in px (6 [S]).
        stroke_width_is_diffvg_halfwidth: read ``width`` as diffvg's half width, i.e. draw
            ``2 * width`` (AMB-9; default False: full SVG width).
        background: ``[3]`` background RGB or None (white).
        canvas_w: canvas width in px.
        canvas_h: canvas height in px.
    """
    full = 2 * width if stroke_width_is_diffvg_halfwidth else width
    black = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=points.dtype, device=points.device)
    shapes = [Shape(p, closed=False, stroke=black, stroke_width=full) for p in points]
    return Scene(canvas_w, canvas_h, shapes, background)
