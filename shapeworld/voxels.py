"""Voxel occupancy grids of shapeworld objects with labels (CLIP-Forge / ZeroForge pretraining).

A grid of resolution ``R`` samples the SDF at the cell centres of ``[-bound, bound]^3``,
``c_i = −bound + (i + ½)·2·bound/R`` (index order x, y, z), and stores ``sdf < 0`` (inside). Each item
also carries ``n_points`` query points drawn uniformly in the box with their occupancy, fixed per
object (CLIP-Forge's ``points.npz``, specs/zeroforge.md §3.2), and shape-only captions (occupancy
has no colour; the colour label is still given).
"""

import random
from typing import Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from shapeworld.cache import cache_key, cache_root, cached_tensors
from shapeworld.captions import SHAPE_TEMPLATES, caption
from shapeworld.shapes import KINDS, SPLITS, ShapeSpec, Split, object_specs


def grid_points(resolution: int, bound: float = 1.0) -> Tensor:
    """``[R, R, R, 3]`` cell centres of ``[-bound, bound]^3`` (index order x, y, z)."""
    lin = -bound + (torch.arange(resolution, dtype=torch.float32) + 0.5) * (2.0 * bound / resolution)
    return torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), dim=-1)


def voxelize(spec: ShapeSpec, resolution: int = 32, bound: float = 1.0) -> Tensor:
    """``[R, R, R]`` bool occupancy (``sdf < 0`` at cell centres)."""
    return spec.sdf(grid_points(resolution, bound)) < 0.0


def query_points(spec: ShapeSpec, n: int, bound: float, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` uniform points ``[n, 3]`` in the box and their occupancy ``[n]`` (fixed by ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    pts = (torch.rand(n, 3, generator=g) * 2.0 - 1.0) * bound
    return pts, (spec.sdf(pts) < 0.0)


def _point_seed(seed: int, split: Split, index: int) -> int:
    return int(np.random.SeedSequence([seed, SPLITS[split], index, 1]).generate_state(1)[0])


class VoxelDataset(Dataset):
    """Occupancy grids of the first ``n`` objects of a split (built once and cached).

    Items: ``voxels`` ``[R, R, R]`` float {0, 1}; ``points`` ``[P, 3]`` and ``occupancy`` ``[P]`` (if
    ``n_points > 0``); ``kind``, ``colour`` (label indices); ``caption`` (shape only, random training
    template for ``train``, ``"a <kind>"`` otherwise).
    """

    def __init__(self, split: Split, n: int, resolution: int = 32, bound: float = 1.0, n_points: int = 0, seed: int = 0,
                 kinds: tuple[str, ...] = KINDS, cache_dir: Optional[str] = None) -> None:
        if resolution not in (16, 32, 64, 128):
            raise ValueError(f"resolution must be one of 16, 32, 64, 128, got {resolution}")
        self.split, self.n_points, self.bound, self.seed = split, n_points, bound, seed
        self.specs = object_specs(split, n, seed, kinds=kinds)
        key = cache_key("voxels", split=split, n=n, resolution=resolution, bound=bound, seed=seed, kinds=kinds)
        path = cache_root(cache_dir) / f"{key}.pt"
        data = cached_tensors(path, lambda: {"packed": torch.stack([voxelize(s, resolution, bound).reshape(-1) for s in self.specs]).to(torch.uint8)})
        self.voxels = data["packed"].bool().reshape(n, resolution, resolution, resolution)  # [N, R, R, R]
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, i: int) -> dict:
        spec = self.specs[i]
        template = self.rng.choice(SHAPE_TEMPLATES) if self.split == "train" else SHAPE_TEMPLATES[0]
        item = {"voxels": self.voxels[i].float(), "kind": spec.kind_index, "colour": spec.colour_index,
                "caption": caption(spec.kind, None, template), "index": i}
        if self.n_points > 0:
            pts, occ = query_points(spec, self.n_points, self.bound, seed=_point_seed(self.seed, self.split, i))
            item["points"], item["occupancy"] = pts, occ.float()
        return item


class VoxelDataModule(LightningDataModule):
    """shapeworld occupancy grids: training objects and held-out objects (validation).

    Args:
        resolution: grid size R (32 for CLIP-Forge's encoder, 64 for its decoder evaluation).
        n_train: training objects (kinds × colours cycle, so use a multiple of 66 for balance).
        n_val: held-out objects.
        bound: grid covers ``[-bound, bound]^3``.
        n_points: query points with occupancy per object (0: none).
        seed: object seed.
        kinds: subset of shape kinds (default all).
        batch_size: batch size.
        num_workers: data loader workers.
        cache_dir: cache folder (default ``~/.cache/priorlab/shapeworld``).
    """

    def __init__(self, resolution: int = 32, n_train: int = 1980, n_val: int = 198, bound: float = 1.0, n_points: int = 0,
                 seed: int = 0, kinds: tuple[str, ...] = KINDS, batch_size: int = 32, num_workers: int = 0,
                 cache_dir: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_set: Optional[VoxelDataset] = None
        self.val_set: Optional[VoxelDataset] = None

    def _make(self, split: Split, n: int) -> VoxelDataset:
        h = self.hparams
        return VoxelDataset(split, n, h.resolution, h.bound, h.n_points, h.seed, tuple(h.kinds), h.cache_dir)

    def prepare_data(self) -> None:
        self._make("train", self.hparams.n_train)
        self._make("heldout", self.hparams.n_val)

    def setup(self, stage: Optional[str] = None) -> None:
        self.train_set = self.train_set or self._make("train", self.hparams.n_train)
        self.val_set = self.val_set or self._make("heldout", self.hparams.n_val)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, num_workers=self.hparams.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, shuffle=False, num_workers=self.hparams.num_workers)
