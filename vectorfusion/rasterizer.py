"""Differentiable vector rasterizer in pure PyTorch (specs/vectorfusion.md §5).

``render(scene, out_h, out_w)`` rasterizes closed/open cubic Bézier paths and polygons with fills
(even-odd or non-zero rule), strokes and opacity, over-composited in path order, with signed-
distance anti-aliasing (see :mod:`vectorfusion.coverage` for the choice and how it differs from
diffvg). Gradients reach control points (only from pixels in the anti-aliasing band), colours,
opacities, stroke widths and the background.

Memory is bounded twice. Coverage is computed per shape on its bounding box only, with the no-grad
scan chunked over pixels (``max_elements``) and autograd storing band distances only. Compositing
works on square pixel tiles (``tile``), stacking only the layers that touch a tile, so what autograd
keeps is O(sum over shapes of the tile area their bounding boxes touch), not #shapes x H x W.
"""

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vectorfusion.coverage import fill_coverage, stroke_coverage
from vectorfusion.paths import Scene, Shape, adaptive_samples, flatten_shape, validate_scene


@dataclass
class RasterOutput:
    """Premultiplied render of a scene without its background.

    Attributes:
        color: ``[H, W, 3]`` premultiplied RGB ``C`` in [0, 1].
        alpha: ``[H, W]`` coverage-weighted opacity ``A`` in [0, 1].
    """

    color: Tensor
    alpha: Tensor

    def rgba(self) -> Tensor:
        """Un-premultiplied RGBA ``(C / A if A > 1e-6 else C, A)``, like pydiffvg (spec §5.2.4).

        Returns:
            ``[H, W, 4]`` in [0, 1].
        """
        a = self.alpha[..., None]
        rgb = torch.where(a > 1e-6, self.color / a.clamp_min(1e-6), self.color)
        return torch.cat([rgb, a], dim=-1)

    def over(self, background: Tensor | None) -> Tensor:
        """Composite onto a solid background: ``x = C + (1 - A) bg`` (spec §2.4).

        Args:
            background: ``[3]`` RGB in [0, 1]; None means white.

        Returns:
            ``[1, 3, H, W]`` image in [0, 1], ready for the VAE / CLIP.
        """
        if background is None:
            background = torch.ones(3, dtype=self.color.dtype, device=self.color.device)
        x = self.color + (1 - self.alpha[..., None]) * background  # [H, W, 3]
        return x.permute(2, 0, 1)[None]


