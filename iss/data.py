"""Data for ISS: multi-view renders with masks/depth/cameras (SVR and stage 1), prompts (stage 2).

Batches of the SVR / stage-1 datamodules are dicts:

* ``input`` ``[B, 3, Hi, Wi]`` in [0, 1]: the input view (to ``E_S`` and CLIP);
* ``image`` ``[B, 3, H, W]`` in [0, 1], ``mask`` ``[B, H, W]`` in {0, 1}, ``depth`` ``[B, H, W]`` camera
  z-depth (``inf`` where unknown): one supervision view of the same object;
* ``c2w`` ``[B, 4, 4]`` / ``focal`` ``[B, 2]``: its camera in :mod:`iss.cameras`' convention;
* optional ``points`` ``[B, P, 3]`` / ``occupancy`` ``[B, P]`` (3D IoU in validation), ``caption``.

Sources: :class:`ShapeWorldSVRDataModule` (the embedded default, built on
:class:`shapeworld.singleview.SingleViewDataModule`) and :class:`DVRShapeNetDataModule` (DVR's ShapeNet
renders from a user folder). :class:`PromptDataModule` streams prompts to stage 2.
"""

import random
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from common.data import DatasetError
from iss.cameras import OPENGL_TO_OPENCV, pixel_grid

__all__ = ["ShapeWorldSVRDataModule", "MultiViewObjects", "DVRShapeNetDataset", "DVRShapeNetDataModule",
           "PromptDataModule", "PromptDataset", "check_svr_batch"]


def check_svr_batch(batch: dict, need_depth: bool = False) -> None:
    """Clear errors for batches that cannot train DVR (no masks, mismatched cameras)."""
    if "mask" not in batch or batch["mask"] is None:
        raise DatasetError("the batch has renders without masks: DVR's losses (freespace, occupancy, L_bg) need an object "
                           "mask per supervision view. Provide mask/ images (DVR layout) or use a datamodule that yields 'mask'.")
    for key in ("input", "image", "c2w", "focal"):
        if key not in batch:
            raise DatasetError(f"the batch has no '{key}': ISS's SVR/stage-1 batches need input, image, mask, c2w and focal "
                               "(see iss/data.py)")
    n = batch["image"].shape[0]
    if batch["c2w"].shape[0] != n or batch["mask"].shape[0] != n:
        raise DatasetError(f"the batch has {n} images but {batch['c2w'].shape[0]} cameras and {batch['mask'].shape[0]} masks")
    if batch["mask"].shape[-2:] != batch["image"].shape[-2:]:
        raise DatasetError(f"mask size {tuple(batch['mask'].shape[-2:])} differs from image size {tuple(batch['image'].shape[-2:])}")
    if need_depth and "depth" not in batch:
        raise DatasetError("depth supervision is on (lambda depth > 0) but the batch has no 'depth'; set the depth weight to 0 "
                           "for RGB-only training")


def opengl_view_to_dvr(c2w: Tensor, focal_px: Tensor, mask: Tensor, depth_along_ray: Tensor) -> Dict[str, Tensor]:
    """Convert one shapeworld view (OpenGL camera, focal in pixels, expected depth along unit rays, not normalised
    by opacity) to ISS's convention: DVR camera, NDC focal, camera z-depth (``inf`` off the object)."""
    H, W = mask.shape
    f = float(focal_px) * 2.0 / max(W - 1, 1)
    uv = pixel_grid(H, W).reshape(H, W, 2)
    ray_len = torch.sqrt(1.0 + (uv[..., 0] / f) ** 2 + (uv[..., 1] / f) ** 2)  # |w| for camera depth 1
    on = (mask > 0.5) & (depth_along_ray > 0)
    z = torch.where(on, depth_along_ray / mask.clamp_min(1e-6) / ray_len, torch.full_like(mask, float("inf")))
    return {"c2w": c2w.float() @ OPENGL_TO_OPENCV, "focal": torch.tensor([f, f]), "mask": (mask > 0.5).float(), "depth": z}


