"""Grid arithmetic of the DVGO-style voxel models (specs/pureclipnerf.md §3.2, §3.5): the density shift and
post-activation, voxel budget → grid size, vertex coordinates, trilinear and nearest lookups in the
``[C, Nx, Ny, Nz]`` layout, and the scene box from the camera frustums."""

import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from common.cameras import SphericalCameraSampler

__all__ = ["density_shift", "raw_to_alpha", "grid_size", "grid_coords", "trilerp", "nearest_mask", "scene_bbox"]


def density_shift(alpha_init: float = 1e-6) -> float:
    """``b = ln(α₀/(1 − α₀))`` so that ``alpha(0, δ=1) = α₀`` (spec §3.5, [C]).

    Example:
        >>> round(density_shift(1e-6), 4)
        -13.8155
    """
    if not 0.0 < alpha_init < 1.0:
        raise ValueError(f"alpha_init must be in (0, 1), got {alpha_init}")
    return math.log(alpha_init / (1.0 - alpha_init))


def raw_to_alpha(raw: Tensor, shift: Union[float, Tensor], delta: Union[float, Tensor]) -> Tensor:
    """Post-activation α of raw densities (paper eq. 1, spec §3.5).

    ``α = 1 − exp(−softplus(raw + b)·δ) = 1 − (1 + e^{raw + b})^{−δ}``, computed as
    ``−expm1(−δ·softplus(raw + b))`` for accuracy at tiny α.

    Args:
        raw: raw densities σ_raw, any shape.
        shift: the softplus shift b.
        delta: interval δ in base-voxel units (broadcast against ``raw``).

    Returns:
        α in [0, 1], same shape as ``raw``.

    Example:
        >>> float(raw_to_alpha(torch.zeros(1, dtype=torch.float64), density_shift(1e-6), 1.0))  # doctest: +ELLIPSIS
        1.0000...e-06
    """
    return -torch.expm1(-delta * F.softplus(raw + shift))


def grid_size(xyz_min: Tensor, xyz_max: Tensor, num_voxels: int) -> Tuple[float, Tuple[int, int, int]]:
    """Voxel size and vertex counts for a voxel budget (spec §3.2, [P]).

    ``voxel_size = (prod(extent)/N)^(1/3)``, ``world_size = floor(extent/voxel_size + 1e-6)`` per axis.

    Example:
        >>> grid_size(torch.tensor([-1.6, -1.6, -2.37]), torch.tensor([1.6, 1.6, 1.62]), 32768)[1]
        (29, 29, 37)
    """
    if num_voxels < 1:
        raise ValueError(f"num_voxels must be >= 1, got {num_voxels}")
    extent = (xyz_max - xyz_min).double()
    if (extent <= 0).any():
        raise ValueError(f"empty scene box: xyz_min {xyz_min.tolist()} must be below xyz_max {xyz_max.tolist()}")
    voxel = float((extent.prod() / num_voxels) ** (1.0 / 3.0))
    ws = tuple(max(int(math.floor(float(e) / voxel + 1e-6)), 2) for e in extent)
    return voxel, ws  # type: ignore[return-value]


