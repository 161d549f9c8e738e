"""Cameras: look-at poses, spherical pose sampling, pinhole intrinsics and per-pixel rays.

Conventions (used by every method of the suite):

* World frame is **z-up**. A camera at azimuth φ and elevation e on a sphere of radius r around a
  target sits at ``target + r·(cos e·sin φ, cos e·cos φ, sin e)`` (specs/dreamfields.md §3).
* Camera-to-world matrices ``c2w`` are 4×4 with columns (right, up, back, position): the camera
  looks down its **−z** axis, x to the right, y up — the OpenGL / Blender / NeRF-synthetic
  convention, so ``transforms.json`` poses load unchanged.
* Pixels: row ``i`` (top to bottom) and column ``j`` (left to right); rays pass through **pixel
  centres** ``(j + 0.5, i + 0.5)``; the principal point is the image centre ``(W/2, H/2)``.
* Focal lengths are in pixels. ``fov = 2·atan(W / (2 f))``.
"""

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

Range = Union[float, Sequence[float]]


def look_at(eye: Tensor, target: Tensor, up: Optional[Tensor] = None) -> Tensor:
    """Camera-to-world matrices for cameras at ``eye`` looking at ``target``.

    Args:
        eye: ``[..., 3]`` camera positions.
        target: ``[..., 3]`` points looked at (broadcast against ``eye``).
        up: ``[3]`` world up vector (default +z). A camera looking straight along ``up`` falls back
            to +y as its up vector.

    Returns:
        ``[..., 4, 4]`` c2w with columns (right, up, back, eye).
    """
    eye, target = torch.broadcast_tensors(eye, target)
    if up is None:
        up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device)
    up = up.to(eye).expand_as(eye)
    back = torch.nn.functional.normalize(eye - target, dim=-1)  # camera +z points away from the target
    right = torch.linalg.cross(up, back, dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    alt_up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
    right = torch.where(degenerate, torch.linalg.cross(alt_up, back, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    cam_up = torch.linalg.cross(back, right, dim=-1)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = right, cam_up, back, eye
    c2w[..., 3, 3] = 1.0
    return c2w


def spherical_position(azimuth_deg: Tensor, elevation_deg: Tensor, radius: Tensor) -> Tensor:
    """``[..., 3]`` point at (azimuth, elevation, radius), z-up: ``r·(cos e sin φ, cos e cos φ, sin e)``."""
    az, el = torch.deg2rad(azimuth_deg), torch.deg2rad(elevation_deg)
    return torch.stack(
        [radius * torch.cos(el) * torch.sin(az), radius * torch.cos(el) * torch.cos(az), radius * torch.sin(el)], -1
    )


def pose_spherical(
    azimuth_deg: Union[float, Tensor],
    elevation_deg: Union[float, Tensor],
    radius: Union[float, Tensor],
    target: Optional[Tensor] = None,
) -> Tensor:
    """``[..., 4, 4]`` c2w of a camera on a sphere around ``target`` (default origin), looking at it."""
    az, el, r = (torch.as_tensor(v, dtype=torch.float32) for v in (azimuth_deg, elevation_deg, radius))
    az, el, r = torch.broadcast_tensors(az, el, r)
    eye = spherical_position(az, el, r)
    if target is None:
        target = torch.zeros(3, dtype=eye.dtype)
    target = target.to(eye)
    return look_at(eye + target, target.expand_as(eye))


def focal_from_fov(fov_deg: float, width: int) -> float:
    """Focal length in pixels for a horizontal field of view."""
    return 0.5 * width / math.tan(0.5 * math.radians(fov_deg))


def fov_from_focal(focal: float, width: int) -> float:
    """Horizontal field of view in degrees for a focal length in pixels."""
    return math.degrees(2.0 * math.atan(0.5 * width / focal))


def intrinsics(focal: float, height: int, width: int) -> Tensor:
    """``[3, 3]`` pinhole intrinsics with the principal point at the image centre."""
    return torch.tensor([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def get_rays(c2w: Tensor, height: int, width: int, focal: Union[float, Tensor], normalize: bool = True):
    """Per-pixel rays through pixel centres.

    Args:
        c2w: ``[..., 4, 4]`` (or ``[..., 3, 4]``) camera-to-world matrices.
        height, width: image size in pixels.
        focal: focal length in pixels (scalar or ``[...]`` per camera).
        normalize: return unit-length directions (then ``t`` is metric distance).

    Returns:
        ``(rays_o, rays_d)``, each ``[..., H, W, 3]``.
    """
    dev, dt = c2w.device, c2w.dtype
    i, j = torch.meshgrid(torch.arange(height, device=dev, dtype=dt), torch.arange(width, device=dev, dtype=dt), indexing="ij")
    focal = torch.as_tensor(focal, dtype=dt, device=dev)[..., None, None]  # [..., 1, 1]
    # Camera-space direction through the pixel centre; camera looks down -z, y up.
    x = (j + 0.5 - width / 2.0) / focal
    y = -(i + 0.5 - height / 2.0) / focal
    dirs = torch.stack(torch.broadcast_tensors(x, y, -torch.ones_like(x)), -1)  # [..., H, W, 3]
    rot = c2w[..., None, None, :3, :3]  # [..., 1, 1, 3, 3]
    rays_d = (rot @ dirs[..., None])[..., 0]
    if normalize:
        rays_d = torch.nn.functional.normalize(rays_d, dim=-1)
    rays_o = c2w[..., None, None, :3, 3].expand_as(rays_d)
    return rays_o, rays_d


def _as_range(value: Range) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    lo, hi = value
    if hi < lo:
        raise ValueError(f"range {value!r} has its upper end below its lower end; write it as [low, high]")
    return float(lo), float(hi)


@dataclass
class CameraBatch:
    """A batch of pinhole cameras.

    Attributes:
        c2w: ``[B, 4, 4]`` camera-to-world matrices.
        focal: ``[B]`` focal lengths in pixels (at ``width``).
        height, width: image size.
        azimuth, elevation, radius: ``[B]`` the spherical coordinates they were drawn at (degrees).
    """

    c2w: Tensor
    focal: Tensor
    height: int
    width: int
    azimuth: Tensor
    elevation: Tensor
    radius: Tensor

    def rays(self, normalize: bool = True):
        """``(rays_o, rays_d)`` of shape ``[B, H, W, 3]``."""
        return get_rays(self.c2w, self.height, self.width, self.focal, normalize=normalize)

    def to(self, device) -> "CameraBatch":
        return CameraBatch(
            self.c2w.to(device), self.focal.to(device), self.height, self.width,
            self.azimuth.to(device), self.elevation.to(device), self.radius.to(device),
        )


class SphericalCameraSampler:
    """Random cameras on a sphere looking at the origin.

    Each range is a number (fixed) or ``[low, high]`` (uniform). Defaults are Dream Fields' training
    distribution (specs/dreamfields.md §3): azimuth U[0°, 360°), elevation 30°, radius 4, focal length
    of the NeRF-synthetic camera (``1111.111·W/800``, 39.6° FOV) times 1.2.

    Args:
        height, width: image size in pixels.
        azimuth_range: degrees.
        elevation_range: degrees above the equator.
        radius_range: distance to the target.
        focal_mult_range: multiplier on the base focal length.
        base_focal: base focal length in pixels at ``width`` (default: NeRF-synthetic, 1111.111·W/800).
    """

    def __init__(
        self,
        height: int = 168,
        width: int = 168,
        azimuth_range: Range = (0.0, 360.0),
        elevation_range: Range = 30.0,
        radius_range: Range = 4.0,
        focal_mult_range: Range = 1.2,
        base_focal: Optional[float] = None,
    ) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        self.height, self.width = height, width
        self.azimuth_range = _as_range(azimuth_range)
        self.elevation_range = _as_range(elevation_range)
        self.radius_range = _as_range(radius_range)
        self.focal_mult_range = _as_range(focal_mult_range)
        self.base_focal = base_focal if base_focal is not None else 1111.111 * width / 800.0

    @staticmethod
    def _uniform(rng: tuple[float, float], n: int, generator: Optional[torch.Generator]) -> Tensor:
        lo, hi = rng
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    def sample(self, n: int = 1, generator: Optional[torch.Generator] = None, target: Optional[Tensor] = None) -> CameraBatch:
        az = self._uniform(self.azimuth_range, n, generator)
        el = self._uniform(self.elevation_range, n, generator)
        r = self._uniform(self.radius_range, n, generator)
        focal = self.base_focal * self._uniform(self.focal_mult_range, n, generator)
        return CameraBatch(pose_spherical(az, el, r, target), focal, self.height, self.width, az, el, r)

    def ring(self, n: int, elevation: float, radius: float, focal_mult: float = 1.0, target: Optional[Tensor] = None) -> CameraBatch:
        """``n`` evenly spaced azimuths at a fixed elevation (turntables, validation views)."""
        az = torch.arange(n, dtype=torch.float32) * (360.0 / n)
        el, r = torch.full((n,), float(elevation)), torch.full((n,), float(radius))
        focal = torch.full((n,), self.base_focal * focal_mult)
        return CameraBatch(pose_spherical(az, el, r, target), focal, self.height, self.width, az, el, r)