class MultiViewObjects(Dataset):
    """Groups a view-level shapeworld dataset by object: each item is (input view, supervision view) of one object.

    Args:
        views: a :class:`shapeworld.singleview.SingleViewDataset`.
        random_views: draw the two views at random (training; DVR draws them independently) or use views 0 and 1.
    """

    def __init__(self, views, random_views: bool = True) -> None:
        self.views, self.random_views = views, random_views
        objects = views.views["object"].tolist()
        groups: Dict[int, List[int]] = {}
        for i, o in enumerate(objects):
            groups.setdefault(int(o), []).append(i)
        self.groups = [groups[k] for k in sorted(groups)]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict:
        idx = self.groups[i]
        if self.random_views:
            a, b = random.choice(idx), random.choice(idx)
        else:
            a, b = idx[0], idx[1 % len(idx)]
        inp, sup = self.views[a], self.views[b]
        item = {"input": inp["image"], "image": sup["image"], "caption": sup["caption"], "kind": sup["kind"],
                "colour": sup["colour"], "object": sup["object"]}
        item.update(opengl_view_to_dvr(sup["c2w"], sup["focal"], sup["mask"], sup["depth"]))
        if "points" in sup:
            item["points"], item["occupancy"] = sup["points"], sup["occupancy"]
        return item


class ShapeWorldSVRDataModule(LightningDataModule):
    """shapeworld renders for ISS's SVR model and stage 1 (the embedded default).

    Wraps :class:`shapeworld.singleview.SingleViewDataModule` (cached renders with mask, depth and camera)
    and pairs two views of each object: the input view and a supervision view (spec §3).

    Args:
        image_size: render size (input and supervision).
        n_train_objects, train_views: training objects and views per object.
        n_val_objects, val_views: held-out objects and views per object (≥ 2 gives distinct input/supervision views).
        val_points: occupancy query points per validation item (3D IoU); 0: none.
        n_samples: samples per ray of the shapeworld renders.
        seed: object and camera seed.
        batch_size: objects per batch (16, [C/D]).
        num_workers: loader workers.
        cache_dir: shapeworld cache folder.
    """

    def __init__(self, image_size: int = 64, n_train_objects: int = 1980, train_views: int = 4, n_val_objects: int = 66,
                 val_views: int = 2, val_points: int = 2048, n_samples: int = 96, seed: int = 0, batch_size: int = 16,
                 num_workers: int = 0, cache_dir: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._inner: Optional[tuple] = None

    def _views(self):
        """The wrapped view datamodules (built lazily: constructing a datamodule inside another's ``__init__``
        would pick up the outer one's hyper-parameters under LightningCLI)."""
        if self._inner is None:
            from shapeworld.singleview import SingleViewDataModule

            h = self.hparams
            common = dict(image_size=h.image_size, n_train_objects=h.n_train_objects, train_views=h.train_views,
                          n_val_objects=h.n_val_objects, val_views=h.val_views, n_samples=h.n_samples, seed=h.seed,
                          batch_size=h.batch_size, num_workers=h.num_workers, cache_dir=h.cache_dir)
            self._inner = (SingleViewDataModule(n_points=0, **common), SingleViewDataModule(n_points=h.val_points, **common))
        return self._inner

    def prepare_data(self) -> None:
        self._views()[0].prepare_data()

    def setup(self, stage: Optional[str] = None) -> None:
        train_views, val_views = self._views()
        train_views.setup(stage)
        val_views.setup(stage)
        self.train_set = MultiViewObjects(train_views.train_set, random_views=True)
        self.val_set = MultiViewObjects(val_views.val_set, random_views=False)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self.train_set, batch_size=h.batch_size, shuffle=True, drop_last=len(self.train_set) >= h.batch_size,
                          num_workers=h.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)


# ---------------------------------------------------------------------------------------------- ShapeNet (DVR)
#: the 13 ShapeNet classes (synset -> name), as in the paper
SHAPENET13: Dict[str, str] = {
    "02691156": "airplane", "02828884": "bench", "02933112": "cabinet", "02958343": "car", "03001627": "chair",
    "03211117": "display", "03636649": "lamp", "03691459": "loudspeaker", "04090263": "rifle", "04256520": "sofa",
    "04379243": "table", "04401088": "telephone", "04530566": "watercraft",
}


def _article(name: str) -> str:
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _files(folder: Path, extensions: Sequence[str]) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower().lstrip(".") in extensions) if folder.is_dir() else []


def _read_rgb(path: Path, size: Optional[int] = None) -> Tensor:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


