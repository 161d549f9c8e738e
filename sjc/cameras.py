"""SJC's camera distribution, view-dependent prompt prefixes and the spiral test path (spec §2.5, [C]).

World frame: **+y up** (the authors' convention, unlike the z-up sampler of :mod:`common.cameras`);
cameras use the OpenGL convention of :func:`common.cameras.look_at` (columns right, up, back, eye;
the camera looks down its −z axis) and rays go through pixel centres (:func:`common.cameras.get_rays`).

Training pose, one per iteration:

* azimuth ``h ~ U[0°, 360°)``;
* ``v ~ U[0°, 100°]`` (in radians), clipped to ``[0.01, π − 0.01]``; polar angle from +y
  ``φ = arccos(1 − 2v/π)``, so ``cos φ`` is uniform and ``φ ∈ [6.47°, 96.38°]``;
* eye ``= (R sinφ cos(π − h), R cosφ, R sinφ sin(π − h))`` with ``R = 1.5``, looking at the origin;
* horizontal FoV ``U[40°, 70°]`` of a square image, ``focal = (W/2)/tan(FoV/2)``.

Prompt prefix: ``v < 30°`` → "overhead view of" (probability 0.3); otherwise by
``a = (h + 45) mod 360``: [0, 90) "front view of", [90, 180) "side view of", [180, 270)
"backside view of", [270, 360) "side view of". The prompt is ``prefix + " " + prompt``.
"""

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from common.cameras import get_rays, look_at

__all__ = ["SJCCamera", "SJCCameraSampler", "view_prefix", "VIEW_PREFIXES"]

VIEW_PREFIXES = ("overhead view of", "front view of", "side view of", "backside view of")
_UP = torch.tensor([0.0, 1.0, 0.0])


@dataclass
class SJCCamera:
    """One pinhole camera.

    Attributes:
        c2w: ``[4, 4]`` camera-to-world (OpenGL, y-up world).
        focal: focal length in pixels at ``width``.
        height, width: image size.
        azimuth, v: the draws (degrees) the pose came from (``v`` is the pre-arccos polar draw).
        prefix: the view-dependent prompt prefix ("" when view prompts are off).
    """

    c2w: Tensor
    focal: float
    height: int
    width: int
    azimuth: float = 0.0
    v: float = 0.0
    prefix: str = ""

    def rays(self) -> Tuple[Tensor, Tensor]:
        """``(rays_o, rays_d)``, each ``[H, W, 3]``, unit directions through pixel centres."""
        return get_rays(self.c2w, self.height, self.width, self.focal, normalize=True)

    def to(self, device) -> "SJCCamera":
        return SJCCamera(self.c2w.to(device), self.focal, self.height, self.width, self.azimuth, self.v, self.prefix)


