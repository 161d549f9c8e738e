"""Data (specs/dietnerf.md §9.4): Blender loading through the few-shot datamodule, view selection,
the shapeworld scene export, DTU cameras, and clear errors for bad folders and indices."""

import json
import math
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from common.data import BlenderDataModule, DatasetError
from dietnerf.data import FewShotBlenderDataModule, few_shot_indices
from dietnerf.dtu import (DTU_BAD_VIEWS, DTUDataModule, decompose_projection, load_dtu_cameras, load_dtu_views,
                          write_synthetic_dtu)


def _write_random_blender(root, n=2, size=16, seed=0):
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        frames = []
        for k in range(n):
            (root / split).mkdir(parents=True, exist_ok=True)
            iio.imwrite(root / split / f"r_{k}.png", rng.integers(0, 256, (size, size, 4), dtype=np.uint8))
            mat = np.eye(4)
            mat[:3, 3] = rng.normal(size=3)
            frames.append({"file_path": f"./{split}/r_{k}", "rotation": 0.01, "transform_matrix": mat.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.6911112070083618, "frames": frames}))
    return root


def test_blender_loader_roundtrip(tmp_path):
    root = _write_random_blender(tmp_path / "s", n=9)
    meta = json.loads((root / "transforms_train.json").read_text())
    dm = FewShotBlenderDataModule(root=str(root), num_train_views=None, downscale=1, testskip=8)
    dm.setup("fit")
    train = dm.train_views()
    np.testing.assert_allclose(train.c2w[4].numpy(), np.asarray(meta["frames"][4]["transform_matrix"]), atol=1e-6)
    f = 0.5 * 16 / math.tan(0.5 * 0.6911112070083618)
    torch.testing.assert_close(train.intrinsics[0], torch.tensor([f, f, 8.0, 8.0]))
    rgba = iio.imread(root / "train" / "r_3.png").astype(np.float32) / 255
    expect = rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]  # white compositing
    np.testing.assert_allclose(train.images[3].numpy(), expect, atol=1e-6)
    assert dm.views("val").indices == [0, 8]  # testskip keeps every 8th val/test frame
    half = FewShotBlenderDataModule(root=str(root), num_train_views=None, downscale=2)
    ht = half.train_views()
    assert ht.images.shape[1:3] == (8, 8)
    torch.testing.assert_close(ht.intrinsics[0], torch.tensor([f / 2, f / 2, 4.0, 4.0]))
    assert dm.pose_pool().shape == (9, 4, 4)


def test_fewshot_selection(tmp_path):
    assert few_shot_indices(100, 8, seed=0) == [26, 86, 2, 55, 75, 93, 16, 73]
    root = _write_random_blender(tmp_path / "s", n=12, size=8)
    dm = FewShotBlenderDataModule(root=str(root), num_train_views=4, train_view_seed=0, downscale=1)
    assert dm.train_views().indices == few_shot_indices(12, 4, 0)
    dm = FewShotBlenderDataModule(root=str(root), train_view_indices=[5, 1, 7], num_train_views=8, downscale=1)
    assert dm.train_views().indices == [5, 1, 7]  # explicit indices override the draw
    assert dm.pose_pool().shape[0] == 12  # the pool keeps every training pose
    one = FewShotBlenderDataModule(root=str(root), num_train_views=1, downscale=1)
    assert len(one.train_views()) == 1


def test_generated_shapeworld_scene_through_the_datamodule(tmp_path):
    from shapeworld.scenes import ShapeWorldSceneDataModule

    scene = ShapeWorldSceneDataModule(object_index=8, size=16, n_train=6, n_val=1, n_test=2, cache_dir=str(tmp_path))
    dm = FewShotBlenderDataModule(scene=scene, num_train_views=2, testskip=1)
    dm.setup("fit")
    root = scene.root
    meta = json.loads(open(f"{root}/transforms_train.json").read())
    assert {"camera_angle_x", "frames"} <= set(meta) and {"file_path", "transform_matrix"} <= set(meta["frames"][0])
    alpha = iio.imread(f"{root}/train/r_0.png")[..., 3]
    assert alpha.min() == 0 and alpha.max() > 200  # non-trivial alpha
    pool = dm.pose_pool()
    fwd, o = -pool[:, :3, 2], pool[:, :3, 3]
    assert torch.linalg.cross(fwd, o, dim=-1).norm(dim=-1).max() < 1e-4  # every camera looks at the origin
    assert len(dm.train_views()) == 2 and len(dm.views("test")) == 2


def test_missing_folder_is_common_error(tmp_path):
    dm = FewShotBlenderDataModule(root=str(tmp_path / "nope"))
    with pytest.raises(DatasetError, match="does not exist.*Blender/NeRF-synthetic layout"):
        dm.setup("fit")


