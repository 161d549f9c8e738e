"""The pose distribution π of the semantic renders (specs/dietnerf.md §2, §2.1).

* ``uniform`` (360° bounded scenes, the Blender results) [T shape, C ranges]: azimuth
  θ ~ U[−180°, 180°], elevation ~ U[0°, 90°] (uniform in angle by default; ``area`` draws
  ``sin e ~ U(sin e_lo, sin e_hi)``, i.e. uniform on the sphere's area), radius ~ U[3.5, 4.5]; the camera
  looks at the origin, roll-free with world up +z (:func:`pose_spherical`).
* ``interpolate3`` (forward-facing or hard-to-parameterise scenes, e.g. the DTU rig) [T concept, C]:
  three distinct known poses ``p1, p2, p3`` of the pose pool; ``p12 = interp(p1, p2, α1)``,
  ``p = interp(p12, p3, α2)``, ``α ~ U(0, 1)``; ``interp`` blends centres linearly and rotations by
  quaternion slerp. The pool is every training-split pose, even those whose image is not used [C].
"""

import math
from typing import Literal, Optional, Sequence

import torch
from torch import Tensor


def pose_spherical(theta_deg: Tensor, phi_deg: Tensor, radius: Tensor) -> Tensor:
    """nerf-pytorch's ``pose_spherical(θ, φ, r)`` [C]: ``c2w = S·R_y(θ)·R_x(φ)·T_z(r)`` with the axis swap
    ``S = [[−1,0,0],[0,0,1],[0,1,0]]``.

    Equivalent to a camera at ``r·(sinθ cos e, cosθ cos e, sin e)`` with elevation ``e = −φ`` looking
    at the origin, roll-free (its up axis has non-negative world z). Matches
    :func:`common.cameras.pose_spherical` ``(θ, −φ, r)`` away from the pole, and stays well defined at it.

    Args:
        theta_deg, phi_deg, radius: ``[...]`` (broadcast) azimuth, φ (−elevation) in degrees, radius.

    Returns:
        ``[..., 4, 4]`` camera-to-world matrices.

    Example:
        >>> [round(v, 4) for v in pose_spherical(torch.tensor(0.), torch.tensor(-30.), torch.tensor(4.))[:3, 3].tolist()]
        [0.0, 3.4641, 2.0]
    """
    th, ph, r = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=torch.float32) for v in (theta_deg, phi_deg, radius)))
    th, ph = torch.deg2rad(th), torch.deg2rad(ph)
    z, o = torch.zeros_like(th), torch.ones_like(th)

    def mat(rows):  # rows of [...] tensors -> [..., 4, 4]
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    trans = mat([[o, z, z, z], [z, o, z, z], [z, z, o, r], [z, z, z, o]])
    rot_phi = mat([[o, z, z, z], [z, ph.cos(), -ph.sin(), z], [z, ph.sin(), ph.cos(), z], [z, z, z, o]])
    rot_theta = mat([[th.cos(), z, -th.sin(), z], [z, o, z, z], [th.sin(), z, th.cos(), z], [z, z, z, o]])
    swap = torch.tensor([[-1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    return swap @ rot_theta @ rot_phi @ trans


def matrix_to_quaternion(rot: Tensor) -> Tensor:
    """``[..., 3, 3]`` rotation → ``[..., 4]`` unit quaternion ``(w, x, y, z)`` with ``w ≥ 0`` (Shepperd's method)."""
    m = rot
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], dim=-2)  # [..., 4 candidates, 4]; candidate k is 4·q_k·q, best conditioned where |q_k| is largest
    diag = torch.stack([1 + tr, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = diag.argmax(dim=-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = torch.nn.functional.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """``[..., 4]`` quaternion ``(w, x, y, z)`` → ``[..., 3, 3]`` rotation."""
    w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], dim=-2)


def slerp(q1: Tensor, q2: Tensor, alpha: Tensor) -> Tensor:
    """Spherical linear interpolation of unit quaternions ``[..., 4]`` (shortest arc) at ``alpha`` ``[...]``."""
    dot = (q1 * q2).sum(-1, keepdim=True)
    q2 = torch.where(dot < 0, -q2, q2)
    dot = dot.abs().clamp(max=1.0)
    a = alpha[..., None]
    theta = torch.acos(dot)
    sin = torch.sin(theta)
    near = sin < 1e-6  # nearly identical rotations: linear interpolation is exact enough
    w1 = torch.where(near, 1 - a, torch.sin((1 - a) * theta) / sin.clamp_min(1e-12))
    w2 = torch.where(near, a, torch.sin(a * theta) / sin.clamp_min(1e-12))
    return torch.nn.functional.normalize(w1 * q1 + w2 * q2, dim=-1)


def interpolate_pose(p1: Tensor, p2: Tensor, alpha: Tensor) -> Tensor:
    """``interp(p1, p2, α)``: centres ``(1−α)c1 + αc2``, rotations by slerp; ``[..., 4, 4]`` in and out."""
    alpha = torch.as_tensor(alpha, dtype=p1.dtype, device=p1.device)
    q = slerp(matrix_to_quaternion(p1[..., :3, :3]), matrix_to_quaternion(p2[..., :3, :3]), alpha)
    out = torch.zeros(torch.broadcast_shapes(p1.shape, p2.shape), dtype=p1.dtype, device=p1.device)
    out[..., :3, :3] = quaternion_to_matrix(q)
    out[..., :3, 3] = (1 - alpha[..., None]) * p1[..., :3, 3] + alpha[..., None] * p2[..., :3, 3]
    out[..., 3, 3] = 1.0
    return out


def interpolate3(p1: Tensor, p2: Tensor, p3: Tensor, alpha1: Tensor, alpha2: Tensor) -> Tensor:
    """``interp(interp(p1, p2, α1), p3, α2)`` [C ``geometry.interp3``]."""
    return interpolate_pose(interpolate_pose(p1, p2, alpha1), p3, alpha2)


def _as_pair(v: Sequence[float], name: str) -> tuple[float, float]:
    lo, hi = (float(v), float(v)) if isinstance(v, (int, float)) else (float(v[0]), float(v[1]))
    if hi < lo:
        raise ValueError(f"{name} {v!r}: the upper end is below the lower end; write [low, high]")
    return lo, hi


class PoseSampler:
    """Random render poses ``p̂ ~ π`` for the semantic consistency loss (module docstring).

    Args:
        mode: ``uniform`` (hemisphere around the origin) or ``interpolate3`` (between pool poses).
        azimuth_range: θ in degrees ([−180, 180]).
        elevation_range: elevation ``e = −φ`` in degrees ([0, 90]: upper hemisphere).
        radius_range: distance to the origin ([3.5, 4.5]).
        elevation_sampling: ``angle`` (release: φ uniform) or ``area`` (uniform on the sphere).
    """

    def __init__(
        self,
        mode: Literal["uniform", "interpolate3"] = "uniform",
        azimuth_range: Sequence[float] = (-180.0, 180.0),
        elevation_range: Sequence[float] = (0.0, 90.0),
        radius_range: Sequence[float] = (3.5, 4.5),
        elevation_sampling: Literal["angle", "area"] = "angle",
    ) -> None:
        if mode not in ("uniform", "interpolate3"):
            raise ValueError(f"unknown pose sampler mode {mode!r}; use 'uniform' or 'interpolate3'")
        if elevation_sampling not in ("angle", "area"):
            raise ValueError(f"elevation_sampling must be 'angle' or 'area', got {elevation_sampling!r}")
        self.mode, self.elevation_sampling = mode, elevation_sampling
        self.azimuth_range = _as_pair(azimuth_range, "azimuth_range")
        self.elevation_range = _as_pair(elevation_range, "elevation_range")
        self.radius_range = _as_pair(radius_range, "radius_range")
        self.pool: Optional[Tensor] = None

    def set_pool(self, poses: Tensor) -> None:
        """Known poses ``[M, 4, 4]`` for ``interpolate3`` (all training-split cameras)."""
        if poses.ndim != 3 or poses.shape[-2:] != (4, 4):
            raise ValueError(f"pose pool must be [M, 4, 4], got {tuple(poses.shape)}")
        self.pool = poses.detach().float().cpu()

    def sample(self, n: int = 1, generator: Optional[torch.Generator] = None) -> Tensor:
        """``[n, 4, 4]`` camera-to-world matrices (on the CPU)."""
        if self.mode == "interpolate3":
            return self._sample_interpolated(n, generator)

        def uniform(rng: tuple[float, float]) -> Tensor:
            return rng[0] + (rng[1] - rng[0]) * torch.rand(n, generator=generator)

        theta = uniform(self.azimuth_range)
        if self.elevation_sampling == "angle":
            elev = uniform(self.elevation_range)
        else:
            lo, hi = (math.sin(math.radians(e)) for e in self.elevation_range)
            elev = torch.rad2deg(torch.asin(lo + (hi - lo) * torch.rand(n, generator=generator)))
        return pose_spherical(theta, -elev, uniform(self.radius_range))

    def _sample_interpolated(self, n: int, generator: Optional[torch.Generator]) -> Tensor:
        if self.pool is None or self.pool.shape[0] < 3:
            got = 0 if self.pool is None else self.pool.shape[0]
            raise ValueError(f"interpolate3 needs a pool of at least 3 known poses (set_pool), got {got}")
        idx = torch.stack([torch.randperm(self.pool.shape[0], generator=generator)[:3] for _ in range(n)])  # [n, 3]
        a1, a2 = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
        p = self.pool[idx]  # [n, 3, 4, 4]
        return interpolate3(p[:, 0], p[:, 1], p[:, 2], a1, a2)
