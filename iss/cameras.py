"""DVR's pinhole camera model: normalised pixel coordinates, rays parameterised by camera depth.

Conventions (specs/iss.md §2.2 "Cameras", DVR's ``im2mesh/common.py::transform_to_world``):

* A camera is ``c2w`` ``[B, 4, 4]`` (camera → world; may include DVR's ``scale_mat``) and a focal
  length ``(f_x, f_y)`` ``[B, 2]`` in **NDC units**. The camera frame is DVR's / OpenCV's: x right,
  y **down**, z **forward**. The camera point of pixel ``(u, v)`` at depth ``d`` is
  ``(u·d/f_x, v·d/f_y, d)``, i.e. ``K = diag(f_x, f_y, 1, 1)``.
* Pixel ``(row i, column j)`` of an ``H × W`` image sits at ``u = 2j/(W−1) − 1``, ``v = 2i/(H−1) − 1``
  (DVR's ``arange_pixels`` with ``image_range=(−1, 1)``): the extreme pixel *centres* are at ±1. With
  ``f = 2·f_px/(W−1)`` this is exactly the pixel-centre pinhole of :mod:`common.cameras`.
* The ray of a pixel is ``o + d·w`` with ``o`` the camera centre and ``w`` the pixel lifted to camera
  depth 1 minus ``o``, so the ray parameter ``d`` **is** the camera-space z-depth.

ShapeNet's DVR renders use ``f = 2.1875`` (FOV 2·atan(1/f) = 49.13°) [C]; shapeworld's cameras
(OpenGL c2w, focal in pixels) are converted by :meth:`DVRCameras.from_opengl`.
"""

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from common.cameras import look_at

__all__ = ["DVR_FOCAL", "DVRCameras", "pixel_grid", "ViewSampler", "OPENGL_TO_OPENCV"]

#: ShapeNet DVR focal length in NDC units (``camera_mat``) [C]
DVR_FOCAL = 2.1875
#: flips y and z: OpenGL camera (x right, y up, looks down −z) → DVR/OpenCV camera (y down, looks down +z)
OPENGL_TO_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """``[H·W, 2]`` NDC coordinates ``(u, v)`` of every pixel, row-major (DVR's ``arange_pixels``).

    Example:
        >>> pixel_grid(2, 3)[:, 0].tolist()
        [-1.0, 0.0, 1.0, -1.0, 0.0, 1.0]
    """
    u = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype) if width > 1 else torch.zeros(1, device=device, dtype=dtype)
    v = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype) if height > 1 else torch.zeros(1, device=device, dtype=dtype)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], -1).reshape(-1, 2)


def pixel_index_to_uv(index: Tensor, height: int, width: int) -> Tensor:
    """``[..., 2]`` NDC coordinates of flat pixel indices ``row·W + col``."""
    row, col = index // width, index % width
    u = 2.0 * col.float() / max(width - 1, 1) - 1.0
    v = 2.0 * row.float() / max(height - 1, 1) - 1.0
    return torch.stack([u, v], -1)


