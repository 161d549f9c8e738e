"""Few-shot multi-view data for DietNeRF: which views are observed, the pose pool of π, and the
evaluation views (specs/dietnerf.md §3.1, §4.1).

* :class:`FewShotBlenderDataModule` reads a Blender/NeRF-synthetic scene through
  :func:`common.data.load_blender_split` (so missing folders, absent images and bad indices raise
  common's :class:`~common.data.DatasetError`), selects the observed views — 8 drawn by the release's
  ``np.random.seed(0); np.random.choice(100, 8, replace=False)`` = ``[26, 86, 2, 55, 75, 93, 16, 73]``,
  explicit indices (e.g. the 14-view one-sided Lego), 1 view, or all — and keeps every 8th test view
  (``testskip=8``: 25 of 200). The pose pool is every camera of the training split [C].
* :class:`PosedViewsDataModule` is the interface the system uses (shared with :mod:`dietnerf.dtu`):
  ``train_views()``, ``pose_pool()``, a step-index stream for training (the system draws its own rays:
  one random image per step, central precrop early on) and full views for validation/test.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from common.data import BlenderDataModule, CameraStream, DatasetError, MultiViewImages, load_blender_split
from dietnerf.rays import blender_intrinsics


@dataclass
class PosedImages:
    """Posed images of one scene.

    Attributes:
        images: ``[N, H, W, 3]`` RGB in [0, 1] (composited on the scene's background).
        c2w: ``[N, 4, 4]`` camera-to-world matrices (OpenGL convention).
        intrinsics: ``[N, 4]`` ``(f_x, f_y, c_x, c_y)`` in pixels.
        indices: index of each view in its split (or in the scan, for DTU).
        files: image files.
    """

    images: Tensor
    c2w: Tensor
    intrinsics: Tensor
    indices: list
    files: list

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def __len__(self) -> int:
        return self.images.shape[0]

    @classmethod
    def from_multiview(cls, mv: MultiViewImages) -> "PosedImages":
        intr = blender_intrinsics(mv.focal, mv.height, mv.width).expand(mv.images.shape[0], 4).clone()
        return cls(mv.images, mv.c2w, intr, list(mv.indices), list(mv.files))


def few_shot_indices(n_frames: int, num_views: int, seed: int = 0) -> list[int]:
    """The release's view draw: legacy NumPy ``seed(seed); choice(n_frames, num_views, replace=False)``.

    Example:
        >>> few_shot_indices(100, 8, seed=0)
        [26, 86, 2, 55, 75, 93, 16, 73]
    """
    if num_views < 1:
        raise DatasetError(f"num_train_views must be >= 1, got {num_views}")
    if num_views > n_frames:
        raise DatasetError(f"num_train_views={num_views} but the training split has only {n_frames} frames; "
                           "lower num_train_views or point the config at a scene with more views.")
    return [int(i) for i in np.random.RandomState(seed).choice(n_frames, num_views, replace=False)]


def check_view_indices(indices: Sequence[int], n_frames: int, what: str) -> list[int]:
    """Validate explicit view indices: non-empty, integers in ``[0, n_frames)``, no duplicates."""
    indices = [int(i) for i in indices]
    if not indices:
        raise DatasetError(f"{what} is empty: give at least one view index.")
    bad = [i for i in indices if not 0 <= i < n_frames]
    if bad:
        raise DatasetError(f"{what} {bad} out of range: the split has {n_frames} views (indices 0..{n_frames - 1}).")
    dup = sorted({i for i in indices if indices.count(i) > 1})
    if dup:
        raise DatasetError(f"{what} lists views {dup} more than once.")
    return indices


class PosedViews(Dataset):
    """One item per view: ``{"rgb" [H, W, 3], "c2w" [4, 4], "intrinsics" [4], "index", "view"}``
    (``index`` is the position in this set, ``view`` the index in the split)."""

    def __init__(self, views: PosedImages) -> None:
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> dict:
        v = self.views
        return {"rgb": v.images[i], "c2w": v.c2w[i], "intrinsics": v.intrinsics[i],
                "index": torch.tensor(i), "view": torch.tensor(int(v.indices[i]))}


class PosedViewsDataModule(LightningDataModule):
    """What :class:`~dietnerf.system.DietNeRFSystem` reads: observed views, pose pool, eval views.

    Args:
        steps_per_epoch: length of the training index stream per epoch (run length: ``trainer.max_steps``).
        num_workers: DataLoader workers for the evaluation views.
    """

    def __init__(self, steps_per_epoch: int = 1000, num_workers: int = 0) -> None:
        super().__init__()
        self.steps_per_epoch, self.num_workers = steps_per_epoch, num_workers
        self._cache: dict = {}

    # -- to implement ------------------------------------------------------------------------------
    def _load(self, split: str) -> PosedImages:  # pragma: no cover - abstract
        raise NotImplementedError

    def pose_pool(self) -> Tensor:  # pragma: no cover - abstract
        """``[M, 4, 4]`` every known camera of the training split (their images need not be used)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Scene name and view selection, written next to the test metrics."""
        return {}

    # -- shared ------------------------------------------------------------------------------------
    def views(self, split: str) -> PosedImages:
        """Posed images of ``train`` (the observed views), ``val`` or ``test`` (cached)."""
        if split not in self._cache:
            self._cache[split] = self._load(split)
        return self._cache[split]

    def train_views(self) -> PosedImages:
        return self.views("train")

    def setup(self, stage: Optional[str] = None) -> None:
        self.prepare_data()
        self.views("train")
        if stage in (None, "fit", "validate"):
            self.views("val")
        if stage in (None, "test"):
            self.views("test")

    def train_dataloader(self) -> DataLoader:
        return DataLoader(CameraStream(self.steps_per_epoch), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(PosedViews(self.views("val")), batch_size=None, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(PosedViews(self.views("test")), batch_size=None, num_workers=self.num_workers)


def _split_frames(root: str, split: str, downscale: int, white_background: bool) -> list:
    """Frames of ``transforms_{split}.json``; a missing or malformed file raises common's DatasetError."""
    path = Path(root) / f"transforms_{split}.json"
    try:
        frames = json.loads(path.read_text())["frames"]
        if not isinstance(frames, list):
            raise TypeError
        return frames
    except (OSError, ValueError, KeyError, TypeError):
        load_blender_split(root, split, None, downscale, white_background)  # raises, naming file and layout
        raise DatasetError(f"{path} could not be read as a Blender transforms file.")


class FewShotBlenderDataModule(PosedViewsDataModule):
    """A Blender-layout scene with few observed views (DietNeRF's 8-view, 14-view and 1-view settings).

    Give either ``root`` (a scene folder: ``nerf_synthetic/lego``) or ``scene``, a
    :class:`~common.data.BlenderDataModule` (e.g. :class:`shapeworld.scenes.ShapeWorldSceneDataModule`,
    which writes its folder on first use; its ``root``, ``downscale`` and ``white_background`` are used).

    Args:
        root: scene folder in the Blender layout.
        scene: a Blender datamodule whose folder is read instead of ``root``.
        num_train_views: number of observed views drawn at random (8); None with no indices = all.
        train_view_seed: seed of the legacy-NumPy draw (0 gives the paper's views).
        train_view_indices: explicit observed views (override ``num_train_views``).
        val_views: validation views (default every ``testskip``-th).
        test_views: test views (default every ``testskip``-th: 25 of 200).
        testskip: stride of the default val/test views (8).
        downscale: image downscale with ``root`` (2: the paper's 400×400).
        white_background: composite RGBA on white with ``root`` (all Blender scenes).
        steps_per_epoch, num_workers: see :class:`PosedViewsDataModule`.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        scene: Optional[BlenderDataModule] = None,
        num_train_views: Optional[int] = 8,
        train_view_seed: int = 0,
        train_view_indices: Optional[list[int]] = None,
        val_views: Optional[list[int]] = None,
        test_views: Optional[list[int]] = None,
        testskip: int = 8,
        downscale: int = 2,
        white_background: bool = True,
        steps_per_epoch: int = 1000,
        num_workers: int = 0,
    ) -> None:
        super().__init__(steps_per_epoch, num_workers)
        if (root is None) == (scene is None):
            raise ValueError("FewShotBlenderDataModule needs exactly one of `root` (a scene folder) or `scene` "
                             "(a Blender datamodule)")
        if testskip < 1:
            raise ValueError(f"testskip must be >= 1, got {testskip}")
        self.scene = scene
        self.root = root if root is not None else scene.root
        self.downscale = downscale if scene is None else scene.downscale
        self.white_background = white_background if scene is None else scene.white_background
        self.num_train_views, self.train_view_seed, self.train_view_indices = num_train_views, train_view_seed, train_view_indices
        self.val_view_indices, self.test_view_indices, self.testskip = val_views, test_views, testskip

    def prepare_data(self) -> None:
        if self.scene is not None:
            self.scene.prepare_data()  # generated scenes write their folder here

    def selected(self, split: str) -> Optional[list[int]]:
        """View indices of ``split`` (None = all frames)."""
        n = len(_split_frames(self.root, split, self.downscale, self.white_background))
        if split == "train":
            if self.train_view_indices is not None:
                return check_view_indices(self.train_view_indices, n, "train_view_indices")
            if self.num_train_views is None:
                return None
            return few_shot_indices(n, self.num_train_views, self.train_view_seed)
        explicit = self.val_view_indices if split == "val" else self.test_view_indices
        if explicit is not None:
            return check_view_indices(explicit, n, f"{split}_views")
        return list(range(0, n, self.testskip))

    def _load(self, split: str) -> PosedImages:
        views = self.selected(split)
        return PosedImages.from_multiview(load_blender_split(self.root, split, views, self.downscale, self.white_background))

    def pose_pool(self) -> Tensor:
        frames = _split_frames(self.root, "train", self.downscale, self.white_background)
        return torch.tensor(np.asarray([f["transform_matrix"] for f in frames], dtype=np.float32))

    def describe(self) -> dict:
        return {"scene": Path(self.root).name, "root": str(self.root), "train_views": self.train_views().indices,
                "test_views": self.views("test").indices if "test" in self._cache else None}


__all__ = ["FewShotBlenderDataModule", "PosedImages", "PosedViews", "PosedViewsDataModule", "check_view_indices",
           "few_shot_indices"]
