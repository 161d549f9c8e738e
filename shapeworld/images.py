"""Image–caption pairs of shapeworld objects (renders over random backgrounds), pre-rendered and cached.

Renders go through ``common``'s volume renderer (:mod:`shapeworld.render`) from random cameras of the
Dream Fields pose distribution (:class:`~shapeworld.render.CameraRanges`). The cache stores the
premultiplied colour, the opacity (mask), the depth and the camera of every view; backgrounds
(specs/dreamfields.md §4.2) and caption templates are drawn when an item is read, so every epoch
sees new composites. Evaluation items are deterministic: a fixed background per item (white by
default) and the retrieval caption.
"""

import logging
import random
from typing import Optional, Sequence

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from shapeworld.backgrounds import BACKGROUNDS, composite_background
from shapeworld.cache import cache_key, cache_root, cached_tensors
from shapeworld.captions import RETRIEVAL_TEMPLATE, TRAIN_TEMPLATES, caption, pair_index
from shapeworld.render import CameraRanges, render_object, sample_cameras
from shapeworld.shapes import SPLITS, ShapeSpec, Split, object_specs

log = logging.getLogger(__name__)


def render_views(specs: Sequence[ShapeSpec], views: int, size: int, camera: CameraRanges, seed: int, split: Split,
                 n_samples: int = 96, shading: bool = True) -> dict[str, Tensor]:
    """Render ``views`` random views of every object.

    Returns:
        dict with ``rgb`` ``[N, 3, H, W]`` uint8 premultiplied colour, ``alpha`` ``[N, H, W]`` uint8,
        ``depth`` ``[N, H, W]`` float16, ``c2w`` ``[N, 4, 4]``, ``focal`` ``[N]``, ``object`` ``[N]``
        (object index), with ``N = len(specs)·views``; views of object ``i`` use cameras drawn from
        a generator seeded by ``(seed, split, i)``.
    """
    out = {k: [] for k in ("rgb", "alpha", "depth", "c2w", "focal", "object")}
    for i, spec in enumerate(specs):
        g = torch.Generator().manual_seed(seed * 1_000_003 + SPLITS[split] * 100_003 + i)
        cams = sample_cameras(camera, size, views, g)
        r = render_object(spec, cams, n_samples=n_samples, shading=shading)
        out["rgb"].append((r.rgb.permute(0, 3, 1, 2) * 255 + 0.5).to(torch.uint8))
        out["alpha"].append((r.opacity * 255 + 0.5).to(torch.uint8))
        out["depth"].append(r.depth.half())
        out["c2w"].append(cams.c2w)
        out["focal"].append(cams.focal)
        out["object"].append(torch.full((views,), i, dtype=torch.long))
        if (i + 1) % 100 == 0:
            log.info("shapeworld: rendered %d/%d objects (%s)", i + 1, len(specs), split)
    return {k: torch.cat(v) for k, v in out.items()}


def cached_views(split: Split, n_objects: int, views: int, size: int, camera: CameraRanges, seed: int,
                 n_samples: int = 96, shading: bool = True, cache_dir: Optional[str] = None) -> tuple[list[ShapeSpec], dict]:
    """The objects of a split and their renders, from the cache or rendered now."""
    specs = object_specs(split, n_objects, seed)
    key = cache_key("views", split=split, n=n_objects, views=views, size=size, camera=vars(camera), seed=seed,
                    n_samples=n_samples, shading=shading)
    data = cached_tensors(cache_root(cache_dir) / f"{key}.pt",
                          lambda: render_views(specs, views, size, camera, seed, split, n_samples, shading))
    return specs, data