@dataclass
class DVRCameras:
    """A batch of DVR cameras.

    Attributes:
        c2w: ``[B, 4, 4]`` camera → world (DVR/OpenCV camera frame: x right, y down, z forward).
        focal: ``[B, 2]`` focal lengths ``(f_x, f_y)`` in NDC units.
    """

    c2w: Tensor
    focal: Tensor

    def __post_init__(self) -> None:
        if self.c2w.ndim != 3 or self.c2w.shape[-2:] != (4, 4):
            raise ValueError(f"c2w must be [B, 4, 4], got {tuple(self.c2w.shape)}")
        focal = torch.as_tensor(self.focal, dtype=self.c2w.dtype, device=self.c2w.device)
        if focal.ndim == 0:
            focal = focal.expand(self.c2w.shape[0])
        if focal.ndim == 1:
            focal = torch.stack([focal, focal], -1)
        if focal.shape != (self.c2w.shape[0], 2):
            raise ValueError(f"focal must be a scalar, [B] or [B, 2] for {self.c2w.shape[0]} cameras, got {tuple(focal.shape)}")
        self.focal = focal

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def __getitem__(self, idx) -> "DVRCameras":
        c2w, focal = self.c2w[idx], self.focal[idx]
        if c2w.ndim == 2:
            c2w, focal = c2w[None], focal[None]
        return DVRCameras(c2w, focal)

    def to(self, device=None, dtype=None) -> "DVRCameras":
        return DVRCameras(self.c2w.to(device=device, dtype=dtype), self.focal.to(device=device, dtype=dtype))

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def from_opengl(c2w: Tensor, focal_px: Union[float, Tensor], width: int) -> "DVRCameras":
        """From :mod:`common.cameras` / Blender poses: OpenGL ``c2w`` ``[B, 4, 4]``, focal in pixels at ``width``."""
        c2w = torch.as_tensor(c2w, dtype=torch.float32)
        if c2w.ndim == 2:
            c2w = c2w[None]
        focal = torch.as_tensor(focal_px, dtype=c2w.dtype).reshape(-1).expand(c2w.shape[0]) * (2.0 / max(width - 1, 1))
        return DVRCameras(c2w @ OPENGL_TO_OPENCV.to(c2w), focal)

    @staticmethod
    def from_dvr(world_mat: Tensor, camera_mat: Tensor, scale_mat: Optional[Tensor] = None, where: str = "camera") -> "DVRCameras":
        """From DVR's ``cameras.npz`` matrices (``p_world = S⁻¹·W⁻¹·K⁻¹·[u·d, v·d, d, 1]``).

        Args:
            world_mat: ``[B, 4, 4]`` (or ``[B, 3, 4]``) world → camera.
            camera_mat: ``[B, 4, 4]`` ``K = diag(f_x, f_y, 1, 1)``.
            scale_mat: ``[B, 4, 4]`` (default identity).
            where: name used in error messages (the file).

        Raises:
            ValueError: ``camera_mat`` is not of the form ``diag(f_x, f_y, 1, 1)``.
        """
        world_mat, camera_mat = _as4x4(world_mat), _as4x4(camera_mat)
        k_expected = torch.diag_embed(torch.stack([camera_mat[:, 0, 0], camera_mat[:, 1, 1],
                                                   torch.ones_like(camera_mat[:, 0, 0]), torch.ones_like(camera_mat[:, 0, 0])], -1))
        if not torch.allclose(camera_mat, k_expected, atol=1e-5) or (camera_mat[:, 0, 0].abs() < 1e-8).any():
            raise ValueError(f"{where}: camera_mat must be diag(f_x, f_y, 1, 1) (DVR's NDC intrinsics), got\n{camera_mat[0]}")
        c2w = torch.linalg.inv(world_mat)
        if scale_mat is not None:
            c2w = torch.linalg.inv(_as4x4(scale_mat)) @ c2w
        return DVRCameras(c2w, torch.stack([camera_mat[:, 0, 0], camera_mat[:, 1, 1]], -1))

    # ------------------------------------------------------------------ geometry
    @property
    def origins(self) -> Tensor:
        """``[B, 3]`` camera centres in world space."""
        return self.c2w[:, :3, 3]

    @property
    def world_mat(self) -> Tensor:
        """``[B, 4, 4]`` world → camera (DVR's ``world_mat`` with the scale folded in)."""
        return torch.linalg.inv(self.c2w)

    def ray_vectors(self, uv: Tensor) -> Tensor:
        """``[B, R, 3]`` world vectors ``w`` from the centre to the pixels ``uv`` ``[B, R, 2]`` (or ``[R, 2]``) lifted to depth 1."""
        if uv.ndim == 2:
            uv = uv[None].expand(len(self), -1, -1)
        cam = torch.cat([uv / self.focal[:, None, :], torch.ones_like(uv[..., :1])], -1)  # [B, R, 3] camera frame, z = 1
        return cam @ self.c2w[:, :3, :3].transpose(1, 2)

    def camera_depth(self, points: Tensor) -> Tensor:
        """``[B, N]`` camera-space z of world points ``[B, N, 3]`` (equals ``d`` for ``o + d·w``)."""
        w2c = self.world_mat
        return (points @ w2c[:, 2, :3, None])[..., 0] + w2c[:, 2, 3, None]

    def scale_translation(self, scale: Union[float, Tensor]) -> "DVRCameras":
        """Multiply ``world_mat``'s translation by ``scale`` (per camera or shared): ISS's "camera pulled back" [C].

        For a rigid camera looking at the origin this scales the centre's distance to the origin by ``scale``.
        """
        w2c = self.world_mat.clone()
        s = torch.as_tensor(scale, dtype=w2c.dtype, device=w2c.device).reshape(-1, 1)
        w2c[:, :3, 3] = w2c[:, :3, 3] * s
        return DVRCameras(torch.linalg.inv(w2c), self.focal)


def _as4x4(m: Tensor) -> Tensor:
    m = torch.as_tensor(m, dtype=torch.float32)
    if m.ndim == 2:
        m = m[None]
    if m.shape[-2:] == (3, 4):
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=m.dtype).expand(m.shape[0], 1, 4)
        m = torch.cat([m, bottom], 1)
    if m.shape[-2:] != (4, 4):
        raise ValueError(f"camera matrices must be [B, 4, 4] or [B, 3, 4], got {tuple(m.shape)}")
    return m


def _range(value) -> Tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    lo, hi = value
    return float(lo), float(hi)


