"""CLIP-Forge pretraining data: ShapeNet as preprocessed by Occupancy Networks (specs/zeroforge.md §3.2, §5.2).

Expected layout under ``root`` (ONet's ``ShapeNet`` folder, 13 classes of 3D-R2N2)::

    root/<synset>/{train,val,test}.lst            model ids per split (one per line)
    root/<synset>/<model_id>/model.binvox        32³ voxels (or voxels.npy: bool/uint8 [R, R, R], index x, y, z)
    root/<synset>/<model_id>/points.npz          100k points in the padded unit cube with packed occupancies
    root/<synset>/<model_id>/img_choy2016/*.jpg  24 renders, 137×137 (only with images: true)

Items have the keys of :class:`shapeworld.voxels.VoxelDataset` (``voxels``, ``points``, ``occupancy``,
``caption``) plus ``category`` and, with images, ``image`` ``[3, H, W]`` in [0, 1] (one random view).
Malformed files fail with :class:`common.data.DatasetError` naming the file and what was expected.
"""

import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from common.data import DatasetError

#: the 13 ShapeNet classes of 3D-R2N2 / ONet: synset id -> name (§5.2)
SHAPENET13: Dict[str, str] = {
    "02691156": "airplane", "02828884": "bench", "02933112": "cabinet", "02958343": "car", "03001627": "chair",
    "03211117": "display", "03636649": "lamp", "03691459": "loudspeaker", "04090263": "rifle", "04256520": "sofa",
    "04379243": "table", "04401088": "telephone", "04530566": "watercraft",
}

__all__ = ["SHAPENET13", "read_binvox", "read_voxels", "read_points", "ShapeNetVoxelDataset", "ShapeNetVoxelDataModule"]


def read_binvox(path: Path) -> np.ndarray:
    """A ``.binvox`` file as a bool array indexed ``[x, y, z]`` (binvox_rw's ``fix_coords``)."""
    with open(path, "rb") as f:
        if not f.readline().strip().startswith(b"#binvox"):
            raise DatasetError(f"{path} is not a binvox file (first line must be '#binvox 1')")
        dims = None
        while True:
            line = f.readline()
            if not line:
                raise DatasetError(f"{path}: binvox header has no 'data' line")
            line = line.strip()
            if line.startswith(b"dim"):
                dims = [int(v) for v in line.split()[1:]]
            elif line == b"data":
                break
        if dims is None or len(dims) != 3:
            raise DatasetError(f"{path}: binvox header has no valid 'dim' line")
        raw = np.frombuffer(f.read(), dtype=np.uint8)
    if raw.size % 2:
        raise DatasetError(f"{path}: truncated binvox run-length data")
    data = np.repeat(raw[::2], raw[1::2].astype(np.int64))
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: binvox data has {data.size} voxels, header says {dims}")
    return np.transpose(data.reshape(dims).astype(bool), (0, 2, 1))  # binvox stores x, z, y


def read_voxels(path: Path, resolution: int) -> Tensor:
    """Load and validate a voxel file (``.binvox``, ``.npy``, or ``.npz`` with key ``voxels``) as bool ``[R, R, R]``.

    Raises:
        DatasetError: unreadable file, wrong shape, or a dtype / values that are not a {0, 1} occupancy.
    """
    path = Path(path)
    if path.suffix == ".binvox":
        arr = read_binvox(path)
    elif path.suffix in (".npy", ".npz"):
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as err:
            raise DatasetError(f"{path}: cannot read voxel array ({err})") from err
        if path.suffix == ".npz":
            if "voxels" not in arr.files:
                raise DatasetError(f"{path}: .npz voxel files need a 'voxels' array, found {arr.files}")
            arr = arr["voxels"]
    else:
        raise DatasetError(f"{path}: unsupported voxel file type (use .binvox, .npy or .npz)")
    if arr.shape != (resolution,) * 3:
        raise DatasetError(f"{path}: voxel grid has shape {arr.shape}, expected ({resolution}, {resolution}, {resolution}). "
                           "Re-voxelise the shapes at that resolution or set data.init_args.resolution.")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise DatasetError(f"{path}: voxel dtype {arr.dtype} is not an occupancy (use bool, uint8 or float in {{0, 1}})")
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            raise DatasetError(f"{path}: voxel values must be 0 or 1 (occupancy), found {np.unique(arr[bad])[:5].tolist()} "
                               f"(dtype {arr.dtype}); threshold soft grids before saving")
    return torch.from_numpy(arr.astype(bool))