def view_prefix(azimuth_deg: float, v_deg: float, overhead_v_deg: float = 30.0) -> str:
    """The view-dependent prompt prefix of a pose (spec §2.5).

    Example:
        >>> view_prefix(0.0, 10.0), view_prefix(0.0, 60.0), view_prefix(180.0, 60.0)
        ('overhead view of', 'front view of', 'backside view of')
    """
    if v_deg < overhead_v_deg:
        return VIEW_PREFIXES[0]
    a = (azimuth_deg + 45.0) % 360.0
    return (VIEW_PREFIXES[1], VIEW_PREFIXES[2], VIEW_PREFIXES[3], VIEW_PREFIXES[2])[min(int(a // 90), 3)]


def _eye(radius: float, polar: float, azimuth_deg: float) -> Tensor:
    h = math.radians(azimuth_deg)
    return torch.tensor([radius * math.sin(polar) * math.cos(math.pi - h), radius * math.cos(polar),
                         radius * math.sin(polar) * math.sin(math.pi - h)], dtype=torch.float32)


def _look_at_origin(eye: Tensor) -> Tensor:
    return look_at(eye, torch.zeros(3), up=_UP)


class SJCCameraSampler:
    """Random training cameras, fixed evaluation rings and the spiral test path of SJC.

    Args:
        size: render size H = W (64: the SD latent grid).
        radius: camera distance R (1.5).
        fov_range: horizontal training FoV range in degrees ([40, 70]).
        v_range: range of the polar draw v in degrees ([0, 100]); ``φ = arccos(1 − 2v/π)``.
        overhead_v: v below which the prefix is "overhead view of" (30°).
        test_fov: FoV of evaluation views and the spiral (60°).
        view_prompts: add the view-dependent prefixes (DreamFusion's view-dependent prompting).
    """

    def __init__(self, size: int = 64, radius: float = 1.5, fov_range: Sequence[float] = (40.0, 70.0),
                 v_range: Sequence[float] = (0.0, 100.0), overhead_v: float = 30.0, test_fov: float = 60.0,
                 view_prompts: bool = True) -> None:
        if size < 1:
            raise ValueError(f"render size must be positive, got {size}")
        if radius <= 0:
            raise ValueError(f"camera radius must be positive, got {radius}")
        lo, hi = (float(x) for x in fov_range)
        if not 0 < lo <= hi < 180:
            raise ValueError(f"fov_range must satisfy 0 < low <= high < 180 degrees, got {list(fov_range)}")
        vlo, vhi = (float(x) for x in v_range)
        if not 0 <= vlo <= vhi <= 180:
            raise ValueError(f"v_range must satisfy 0 <= low <= high <= 180 degrees, got {list(v_range)}")
        self.size, self.radius = size, float(radius)
        self.fov_range, self.v_range = (lo, hi), (vlo, vhi)
        self.overhead_v, self.test_fov, self.view_prompts = float(overhead_v), float(test_fov), view_prompts

    @staticmethod
    def focal(fov_deg: float, width: int) -> float:
        """``(W/2)/tan(FoV/2)``."""
        return 0.5 * width / math.tan(0.5 * math.radians(fov_deg))

    def polar(self, v_deg: float) -> float:
        """φ (radians from +y) of a polar draw v: ``arccos(1 − 2v/π)`` with v clipped to [0.01, π − 0.01]."""
        v = min(max(math.radians(v_deg), 0.01), math.pi - 0.01)
        return math.acos(1 - 2 * v / math.pi)

    def sample(self, generator: Optional[torch.Generator] = None, size: Optional[int] = None) -> SJCCamera:
        """One random training camera and its prompt prefix."""
        u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        az = 360.0 * u[0]
        v = self.v_range[0] + (self.v_range[1] - self.v_range[0]) * u[1]
        fov = self.fov_range[0] + (self.fov_range[1] - self.fov_range[0]) * u[2]
        size = size or self.size
        c2w = _look_at_origin(_eye(self.radius, self.polar(v), az))
        prefix = view_prefix(az, v, self.overhead_v) if self.view_prompts else ""
        return SJCCamera(c2w, self.focal(fov, size), size, size, az, v, prefix)

    def sample_batch(self, n: int, generator: Optional[torch.Generator] = None) -> list:
        """``n`` random training cameras drawn in one vectorised pass (same distribution as :meth:`sample`)."""
        u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
        az = 360.0 * u[:, 0]
        v = self.v_range[0] + (self.v_range[1] - self.v_range[0]) * u[:, 1]
        fov = self.fov_range[0] + (self.fov_range[1] - self.fov_range[0]) * u[:, 2]
        vr = torch.deg2rad(v).clamp(0.01, math.pi - 0.01)
        polar, h = torch.acos(1 - 2 * vr / math.pi), torch.deg2rad(az)
        eye = torch.stack([self.radius * polar.sin() * torch.cos(math.pi - h), self.radius * polar.cos(),
                           self.radius * polar.sin() * torch.sin(math.pi - h)], dim=-1).float()  # [n, 3]
        c2w = look_at(eye, torch.zeros_like(eye), up=_UP)  # [n, 4, 4]
        return [SJCCamera(c2w[i], self.focal(float(fov[i]), self.size), self.size, self.size, float(az[i]), float(v[i]),
                          view_prefix(float(az[i]), float(v[i]), self.overhead_v) if self.view_prompts else "")
                for i in range(n)]

    def ring(self, n: int, elevation: float = 30.0, size: Optional[int] = None, fov: Optional[float] = None) -> list:
        """``n`` evaluation cameras at evenly spaced azimuths, ``elevation`` degrees above the xz-plane."""
        size = size or self.size
        focal = self.focal(fov or self.test_fov, size)
        polar = math.radians(90.0 - elevation)
        return [SJCCamera(_look_at_origin(_eye(self.radius, polar, 360.0 * i / n)), focal, size, size,
                          360.0 * i / n, 0.0, "") for i in range(n)]

    def spiral(self, n: int = 100, turns: float = 3.0, size: Optional[int] = None) -> list:
        """The authors' test trajectory [C]: frame i has ``r = (i+1)/n``, height ``R(1 − r)``, horizontal
        radius ``max(R sin(rπ/2), 0.5)`` and angle ``360°·turns·r``; FoV ``test_fov``."""
        size = size or self.size
        focal = self.focal(self.test_fov, size)
        cams = []
        for i in range(n):
            r = (i + 1) / n
            height, rad, ang = self.radius * (1 - r), max(self.radius * math.sin(r * math.pi / 2), 0.5), \
                math.radians(360.0 * turns * r)
            eye = torch.tensor([rad * math.cos(ang), height, rad * math.sin(ang)], dtype=torch.float32)
            cams.append(SJCCamera(_look_at_origin(eye), focal, size, size, math.degrees(ang) % 360.0, 0.0, ""))
        return cams
