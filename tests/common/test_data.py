import json

import numpy as np
import pytest
import torch

from common.checks import NonFiniteLossError, check_finite_loss
from common.data import BlenderDataModule, DatasetError, load_blender_split
from common.synthetic import write_sphere_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_sphere_scene(str(tmp_path_factory.mktemp("scene")), size=16, n_train=4, n_val=1, n_test=2)


def test_loader_reads_back_poses_and_images(scene):
    meta = json.loads((scene / "transforms_train.json").read_text())
    views = load_blender_split(str(scene), "train")
    assert views.images.shape == (4, 16, 16, 3)
    np.testing.assert_allclose(views.c2w[2].numpy(), np.asarray(meta["frames"][2]["transform_matrix"]), atol=1e-6)
    assert 0.0 <= views.images.min() and views.images.max() <= 1.0
    # corners are background (white), the centre is the sphere
    assert views.images[0, 0, 0].min() > 0.99 and views.images[0, 8, 8].max() < 0.99
    sub = load_blender_split(str(scene), "train", views=[3, 1])
    torch.testing.assert_close(sub.images[0], views.images[3])
    half = load_blender_split(str(scene), "train", downscale=2)
    assert half.images.shape == (4, 8, 8, 3) and abs(half.focal - views.focal / 2) < 1e-4


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*transforms_train.json"):
        load_blender_split(str(tmp_path / "nope"), "train")


def test_malformed_transforms(tmp_path, scene):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "transforms_train.json").write_text("{not json")
    with pytest.raises(DatasetError, match="transforms_train.json is not valid JSON"):
        load_blender_split(str(bad), "train")
    (bad / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": [{"file_path": "x"}]}))
    with pytest.raises(DatasetError, match="frame 0 needs 'file_path' and 'transform_matrix'"):
        load_blender_split(str(bad), "train")


def test_absent_image_and_bad_indices(tmp_path, scene):
    with pytest.raises(DatasetError, match=r"view indices \[9\] are out of range"):
        load_blender_split(str(scene), "train", views=[0, 9])
    meta = json.loads((scene / "transforms_train.json").read_text())
    meta["frames"][1]["file_path"] = "./train/missing"
    d = tmp_path / "absent"
    d.mkdir()
    (d / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="frame 0 names .*does not exist"):
        load_blender_split(str(d), "train")


def test_mixed_image_sizes_are_rejected(tmp_path, scene):
    import imageio.v3 as iio
    import shutil

    d = tmp_path / "mixed"
    shutil.copytree(scene, d)
    iio.imwrite(d / "train" / "r_2.png", np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(DatasetError, match="r_2.png is 8x8 but the first image of the split is 16x16"):
        load_blender_split(str(d), "train")


def test_datamodule_ray_batches_are_seeded_per_rank(scene):
    dm = BlenderDataModule(str(scene), batch_rays=32, steps_per_epoch=3)
    dm.setup("fit")
    from common.data import RayBatches

    a = RayBatches(dm.split("train"), 32, 3, seed=0, rank=0)
    b = RayBatches(dm.split("train"), 32, 3, seed=0, rank=1)
    assert torch.equal(a[0]["rgb"], RayBatches(dm.split("train"), 32, 3, seed=0, rank=0)[0]["rgb"])
    assert not torch.equal(a[0]["rays_d"], b[0]["rays_d"])
    assert a[1]["rays_o"].shape == (32, 3)


def test_nan_loss_error_names_step_and_terms():
    with pytest.raises(NonFiniteLossError, match=r"step 17\. Terms: loss_mse=nan"):
        check_finite_loss(torch.tensor(float("nan")), 17, {"loss_mse": torch.tensor(float("nan"))})
    check_finite_loss(torch.tensor(1.0), 0)
