"""Tiny Dream Fields parts for CPU tests (spec §13: width ≤ 32, renders ≤ 32², ≤ 32 samples, tiny CLIP)."""

import pytest
import torch

from common.augment import Augment
from common.cameras import SphericalCameraSampler
from common.fields import MLPField, RandomFourierEncoding
from common.guidance import CLIPGuidance
from common.testing import tiny_clip
from common.testing.fixtures import *  # noqa: F401,F403
from dreamfields.captions import SHAPEWORLD_FILE
from dreamfields.renderer import DreamFieldsRenderer
from dreamfields.system import DreamFieldsSystem


def tiny_field(seed: int = 0) -> MLPField:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLPField(encoding=RandomFourierEncoding(8, 8.0), backbone="residual", res_width=16, res_hidden=16,
                        res_blocks=2, view_dependent=False, density_activation="softplus")


def tiny_system(prompt: str = "a red cube", clip=None, **kwargs) -> DreamFieldsSystem:
    """A Dream Fields system at 16² with the tiny CLIP for guidance and retrieval (not yet set up)."""
    clip = clip if clip is not None else tiny_clip(seed=0)
    kwargs.setdefault("field", tiny_field())
    kwargs.setdefault("renderer", DreamFieldsRenderer(n_samples=12, n_samples_eval=12, chunk=512, checkpoint_chunks=False))
    kwargs.setdefault("guidance", CLIPGuidance(clip, Augment(n_views=2, crop_scale=(0.75, 0.75), blur_kernel=5)))
    kwargs.setdefault("camera", SphericalCameraSampler(16, 16))
    kwargs.setdefault("retrieval", [clip])
    kwargs.setdefault("caption_file", str(SHAPEWORLD_FILE))
    kwargs.setdefault("normalize_captions", False)
    kwargs.setdefault("n_final_views", 2)
    kwargs.setdefault("final_size", 16)
    kwargs.setdefault("seed", 0)
    return DreamFieldsSystem(prompt, **kwargs)


@pytest.fixture
def system():
    sys_ = tiny_system()
    sys_.setup("fit")
    return sys_


@pytest.fixture
def make_system():
    """The :func:`tiny_system` factory."""
    return tiny_system
