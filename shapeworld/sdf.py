"""Analytic signed-distance primitives and operators (negative inside, positive outside).

Every function maps points ``p`` of shape ``[..., 3]`` (world frame z-up) to distances ``[...]``.
The primitives are exact Euclidean SDFs where a closed form is short (sphere, box, capped cylinder,
capped cone, torus, capsule; formulas after Quílez, "distance functions",
https://iquilezles.org/articles/distfunctions/). Half-space intersections (:func:`sdf_pyramid`) and
unions/differences (:func:`union`, :func:`subtract`) are exact in sign and lower bounds of the distance
outside (1-Lipschitz), which is all that rendering, voxelisation and the density conversion need.

Example:
    >>> sdf_sphere(torch.zeros(1, 3), 0.5)
    tensor([-0.5000])
"""

import torch
from torch import Tensor


def _length2(x: Tensor, y: Tensor) -> Tensor:
    return torch.sqrt(x * x + y * y)


def sdf_sphere(p: Tensor, radius: float) -> Tensor:
    """Sphere of ``radius`` centred at the origin."""
    return p.norm(dim=-1) - radius


def sdf_box(p: Tensor, half: tuple[float, float, float], rounding: float = 0.0) -> Tensor:
    """Axis-aligned box with half-extents ``half`` (optionally rounded by ``rounding``)."""
    h = torch.tensor(half, dtype=p.dtype, device=p.device) - rounding
    q = p.abs() - h  # [..., 3]
    outside = q.clamp_min(0.0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp_max(0.0)
    return outside + inside - rounding


def sdf_cylinder(p: Tensor, radius: float, half_height: float) -> Tensor:
    """Capped cylinder around the z axis, ``z ∈ [-half_height, half_height]``."""
    dx = _length2(p[..., 0], p[..., 1]) - radius
    dz = p[..., 2].abs() - half_height
    outside = _length2(dx.clamp_min(0.0), dz.clamp_min(0.0))
    inside = torch.maximum(dx, dz).clamp_max(0.0)
    return outside + inside


def sdf_capped_cone(p: Tensor, half_height: float, r_bottom: float, r_top: float) -> Tensor:
    """Capped (truncated) cone around z: radius ``r_bottom`` at ``z=-h``, ``r_top`` at ``z=+h``.

    ``r_top = 0`` gives a cone. Exact SDF (Quílez, "Capped Cone").
    """
    qx, qy = _length2(p[..., 0], p[..., 1]), p[..., 2]  # radial distance, height
    h = half_height
    k1x, k1y = r_top, h
    k2x, k2y = r_top - r_bottom, 2.0 * h
    r_sel = torch.where(qy < 0.0, torch.full_like(qx, r_bottom), torch.full_like(qx, r_top))
    cax, cay = qx - torch.minimum(qx, r_sel), qy.abs() - h
    t = (((k1x - qx) * k2x + (k1y - qy) * k2y) / (k2x * k2x + k2y * k2y)).clamp(0.0, 1.0)
    cbx, cby = qx - k1x + k2x * t, qy - k1y + k2y * t
    sign = torch.where((cbx < 0.0) & (cay < 0.0), -1.0, 1.0)
    return sign * torch.sqrt(torch.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby))


def sdf_torus(p: Tensor, major: float, minor: float) -> Tensor:
    """Torus lying in the xy plane (axis z), ring radius ``major``, tube radius ``minor``."""
    return _length2(_length2(p[..., 0], p[..., 1]) - major, p[..., 2]) - minor


def sdf_torus_xz(p: Tensor, major: float, minor: float) -> Tensor:
    """Torus standing in the xz plane (axis y), e.g. a mug handle."""
    return _length2(_length2(p[..., 0], p[..., 2]) - major, p[..., 1]) - minor


def sdf_capsule(p: Tensor, half_length: float, radius: float) -> Tensor:
    """Vertical capsule: segment ``z ∈ [-half_length, half_length]`` on the z axis, swept by ``radius``."""
    z = p[..., 2].clamp(-half_length, half_length)
    closest = torch.stack([torch.zeros_like(z), torch.zeros_like(z), z], dim=-1)
    return (p - closest).norm(dim=-1) - radius


def sdf_pyramid(p: Tensor, half_base: float, half_height: float) -> Tensor:
    """Square pyramid around z: base ``2·half_base`` wide at ``z=-h``, apex at ``z=+h``.

    Intersection of the base half-space and four slanted half-spaces (max of plane distances):
    exact sign, lower bound of the distance outside.
    """
    h, b = half_height, half_base
    # Face planes: n·p = c with n ∝ (2h, 0, b) for the +x face, passing through (b, 0, -h).
    norm = (4 * h * h + b * b) ** 0.5
    nx, nz = 2 * h / norm, b / norm
    c = nx * b - nz * h
    faces = [
        nx * p[..., 0] + nz * p[..., 2] - c,
        -nx * p[..., 0] + nz * p[..., 2] - c,
        nx * p[..., 1] + nz * p[..., 2] - c,
        -nx * p[..., 1] + nz * p[..., 2] - c,
        -p[..., 2] - h,
    ]
    return torch.stack(faces, dim=-1).max(dim=-1).values


def translate(p: Tensor, offset: tuple[float, float, float]) -> Tensor:
    """Points expressed in a frame whose origin is at ``offset`` (use before evaluating a primitive)."""
    return p - torch.tensor(offset, dtype=p.dtype, device=p.device)


def union(*d: Tensor) -> Tensor:
    """Union of solids: ``min`` of their SDFs."""
    return torch.stack(torch.broadcast_tensors(*d), dim=-1).min(dim=-1).values


def subtract(a: Tensor, b: Tensor) -> Tensor:
    """``a`` minus ``b``: ``max(a, −b)``."""
    return torch.maximum(a, -b)


def intersect(a: Tensor, b: Tensor) -> Tensor:
    """Intersection of two solids: ``max(a, b)``."""
    return torch.maximum(a, b)
