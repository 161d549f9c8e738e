"""Data loading and bad input: voxel files, ONet points, ShapeNet folder layout, prompts, stage checkpoints."""

import numpy as np
import pytest
import torch

from common.data import DatasetError
from common.testing import tiny_clip
from zeroforge.autoencoder import OccSimpleDecoder
from zeroforge.checkpoints import CheckpointMismatchError
from zeroforge.data import ShapeNetVoxelDataModule, read_binvox, read_points, read_voxels
from zeroforge.flow import ConditionalRealNVP
from zeroforge.prompts import available_query_sets, build_prompt_batch, load_query_set, resolve_queries
from zeroforge.system import ZeroForgeSystem


def write_binvox(path, vox: np.ndarray) -> None:
    """binvox (run-length, x-z-y order) of a bool grid indexed [x, y, z]."""
    flat = np.transpose(vox, (0, 2, 1)).reshape(-1).astype(np.uint8)
    runs, i = [], 0
    while i < len(flat):
        j = i
        while j < len(flat) and flat[j] == flat[i] and j - i < 255:
            j += 1
        runs += [flat[i], j - i]
        i = j
    d = vox.shape[0]
    path.write_bytes(f"#binvox 1\ndim {d} {d} {d}\ntranslate 0 0 0\nscale 1\ndata\n".encode() + bytes(runs))


def test_binvox_round_trip_keeps_axis_order(tmp_path):
    vox = np.zeros((8, 8, 8), dtype=bool)
    vox[1, 2, 5] = vox[7, 0, 3] = True
    vox[:, 4, 4] = True
    write_binvox(tmp_path / "model.binvox", vox)
    assert np.array_equal(read_binvox(tmp_path / "model.binvox"), vox)
    assert torch.equal(read_voxels(tmp_path / "model.binvox", 8), torch.from_numpy(vox))


def test_voxel_files_of_wrong_shape_or_dtype_fail_clearly(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((16, 16, 16), dtype=bool))
    with pytest.raises(DatasetError, match=r"shape \(16, 16, 16\), expected \(32, 32, 32\)"):
        read_voxels(tmp_path / "small.npy", 32)
    np.save(tmp_path / "flat.npy", np.zeros((32, 1024), dtype=np.uint8))
    with pytest.raises(DatasetError, match="expected"):
        read_voxels(tmp_path / "flat.npy", 32)
    np.save(tmp_path / "soft.npy", np.full((4, 4, 4), 0.5, dtype=np.float32))
    with pytest.raises(DatasetError, match="must be 0 or 1"):
        read_voxels(tmp_path / "soft.npy", 4)
    np.save(tmp_path / "text.npy", np.full((4, 4, 4), "a"))
    with pytest.raises(DatasetError, match="not an occupancy"):
        read_voxels(tmp_path / "text.npy", 4)
    (tmp_path / "bad.binvox").write_bytes(b"#binvox 1\ndim 4 4 4\ndata\n\x01\x10")
    with pytest.raises(DatasetError, match="header says"):
        read_voxels(tmp_path / "bad.binvox", 4)
    (tmp_path / "junk.binvox").write_bytes(b"hello")
    with pytest.raises(DatasetError, match="not a binvox"):
        read_voxels(tmp_path / "junk.binvox", 4)
    assert read_voxels(_save(tmp_path / "ok.npy", np.eye(4, dtype=np.float32)[None].repeat(4, 0)), 4).dtype == torch.bool


def _save(path, arr):
    np.save(path, arr)
    return path


def _onet_folder(root, n=2, res=16, image=True):
    syn = root / "03001627"  # chair
    for split in ("train", "val", "test"):
        (syn / f"{split}.lst").parent.mkdir(parents=True, exist_ok=True)
        (syn / f"{split}.lst").write_text("\n".join(f"m{i}" for i in range(n)) + "\n")
    for i in range(n):
        folder = syn / f"m{i}"
        folder.mkdir(parents=True, exist_ok=True)
        vox = np.zeros((res,) * 3, dtype=bool)
        vox[4:12, 4:12, 4:12] = True
        write_binvox(folder / "model.binvox", vox)
        pts = (np.random.rand(100, 3) - 0.5).astype(np.float16)
        occ = (np.abs(pts).max(1) < 0.25)
        np.savez(folder / "points.npz", points=pts, occupancies=np.packbits(occ), loc=np.zeros(3), scale=np.ones(1))
        if image:
            from PIL import Image

            (folder / "img_choy2016").mkdir(exist_ok=True)
            Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(folder / "img_choy2016" / "000.jpg")
    return syn