def read_points(path: Path) -> Tuple[Tensor, Tensor]:
    """ONet ``points.npz``: ``points [P, 3]`` float32 and ``occupancy [P]`` float {0, 1} (bit-packed in the file)."""
    try:
        data = np.load(path, allow_pickle=False)
        points = data["points"].astype(np.float32)
        occ = data["occupancies"]
    except Exception as err:
        raise DatasetError(f"{path}: not an ONet points file with 'points' and 'occupancies' ({err})") from err
    if points.ndim != 2 or points.shape[1] != 3:
        raise DatasetError(f"{path}: 'points' must be [P, 3], got {points.shape}")
    occ = np.unpackbits(occ)[: points.shape[0]] if occ.dtype == np.uint8 and occ.size < points.shape[0] else occ
    if occ.shape[0] != points.shape[0]:
        raise DatasetError(f"{path}: {occ.shape[0]} occupancies for {points.shape[0]} points")
    return torch.from_numpy(points), torch.from_numpy(occ.astype(np.float32))


class ShapeNetVoxelDataset(Dataset):
    """One split of the ONet ShapeNet folder (see the module docstring).

    Args:
        root: the ONet ``ShapeNet`` folder.
        split: ``train``, ``val`` or ``test`` (reads ``<synset>/<split>.lst``).
        categories: synset ids or class names (default: the 13 classes).
        resolution: voxel grid size (32).
        n_points: query points drawn per item from ``points.npz`` (5000, [CF]); 0: no points.
        images: also return one random render from ``img_choy2016/``.
        voxel_file: voxel file name inside each model folder.
    """

    def __init__(self, root: str, split: str = "train", categories: Optional[Sequence[str]] = None, resolution: int = 32,
                 n_points: int = 5000, images: bool = False, voxel_file: str = "model.binvox") -> None:
        self.root, self.split, self.resolution = Path(root).expanduser(), split, resolution
        self.n_points, self.images, self.voxel_file = n_points, images, voxel_file
        if not self.root.is_dir():
            raise DatasetError(f"ShapeNet folder not found: {self.root}. Expected ONet's preprocessed ShapeNet "
                               "(root/<synset>/<model>/model.binvox, points.npz, img_choy2016/); set data.init_args.root.")
        names = {v: k for k, v in SHAPENET13.items()}
        synsets = [names.get(c, c) for c in (categories or list(SHAPENET13))]
        self.items: List[Tuple[str, str]] = []
        for syn in synsets:
            lst = self.root / syn / f"{split}.lst"
            if not lst.is_file():
                raise DatasetError(f"missing split file {lst}: each category folder needs {split}.lst (ONet's splits)")
            self.items += [(syn, m.strip()) for m in lst.read_text().splitlines() if m.strip()]
        if not self.items:
            raise DatasetError(f"no shapes listed for split '{split}' under {self.root} (categories {synsets})")
        self.synsets = synsets

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        syn, model = self.items[i]
        folder = self.root / syn / model
        name = SHAPENET13.get(syn, syn)
        item = {"voxels": read_voxels(folder / self.voxel_file, self.resolution).float(),
                "category": self.synsets.index(syn), "caption": f"a {name}", "index": i}
        if self.n_points > 0:
            pts, occ = read_points(folder / "points.npz")
            idx = torch.randint(0, pts.shape[0], (self.n_points,))  # [CF]: a random subset every step
            item["points"], item["occupancy"] = pts[idx], occ[idx]
        if self.images:
            item["image"] = self._random_view(folder / "img_choy2016")
        return item

    @staticmethod
    def _random_view(folder: Path) -> Tensor:
        from PIL import Image

        views = sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))
        if not views:
            raise DatasetError(f"no renders (*.jpg / *.png) in {folder}: the flow stage needs the 3D-R2N2 views")
        img = Image.open(random.choice(views))
        if img.mode in ("RGBA", "LA"):  # composite over white
            bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, img.convert("RGBA"))
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # [3, H, W]


class ShapeNetVoxelDataModule(LightningDataModule):
    """ShapeNet (13 classes, ONet preprocessing) for CLIP-Forge's autoencoder and flow stages.

    Args:
        root: the ONet ``ShapeNet`` folder (user-supplied; nothing is downloaded).
        categories: synset ids or names (default: all 13).
        resolution: voxel grid size (32).
        n_points: query points per shape per step (5000, [CF]).
        images: return one random 3D-R2N2 render per item (the flow stage's CLIP image condition).
        voxel_file: voxel file name in each model folder (``model.binvox``).
        batch_size: 32 ([CF]).
        num_workers: loader workers.
    """

    def __init__(self, root: str = "~/data/ShapeNet", categories: Optional[List[str]] = None, resolution: int = 32,
                 n_points: int = 5000, images: bool = False, voxel_file: str = "model.binvox", batch_size: int = 32,
                 num_workers: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_set: Optional[ShapeNetVoxelDataset] = None
        self.val_set: Optional[ShapeNetVoxelDataset] = None

    def _make(self, split: str) -> ShapeNetVoxelDataset:
        h = self.hparams
        return ShapeNetVoxelDataset(h.root, split, h.categories, h.resolution, h.n_points, h.images, h.voxel_file)

    def setup(self, stage: Optional[str] = None) -> None:
        self.train_set = self.train_set or self._make("train")
        self.val_set = self.val_set or self._make("val")

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._make("test"), batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)
