"""Ray–box intersection, samplers along rays, and volume rendering (nerfacc)."""

from common.rendering.aabb import ray_aabb
from common.rendering.occupancy import OccupancyGridRenderer
from common.rendering.samplers import conical_frustum_gaussian, pixel_radii, stratified_segments
from common.rendering.volume import RenderOutput, VolumeRenderer, composite, render_rays

__all__ = [
    "OccupancyGridRenderer",
    "RenderOutput",
    "VolumeRenderer",
    "composite",
    "conical_frustum_gaussian",
    "pixel_radii",
    "ray_aabb",
    "render_rays",
    "stratified_segments",
]