def _read_mask(path: Path) -> Tensor:
    from PIL import Image

    m = np.asarray(Image.open(path))
    m = m.reshape(m.shape[0], m.shape[1], -1)[..., 0]
    return torch.from_numpy((m > 0).astype(np.float32))


def _read_depth(path: Path) -> Tensor:
    if path.suffix == ".npy":
        d = np.load(path, allow_pickle=False)
    else:
        try:
            import imageio.v2 as imageio

            d = np.asarray(imageio.imread(path), dtype=np.float32)
        except Exception as err:
            raise DatasetError(f"{path}: cannot read the depth map ({err}). EXR needs an imageio plugin with OpenEXR support "
                               "(e.g. `pip install imageio[freeimage]` + `imageio_download_bin freeimage`), or convert the "
                               "depth maps to .npy (set depth_extension: npy).") from err
    d = d.reshape(d.shape[0], d.shape[1], -1)[..., 0].astype(np.float32)
    return torch.from_numpy(d)


class DVRShapeNetDataset(Dataset):
    """DVR's ShapeNet renders (``root/<synset>/<model>/...``), one random supervision view per item.

    Layout per model (DVR's ``configs/default.yaml``): ``image/*.png``, ``mask/*.png``, ``depth/*.exr`` (``inf`` =
    background), ``cameras.npz`` (``world_mat_i``, ``camera_mat_i``, optional ``scale_mat_i``) and the input renderings
    ``img_choy2016/*.jpg`` (resized to 224). Splits from ``<synset>/<split>.lst``.

    Args:
        root: the DVR ``ShapeNet`` folder.
        split: ``train``, ``val`` or ``test``.
        categories: synset ids or class names (default: the 13 classes).
        image_folder, mask_folder, depth_folder, input_folder: folder names.
        depth_extension: ``exr`` (DVR) or ``npy``.
        with_depth: load depth maps (RGB-D supervision; DVR ``ours_combined``).
        input_size: input image size (224).
        image_size: resize supervision views to this size (None: keep).
        random_views: random views (training) or view 0 (evaluation).
    """

    def __init__(self, root: str, split: str = "train", categories: Optional[Sequence[str]] = None, image_folder: str = "image",
                 mask_folder: str = "mask", depth_folder: str = "depth", input_folder: str = "img_choy2016",
                 depth_extension: str = "exr", with_depth: bool = True, input_size: int = 224, image_size: Optional[int] = None,
                 random_views: bool = True) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"ShapeNet render folder not found: {self.root}. Expected DVR's ShapeNet data "
                               "(root/<synset>/<model>/image, mask, depth, cameras.npz, img_choy2016); set data.init_args.root.")
        self.image_folder, self.mask_folder, self.depth_folder, self.input_folder = image_folder, mask_folder, depth_folder, input_folder
        self.depth_extension, self.with_depth, self.input_size, self.image_size = depth_extension, with_depth, input_size, image_size
        self.random_views = random_views
        names = {v: k for k, v in SHAPENET13.items()}
        synsets = [names.get(c, c) for c in (categories or list(SHAPENET13))]
        self.items: List[tuple] = []
        for syn in synsets:
            lst = self.root / syn / f"{split}.lst"
            if not lst.is_file():
                raise DatasetError(f"missing split file {lst}: each category folder needs {split}.lst (DVR's splits)")
            self.items += [(syn, m.strip()) for m in lst.read_text().splitlines() if m.strip()]
        if not self.items:
            raise DatasetError(f"no models listed for split '{split}' under {self.root} (categories {synsets})")
        self._checked: Dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def check_model(self, folder: Path) -> int:
        """Validate one model folder; returns its number of views. Raises :class:`DatasetError` naming the problem."""
        key = str(folder)
        if key in self._checked:
            return self._checked[key]
        images = _files(folder / self.image_folder, ("png", "jpg", "jpeg"))
        if not images:
            raise DatasetError(f"{folder}: no renders in {self.image_folder}/ (DVR layout: image/*.png)")
        masks = _files(folder / self.mask_folder, ("png", "jpg", "jpeg"))
        if not masks:
            raise DatasetError(f"{folder}: renders without masks — {self.mask_folder}/ is missing or empty. DVR's losses need an "
                               "object mask per view (mask/*.png, nonzero = object).")
        if len(masks) != len(images):
            raise DatasetError(f"{folder}: {len(images)} renders in {self.image_folder}/ but {len(masks)} masks in {self.mask_folder}/")
        cam_file = folder / "cameras.npz"
        if not cam_file.is_file():
            raise DatasetError(f"{folder}: no cameras.npz (world_mat_<i>, camera_mat_<i> per view)")
        cams = np.load(cam_file)
        n_cams = len([k for k in cams.files if k.startswith("world_mat_")])
        if n_cams != len(images) or any(f"camera_mat_{i}" not in cams.files or f"world_mat_{i}" not in cams.files
                                        for i in range(len(images))):
            raise DatasetError(f"{cam_file}: camera file does not match the renders: {n_cams} cameras (world_mat_<i>) for "
                               f"{len(images)} images in {self.image_folder}/; each view i needs world_mat_i and camera_mat_i.")
        if self.with_depth:
            depths = _files(folder / self.depth_folder, (self.depth_extension,))
            if len(depths) != len(images):
                raise DatasetError(f"{folder}: {len(depths)} depth maps (*.{self.depth_extension}) in {self.depth_folder}/ for "
                                   f"{len(images)} renders; set with_depth: false for RGB-only supervision")
        if not _files(folder / self.input_folder, ("png", "jpg", "jpeg")):
            raise DatasetError(f"{folder}: no input renderings in {self.input_folder}/")
        self._checked[key] = len(images)
        return len(images)

    def __getitem__(self, i: int) -> dict:
        from iss.cameras import DVRCameras

        syn, model = self.items[i]
        folder = self.root / syn / model
        n = self.check_model(folder)
        inputs = _files(folder / self.input_folder, ("png", "jpg", "jpeg"))
        k_in = random.randrange(len(inputs)) if self.random_views else 0
        k = random.randrange(n) if self.random_views else 0
        image = _read_rgb(_files(folder / self.image_folder, ("png", "jpg", "jpeg"))[k], self.image_size)
        mask = _read_mask(_files(folder / self.mask_folder, ("png", "jpg", "jpeg"))[k])
        if mask.shape != image.shape[-2:]:
            mask = torch.nn.functional.interpolate(mask[None, None], size=image.shape[-2:], mode="nearest")[0, 0]
        cams = np.load(folder / "cameras.npz")
        cam = DVRCameras.from_dvr(torch.from_numpy(cams[f"world_mat_{k}"]), torch.from_numpy(cams[f"camera_mat_{k}"]),
                                  torch.from_numpy(cams.get(f"scale_mat_{k}", np.eye(4))), where=str(folder / "cameras.npz"))
        item = {"input": _read_rgb(inputs[k_in], self.input_size), "image": image, "mask": mask,
                "c2w": cam.c2w[0], "focal": cam.focal[0], "caption": _article(SHAPENET13.get(syn, syn)), "object": i}
        if self.with_depth:
            depth = _read_depth(_files(folder / self.depth_folder, (self.depth_extension,))[k])
            if depth.shape != image.shape[-2:]:
                depth = torch.nn.functional.interpolate(depth[None, None], size=image.shape[-2:], mode="nearest")[0, 0]
            item["depth"] = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.full_like(depth, float("inf")))
        return item


