"""Blender-layout export (loads back through common.data with the same poses and images) and single-view data."""

import json

import imageio.v3 as iio
import numpy as np
import torch

from common.data import load_blender_split
from shapeworld.render import render_object
from shapeworld.scenes import ShapeWorldSceneDataModule, export_blender_scene, scene_cameras
from shapeworld.shapes import object_spec
from shapeworld.singleview import SingleViewDataModule


def test_blender_export_round_trip(tmp_path):
    spec = object_spec("heldout", 8)  # a table
    root = export_blender_scene(spec, str(tmp_path / "scene"), size=16, n_train=3, n_val=1, n_test=2, n_samples=32, seed=5)
    cams = scene_cameras(16, 3, 1, 2, seed=5)
    for split in ("train", "val", "test"):
        views = load_blender_split(str(root), split, white_background=True)
        assert torch.allclose(views.c2w, cams[split].c2w, atol=1e-6)
        assert abs(views.focal - float(cams[split].focal[0])) < 1e-3
        ref = render_object(spec, cams[split], n_samples=32)
        expected = ref.rgb + (1 - ref.opacity[..., None])  # premultiplied over white
        assert (views.images - expected).abs().max() < 3 / 255 + 1e-4
        assert (views.alphas - ref.opacity).abs().max() < 1 / 255 + 1e-4
    meta = json.loads((root / "scene.json").read_text())
    assert meta["kind"] == spec.kind and meta["caption"].endswith(spec.kind)
    png = iio.imread(root / "train" / "r_0.png")
    assert png.shape == (16, 16, 4) and png.dtype == np.uint8


def test_scene_datamodule(tmp_path):
    dm = ShapeWorldSceneDataModule(object_index=3, size=16, n_train=2, n_val=1, n_test=1, cache_dir=str(tmp_path),
                                   batch_rays=8, steps_per_epoch=2)
    dm.setup("fit")
    assert dm.split("train").images.shape == (2, 16, 16, 3)
    assert dm.caption.endswith("cone")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, dict)


def test_single_view_datamodule(tmp_path):
    dm = SingleViewDataModule(image_size=16, n_train_objects=2, train_views=1, n_val_objects=1, n_points=16, n_samples=32,
                              batch_size=2, cache_dir=str(tmp_path))
    dm.setup()
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (2, 3, 16, 16) and b["mask"].shape == (2, 16, 16)
    assert b["c2w"].shape == (2, 4, 4) and b["points"].shape == (2, 16, 3)
    assert b["image"].min() >= 0 and b["image"].max() <= 1
    on = b["mask"] > 0.5
    assert (b["depth"][on] > 2.0).all() and (b["depth"][on] < 6.0).all()  # camera at radius 4
