"""Pixel art: a frozen grid of squares with trainable colours (specs/vectorfusion.md §2.2).

The grid tiles the canvas exactly with float cells (``s = W / 32 = 18.75`` px on 600, AMB-10).
:func:`render_pixel_grid` is the exact renderer for it: because the cells are disjoint and
axis-aligned, the 1-px box filter of the grid is separable, ``C = Wy (alpha c) Wx^T`` with
``Wy[i, r]`` the overlap length of output row i with cell row r. The general soft rasterizer gives
the same values on every pixel that lies inside one cell; on pixels straddling a cell border it
over-composites the two partial cells (as any per-shape rasterizer does) instead of adding them.
"""

import torch
from torch import Tensor

from vectorfusion.paths import Scene, Shape
from vectorfusion.rasterizer import RasterOutput

SATURATION_WEIGHT = 0.05
"""Weight of the pixel-art saturation penalty [S] (spec §2.2, §3.3)."""


def random_pixel_colors(rows: int = 32, cols: int = 32,
                        generator: torch.Generator | None = None) -> Tensor:
    """Random RGB ~ U(0,1) and alpha ~ U(0.7,1) per cell [S].

    Returns:
        ``[rows, cols, 4]`` RGBA.
    """
    rgb = torch.rand(rows, cols, 3, generator=generator)
    alpha = 0.7 + 0.3 * torch.rand(rows, cols, 1, generator=generator)
    return torch.cat([rgb, alpha], dim=-1)


def pixel_squares(rows: int, cols: int, canvas_w: float = 600.0, canvas_h: float = 600.0) -> Tensor:
    """Corners of the grid squares, clockwise from the top-left (frozen, no grad).

    Square ``(r, c)`` spans ``[c s_x, (c+1) s_x] x [r s_y, (r+1) s_y]`` with ``s = canvas / n``.

    Returns:
        ``[rows * cols, 4, 2]`` vertices in canvas px, row-major over cells.
    """
    xs = torch.arange(cols + 1, dtype=torch.float64) * (canvas_w / cols)
    ys = torch.arange(rows + 1, dtype=torch.float64) * (canvas_h / rows)
    x0, x1 = xs[:-1][None, :].expand(rows, cols), xs[1:][None, :].expand(rows, cols)
    y0, y1 = ys[:-1][:, None].expand(rows, cols), ys[1:][:, None].expand(rows, cols)
    corners = torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
                           torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)], dim=-2)
    return corners.reshape(rows * cols, 4, 2).float()


def pixel_scene(rgba: Tensor, background: Tensor | None = None, canvas_w: float = 600.0,
                canvas_h: float = 600.0) -> Scene:
    """The grid as a :class:`Scene` of filled polygons (for SVG export or the soft rasterizer).

    Args:
        rgba: ``[rows, cols, 4]`` cell colours.
        background: ``[3]`` RGB or None (white).
        canvas_w: canvas width in px.
        canvas_h: canvas height in px.
    """
    rows, cols = rgba.shape[:2]
    squares = pixel_squares(rows, cols, canvas_w, canvas_h).to(rgba.device)
    flat = rgba.reshape(rows * cols, 4)
    shapes = [Shape(squares[i], closed=True, fill=flat[i], kind="linear")
              for i in range(rows * cols)]
    return Scene(canvas_w, canvas_h, shapes, background)


def _overlap(n_out: int, n_cells: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[n_out, n_cells]`` overlap length of output pixel i with cell k, in output px."""
    edges = torch.arange(n_cells + 1, dtype=torch.float64, device=device) * (n_out / n_cells)
    pix = torch.arange(n_out, dtype=torch.float64, device=device)
    lo = torch.maximum(pix[:, None], edges[None, :-1])
    hi = torch.minimum(pix[:, None] + 1, edges[None, 1:])
    return (hi - lo).clamp_min(0).to(dtype)


def render_pixel_grid(rgba: Tensor, out_h: int, out_w: int) -> RasterOutput:
    """Exact box-filtered render of a grid of cells tiling the whole canvas.

    ``C[i, j] = sum_{r,c} Wy[i, r] Wx[j, c] alpha_rc c_rc`` and ``A = Wy alpha Wx^T``: each output
    pixel gets the area-weighted sum of the cells it overlaps (the cells are disjoint).

    Args:
        rgba: ``[rows, cols, 4]`` non-premultiplied cell colours in [0, 1].
        out_h: output height in px.
        out_w: output width in px.

    Returns:
        ``RasterOutput`` with ``color [out_h, out_w, 3]`` and ``alpha [out_h, out_w]``.
    """
    rows, cols = rgba.shape[:2]
    wy = _overlap(out_h, rows, rgba.dtype, rgba.device)  # [H, rows]
    wx = _overlap(out_w, cols, rgba.dtype, rgba.device)  # [W, cols]
    premul = rgba[..., :3] * rgba[..., 3:]  # [rows, cols, 3]
    color = torch.einsum("ir,rck,jc->ijk", wy, premul, wx)  # [H, W, 3]
    alpha = wy @ rgba[..., 3] @ wx.T  # [H, W]
    return RasterOutput(color=color, alpha=alpha)


def saturation_penalty(image: Tensor) -> Tensor:
    """Pixel-art saturation penalty ``(1/3) mean_pixels(I_r^2 + I_g^2 + I_b^2)``, ``I = 2x - 1``.

    Thesis ch. 11 (pixel art) [S]; weighted by :data:`SATURATION_WEIGHT` in the loss.

    Args:
        image: ``[B, 3, H, W]`` composited render in [0, 1].

    Returns:
        Scalar in [0, 1]: 1 when every channel is 0 or 1 (white, black, pure red...), 0 for
        mid-grey.

    Example:
        >>> float(saturation_penalty(torch.full((1, 3, 2, 2), 0.5)))
        0.0
    """
    i = 2 * image - 1
    return (i**2).sum(dim=1).mean() / 3
