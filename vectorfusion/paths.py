"""Scene data model for vector graphics and Bézier flattening (specs/vectorfusion.md §2.1, §5.1).

A :class:`Scene` is a canvas size, an optional background colour and a list of :class:`Shape` in
drawing order (the last shape is topmost). Geometry is in canvas pixel units with x right, y down,
origin at the top-left corner; pixel ``(row i, col j)`` covers ``[j, j+1] x [i, i+1]`` (spec §0).

Point layout of a cubic path with ``S`` segments (diffvg's ``num_control_points=[2]*S``)::

    closed: [P0, A0, B0, P1, A1, B1, ..., P_{S-1}, A_{S-1}, B_{S-1}]          N = 3S
    open:   [P0, A0, B0, P1, ..., A_{S-1}, B_{S-1}, P_S]                      N = 3S + 1

segment k is the cubic ``(P_k, A_k, B_k, P_{k+1})`` with ``P_S = P0`` for closed paths. A
``"linear"`` shape is a polygon / polyline whose points are its vertices.
"""

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

FillRule = Literal["evenodd", "nonzero"]


@dataclass
class Shape:
    """One path: geometry plus paint (spec §5.1).

    Attributes:
        points: ``[N, 2]`` control points in canvas px (layout in the module docstring).
        closed: closed path (``N = 3S`` for cubics) or open path (``N = 3S + 1``).
        fill: ``[4]`` non-premultiplied RGBA in [0, 1], or None for no fill. An open path with a
            fill is closed implicitly for the fill, as in SVG.
        stroke: ``[4]`` non-premultiplied RGBA in [0, 1], or None for no stroke.
        stroke_width: full SVG stroke width in canvas px (scalar tensor or float). diffvg's
            ``stroke_width`` is the half width; the adapter converts.
        fill_rule: ``"evenodd"`` (diffvg's default, spec §2.10) or ``"nonzero"``.
        kind: ``"cubic"`` (Bézier control points) or ``"linear"`` (polygon vertices).
    """

    points: Tensor
    closed: bool = True
    fill: Tensor | None = None
    stroke: Tensor | None = None
    stroke_width: Tensor | float = 0.0
    fill_rule: FillRule = "evenodd"
    kind: Literal["cubic", "linear"] = "cubic"

    def __post_init__(self) -> None:
        if self.points.ndim != 2 or self.points.shape[-1] != 2:
            raise ValueError(f"Shape.points must be [N, 2], got {tuple(self.points.shape)}")
        n = self.points.shape[0]
        if self.kind == "cubic":
            want = 0 if self.closed else 1
            if n % 3 != want or n < 3:
                layout = "3S (closed)" if self.closed else "3S+1 (open)"
                raise ValueError(f"cubic Shape needs {layout} points with S >= 1, got N = {n}")
        elif self.kind == "linear":
            if n < 2:
                raise ValueError(f"linear Shape needs at least 2 vertices, got {n}")
        else:
            raise ValueError(f"Shape.kind must be 'cubic' or 'linear', got {self.kind!r}")
        if self.fill_rule not in ("evenodd", "nonzero"):
            raise ValueError(f"fill_rule must be 'evenodd' or 'nonzero', got {self.fill_rule!r}")

    @property
    def num_segments(self) -> int:
        """Number of cubic segments (or polygon edges for ``"linear"``)."""
        n = self.points.shape[0]
        if self.kind == "linear":
            return n if self.closed else n - 1
        return n // 3

    def width_tensor(self) -> Tensor:
        """The stroke width as a 0-d tensor on the points' device and dtype."""
        w = self.stroke_width
        if isinstance(w, Tensor):
            return w.to(self.points.dtype).reshape(())
        return torch.tensor(float(w), dtype=self.points.dtype, device=self.points.device)


@dataclass
class Scene:
    """A canvas, an optional background and shapes in drawing order (last = topmost).

    Attributes:
        canvas_w: canvas width in px (600 in the paper).
        canvas_h: canvas height in px.
        shapes: shapes in drawing order.
        background: ``[3]`` RGB in [0, 1], or None (transparent; composited as white by
            :func:`vectorfusion.rasterizer.render_image`).
    """

    canvas_w: float
    canvas_h: float
    shapes: list[Shape] = field(default_factory=list)
    background: Tensor | None = None


def validate_scene(scene: Scene) -> None:
    """Raise ``ValueError`` naming the shape and the fix if any parameter is NaN or infinite.

    Args:
        scene: the scene to check.
    """
    if not (scene.canvas_w > 0 and scene.canvas_h > 0):
        raise ValueError(f"canvas must be positive, got {scene.canvas_w} x {scene.canvas_h}")
    checks = [("background", scene.background)]
    for i, s in enumerate(scene.shapes):
        checks += [(f"shape {i} points", s.points), (f"shape {i} fill", s.fill),
                   (f"shape {i} stroke", s.stroke), (f"shape {i} stroke_width", s.stroke_width)]
    for name, t in checks:
        if t is None:
            continue
        bad = not bool(torch.isfinite(t).all()) if isinstance(t, Tensor) else not math.isfinite(t)
        if bad:
            raise ValueError(
                f"{name} contains NaN or Inf; the optimisation diverged or the input is corrupt. "
                "Lower the learning rate, clamp the parameters, or reinitialise this path.")
    for i, s in enumerate(scene.shapes):
        if float(s.width_tensor().detach()) < 0:
            raise ValueError(f"shape {i} has a negative stroke width; clamp widths to >= 0")