def test_shapenet_datamodule_reads_the_onet_layout(tmp_path):
    syn = _onet_folder(tmp_path)
    pts, occ = read_points(syn / "m0" / "points.npz")
    assert pts.shape == (100, 3) and occ.shape == (100,) and set(occ.unique().tolist()) <= {0.0, 1.0}
    dm = ShapeNetVoxelDataModule(root=str(tmp_path), categories=["chair"], resolution=16, n_points=32, images=True,
                                 batch_size=2, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["voxels"].shape == (2, 16, 16, 16) and batch["points"].shape == (2, 32, 3)
    assert batch["image"].shape == (2, 3, 20, 20) and batch["caption"] == ["a chair", "a chair"]
    with pytest.raises(DatasetError, match="ShapeNet folder not found"):
        ShapeNetVoxelDataModule(root=str(tmp_path / "nope"), resolution=16).setup("fit")
    dm32 = ShapeNetVoxelDataModule(root=str(tmp_path), categories=["03001627"], resolution=32, num_workers=0)
    dm32.setup("fit")
    with pytest.raises(DatasetError, match="expected \\(32, 32, 32\\)"):
        dm32.train_set[0]


def test_prompt_sets_and_empty_prompt_lists():
    assert "object_five_with_original" in available_query_sets() and "paper_twelve" in available_query_sets()
    assert load_query_set("four") == ["spoon", "fork", "wineglass", "knife"]
    assert len(load_query_set("paper_twelve")) == 12
    with pytest.raises(ValueError, match="empty"):
        resolve_queries(queries=[])
    with pytest.raises(ValueError, match="exactly one"):
        resolve_queries()
    with pytest.raises(ValueError, match="unknown query set"):
        resolve_queries(query_set="nope")
    with pytest.raises(ValueError, match="empty or non-string"):
        resolve_queries(queries=["cup", "  "])
    with pytest.raises(ValueError, match="empty"):
        ZeroForgeSystem(clip=tiny_clip(), queries=[], allow_random_init=True)
    assert build_prompt_batch(["a", "b"], 3, ["x {}"]).query_id.tolist() == [0, 1, 0, 1, 0, 1]


def test_generate_rejects_empty_prompt_lists(make_zeroforge):
    system = make_zeroforge()
    with pytest.raises(ValueError, match="prompt list is empty"):
        system.generate([], "zero", 8)
    with pytest.raises(ValueError, match="Empty prompt"):
        system.generate(["a cube", " "], "zero", 8)


def _save_ckpt(path, state):
    torch.save({"state_dict": state, "global_step": 1}, path)
    return str(path)


def test_stage_checkpoints_are_validated(tmp_path):
    dec8 = OccSimpleDecoder(latent_dim=8, hidden=16)
    ae = _save_ckpt(tmp_path / "ae.ckpt", {f"decoder.{k}": v for k, v in dec8.state_dict().items()})
    flow6 = _save_ckpt(tmp_path / "flow6.ckpt", {f"flow.{k}": v for k, v in ConditionalRealNVP(6, 16, 16, 2).state_dict().items()})
    flow8 = _save_ckpt(tmp_path / "flow8.ckpt", {f"flow.{k}": v for k, v in ConditionalRealNVP(8, 16, 16, 2).state_dict().items()})

    def system(**kw):
        s = ZeroForgeSystem(clip=tiny_clip(), queries=["cube"], decoder=OccSimpleDecoder(8, 16),
                            flow=ConditionalRealNVP(8, 16, 16, 2), **kw)
        s.setup("fit")
        return s

    system(autoencoder_ckpt=ae, flow_ckpt=flow8)  # matching stages load
    with pytest.raises(CheckpointMismatchError, match="6-d shape embeddings.*8-d embedding"):
        system(autoencoder_ckpt=ae, flow_ckpt=flow6)
    with pytest.raises(CheckpointMismatchError, match="no 'flow.\\*' weights"):
        system(autoencoder_ckpt=ae, flow_ckpt=ae)
    with pytest.raises(FileNotFoundError, match="flow checkpoint not found"):
        system(autoencoder_ckpt=ae, flow_ckpt=str(tmp_path / "missing.ckpt"))
    with pytest.raises(ValueError, match="flow_ckpt is not set"):
        system(autoencoder_ckpt=ae, flow_ckpt=None)
    with pytest.raises(CheckpointMismatchError, match="fc_z.weight: checkpoint \\(16, 8\\) vs configured \\(16, 6\\)"):
        s = ZeroForgeSystem(clip=tiny_clip(), queries=["cube"], decoder=OccSimpleDecoder(6, 16),
                            flow=ConditionalRealNVP(6, 16, 16, 2), autoencoder_ckpt=ae, flow_ckpt=flow6)
        s.setup("fit")
    with pytest.raises(ValueError, match="cond_dim: 16"):
        ZeroForgeSystem(clip=tiny_clip(), queries=["cube"], decoder=OccSimpleDecoder(8, 16),
                        flow=ConditionalRealNVP(8, 12, 16, 2), allow_random_init=True).setup("fit")
    torch.save({"state_dict": {"x": "not a tensor"}}, tmp_path / "weird.ckpt")
    with pytest.raises(CheckpointMismatchError, match="no state_dict of tensors"):
        system(autoencoder_ckpt=str(tmp_path / "weird.ckpt"), flow_ckpt=flow8)