class DVRShapeNetDataModule(LightningDataModule):
    """DVR's ShapeNet multi-view renders from a user folder (see :class:`DVRShapeNetDataset`).

    Args:
        root: the DVR ShapeNet folder.
        categories: synset ids or names (default 13 classes).
        with_depth: RGB-D supervision (``ours_combined``).
        depth_extension: ``exr`` or ``npy``.
        input_size: input view size (224).
        image_size: supervision view size (None: as stored).
        batch_size: objects per batch (16).
        num_workers: loader workers.
        val_split: split used for validation.
    """

    def __init__(self, root: str = "~/data/DVR/ShapeNet", categories: Optional[List[str]] = None, with_depth: bool = True,
                 depth_extension: str = "exr", input_size: int = 224, image_size: Optional[int] = None, batch_size: int = 16,
                 num_workers: int = 4, val_split: str = "val") -> None:
        super().__init__()
        self.save_hyperparameters()

    def _make(self, split: str, random_views: bool) -> DVRShapeNetDataset:
        h = self.hparams
        ds = DVRShapeNetDataset(h.root, split, h.categories, depth_extension=h.depth_extension, with_depth=h.with_depth,
                                input_size=h.input_size, image_size=h.image_size, random_views=random_views)
        ds.check_model(ds.root / ds.items[0][0] / ds.items[0][1])  # fail fast on a malformed folder
        return ds

    def setup(self, stage: Optional[str] = None) -> None:
        self.train_set = self._make("train", True)
        self.val_set = self._make(self.hparams.val_split, False)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self.train_set, batch_size=h.batch_size, shuffle=True, drop_last=True, num_workers=h.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)