def _pixel_box(verts: Tensor, margin: float, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """Integer pixel box ``(y0, y1, x0, x1)`` around a polyline, dilated by ``margin`` px."""
    v = verts.detach()
    lo, hi = v.min(0).values, v.max(0).values
    x0 = max(int(math.floor(float(lo[0]) - margin)), 0)
    x1 = min(int(math.ceil(float(hi[0]) + margin)), out_w)
    y0 = max(int(math.floor(float(lo[1]) - margin)), 0)
    y1 = min(int(math.ceil(float(hi[1]) + margin)), out_h)
    return y0, y1, x0, x1


Fragment = tuple[tuple[int, int, int, int], Tensor, Tensor]
"""One fill or stroke layer: pixel box ``(y0, y1, x0, x1)``, alpha ``[h, w]`` and RGB ``[3]``."""


def composite_tile(fragments: list[Fragment], box: tuple[int, int, int, int],
                   dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Over-composite the fragments that touch one pixel tile (spec §5.2 step 3).

    Unrolling ``C <- C (1 - a_k) + a_k c_k`` and ``A <- A (1 - a_k) + a_k`` from ``C = A = 0``
    gives ``C = sum_k a_k c_k T_k`` and ``A = 1 - prod_k (1 - a_k)`` with the transmittance of
    the layers above, ``T_k = prod_{j>k} (1 - a_j)`` (an exclusive reverse cumprod; its backward
    is exact when some ``a_j = 1``).

    Args:
        fragments: layers in drawing order (back to front).
        box: ``(y0, y1, x0, x1)`` tile in output pixels.
        dtype: output dtype.
        device: output device.

    Returns:
        ``(color [th, tw, 3], alpha [th, tw])`` premultiplied.
    """
    ty0, ty1, tx0, tx1 = box
    layers, colors = [], []
    for (y0, y1, x0, x1), a, rgb in fragments:
        iy0, iy1, ix0, ix1 = max(y0, ty0), min(y1, ty1), max(x0, tx0), min(x1, tx1)
        if iy0 >= iy1 or ix0 >= ix1:
            continue
        crop = a[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
        layers.append(F.pad(crop, (ix0 - tx0, tx1 - ix1, iy0 - ty0, ty1 - iy1)))
        colors.append(rgb)
    if not layers:
        return (torch.zeros(ty1 - ty0, tx1 - tx0, 3, dtype=dtype, device=device),
                torch.zeros(ty1 - ty0, tx1 - tx0, dtype=dtype, device=device))
    a = torch.stack(layers)  # [K, th, tw]
    keep = torch.flip(torch.cumprod(torch.flip(1 - a, [0]), 0), [0])  # [K, th, tw] prod_{j>=k}
    trans = torch.cat([keep[1:], torch.ones_like(keep[:1])])  # [K, th, tw] T_k = prod_{j>k}
    color = torch.einsum("khw,kc->hwc", a * trans, torch.stack(colors))  # [th, tw, 3]
    return color, 1 - keep[0]


def render(scene: Scene, out_h: int | None = None, out_w: int | None = None, *,
           samples_per_curve: int | None = None, max_elements: int = 1 << 20,
           tile: int = 64) -> RasterOutput:
    """Rasterize a scene with the soft (signed-distance anti-aliased) rasterizer.

    Pixel centres of the ``out_h x out_w`` image are mapped to the canvas by ``canvas / out``
    scaling; all distances are measured in output pixels, so the anti-aliasing is a 1-output-px
    box filter at any output size (spec §5.2).

    Args:
        scene: shapes in drawing order, canvas size and background (unused here; see
            :meth:`RasterOutput.over` and :func:`render_image`).
        out_h: output height in px (default: the canvas height).
        out_w: output width in px (default: the canvas width).
        samples_per_curve: fixed flattening samples per cubic; None picks
            ``clamp(ceil(ctrl_polygon_len / 2 px), 8, 64)`` per path (spec §5.2 [NS]).
        max_elements: pixels x edges evaluated at once in the no-grad scan (memory bound).
        tile: side of the square pixel tiles composited at once (memory bound of compositing).

    Returns:
        The premultiplied colour ``[H, W, 3]`` and alpha ``[H, W]``.

    Raises:
        ValueError: a parameter is NaN/Inf, a stroke width is negative or the canvas is empty.
    """
    validate_scene(scene)
    out_h = int(round(scene.canvas_h)) if out_h is None else int(out_h)
    out_w = int(round(scene.canvas_w)) if out_w is None else int(out_w)
    ref = scene.shapes[0].points if scene.shapes else torch.zeros(())
    dtype = ref.dtype if ref.is_floating_point() else torch.float32
    fragments: list[Fragment] = []
    sx, sy = out_w / scene.canvas_w, out_h / scene.canvas_h
    scale = torch.tensor([sx, sy], dtype=dtype, device=ref.device)
    for shape in scene.shapes:
        pts = shape.points.to(dtype) * scale  # [N, 2] in output px
        if shape.kind == "cubic":
            n = samples_per_curve or adaptive_samples(pts, shape.closed)
        else:
            n = 1
        verts = flatten_shape(pts, shape.closed, shape.kind, n)  # [V, 2]
        if shape.fill is not None and _has_extent(verts):
            box = _pixel_box(verts, 1.0, out_h, out_w)
            if box[1] > box[0] and box[3] > box[2]:
                cov = fill_coverage(verts, shape.fill_rule, box, max_elements)  # [h, w]
                fill = shape.fill.to(dtype)
                fragments.append((box, fill[3] * cov, fill[:3]))
        width = shape.width_tensor() * math.sqrt(sx * sy)  # full width in output px
        if shape.stroke is not None and float(width.detach()) > 0:
            box = _pixel_box(verts, 1.0 + float(width.detach()) / 2, out_h, out_w)
            if box[1] > box[0] and box[3] > box[2]:
                cov = stroke_coverage(verts, shape.closed, width, box, max_elements)
                stroke = shape.stroke.to(dtype)
                fragments.append((box, stroke[3] * cov, stroke[:3]))
    rows = []
    for ty in range(0, out_h, tile):
        tiles = [composite_tile(fragments, (ty, min(ty + tile, out_h), tx, min(tx + tile, out_w)),
                                dtype, ref.device) for tx in range(0, out_w, tile)]
        rows.append((torch.cat([c for c, _ in tiles], 1), torch.cat([a for _, a in tiles], 1)))
    color = torch.cat([c for c, _ in rows], 0)  # [H, W, 3]
    alpha = torch.cat([a for _, a in rows], 0)  # [H, W]
    return RasterOutput(color=color, alpha=alpha)


def _has_extent(verts: Tensor) -> bool:
    """False for a degenerate path (all vertices equal): its fill has zero area and is skipped."""
    v = verts.detach()
    return bool((v.max(0).values - v.min(0).values).max() > 0)


def render_image(scene: Scene, out_h: int | None = None, out_w: int | None = None,
                 **kwargs) -> Tensor:
    """Render and composite onto ``scene.background`` (white if None).

    Returns:
        ``[1, 3, H, W]`` image in [0, 1].
    """
    return render(scene, out_h, out_w, **kwargs).over(scene.background)


class Rasterizer(Protocol):
    """What a rasterizer backend provides: ``scene, out_h, out_w -> RasterOutput``."""

    def __call__(self, scene: Scene, out_h: int, out_w: int) -> RasterOutput: ...


class SoftRasterizer(nn.Module):
    """The pure-PyTorch rasterizer as a stateless module (spec §5).

    Args:
        samples_per_curve: fixed flattening samples per cubic, or None for adaptive.
        max_elements: memory bound of the no-grad scan (pixels x edges per chunk).

    Shape:
        Output: ``RasterOutput`` with ``color [H, W, 3]`` and ``alpha [H, W]``.
    """

    def __init__(self, samples_per_curve: int | None = None, max_elements: int = 1 << 20):
        super().__init__()
        self.samples_per_curve = samples_per_curve
        self.max_elements = max_elements

    def forward(self, scene: Scene, out_h: int, out_w: int) -> RasterOutput:
        return render(scene, out_h, out_w, samples_per_curve=self.samples_per_curve,
                      max_elements=self.max_elements)


def make_rasterizer(backend: Literal["soft", "diffvg", "auto"] = "soft") -> nn.Module:
    """Pick a rasterizer backend by name (a config value).

    Args:
        backend: ``"soft"`` (this module), ``"diffvg"`` (requires ``pydiffvg``) or ``"auto"``
            (diffvg when importable, else soft).

    Raises:
        ImportError: ``"diffvg"`` was asked for and ``pydiffvg`` cannot be imported.
    """
    if backend == "soft":
        return SoftRasterizer()
    from vectorfusion.diffvg_backend import DiffvgRasterizer, diffvg_available

    if backend == "diffvg" or (backend == "auto" and diffvg_available()):
        return DiffvgRasterizer()
    if backend == "auto":
        return SoftRasterizer()
    raise ValueError(f"unknown rasterizer backend {backend!r}; use 'soft', 'diffvg' or 'auto'")


__all__ = ["RasterOutput", "Rasterizer", "SoftRasterizer", "Shape", "make_rasterizer", "render",
           "render_image"]
