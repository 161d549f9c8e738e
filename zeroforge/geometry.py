"""Query grids, view sampling and camera bases (specs/zeroforge.md §3.5, §3.7, §3.7b, §6.2).

Conventions:

* The decoder's frame is the unit cube ``[-0.5, 0.5]^3`` (CLIP-Forge / Occupancy Networks). A grid of
  ``N`` points per axis is ``linspace(-0.5, 0.5, N)`` with endpoints ([C]); flattened with x varying
  slowest, ``p[i·N² + j·N + k] = (x_i, y_j, z_k)``, so ``out.view(B, N, N, N)[b, i, j, k]`` is the
  value at ``(x_i, y_j, z_k)``.
* Views are polar/azimuth angles ``(θ, φ)`` around an ``up`` axis (y for ShapeNet, z for shapeworld);
  for ``up = y`` the eye direction is ``e = (sinθ sinφ, cosθ, sinθ cosφ)`` (§3.7b step 1).
"""

import math
from typing import Literal, Optional, Tuple

import torch
from torch import Tensor

UpAxis = Literal["y", "z"]

__all__ = ["UpAxis", "make_grid", "cell_centres", "sample_views", "eye_directions", "camera_basis", "eval_views"]


def make_grid(resolution: int, device=None, dtype=torch.float32) -> Tensor:
    """``[N³, 3]`` query points ``linspace(-0.5, 0.5, N)`` per axis, x slowest ([C], §3.5).

    Example:
        >>> make_grid(2).tolist()[:2]
        [[-0.5, -0.5, -0.5], [-0.5, -0.5, 0.5]]
    """
    if resolution < 2:
        raise ValueError(f"grid resolution must be >= 2, got {resolution}")
    lin = torch.linspace(-0.5, 0.5, resolution, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), dim=-1).reshape(-1, 3)


def cell_centres(resolution: int, device=None, dtype=torch.float32) -> Tensor:
    """``[N³, 3]`` cell centres ``linspace(-0.5 + 1/2N, 0.5 − 1/2N, N)`` (CLIP-Forge's IoU grid, §3.2)."""
    half = 0.5 - 0.5 / resolution
    lin = torch.linspace(-half, half, resolution, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), dim=-1).reshape(-1, 3)


def sample_views(n: int, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """``n`` views uniform on the sphere by Archimedes' method (Shao & Badler; §3.7 [P]).

    ``u, v ~ U(0, 1)``, ``θ = arccos(2u − 1)``, ``φ = 2πv``.

    Returns:
        ``(θ [n], φ [n])`` in radians, θ ∈ [0, π], φ ∈ [0, 2π).
    """
    u = torch.rand(n, generator=generator)
    v = torch.rand(n, generator=generator)
    return torch.arccos(2.0 * u - 1.0), 2.0 * math.pi * v


def _axes(up: UpAxis, device, dtype) -> Tuple[Tensor, Tensor, Tensor]:
    """``(h1, up, h2)``: the axes that play (x, y, z) of the y-up parametrisation."""
    eye = torch.eye(3, device=device, dtype=dtype)
    if up == "y":
        return eye[0], eye[1], eye[2]
    if up == "z":  # a right-handed relabelling: (x, y, z)_y-up -> (x, z, -y)
        return eye[0], eye[2], -eye[1]
    raise ValueError(f"up axis must be 'y' or 'z', got {up!r}")


def eye_directions(theta: Tensor, phi: Tensor, up: UpAxis = "y") -> Tensor:
    """``[B, 3]`` unit directions from the origin to the camera, ``e = sinθ sinφ·h1 + cosθ·up + sinθ cosφ·h2``."""
    h1, u, h2 = _axes(up, theta.device, theta.dtype)
    st = torch.sin(theta)[:, None]
    return st * torch.sin(phi)[:, None] * h1 + torch.cos(theta)[:, None] * u + st * torch.cos(phi)[:, None] * h2


def camera_basis(eye_dir: Tensor, up: UpAxis = "y") -> Tensor:
    """Orthonormal camera bases ``[B, 3, 3]`` with rows ``(r, u, e)`` (§3.7b step 1).

    ``r = normalize(up × e)``, ``u = e × r``; camera coordinates ``(a, b, c)`` map to world as
    ``p = a·r + b·u + c·e`` (``+c`` points at the viewer). Near the poles (``|e·up| > 0.999``) the
    horizontal axis ``h2`` stands in for ``up``. ``det = +1``.
    """
    e = torch.nn.functional.normalize(eye_dir, dim=-1)
    _, upv, h2 = _axes(up, e.device, e.dtype)
    ref = upv.expand_as(e).clone()
    near_pole = (e @ upv).abs() > 0.999
    ref[near_pole] = h2
    r = torch.nn.functional.normalize(torch.cross(ref, e, dim=-1), dim=-1)
    u = torch.cross(e, r, dim=-1)
    return torch.stack([r, u, e], dim=1)


def eval_views(azimuths_deg=(45.0, 135.0, 225.0, 315.0), elevation_deg: float = 30.0) -> Tuple[Tensor, Tensor]:
    """The fixed evaluation views of §6.2 (azimuth 45°, 135°, 225°, 315°; elevation 30°) as ``(θ, φ)``."""
    phi = torch.tensor([math.radians(a) for a in azimuths_deg])
    theta = torch.full_like(phi, math.radians(90.0 - elevation_deg))
    return theta, phi
