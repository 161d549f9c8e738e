"""Single-view renders with camera, mask and depth, for ISS's single-view reconstruction model (stage 1).

Each item is one cached render of one object (:func:`shapeworld.images.cached_views`) on a white
background, with everything a DVR-style model needs: the image, the object mask (opacity), the
expected depth, the camera (``c2w`` in the OpenGL convention of :mod:`common.cameras` and the focal
length in pixels), the labels and caption, and optionally query points with their occupancy.
"""

from typing import Optional

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from shapeworld.captions import RETRIEVAL_TEMPLATE, caption
from shapeworld.images import cached_views
from shapeworld.render import CameraRanges
from shapeworld.shapes import Split
from shapeworld.voxels import _point_seed, query_points


class SingleViewDataset(Dataset):
    """Items: ``image`` ``[3, H, W]`` (white background), ``mask`` ``[H, W]`` in [0, 1], ``depth``
    ``[H, W]`` (expected depth, 0 off the object), ``c2w`` ``[4, 4]``, ``focal`` (pixels), ``kind``,
    ``colour``, ``caption``, ``object``; plus ``points`` ``[P, 3]`` / ``occupancy`` ``[P]`` if ``n_points``."""

    def __init__(self, specs, views: dict, split: Split, n_points: int = 0, seed: int = 0) -> None:
        self.specs, self.views, self.split, self.n_points, self.seed = specs, views, split, n_points, seed

    def __len__(self) -> int:
        return int(self.views["object"].shape[0])

    def __getitem__(self, i: int) -> dict:
        v, obj = self.views, int(self.views["object"][i])
        spec = self.specs[obj]
        rgb, mask = v["rgb"][i].float() / 255.0, v["alpha"][i].float() / 255.0
        item = {"image": (rgb + (1.0 - mask[None])).clamp(0, 1), "mask": mask, "depth": v["depth"][i].float(),
                "c2w": v["c2w"][i], "focal": v["focal"][i], "kind": spec.kind_index, "colour": spec.colour_index,
                "caption": caption(spec.kind, spec.colour, RETRIEVAL_TEMPLATE), "object": obj}
        if self.n_points > 0:
            pts, occ = query_points(spec, self.n_points, 1.0, _point_seed(self.seed, self.split, obj))
            item["points"], item["occupancy"] = pts, occ.float()
        return item


class SingleViewDataModule(LightningDataModule):
    """Single-view renders of training objects (train) and held-out objects (val).

    Args:
        image_size: render size.
        n_train_objects, train_views: training objects and views per object.
        n_val_objects, val_views: held-out objects and views per object.
        camera: camera distribution (default :class:`~shapeworld.render.CameraRanges`).
        n_points: query points with occupancy per item (0: none).
        n_samples: samples per ray of the renders.
        seed: object and camera seed.
        batch_size, num_workers: loader settings.
        cache_dir: cache folder (default ``~/.cache/priorlab/shapeworld``).
    """

    def __init__(self, image_size: int = 64, n_train_objects: int = 1980, train_views: int = 4, n_val_objects: int = 132,
                 val_views: int = 1, camera: Optional[CameraRanges] = None, n_points: int = 2048, n_samples: int = 96,
                 seed: int = 0, batch_size: int = 32, num_workers: int = 0, cache_dir: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.camera = camera or CameraRanges()

    def _make(self, split: Split) -> SingleViewDataset:
        h = self.hparams
        n, v = (h.n_train_objects, h.train_views) if split == "train" else (h.n_val_objects, h.val_views)
        specs, views = cached_views(split, n, v, h.image_size, self.camera, h.seed, h.n_samples, True, h.cache_dir)
        return SingleViewDataset(specs, views, split, h.n_points, h.seed)

    def prepare_data(self) -> None:
        self._make("train")
        self._make("heldout")

    def setup(self, stage: Optional[str] = None) -> None:
        self.train_set, self.val_set = self._make("train"), self._make("heldout")

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self.train_set, batch_size=h.batch_size, shuffle=True, drop_last=True, num_workers=h.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)
