"""Rays of DietNeRF's pinhole cameras: full images, random training pixels, and the strided, jittered
low-resolution grid of the semantic renders (specs/dietnerf.md §1.1 "Rays", §2 "Semantic ray grid").

Conventions [C] (nerf-pytorch, which DietNeRF forks): the camera looks down its local −z axis, +y up,
+x right. Pixel (column ``i``, row ``j``) maps to the camera-frame direction
``((i + o − c_x)/f_x, −(j + o − c_y)/f_y, −1)`` where ``o`` is ``pixel_offset``: 0 in the released
code (no pixel-centre shift), 0.5 for pixel centres (the convention of ``common.cameras.get_rays``).
The direction is rotated by ``c2w[:3, :3]`` and, by default, **not** normalised: its camera-space z
stays −1, so ``near``/``far`` are depths along the optical axis and the renderer multiplies the
sample spacing by ``‖d‖`` (``normalize=True`` gives unit directions, as pixelNeRF's DTU code).

Intrinsics are ``[..., 4]`` tensors ``(f_x, f_y, c_x, c_y)`` in pixels; a Blender camera has
``f_x = f_y = 0.5·W/tan(0.5·camera_angle_x)`` and ``(c_x, c_y) = (W/2, H/2)``.
"""

from typing import Literal, Optional

import torch
from torch import Tensor


def blender_intrinsics(focal: float, height: int, width: int) -> Tensor:
    """``[4]`` intrinsics ``(f, f, W/2, H/2)`` of a Blender/NeRF-synthetic camera.

    Example:
        >>> blender_intrinsics(555.5, 400, 400).tolist()
        [555.5, 555.5, 200.0, 200.0]
    """
    return torch.tensor([focal, focal, width / 2.0, height / 2.0], dtype=torch.float32)


def pixel_rays(
    c2w: Tensor, intrinsics: Tensor, xs: Tensor, ys: Tensor, pixel_offset: float = 0.0, normalize: bool = False
) -> tuple[Tensor, Tensor]:
    """Rays through (possibly fractional) pixel coordinates of one camera.

    Args:
        c2w: ``[4, 4]`` (or ``[3, 4]``) camera-to-world matrix.
        intrinsics: ``[4]`` ``(f_x, f_y, c_x, c_y)`` in pixels.
        xs, ys: ``[...]`` column and row coordinates (same shape).
        pixel_offset: added to both coordinates (0: released code; 0.5: pixel centres).
        normalize: return unit-length directions.

    Returns:
        ``(rays_o, rays_d)``, each ``[..., 3]``.
    """
    fx, fy, cx, cy = intrinsics.to(c2w).unbind(-1)
    x = (xs.to(c2w) + pixel_offset - cx) / fx
    y = -(ys.to(c2w) + pixel_offset - cy) / fy
    dirs = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # [..., 3] camera frame
    rays_d = dirs @ c2w[:3, :3].T  # rotate into the world: R·d for each ray
    if normalize:
        rays_d = torch.nn.functional.normalize(rays_d, dim=-1)
    rays_o = c2w[:3, 3].expand_as(rays_d)
    return rays_o, rays_d


def image_rays(c2w: Tensor, intrinsics: Tensor, height: int, width: int, pixel_offset: float = 0.0,
               normalize: bool = False) -> tuple[Tensor, Tensor]:
    """``(rays_o, rays_d)`` of every pixel, each ``[H, W, 3]`` (row-major, row ``j`` then column ``i``)."""
    j, i = torch.meshgrid(torch.arange(height, dtype=c2w.dtype, device=c2w.device),
                          torch.arange(width, dtype=c2w.dtype, device=c2w.device), indexing="ij")
    return pixel_rays(c2w, intrinsics, i, j, pixel_offset, normalize)


def strided_grid(
    height: int,
    width: int,
    n_rows: int,
    n_cols: int,
    mode: Literal["jittered_stride", "full_linspace"] = "jittered_stride",
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """Row and column coordinates of the semantic render's low-resolution ray grid [C].

    ``jittered_stride`` (the released code, ``get_rays(..., nH, nW, jitter=True)``): stride
    ``s = W // nW`` and a continuous random start ``u ~ U[0, W mod nW)`` drawn separately for rows and
    columns; coordinates ``u + s·k`` for ``k = 0 … nW−1``. On a 400² camera with 168² rays this is a
    random ~84 % crop at half resolution (specs/dietnerf.md §2, §7 item 20). ``full_linspace``:
    ``linspace(0, W−1, nW)``, the whole image plane.

    Args:
        height, width: size of the full camera image in pixels.
        n_rows, n_cols: grid size ``nH × nW`` (at most the image size).
        mode: see above.
        generator: CPU generator of the start offsets.

    Returns:
        ``(ys [nH], xs [nW])`` float coordinates in ``[0, H−1]`` and ``[0, W−1]``.
    """
    if not (0 < n_rows <= height and 0 < n_cols <= width):
        raise ValueError(f"semantic grid {n_rows}x{n_cols} must be positive and at most the image size {height}x{width}")
    if mode == "full_linspace":
        return torch.linspace(0, height - 1, n_rows), torch.linspace(0, width - 1, n_cols)
    if mode != "jittered_stride":
        raise ValueError(f"unknown semantic grid mode {mode!r}; use 'jittered_stride' or 'full_linspace'")

    def axis(size: int, n: int) -> Tensor:
        stride, slack = size // n, size % n
        start = slack * torch.rand((), generator=generator) if slack > 0 else torch.zeros(())
        return start + stride * torch.arange(n, dtype=torch.float32)

    ys = axis(height, n_rows)
    xs = axis(width, n_cols)
    return ys, xs


def grid_rays(c2w: Tensor, intrinsics: Tensor, ys: Tensor, xs: Tensor, pixel_offset: float = 0.0,
              normalize: bool = False) -> tuple[Tensor, Tensor]:
    """``(rays_o, rays_d)`` of the grid ``ys × xs``, each ``[nH, nW, 3]``."""
    yy, xx = torch.meshgrid(ys.to(c2w), xs.to(c2w), indexing="ij")
    return pixel_rays(c2w, intrinsics, xx, yy, pixel_offset, normalize)


def sample_pixels(
    height: int, width: int, n: int, precrop_frac: Optional[float] = None, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor]:
    """``n`` distinct random pixels of one image, optionally from its central crop [C].

    The release draws ``N_rand`` pixels *without replacement* from one image; for the first
    ``precrop_iters`` steps only from the central ``precrop_frac`` crop: rows
    ``H//2 − dH … H//2 + dH − 1`` with ``dH = int(H//2 · precrop_frac)`` (and the same for columns).

    Returns:
        ``(rows [n], cols [n])`` integer indices.
    """
    if precrop_frac is not None and precrop_frac < 1.0:
        dh, dw = int(height // 2 * precrop_frac), int(width // 2 * precrop_frac)
        if dh < 1 or dw < 1:
            raise ValueError(f"precrop_frac {precrop_frac} leaves no pixels of a {height}x{width} image")
        r0, c0, h, w = height // 2 - dh, width // 2 - dw, 2 * dh, 2 * dw
    else:
        r0, c0, h, w = 0, 0, height, width
    total = h * w
    if n > total:  # fewer pixels than rays (tiny images): draw with replacement
        flat = torch.randint(0, total, (n,), generator=generator)
    else:
        flat = torch.randperm(total, generator=generator)[:n]
    return r0 + flat // w, c0 + flat % w
