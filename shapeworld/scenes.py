"""Multi-view scene folders of shapeworld objects in the Blender/NeRF-synthetic layout (DietNeRF, ISS).

:func:`export_blender_scene` renders one object through ``common``'s volume renderer and writes
``transforms_{train,val,test}.json`` + RGBA PNGs (straight, i.e. un-premultiplied, colour and alpha,
as the NeRF-synthetic release), plus ``scene.json`` with the object's kind, colour and caption.
Training/validation cameras are random on the upper hemisphere (azimuth U[0°, 360°), elevation
U[0°, 60°], radius 4, NeRF-synthetic focal length); test cameras form a ring at 30° elevation.
:class:`ShapeWorldSceneDataModule` writes the folder into the cache on first use and reads it back
through :class:`common.data.BlenderDataModule` (the loader of real scenes).
"""

import json
import math
from pathlib import Path
from typing import Optional

import torch

from common.cameras import CameraBatch, SphericalCameraSampler
from common.data import BlenderDataModule
from common.export import save_image
from common.io import atomic_write_text
from shapeworld.cache import cache_key, cache_root
from shapeworld.captions import RETRIEVAL_TEMPLATE, caption
from shapeworld.render import render_object
from shapeworld.shapes import ShapeSpec, Split, object_spec


def scene_cameras(size: int, n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, CameraBatch]:
    """Cameras of the three splits (fixed by ``seed``)."""
    sampler = SphericalCameraSampler(size, size, (0.0, 360.0), (0.0, 60.0), 4.0, 1.0)
    g = torch.Generator().manual_seed(seed)
    return {"train": sampler.sample(n_train, g), "val": sampler.sample(n_val, g), "test": sampler.ring(n_test, 30.0, 4.0)}


def export_blender_scene(spec: ShapeSpec, root: str, size: int = 64, n_train: int = 100, n_val: int = 4, n_test: int = 8,
                         n_samples: int = 96, seed: int = 0) -> Path:
    """Write ``spec`` as a Blender-layout scene folder at ``root``; returns the folder.

    ``transforms_test.json`` is written last, so its presence marks a complete folder.
    """
    base = Path(root)
    for split, cams in scene_cameras(size, n_train, n_val, n_test, seed).items():
        r = render_object(spec, cams, n_samples=n_samples)
        straight = r.rgb / r.opacity[..., None].clamp_min(1e-6)  # un-premultiply: PNG RGBA is straight alpha
        frames = []
        for k in range(cams.c2w.shape[0]):
            rgba = torch.cat([straight[k], r.opacity[k, ..., None]], dim=-1).clamp(0, 1)
            save_image(rgba, base / split / f"r_{k}.png")
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": cams.c2w[k].tolist()})
        fov_x = 2.0 * math.atan(0.5 * size / float(cams.focal[0]))
        if split == "test":
            atomic_write_text(base / "scene.json", json.dumps({
                "kind": spec.kind, "colour": spec.colour, "caption": caption(spec.kind, spec.colour, RETRIEVAL_TEMPLATE),
                "rgb": spec.rgb, "scale": spec.scale, "aspect": spec.aspect, "yaw_deg": spec.yaw_deg}, indent=1))
        atomic_write_text(base / f"transforms_{split}.json", json.dumps({"camera_angle_x": fov_x, "frames": frames}, indent=1))
    return base


class ShapeWorldSceneDataModule(BlenderDataModule):
    """A shapeworld object as a Blender-layout scene, generated into the cache on first use.

    Args:
        object_index: which object of ``object_split`` (kinds and colours cycle, see
            :func:`shapeworld.shapes.object_spec`).
        object_split: ``train`` or ``heldout`` objects.
        object_seed: object seed.
        size: image size of the generated views.
        n_train, n_val, n_test: views per split.
        root: scene folder (default: a folder in the shapeworld cache named by the settings).
        cache_dir: cache folder (default ``~/.cache/priorlab/shapeworld``).
        (other arguments as :class:`~common.data.BlenderDataModule`)
    """

    def __init__(self, object_index: int = 0, object_split: Split = "heldout", object_seed: int = 0, size: int = 64,
                 n_train: int = 100, n_val: int = 4, n_test: int = 8, root: Optional[str] = None,
                 cache_dir: Optional[str] = None, **kwargs) -> None:
        self.spec = object_spec(object_split, object_index, object_seed)
        if root is None:
            key = cache_key("scene", split=object_split, index=object_index, seed=object_seed, size=size,
                            n=(n_train, n_val, n_test))
            root = str(cache_root(cache_dir) / key)
        super().__init__(root=root, **kwargs)
        self.size, self.counts = size, (n_train, n_val, n_test)

    @property
    def caption(self) -> str:
        """The object's caption (e.g. the prompt of a text-guided method)."""
        return caption(self.spec.kind, self.spec.colour, RETRIEVAL_TEMPLATE)

    def prepare_data(self) -> None:
        if not (Path(self.root) / "transforms_test.json").is_file():
            export_blender_scene(self.spec, self.root, self.size, *self.counts)

    def setup(self, stage: Optional[str] = None) -> None:
        self.prepare_data()  # single-process runs and tests call setup directly
        super().setup(stage)
