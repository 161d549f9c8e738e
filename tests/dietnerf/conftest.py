"""Shared fixtures of the DietNeRF tests: tiny priors, a generated sphere scene, tiny systems."""

import pytest
import torch

from common.synthetic import write_sphere_scene
from common.testing import tiny_clip
from common.testing.fixtures import *  # noqa: F401,F403
from dietnerf.field import NeRFMLPField
from dietnerf.hierarchical import HierarchicalRenderer
from dietnerf.semantic import SemanticEncoder
from dietnerf.system import DietNeRFLossWeights, DietNeRFSystem


@pytest.fixture(scope="session")
def sphere_scene(tmp_path_factory):
    """A 16-px sphere scene in the Blender layout: 10 train, 2 val, 4 test views."""
    return write_sphere_scene(str(tmp_path_factory.mktemp("sphere")), size=16, n_train=10, n_val=2, n_test=4)


def tiny_field(seed: int = 0, width: int = 32, depth: int = 2) -> NeRFMLPField:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NeRFMLPField(pos_freqs=4, dir_freqs=2, width=width, depth=depth, skips=[], view_width=16)


def tiny_system(encoder: bool = True, **kwargs) -> DietNeRFSystem:
    """Tiny coarse+fine DietNeRF with the tiny random CLIP (fresh encoder each call, so call counts are per system)."""
    kwargs.setdefault("semantic_every", 5)
    kwargs.setdefault("semantic_rows", 8)
    kwargs.setdefault("semantic_cols", 8)
    kwargs.setdefault("batch_rays", 64)
    kwargs.setdefault("precrop_iters", 2)
    kwargs.setdefault("lr", 5e-3)
    kwargs.setdefault("compute_lpips", False)
    return DietNeRFSystem(
        field=tiny_field(0), fine_field=tiny_field(1),
        renderer=HierarchicalRenderer(n_samples=8, n_importance=8, near=2.0, far=6.0),
        encoder=SemanticEncoder(tiny_clip(seed=0)) if encoder else None,
        loss_weights=kwargs.pop("loss_weights", DietNeRFLossWeights()), **kwargs)
