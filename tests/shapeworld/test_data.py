"""shapeworld data: renders, backgrounds, voxel and image–caption datamodules (tiny sizes)."""

import pytest
import torch

from shapeworld.backgrounds import BACKGROUNDS, random_background
from shapeworld.field import ShapeField, laplace_cdf_density
from shapeworld.images import ImageCaptionDataModule
from shapeworld.render import CameraRanges, render_object, sample_cameras
from shapeworld.shapes import KINDS, object_spec
from shapeworld.voxels import VoxelDataModule, grid_points, voxelize


def test_laplace_density():
    d = laplace_cdf_density(torch.tensor([-1.0, 0.0, 1.0]), beta=0.01)
    assert torch.allclose(d, torch.tensor([100.0, 50.0, 0.0]), atol=1e-3)
    field = ShapeField(object_spec("train", 0))
    out = field(torch.zeros(5, 3))
    assert out.density.shape == (5,) and out.color.shape == (5, 3)
    assert (out.color >= 0).all() and (out.color <= 1).all()


def test_render_range_and_framing():
    g = torch.Generator().manual_seed(0)
    for i in range(len(KINDS)):
        spec = object_spec("train", i)
        cams = sample_cameras(CameraRanges(), 24, 2, g)
        r = render_object(spec, cams, n_samples=48)
        assert r.rgb.shape == (2, 24, 24, 3) and r.opacity.shape == (2, 24, 24)
        assert r.rgb.min() >= 0 and r.rgb.max() <= 1 and r.opacity.max() <= 1
        assert r.opacity.amax(dim=(1, 2)).min() > 0.9, f"{spec.kind} not visible"
        border = torch.cat([r.opacity[:, 0], r.opacity[:, -1], r.opacity[:, :, 0], r.opacity[:, :, -1]], 1)
        assert border.max() < 0.05, f"{spec.kind} touches the frame"


def test_backgrounds():
    g = torch.Generator().manual_seed(0)
    for kind in BACKGROUNDS:
        bg = random_background(kind, 16, 16, g)
        assert bg.shape == (3, 16, 16) and bg.min() >= 0 and bg.max() <= 1


def test_voxels_datamodule(tmp_path):
    dm = VoxelDataModule(resolution=16, n_train=4, n_val=2, n_points=32, batch_size=2, cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["voxels"].shape == (2, 16, 16, 16) and batch["points"].shape == (2, 32, 3)
    assert len(list(tmp_path.iterdir())) == 2
    # cached copy is identical and deterministic
    dm2 = VoxelDataModule(resolution=16, n_train=4, n_val=2, batch_size=2, cache_dir=str(tmp_path))
    dm2.setup()
    assert torch.equal(dm.train_set.voxels, dm2.train_set.voxels)
    spec = object_spec("train", 0)
    occ = voxelize(spec, 16)
    assert torch.equal(occ, dm.train_set.voxels[0])
    assert grid_points(16).shape == (16, 16, 16, 3)
    assert dm.val_set[0]["caption"] == "a sphere"


def test_image_caption_datamodule(tmp_path):
    kw = dict(image_size=16, n_train_objects=3, train_views=2, n_val_objects=2, val_views=1, n_samples=32,
              batch_size=2, cache_dir=str(tmp_path))
    dm = ImageCaptionDataModule(**kw)
    dm.prepare_data()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16) and len(batch["caption"]) == 2
    assert batch["image"].min() >= 0 and batch["image"].max() <= 1
    a, b = dm.val_set[1], dm.val_set[1]
    assert torch.equal(a["image"], b["image"]) and a["caption"] == b["caption"]
    dm2 = ImageCaptionDataModule(**kw)
    dm2.setup()
    assert torch.equal(dm.train_set.views["rgb"], dm2.train_set.views["rgb"])


def test_unlit_fraction_mixes_flat_renders_of_the_same_views(tmp_path):
    kw = dict(image_size=16, n_train_objects=3, train_views=4, n_val_objects=2, val_views=1, n_samples=32,
              backgrounds=("white",), batch_size=2, cache_dir=str(tmp_path))
    shaded = ImageCaptionDataModule(**kw)
    shaded.setup()
    flat = ImageCaptionDataModule(unlit_fraction=1.0, **kw)
    flat.setup()
    unlit = flat.train_set.unlit_views
    assert torch.equal(unlit["c2w"], shaded.train_set.views["c2w"])  # same objects, same cameras
    mask = unlit["alpha"][0] > 250
    # unlit: one flat colour over the object's opaque pixels; shaded: the same silhouette, varying brightness
    assert torch.equal(mask, shaded.train_set.views["alpha"][0] > 250) and mask.sum() > 4
    assert float(unlit["rgb"][0][:, mask].float().std(dim=1).max()) < 1.0
    assert float(shaded.train_set.views["rgb"][0][:, mask].float().std(dim=1).max()) > 5.0
    for i in range(len(flat.train_set)):
        assert torch.equal(flat.train_set[i]["image"], composite_over_white(unlit, i))
        assert torch.equal(shaded.train_set[i]["image"], composite_over_white(shaded.train_set.views, i))
    half = ImageCaptionDataModule(unlit_fraction=0.5, **kw)
    half.setup()
    drawn_flat = sum(torch.equal(half.train_set[i % 12]["image"], composite_over_white(unlit, i % 12))
                     for i in range(200))
    assert 70 < drawn_flat < 130
    with pytest.raises(ValueError, match="unlit_fraction"):
        ImageCaptionDataModule(unlit_fraction=1.5, **kw).setup()
    assert shaded.val_set.unlit_views is None and flat.val_set.unlit_views is None  # validation stays shaded


def composite_over_white(views, i):
    rgb, alpha = views["rgb"][i].float() / 255.0, views["alpha"][i].float() / 255.0
    return (rgb + (1.0 - alpha)).clamp(0.0, 1.0)