def bernstein_cubic(t: Tensor) -> Tensor:
    """Cubic Bernstein basis ``[(1-t)^3, 3(1-t)^2 t, 3(1-t) t^2, t^3]``.

    Args:
        t: ``[n]`` parameters in [0, 1].

    Returns:
        ``[n, 4]`` basis weights.
    """
    u = 1 - t
    return torch.stack([u**3, 3 * u**2 * t, 3 * u * t**2, t**3], dim=-1)


def cubic_segments(points: Tensor, closed: bool) -> Tensor:
    """Group control points into per-segment cubics.

    Args:
        points: ``[..., N, 2]`` with ``N = 3S`` (closed) or ``3S + 1`` (open).
        closed: whether segment S-1 ends at P0.

    Returns:
        ``[..., S, 4, 2]`` control points ``(P_k, A_k, B_k, P_{k+1})``.
    """
    s = points.shape[-2] // 3
    ends = torch.roll(points[..., 0::3, :], -1, dims=-2) if closed else points[..., 3::3, :]
    starts = points[..., 0:3 * s:3, :]
    return torch.stack([starts, points[..., 1::3, :][..., :s, :],
                        points[..., 2::3, :][..., :s, :], ends[..., :s, :]], dim=-2)


def adaptive_samples(points: Tensor, closed: bool, target_px: float = 2.0, lo: int = 8,
                     hi: int = 64) -> int:
    """Samples per cubic: ``clamp(ceil(ctrl_polygon_len / target_px), lo, hi)`` (spec §5.2 [NS]).

    The count is chosen without gradient from the longest control polygon of the path, so every
    segment of a shape uses the same count.

    Args:
        points: ``[N, 2]`` cubic control points, already in output pixels.
        closed: whether the path is closed.
        target_px: approximate flattened edge length.
        lo: minimum samples per cubic.
        hi: maximum samples per cubic.
    """
    ctrl = cubic_segments(points.detach(), closed)  # [S, 4, 2]
    length = (ctrl[:, 1:] - ctrl[:, :-1]).norm(dim=-1).sum(-1).max()
    return int(min(max(math.ceil(float(length) / target_px), lo), hi))


def flatten_shape(points: Tensor, closed: bool, kind: str, samples: int) -> Tensor:
    """Flatten a path to a polyline, differentiably in the control points.

    Each cubic is sampled at ``t = k / samples``, ``k = 0..samples-1``; an open path appends its
    last end point. The vertices are Bernstein combinations of the control points, so autograd
    carries gradients to them (spec §5.3).

    Args:
        points: ``[N, 2]`` control points (cubic) or vertices (linear).
        closed: closed path (the polyline's last vertex joins the first).
        kind: ``"cubic"`` or ``"linear"``.
        samples: samples per cubic segment (ignored for linear).

    Returns:
        ``[V, 2]`` polyline vertices; closure is implicit for closed paths.
    """
    if kind == "linear":
        return points
    ctrl = cubic_segments(points, closed)  # [S, 4, 2]
    t = torch.arange(samples, dtype=points.dtype, device=points.device) / samples
    basis = bernstein_cubic(t)  # [n, 4]
    verts = torch.einsum("nk,skd->snd", basis, ctrl).reshape(-1, 2)  # [S*n, 2]
    if not closed:
        verts = torch.cat([verts, points[-1:]], dim=0)
    return verts


def path_area(points: Tensor) -> Tensor:
    """Exact area enclosed by closed cubic Bézier paths, by Green's theorem (spec §2.9).

    ``A = |sum_k (1/20)[6 P0xP1 + 3 P0xP2 + P0xP3 + 3 P1xP2 + 3 P1xP3 + 6 P2xP3]|`` with
    ``Pi x Pj = x_i y_j - x_j y_i`` over the segments ``(P0, P1, P2, P3)`` of each path.

    Args:
        points: ``[..., 3S, 2]`` closed cubic control points.

    Returns:
        ``[...]`` enclosed areas in px^2 (absolute value of the signed area).

    Example:
        >>> sq = torch.tensor([[0., 0], [1, 0], [2, 0], [3, 0], [3, 1], [3, 2], [3, 3], [2, 3],
        ...                    [1, 3], [0, 3], [0, 2], [0, 1]])
        >>> round(float(path_area(sq)), 4)
        9.0
    """
    c = cubic_segments(points, closed=True)  # [..., S, 4, 2]

    def cross(i: int, j: int) -> Tensor:
        return c[..., i, 0] * c[..., j, 1] - c[..., j, 0] * c[..., i, 1]

    per_seg = (6 * cross(0, 1) + 3 * cross(0, 2) + cross(0, 3) + 3 * cross(1, 2)
               + 3 * cross(1, 3) + 6 * cross(2, 3)) / 20  # [..., S]
    return per_seg.sum(-1).abs()


def polygon_to_cubic(vertices: Tensor) -> Tensor:
    """Express a closed polygon as a closed cubic path with controls at the edge thirds.

    Args:
        vertices: ``[..., V, 2]`` polygon vertices.

    Returns:
        ``[..., 3V, 2]`` cubic control points tracing the same polygon.
    """
    nxt = torch.roll(vertices, -1, dims=-2)
    thirds = torch.stack([vertices, vertices + (nxt - vertices) / 3,
                          vertices + 2 * (nxt - vertices) / 3], dim=-2)  # [..., V, 3, 2]
    return thirds.flatten(-3, -2)
