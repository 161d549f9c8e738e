"""Rendering shapeworld objects through ``common``'s volume renderer.

Cameras follow Dream Fields' pose distribution (specs/dreamfields.md §3): azimuth U[0°, 360°),
radius 4, NeRF-synthetic focal length times a multiplier; shapeworld widens the elevation to
U[15°, 50°] and the focal multiplier to U[1.0, 1.2] so that one dataset covers both the training
views (30°, ×1.2) and the evaluation views (45°, ×1.0) of the methods that use it.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from common.cameras import CameraBatch, SphericalCameraSampler
from common.rendering import VolumeRenderer, ray_aabb
from shapeworld.field import ShapeField
from shapeworld.shapes import ShapeSpec


@dataclass
class CameraRanges:
    """Ranges (or fixed values) of the spherical camera distribution.

    Attributes:
        azimuth: degrees, ``[low, high]``.
        elevation: degrees above the equator.
        radius: distance to the origin.
        focal_mult: multiplier on the NeRF-synthetic focal length ``1111.111·W/800``.
    """

    azimuth: Sequence[float] = (0.0, 360.0)
    elevation: Sequence[float] = (15.0, 50.0)
    radius: Sequence[float] = (4.0, 4.0)
    focal_mult: Sequence[float] = (1.0, 1.2)

    def sampler(self, size: int) -> SphericalCameraSampler:
        return SphericalCameraSampler(
            size, size, tuple(self.azimuth), tuple(self.elevation), tuple(self.radius), tuple(self.focal_mult)
        )


@dataclass
class ObjectRender:
    """Renders of one object from ``B`` cameras.

    Attributes:
        rgb: ``[B, H, W, 3]`` premultiplied colour in ``[0, 1]`` (composite with ``rgb + (1 − A)·bg``).
        opacity: ``[B, H, W]`` accumulated opacity ``A`` in ``[0, 1]``.
        depth: ``[B, H, W]`` expected depth (not normalised by ``A``).
        cameras: the cameras.
    """

    rgb: Tensor
    opacity: Tensor
    depth: Tensor
    cameras: CameraBatch


def make_renderer(n_samples: int = 96, bound: float = 1.0) -> VolumeRenderer:
    """The renderer of all shapeworld data: samples clipped to ``[-bound, bound]^3``, no jitter."""
    return VolumeRenderer(n_samples=n_samples, bound=bound, intersect_box=True, jitter=False, background="none", chunk=16384).eval()


@torch.no_grad()
def render_object(
    spec: ShapeSpec,
    cameras: CameraBatch,
    n_samples: int = 96,
    beta: float = 0.01,
    shading: bool = True,
) -> ObjectRender:
    """Render ``spec`` from every camera of ``cameras`` (premultiplied colour, opacity, depth).

    The samples are placed in the object's bounding box ``[-r, r]^3`` (``r`` =
    :attr:`ShapeSpec.bounding_radius`, capped at the scene box 1.0) and only the rays that hit it
    are rendered; the others are empty (opacity 0).
    """
    field = ShapeField(spec, beta=beta, shading=shading)
    bound = min(1.0, spec.bounding_radius)
    renderer = make_renderer(n_samples, bound)
    rays_o, rays_d = cameras.rays()  # [B, H, W, 3]
    lead = rays_o.shape[:-1]
    o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
    _, _, hit = ray_aabb(o, d, -bound, bound)  # [R]
    rgb, opacity, depth = o.new_zeros(o.shape[0], 3), o.new_zeros(o.shape[0]), o.new_zeros(o.shape[0])
    if hit.any():
        out = renderer(field, o[hit], d[hit])
        rgb[hit], opacity[hit], depth[hit] = out.rgb, out.opacity, out.depth
    return ObjectRender(
        rgb.clamp(0.0, 1.0).reshape(*lead, 3), opacity.clamp(0.0, 1.0).reshape(lead), depth.reshape(lead), cameras
    )


def sample_cameras(ranges: CameraRanges, size: int, n: int, generator: torch.Generator) -> CameraBatch:
    """``n`` random cameras of the distribution ``ranges`` for ``size × size`` images."""
    return ranges.sampler(size).sample(n, generator=generator)