class ViewSampler:
    """Random cameras for stage 2 and stylisation: a pool of dataset cameras, or a spherical distribution.

    ISS samples a random *training* camera and pulls it back (translation × 1.5) [C]. With
    ``camera_files`` (DVR ``cameras.npz`` files, e.g. of a few ShapeNet objects) the cameras come from
    that pool; otherwise from the spherical distribution below, looking at the origin.

    Args:
        azimuth: degrees, ``[low, high]`` or a fixed value.
        elevation: degrees above the horizontal plane.
        radius: distance of the camera centre to the origin.
        focal: NDC focal length (range or value); 2.1875 for ShapeNet.
        up: world up axis: ``y`` (ShapeNet) or ``z`` (shapeworld, :mod:`common.cameras`).
        camera_files: DVR ``cameras.npz`` files whose ``world_mat_*``/``camera_mat_*`` form the pool.
    """

    def __init__(self, azimuth: Sequence[float] = (0.0, 360.0), elevation: Sequence[float] = (20.0, 35.0),
                 radius: Sequence[float] = (1.3, 1.8), focal: Union[float, Sequence[float]] = DVR_FOCAL,
                 up: str = "y", camera_files: Optional[Sequence[str]] = None) -> None:
        if up not in ("y", "z"):
            raise ValueError(f"up must be 'y' or 'z', got {up!r}")
        self.azimuth, self.elevation, self.radius, self.focal = _range(azimuth), _range(elevation), _range(radius), _range(focal)
        self.up = up
        self.pool: Optional[DVRCameras] = None
        if camera_files:
            self.pool = load_camera_pool(camera_files)

    def _eye(self, az: Tensor, el: Tensor, r: Tensor) -> Tensor:
        az, el = torch.deg2rad(az), torch.deg2rad(el)
        a, b, h = r * torch.cos(el) * torch.sin(az), r * torch.cos(el) * torch.cos(az), r * torch.sin(el)
        return torch.stack([a, h, b], -1) if self.up == "y" else torch.stack([a, b, h], -1)

    def _cameras(self, az: Tensor, el: Tensor, r: Tensor, f: Tensor) -> DVRCameras:
        eye = self._eye(az, el, r)
        up = torch.tensor([0.0, 1.0, 0.0]) if self.up == "y" else torch.tensor([0.0, 0.0, 1.0])
        c2w_gl = look_at(eye, torch.zeros_like(eye), up)
        return DVRCameras(c2w_gl @ OPENGL_TO_OPENCV, f)

    @staticmethod
    def _uniform(rng: Tuple[float, float], n: int, generator: Optional[torch.Generator]) -> Tensor:
        return rng[0] + (rng[1] - rng[0]) * torch.rand(n, generator=generator)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> DVRCameras:
        """``n`` random cameras (from the pool if there is one)."""
        if self.pool is not None:
            idx = torch.randint(len(self.pool), (n,), generator=generator)
            return self.pool[idx]
        u = lambda rng: self._uniform(rng, n, generator)  # noqa: E731
        return self._cameras(u(self.azimuth), u(self.elevation), u(self.radius), u(self.focal))

    def ring(self, n: int, elevation: Optional[float] = None, radius: Optional[float] = None) -> DVRCameras:
        """``n`` evenly spaced azimuths (previews, turntables, evaluation views)."""
        el = float(np.mean(self.elevation)) if elevation is None else float(elevation)
        r = float(np.mean(self.radius)) if radius is None else float(radius)
        if self.pool is not None and radius is None:
            r = float(self.pool.origins.norm(dim=-1).mean())
        az = torch.arange(n, dtype=torch.float32) * (360.0 / max(n, 1))
        return self._cameras(az, torch.full((n,), el), torch.full((n,), r), torch.full((n,), float(np.mean(self.focal))))


def load_camera_pool(files: Sequence[str]) -> DVRCameras:
    """All cameras of DVR ``cameras.npz`` files (``world_mat_i``, ``camera_mat_i``, optional ``scale_mat_i``)."""
    from common.data import DatasetError

    mats = []
    for f in files:
        try:
            data = np.load(f)
        except Exception as err:
            raise DatasetError(f"camera file {f} cannot be read as DVR cameras.npz ({err})") from err
        n = len([k for k in data.files if k.startswith("world_mat_")])
        if n == 0:
            raise DatasetError(f"camera file {f} has no world_mat_<i> entries (DVR cameras.npz layout)")
        for i in range(n):
            if f"camera_mat_{i}" not in data.files:
                raise DatasetError(f"camera file {f} has world_mat_{i} but no camera_mat_{i}")
            mats.append((data[f"world_mat_{i}"], data[f"camera_mat_{i}"], data.get(f"scale_mat_{i}", np.eye(4))))
    w = torch.from_numpy(np.stack([m[0] for m in mats])).float()
    k = torch.from_numpy(np.stack([m[1] for m in mats])).float()
    s = torch.from_numpy(np.stack([m[2] for m in mats])).float()
    return DVRCameras.from_dvr(w, k, s, where=", ".join(map(str, files)))


def fov_degrees(focal_ndc: float) -> float:
    """Field of view ``2·atan(1/f)`` in degrees of an NDC focal length (49.134° for 2.1875)."""
    return math.degrees(2.0 * math.atan(1.0 / focal_ndc))