def grid_coords(xyz_min: Tensor, xyz_max: Tensor, world_size: Sequence[int]) -> Tensor:
    """``[Nx, Ny, Nz, 3]`` world coordinates of the vertices (corners on the box corners)."""
    axes = [torch.linspace(float(lo), float(hi), int(n), device=xyz_min.device)
            for lo, hi, n in zip(xyz_min, xyz_max, world_size)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def trilerp(grid: Tensor, xyz: Tensor, xyz_min: Tensor, xyz_max: Tensor) -> Tensor:
    """Trilinear interpolation of a ``[C, Nx, Ny, Nz]`` vertex grid at points (align_corners).

    ``grid_sample`` reads its last coordinate as the *last* spatial axis, so the normalised
    ``(x, y, z)`` is flipped to ``(z, y, x)`` for the ``[Nx, Ny, Nz]`` layout (DVGO). Points outside the
    box are clamped to the border.

    Args:
        grid: ``[C, Nx, Ny, Nz]``.
        xyz: ``[P, 3]`` world points.
        xyz_min, xyz_max: ``[3]`` box corners.

    Returns:
        ``[P, C]``.
    """
    u = ((xyz - xyz_min) / (xyz_max - xyz_min)) * 2 - 1  # [P, 3] in [-1, 1]
    coords = u.flip(-1).reshape(1, -1, 1, 1, 3).to(grid.dtype)
    out = F.grid_sample(grid[None], coords, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(grid.shape[0], -1).T  # [P, C]


def nearest_mask(mask: Tensor, xyz: Tensor, xyz_min: Tensor, xyz_max: Tensor) -> Tensor:
    """``[P]`` bool: the value of ``mask`` ``[Nx, Ny, Nz]`` at each point's nearest vertex (DVGO MaskGrid)."""
    ws = torch.tensor(mask.shape, device=xyz.device, dtype=xyz.dtype)
    idx = ((xyz - xyz_min) / (xyz_max - xyz_min) * (ws - 1)).round().long()
    idx = torch.minimum(idx.clamp_min(0), (ws - 1).long())
    return mask[idx[:, 0], idx[:, 1], idx[:, 2]]


@torch.no_grad()
def scene_bbox(camera: SphericalCameraSampler, near: float, far: float, n_poses: int = 1000,
               seed: int = 0, chunk_rays: int = 1 << 20) -> Tuple[Tensor, Tensor, Tensor]:
    """Scene box as the intersection of the camera frustums of a pool of training poses (spec §3.2, [C]).

    For every pose, the axis-aligned box of the points at distance ``near`` and ``far`` along every
    pixel ray (unit directions); the scene box is the intersection of these boxes.

    Returns:
        ``(xyz_min [3], xyz_max [3], origins [n_poses, 3])``; the origins feed Vox Exp's near-camera
        mask-out.
    """
    cams = camera.sample(n_poses, generator=torch.Generator().manual_seed(seed))
    H, W = camera.height, camera.width
    # Extremes of a coordinate over a frustum lie on the image border unless that world axis itself
    # points into the image; then every pixel is used (exact either way).
    border = torch.zeros(H, W, dtype=torch.bool)
    border[0], border[-1], border[:, 0], border[:, -1] = True, True, True, True
    axes = torch.cat([torch.eye(3), -torch.eye(3)])  # [6, 3]
    cam_dirs = torch.einsum("bji,aj->bai", cams.c2w[:, :3, :3], axes)  # [B, 6, 3] axes in camera frames
    z = (-cam_dirs[..., 2]).clamp_min(1e-9)
    inside = (cam_dirs[..., 2] < 0) & ((cam_dirs[..., 0] / z).abs() * cams.focal[:, None] <= W / 2) \
        & ((cam_dirs[..., 1] / z).abs() * cams.focal[:, None] <= H / 2)
    pix = torch.ones_like(border) if bool(inside.any()) else border
    lo = torch.full((3,), -float("inf"))
    hi = torch.full((3,), float("inf"))
    per = max(1, chunk_rays // int(pix.sum()))
    iy, ix = torch.nonzero(pix, as_tuple=True)
    for i in range(0, n_poses, per):
        f = cams.focal[i:i + per, None]  # [b, 1]
        # pixel-centre rays (common.cameras.get_rays) of the selected pixels only
        dirs = torch.stack(torch.broadcast_tensors((ix + 0.5 - W / 2) / f, -(iy + 0.5 - H / 2) / f,
                                                   -torch.ones_like(f)), dim=-1)  # [b, P, 3]
        d = F.normalize(torch.einsum("bij,bpj->bpi", cams.c2w[i:i + per, :3, :3], dirs), dim=-1)
        o = cams.c2w[i:i + per, None, :3, 3].expand_as(d)
        pts = torch.cat([o + near * d, o + far * d], dim=1)  # [b, 2P, 3]
        lo = torch.maximum(lo, pts.amin(dim=1).amax(dim=0))
        hi = torch.minimum(hi, pts.amax(dim=1).amin(dim=0))
    return lo, hi, cams.c2w[:, :3, 3].clone()