# ---------------------------------------------------------------------------------------------- prompts (stage 2)
class PromptDataset(Dataset):
    """Items ``{"prompt", "index", "seed", "retrieval_index", "label"}`` (``seeds`` items per prompt)."""

    def __init__(self, prompts: List[str], true_index: List[int], labels: List[str], seeds: int = 1, base_seed: int = 0) -> None:
        self.rows = [(i, s) for i in range(len(prompts)) for s in range(seeds)]
        self.prompts, self.true_index, self.labels, self.base_seed = prompts, true_index, labels, base_seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> dict:
        i, s = self.rows[k]
        return {"prompt": self.prompts[i], "index": i, "seed": self.base_seed + 1000 * i + s, "variant": s,
                "retrieval_index": self.true_index[i], "label": self.labels[i]}


class PromptDataModule(LightningDataModule):
    """Prompts for stage 2 (one test-time optimisation per item).

    Args:
        prompts: explicit prompts (retrieval pool: the prompts themselves).
        preset: ``shapenet52`` (the paper's 52 texts), ``shapeworld_heldout`` (10) or ``shapeworld_all`` (66).
        prompt_file: a file with one prompt per line.
        seeds: items per prompt (diversified generation uses different seeds).
        limit: keep only the first ``limit`` prompts.
        base_seed: seed of item 0.
        shard, num_shards: keep items ``k`` with ``k % num_shards == shard`` (one job per shard on several devices).

    Attributes:
        retrieval_pool: captions that R-precision retrieves among.
    """

    def __init__(self, prompts: Optional[List[str]] = None, preset: Optional[Literal["shapenet52", "shapeworld_heldout",
                 "shapeworld_all"]] = None, prompt_file: Optional[str] = None, seeds: int = 1, limit: Optional[int] = None,
                 base_seed: int = 0, shard: int = 0, num_shards: int = 1) -> None:
        super().__init__()
        from iss.prompts import PromptSet, read_prompt_file, shapenet_eval_prompts, shapeworld_eval_prompts

        given = [x is not None for x in (prompts, preset, prompt_file)]
        if sum(given) != 1:
            raise ValueError("PromptDataModule needs exactly one of prompts, preset or prompt_file")
        if preset == "shapenet52":
            ps = shapenet_eval_prompts()
        elif preset in ("shapeworld_heldout", "shapeworld_all"):
            ps = shapeworld_eval_prompts(preset.split("_")[1])
        elif preset is not None:
            raise ValueError(f"unknown prompt preset {preset!r}")
        else:
            texts = list(prompts) if prompts is not None else read_prompt_file(prompt_file)
            if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
                raise ValueError("prompts must be a non-empty list of non-empty strings")
            ps = PromptSet(texts, texts, list(range(len(texts))))
        if limit is not None:
            ps = PromptSet(ps.prompts[:limit], ps.pool, ps.true_index[:limit], ps.labels[:limit])
        self.prompt_set = ps
        self.retrieval_pool = ps.pool
        if not 0 <= shard < num_shards:
            raise ValueError(f"need 0 <= shard < num_shards, got shard {shard} of {num_shards}")
        self.seeds, self.base_seed, self.shard, self.num_shards = seeds, base_seed, shard, num_shards

    def train_dataloader(self) -> DataLoader:
        ps = self.prompt_set
        ds = PromptDataset(ps.prompts, ps.true_index, ps.labels, self.seeds, self.base_seed)
        ds.rows = ds.rows[self.shard::self.num_shards]
        return DataLoader(ds, batch_size=None, shuffle=False)