class ImageCaptionDataset(Dataset):
    """Renders composited over backgrounds, with captions.

    Items: ``image`` ``[3, H, W]`` in ``[0, 1]``; ``caption`` (str); ``kind``, ``colour``, ``pair``
    (index into :func:`shapeworld.captions.all_captions`), ``object`` (int).

    Args:
        specs, views: the objects and their cached renders (:func:`cached_views`).
        backgrounds: background types drawn per read (:data:`shapeworld.backgrounds.BACKGROUNDS`).
        templates: caption templates drawn per read; one template gives fixed captions.
        deterministic: fixed background and template per item (evaluation).
        seed: base seed of the per-read randomness.
        unlit_views: the same objects and cameras rendered without shading (``cached_views(..., shading=False)``).
        unlit_fraction: probability that a read takes its render from ``unlit_views`` (flat colour, as an
            emission-only radiance field shows it).
    """

    def __init__(self, specs: Sequence[ShapeSpec], views: dict, backgrounds: Sequence[str] = ("white",),
                 templates: Sequence[str] = (RETRIEVAL_TEMPLATE,), deterministic: bool = False, seed: int = 0,
                 unlit_views: Optional[dict] = None, unlit_fraction: float = 0.0) -> None:
        unknown = [b for b in backgrounds if b not in BACKGROUNDS]
        if unknown or not backgrounds:
            raise ValueError(f"backgrounds must be a non-empty subset of {BACKGROUNDS}, got {list(backgrounds)}")
        if not 0.0 <= unlit_fraction <= 1.0 or (unlit_fraction > 0 and unlit_views is None):
            raise ValueError(f"unlit_fraction must be in [0, 1] and needs unlit_views, got {unlit_fraction}")
        if unlit_views is not None and not torch.equal(unlit_views["c2w"], views["c2w"]):
            raise ValueError("unlit_views must render the same objects from the same cameras as views")
        self.unlit_views, self.unlit_fraction = unlit_views, unlit_fraction
        self.specs, self.views = list(specs), views
        self.backgrounds, self.templates = tuple(backgrounds), tuple(templates)
        self.deterministic, self.seed = deterministic, seed
        self._rng = random.Random(seed)
        self._g = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return int(self.views["object"].shape[0])

    def __getitem__(self, i: int) -> dict:
        if self.deterministic:
            g, rng = torch.Generator().manual_seed(self.seed * 7919 + i), random.Random(self.seed * 7919 + i)
        else:
            g, rng = self._g, self._rng
        spec = self.specs[int(self.views["object"][i])]
        views = self.unlit_views if self.unlit_fraction > 0 and rng.random() < self.unlit_fraction else self.views
        rgb = views["rgb"][i].float() / 255.0  # [3, H, W] premultiplied
        alpha = views["alpha"][i].float() / 255.0  # [H, W]
        image = composite_background(rgb, alpha, self.backgrounds, g)
        text = caption(spec.kind, spec.colour, rng.choice(self.templates))
        return {"image": image, "caption": text, "kind": spec.kind_index, "colour": spec.colour_index,
                "pair": pair_index(spec.kind, spec.colour), "object": int(self.views["object"][i])}

    def worker_init(self, worker_id: int) -> None:
        """Give each data-loader worker its own random stream."""
        self._rng = random.Random(self.seed * 31 + worker_id + 1)
        self._g = torch.Generator().manual_seed(self.seed * 31 + worker_id + 1)


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    info.dataset.worker_init(worker_id + 1000 * int(torch.initial_seed() % 1000))


class ImageCaptionDataModule(LightningDataModule):
    """shapeworld image–caption pairs: training objects over random backgrounds, held-out objects for validation.

    Args:
        image_size: render size (64 for the CLIPs, 32 for the pixel diffusion prior).
        n_train_objects: training objects (kinds × colours cycle: use a multiple of 66 for balance).
        train_views: views rendered per training object.
        n_val_objects: held-out objects.
        val_views: views per held-out object (``n_val_objects·val_views`` validation renders).
        backgrounds: background types of training items.
        val_background: background of validation items.
        train_templates: caption templates of training items.
        val_template: caption template of validation items.
        camera: camera distribution (default: Dream Fields' widened, see :mod:`shapeworld.render`).
        n_samples: samples per ray of the renders.
        shading: Lambertian shading of the renders.
        unlit_fraction: share of training reads drawn from unlit renders of the same views (flat colour: what
            Dream Fields' and PureCLIPNeRF's emission-only fields show; 0 = the shipped CLIPs' training).
            Validation stays shaded.
        seed: object and camera seed.
        batch_size: batch size.
        num_workers: data loader workers.
        cache_dir: cache folder (default ``~/.cache/priorlab/shapeworld``).
    """

    def __init__(self, image_size: int = 64, n_train_objects: int = 1980, train_views: int = 8, n_val_objects: int = 250,
                 val_views: int = 2, backgrounds: Sequence[str] = ("white", "noise", "checkerboard", "fourier"),
                 val_background: str = "white", train_templates: Sequence[str] = TRAIN_TEMPLATES,
                 val_template: str = RETRIEVAL_TEMPLATE, camera: Optional[CameraRanges] = None, n_samples: int = 96,
                 shading: bool = True, unlit_fraction: float = 0.0, seed: int = 0, batch_size: int = 128,
                 num_workers: int = 0, cache_dir: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.camera = camera or CameraRanges()
        self.train_set: Optional[ImageCaptionDataset] = None
        self.val_set: Optional[ImageCaptionDataset] = None

    def _views(self, split: Split, shading: Optional[bool] = None):
        h = self.hparams
        n, v = (h.n_train_objects, h.train_views) if split == "train" else (h.n_val_objects, h.val_views)
        shading = h.shading if shading is None else shading
        return cached_views(split, n, v, h.image_size, self.camera, h.seed, h.n_samples, shading, h.cache_dir)

    def prepare_data(self) -> None:
        self._views("train")
        if self.hparams.unlit_fraction > 0:
            self._views("train", shading=False)
        self._views("heldout")

    def setup(self, stage: Optional[str] = None) -> None:
        h = self.hparams
        if self.train_set is None:
            unlit = self._views("train", shading=False)[1] if h.unlit_fraction > 0 else None
            self.train_set = ImageCaptionDataset(*self._views("train"), h.backgrounds, h.train_templates, seed=h.seed,
                                                 unlit_views=unlit, unlit_fraction=h.unlit_fraction)
        if self.val_set is None:
            self.val_set = ImageCaptionDataset(*self._views("heldout"), (h.val_background,), (h.val_template,),
                                               deterministic=True, seed=h.seed + 1)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self.train_set, batch_size=h.batch_size, shuffle=True, drop_last=True, num_workers=h.num_workers,
                          worker_init_fn=_worker_init if h.num_workers > 0 else None, persistent_workers=h.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, shuffle=False, num_workers=0)