def test_absent_images_and_bad_indices(tmp_path):
    root = _write_random_blender(tmp_path / "s", n=4, size=8)
    with pytest.raises(DatasetError, match=r"train_view_indices \[7\] out of range.*4 views"):
        FewShotBlenderDataModule(root=str(root), train_view_indices=[0, 7], downscale=1).setup("fit")
    with pytest.raises(DatasetError, match="lists views \\[1\\] more than once"):
        FewShotBlenderDataModule(root=str(root), train_view_indices=[1, 1], downscale=1).setup("fit")
    with pytest.raises(DatasetError, match="num_train_views=8 but the training split has only 4 frames"):
        FewShotBlenderDataModule(root=str(root), num_train_views=8, downscale=1).setup("fit")
    with pytest.raises(DatasetError, match=r"test_views \[-1\] out of range"):
        FewShotBlenderDataModule(root=str(root), num_train_views=2, test_views=[-1], downscale=1).setup("test")
    (root / "train" / "r_2.png").unlink()  # transforms referencing an absent image
    with pytest.raises(DatasetError, match="frame 2 names .*r_2.png, which does not exist"):
        FewShotBlenderDataModule(root=str(root), num_train_views=None, downscale=1).setup("fit")
    (root / "transforms_val.json").unlink()
    with pytest.raises(DatasetError, match="transforms_val.json is missing"):
        FewShotBlenderDataModule(root=str(root), train_view_indices=[0], downscale=1).setup("fit")
    with pytest.raises(ValueError, match="exactly one of `root`"):
        FewShotBlenderDataModule(root=str(root), scene=BlenderDataModule(str(root)))


def test_decompose_projection_matches_construction():
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0.5, 200.0], [0, 310.0, 150.0], [0, 0, 1]])
    A = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    R = A * np.sign(np.linalg.det(A))
    C = rng.normal(size=3)
    P = 2.5 * K @ np.concatenate([R, -R @ C[:, None]], axis=1)
    K2, R2, C2 = decompose_projection(P)
    np.testing.assert_allclose(K2, K, atol=1e-8)
    np.testing.assert_allclose(R2, R, atol=1e-10)
    np.testing.assert_allclose(C2, C, atol=1e-10)
    _, R3, C3 = decompose_projection(-P)  # projections are defined up to sign
    np.testing.assert_allclose(R3, R, atol=1e-10)
    np.testing.assert_allclose(C3, C, atol=1e-10)


@pytest.fixture(scope="module")
def dtu(tmp_path_factory):
    return write_synthetic_dtu(str(tmp_path_factory.mktemp("dtu")), n_views=8, width=20, height=15)


def test_dtu_cameras_round_trip(dtu):
    meta = json.loads((dtu / "synthetic.json").read_text())
    c2w, intr = load_dtu_cameras(dtu / "scan8", 8)
    torch.testing.assert_close(c2w, torch.tensor(meta["c2w"]), atol=1e-5, rtol=0)
    K = np.asarray(meta["K"])
    torch.testing.assert_close(intr, torch.tensor([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], dtype=torch.float32))
    dm = DTUDataModule(str(dtu), scan="scan8", source_views=[2])
    dm.setup("fit")
    assert dm.train_views().indices == [2] and dm.train_views().images.shape == (1, 15, 20, 3)
    assert dm.selected("test") == [0, 1]  # 8 views minus the source and the bad views 3..7
    assert dm.pose_pool().shape == (8, 4, 4)
    # the images were rendered with these cameras: the sphere's centre projects to its (bright) pixels
    img = dm.train_views().images[0]
    assert img.max() > 0.3 and img[0, 0].max() < 0.05  # sphere on black


def test_dtu_default_eval_views_follow_pixelnerf(tmp_path):
    """49 views: the source view 25 and pixelNeRF's 15 shadowed views are left out: 33 remain."""
    scan = tmp_path / "dtu" / "scan21"
    (scan / "image").mkdir(parents=True)
    for i in range(49):
        iio.imwrite(scan / "image" / f"{i:06d}.png", np.zeros((3, 4, 3), np.uint8))
    np.savez(scan / "cameras.npz", **{f"world_mat_{i}": np.concatenate([np.eye(3), np.ones((3, 1))], 1) for i in range(49)})
    (tmp_path / "dtu" / "new_val.lst").write_text("scan21\n")
    dm = DTUDataModule(str(tmp_path / "dtu"), scan="scan21")
    evals = dm.selected("test")
    assert len(evals) == 33 and 25 not in evals and not set(DTU_BAD_VIEWS) & set(evals)
    assert dm.selected("train") == [25]


def test_dtu_bad_input(tmp_path, dtu):
    with pytest.raises(DatasetError, match="DTU folder .* does not exist.*rs_dtu_4"):
        DTUDataModule(str(tmp_path / "none"), scan="scan8").setup("fit")
    with pytest.raises(DatasetError, match="scan 'scan1' is not listed in .*new_val.lst"):
        DTUDataModule(str(dtu), scan="scan1").setup("fit")
    with pytest.raises(DatasetError, match=r"source_views \[25\] out of range: the split has 8 views"):
        DTUDataModule(str(dtu), scan="scan8").setup("fit")  # default source view 25 on an 8-view scan
    bad = tmp_path / "bad"
    shutil.copytree(dtu, bad)
    (bad / "scan8" / "cameras.npz").unlink()
    with pytest.raises(DatasetError, match="cameras.npz is missing"):
        DTUDataModule(str(bad), scan="scan8", source_views=[0]).setup("fit")
    shutil.copy(dtu / "scan8" / "cameras.npz", bad / "scan8" / "cameras.npz")
    iio.imwrite(bad / "scan8" / "image" / "000008.png", np.zeros((15, 20, 3), np.uint8))  # an image without a camera
    with pytest.raises(DatasetError, match="has no world_mat_8.*9 images"):
        load_dtu_views(bad / "scan8", [0])
    shutil.rmtree(bad / "scan8" / "image")
    with pytest.raises(DatasetError, match="image does not exist"):
        DTUDataModule(str(bad), scan="scan8", source_views=[0]).setup("fit")
    with pytest.raises(DatasetError, match="new_val.lst is missing"):
        DTUDataModule(str(tmp_path), scan="scan8").setup("fit")
