"""A generated multi-view scene in the Blender layout: an analytic coloured sphere, rendered with
:class:`~common.rendering.VolumeRenderer`. Used by tests and as the NeRF demo's data, with no download.
"""

import json
import math
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from common.cameras import SphericalCameraSampler, fov_from_focal, get_rays, pose_spherical
from common.data import BlenderDataModule
from common.export import save_image
from common.fields.base import Field, FieldOutput
from common.io import atomic_write_text
from common.rendering.volume import VolumeRenderer


class ColoredSphereField(Field):
    """A sphere of radius ``radius`` with density ``density`` inside (softened over ``softness``) and a
    colour that varies smoothly over space (so that views differ)."""

    def __init__(self, radius: float = 0.6, density: float = 40.0, softness: float = 0.02) -> None:
        super().__init__()
        self.radius, self.sigma, self.softness = radius, density, softness

    def forward(self, x: Tensor, d: Optional[Tensor] = None, cov: Optional[Tensor] = None) -> FieldOutput:
        inside = torch.sigmoid((self.radius - x.norm(dim=-1)) / self.softness)
        color = 0.5 + 0.45 * torch.tanh(1.5 * x)  # red varies along x, green along y, blue along z
        return FieldOutput(self.sigma * inside, color)


def write_sphere_scene(root: str, size: int = 32, n_train: int = 16, n_val: int = 2, n_test: int = 4,
                       radius_cam: float = 4.0, fov_deg: float = 40.0, seed: int = 0) -> Path:
    """Render the sphere from cameras on the upper hemisphere into ``root`` (RGBA PNGs +
    ``transforms_{train,val,test}.json``). Test views lie on a ring at 20° elevation; training and
    validation views are random azimuth in [0, 360), elevation in [-10, 60]."""
    root_path = Path(root)
    field = ColoredSphereField()
    renderer = VolumeRenderer(n_samples=128, bound=1.0, intersect_box=True).eval()
    focal = 0.5 * size / math.tan(0.5 * math.radians(fov_deg))
    sampler = SphericalCameraSampler(size, size, (0, 360), (-10, 60), radius_cam, 1.0, base_focal=focal)
    g = torch.Generator().manual_seed(seed)
    splits = {"train": sampler.sample(n_train, g).c2w, "val": sampler.sample(n_val, g).c2w}
    splits["test"] = pose_spherical(torch.arange(n_test) * 360.0 / n_test + 15.0, torch.full((n_test,), 20.0), radius_cam)
    for split, poses in splits.items():
        frames = []
        for k, c2w in enumerate(poses):
            rays_o, rays_d = get_rays(c2w, size, size, focal)
            with torch.no_grad():
                out = renderer(field, rays_o, rays_d)
            rgba = torch.cat([out.rgb / out.opacity[..., None].clamp_min(1e-6), out.opacity[..., None]], dim=-1)
            save_image(rgba.clamp(0, 1), root_path / split / f"r_{k}.png")
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w.tolist()})
        meta = {"camera_angle_x": math.radians(fov_from_focal(focal, size)), "frames": frames}
        atomic_write_text(root_path / f"transforms_{split}.json", json.dumps(meta, indent=1))
    return root_path


class SphereSceneDataModule(BlenderDataModule):
    """:class:`BlenderDataModule` over the generated sphere scene, written to ``root`` on first use.

    Args:
        root: where the scene is written (and read back from).
        size: image size of the generated views.
        n_train: number of training views generated.
        (other arguments as :class:`~common.data.BlenderDataModule`)
    """

    def __init__(self, root: str = ".cache/sphere_scene", size: int = 32, n_train: int = 16, **kwargs) -> None:
        super().__init__(root=root, **kwargs)
        self.size, self.n_train = size, n_train

    def prepare_data(self) -> None:
        if not (Path(self.root) / "transforms_test.json").is_file():
            write_sphere_scene(self.root, size=self.size, n_train=self.n_train)

    def setup(self, stage: Optional[str] = None) -> None:
        self.prepare_data()  # single-process runs and tests call setup directly
        super().setup(stage)
