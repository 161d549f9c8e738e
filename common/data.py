"""Data: the Blender/NeRF-synthetic multi-view loader, its ray datamodule, and a camera stream.

Blender layout (Mildenhall et al. 2020): ``<root>/transforms_{train,val,test}.json``, each
``{"camera_angle_x": fov_x_radians, "frames": [{"file_path": "./train/r_0", "transform_matrix":
4×4 c2w}, ...]}``; images are ``<root>/<file_path>.png`` (the suffix may also be given in
``file_path``), RGBA composited onto white by default. Poses use the OpenGL convention of
:mod:`common.cameras`.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from common.cameras import SphericalCameraSampler, get_rays

Split = Literal["train", "val", "test"]


class DatasetError(ValueError):
    """A dataset folder or file that cannot be read; the message names the file and the fix."""


@dataclass
class MultiViewImages:
    """Posed images of one scene.

    Attributes:
        images: ``[N, H, W, 3]`` RGB in [0, 1] (composited onto the background).
        alphas: ``[N, H, W]`` alpha in [0, 1] (ones for RGB files).
        c2w: ``[N, 4, 4]`` camera-to-world poses.
        focal: focal length in pixels at this resolution.
        indices: ``[N]`` indices of the views in the split's ``frames`` list.
        files: image paths.
    """

    images: Tensor
    alphas: Tensor
    c2w: Tensor
    focal: float
    indices: list[int]
    files: list[Path]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]


def _read_transforms(root: Path, split: str) -> dict:
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder {root} does not exist. Point the config's data root at a folder in the "
            "Blender/NeRF-synthetic layout (transforms_train.json, transforms_val.json, transforms_test.json "
            "and the images they name), e.g. nerf_synthetic/lego from the NeRF authors' release."
        )
    path = root / f"transforms_{split}.json"
    if not path.is_file():
        raise DatasetError(f"{path} is missing: the Blender layout needs transforms_{split}.json in {root}.")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); fix or regenerate the file.") from err
    if not isinstance(meta, dict) or "frames" not in meta or "camera_angle_x" not in meta:
        raise DatasetError(f"{path} must be an object with 'camera_angle_x' and 'frames' keys.")
    for k, frame in enumerate(meta["frames"]):
        if "file_path" not in frame or "transform_matrix" not in frame:
            raise DatasetError(f"{path}: frame {k} needs 'file_path' and 'transform_matrix'.")
        mat = np.asarray(frame["transform_matrix"], dtype=np.float64)
        if mat.shape != (4, 4) or not np.isfinite(mat).all():
            raise DatasetError(f"{path}: frame {k} 'transform_matrix' must be a finite 4x4 matrix, got shape {mat.shape}.")
    return meta


def _image_path(root: Path, file_path: str) -> Path:
    p = (root / file_path).resolve()
    if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return p
    return p.with_name(p.name + ".png")


def load_blender_split(
    root: str,
    split: Split = "train",
    views: Optional[Sequence[int]] = None,
    downscale: int = 1,
    white_background: bool = True,
) -> MultiViewImages:
    """Load the posed images of one split.

    Args:
        root: scene folder in the Blender layout.
        split: ``train``, ``val`` or ``test``.
        views: indices into the split's frames to keep (e.g. DietNeRF's 8 views); None keeps all.
        downscale: integer factor to shrink images by (area averaging); the focal length follows.
        white_background: composite RGBA onto white (NeRF-synthetic convention) instead of black.
    """
    import imageio.v3 as iio

    base = Path(root)
    meta = _read_transforms(base, split)
    frames = meta["frames"]
    if not frames:
        raise DatasetError(f"{base / f'transforms_{split}.json'} lists no frames.")
    indices = list(range(len(frames))) if views is None else list(views)
    bad = [i for i in indices if not 0 <= i < len(frames)]
    if bad:
        raise DatasetError(f"view indices {bad} are out of range: transforms_{split}.json in {base} has {len(frames)} frames.")
    images, alphas, poses, files, size = [], [], [], [], None
    for i in indices:
        path = _image_path(base, frames[i]["file_path"])
        if not path.is_file():
            raise DatasetError(f"transforms_{split}.json frame {i} names {path}, which does not exist.")
        img = np.asarray(iio.imread(path), dtype=np.float32) / 255.0
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise DatasetError(
                f"{path} is {img.shape[1]}x{img.shape[0]} but the first image of the split is {size[1]}x{size[0]}: "
                "all images of a split must have one size (resize them, or regenerate the scene)."
            )
        rgb, alpha = img[..., :3], (img[..., 3] if img.shape[-1] == 4 else np.ones(img.shape[:2], np.float32))
        bg = 1.0 if white_background else 0.0
        images.append(rgb * alpha[..., None] + bg * (1 - alpha[..., None]))
        alphas.append(alpha)
        poses.append(np.asarray(frames[i]["transform_matrix"], dtype=np.float32))
        files.append(path)
    imgs, alps = torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(alphas))
    if downscale > 1:
        imgs = torch.nn.functional.avg_pool2d(imgs.permute(0, 3, 1, 2), downscale).permute(0, 2, 3, 1)
        alps = torch.nn.functional.avg_pool2d(alps[:, None], downscale)[:, 0]
    width = imgs.shape[2]
    focal = 0.5 * width / math.tan(0.5 * float(meta["camera_angle_x"]))
    return MultiViewImages(imgs.contiguous(), alps.contiguous(), torch.from_numpy(np.stack(poses)), focal, indices, files)


class RayBatches(Dataset):
    """``length`` batches of ``batch_rays`` random rays (with their colours) over all views.

    Each item is drawn with a generator seeded by ``(seed, rank, index)``, so every DDP rank sees its
    own rays and runs are reproducible.
    """

    def __init__(self, views: MultiViewImages, batch_rays: int, length: int, seed: int = 0, rank: int = 0) -> None:
        self.rays_o, self.rays_d = get_rays(views.c2w, views.height, views.width, views.focal)  # [N, H, W, 3]
        self.rgb = views.images
        self.batch_rays, self.length, self.seed, self.rank = batch_rays, length, seed, rank

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(hash((self.seed, self.rank, index)) % (2**63))
        n, h, w = self.rgb.shape[:3]
        flat = torch.randint(0, n * h * w, (self.batch_rays,), generator=g)
        return {
            "rays_o": self.rays_o.reshape(-1, 3)[flat],
            "rays_d": self.rays_d.reshape(-1, 3)[flat],
            "rgb": self.rgb.reshape(-1, 3)[flat],
        }


class FullImages(Dataset):
    """One item per view: all rays of the image, its colours and pose (evaluation)."""

    def __init__(self, views: MultiViewImages) -> None:
        self.views = views
        self.rays_o, self.rays_d = get_rays(views.c2w, views.height, views.width, views.focal)

    def __len__(self) -> int:
        return self.views.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {
            "rays_o": self.rays_o[i], "rays_d": self.rays_d[i], "rgb": self.views.images[i],
            "c2w": self.views.c2w[i], "focal": torch.tensor(self.views.focal), "index": torch.tensor(i),
        }


class BlenderDataModule(LightningDataModule):
    """Random ray batches from a Blender-layout scene for training; full views for val/test.

    Args:
        root: scene folder (``transforms_{train,val,test}.json`` + images).
        train_views: indices of the training views to use (None = all; DietNeRF uses 8 or 1).
        val_views: indices of the validation views (None = all). Evaluating every view is slow at
            full resolution; a few are usually enough during training.
        test_views: indices of the test views (None = all).
        downscale: integer image downscale factor (NeRF's "half resolution" is 2).
        white_background: composite RGBA onto white.
        batch_rays: rays per training batch (NeRF: 1024; DietNeRF: 4096).
        steps_per_epoch: training batches per epoch (the run length is ``trainer.max_steps``).
        seed: seed of the ray sampler.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        root: str,
        train_views: Optional[list[int]] = None,
        val_views: Optional[list[int]] = None,
        test_views: Optional[list[int]] = None,
        downscale: int = 1,
        white_background: bool = True,
        batch_rays: int = 1024,
        steps_per_epoch: int = 1000,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.root, self.train_views, self.val_views, self.test_views = root, train_views, val_views, test_views
        self.downscale, self.white_background = downscale, white_background
        self.batch_rays, self.steps_per_epoch, self.seed, self.num_workers = batch_rays, steps_per_epoch, seed, num_workers
        self._splits: dict[str, MultiViewImages] = {}

    def split(self, name: Split) -> MultiViewImages:
        if name not in self._splits:
            views = {"train": self.train_views, "val": self.val_views, "test": self.test_views}[name]
            self._splits[name] = load_blender_split(self.root, name, views, self.downscale, self.white_background)
        return self._splits[name]

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit"):
            self.split("train")
            self.split("val")
        if stage in (None, "test"):
            self.split("test")
        if stage == "validate":
            self.split("val")

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        ds = RayBatches(self.split("train"), self.batch_rays, self.steps_per_epoch, self.seed, rank)
        return DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(FullImages(self.split("val")), batch_size=None, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(FullImages(self.split("test")), batch_size=None, num_workers=self.num_workers)


class CameraStream(Dataset):
    """``length`` random cameras from a :class:`SphericalCameraSampler` (per-scene optimisation).

    Items are ``{"index": i}``: systems draw the camera themselves (so that they can use their own
    generator and state, e.g. Dream Fields' tracked origin); the stream only fixes the run length
    and gives DDP ranks distinct indices.
    """

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"index": torch.tensor(i)}


class CameraDataModule(LightningDataModule):
    """Datamodule for per-scene optimisation: an index stream for training and ``n_val_views``
    indices for validation/test (systems render their own cameras).

    Args:
        steps_per_epoch: training items per epoch (the run length is ``trainer.max_steps``).
        n_val_views: evaluation views.
    """

    def __init__(self, steps_per_epoch: int = 1000, n_val_views: int = 1) -> None:
        super().__init__()
        self.steps_per_epoch, self.n_val_views = steps_per_epoch, n_val_views

    def train_dataloader(self) -> DataLoader:
        return DataLoader(CameraStream(self.steps_per_epoch), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(CameraStream(self.n_val_views), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


__all__ = [
    "BlenderDataModule", "CameraDataModule", "CameraStream", "DatasetError", "FullImages", "MultiViewImages",
    "RayBatches", "SphericalCameraSampler", "load_blender_split",
]
