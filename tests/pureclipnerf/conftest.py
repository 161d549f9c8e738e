"""Tiny set-up shared by the PureCLIPNeRF tests (spec §8): the box of the 224² cameras, 32² renders, tiny CLIPs."""

import math
from types import SimpleNamespace

import pytest
import torch

from common.cameras import SphericalCameraSampler
from common.guidance import CLIPGuidance
from common.priors.clip import CLIPModel
from common.testing.fixtures import *  # noqa: F401,F403
from common.testing.tiny_models import TINY_CLIP_CONFIG

BOX = [[-1.6, -1.6, -2.37], [1.6, 1.6, 1.62]]
NEAR, FAR = 4 - math.sqrt(3), 4 + math.sqrt(3)


def box_tensors():
    return torch.tensor(BOX[0]), torch.tensor(BOX[1])


def camera(size: int = 32) -> SphericalCameraSampler:
    return SphericalCameraSampler(size, size, azimuth_range=(-180.0, 180.0), elevation_range=30.0, radius_range=4.0,
                                  focal_mult_range=1.0)


def tiny_clip_model() -> CLIPModel:
    """An unloaded tiny random CLIP (the real CLIPModel class; loaded by the system's setup)."""
    return CLIPModel(name="tiny-clip", pretrained=None, model_config=TINY_CLIP_CONFIG)


def make_system(kind: str = "exp", size: int = 32, num_voxels: int = 20**3, pg_scale=(10, 20), n_diff: int = 2,
                n_bkgd: int = 2, perspaug: bool = True, clip_weight: float = 1.0, ensemble: bool = False, **kwargs):
    """A PureCLIPNeRFSystem at test scale (grid ~20³, 32² renders, tiny CLIP, shapeworld captions)."""
    from pureclipnerf.augment import PureCLIPAugment, SharedCropResize
    from pureclipnerf.grids import VoxExpField, VoxImpField
    from pureclipnerf.system import PureCLIPNeRFSystem

    field = kwargs.pop("field", None) or (VoxExpField(num_voxels=num_voxels, bbox=BOX) if kind == "exp"
                                          else VoxImpField(num_voxels=num_voxels, bbox=BOX, mlp_width=32))
    clips = [tiny_clip_model()] + ([tiny_clip_model()] if ensemble else [])
    guidance = CLIPGuidance(clips, augment=SharedCropResize(4), weights=[clip_weight] + ([0.5] if ensemble else []),
                            start_steps=[0] + ([5] if ensemble else []), loss_form="one_minus_cos", check_range=False)
    kwargs.setdefault("retrieval", [tiny_clip_model()])
    kwargs.setdefault("captions", "shapeworld")
    kwargs.setdefault("normalize_captions", False)
    kwargs.setdefault("n_final_views", 2)
    kwargs.setdefault("final_size", 16)
    kwargs.setdefault("n_pose_pool", 50)
    kwargs.setdefault("seed", 0)
    return PureCLIPNeRFSystem(
        kwargs.pop("prompt", "a red cube"), field=field,
        augment=PureCLIPAugment(n_diff=n_diff, n_bkgd=n_bkgd, perspaug=perspaug, bg_blur_kernel=5),
        guidance=guidance, camera=camera(size), pg_scale=list(pg_scale), **kwargs)


@pytest.fixture
def pcn():
    """The helpers above, as a namespace (tests run with --import-mode=importlib, so no conftest imports)."""
    return SimpleNamespace(BOX=BOX, NEAR=NEAR, FAR=FAR, box_tensors=box_tensors, camera=camera,
                           tiny_clip_model=tiny_clip_model, make_system=make_system)


@pytest.fixture
def trainer_factory(tmp_path):
    from lightning.pytorch import Trainer

    def make(max_steps: int, **kwargs):
        kwargs.setdefault("limit_val_batches", 0)
        return Trainer(max_steps=max_steps, logger=False, enable_checkpointing=kwargs.pop("enable_checkpointing", False),
                       enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                       default_root_dir=str(tmp_path / "run"), num_sanity_val_steps=0, **kwargs)

    return make
