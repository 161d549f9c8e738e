"""Tiny ZeroForge parts (spec §9 tiny configuration): latent 8, condition 16 (the tiny test CLIP), flow hidden 32
with 2 blocks, decoder width 32 with 5 blocks whose fc_1 weights are re-randomised to mimic pretrained ones."""

import pytest
import torch

from common.testing import tiny_clip
from zeroforge.autoencoder import OccSimpleDecoder
from zeroforge.flow import ConditionalRealNVP
from zeroforge.renderer import VoxelEARenderer
from zeroforge.system import ZeroForgeSystem


def pretrained_like_decoder(latent: int = 8, hidden: int = 32) -> OccSimpleDecoder:
    dec = OccSimpleDecoder(latent_dim=latent, hidden=hidden)
    for block in dec.blocks:
        torch.nn.init.normal_(block.fc_1.weight, std=0.1)
    return dec


@pytest.fixture
def make_zeroforge():
    """Factory: a set-up tiny :class:`ZeroForgeSystem` (random CLIP-Forge weights, tiny CLIP unless ``clip`` is
    given, 16³ grid, 32² renders)."""

    def make(queries=("cube", "sphere", "torus"), seed: int = 0, clip=None, **kwargs) -> ZeroForgeSystem:
        torch.manual_seed(seed)
        opts = dict(grid_resolution=16, allow_random_init=True, lr=1e-3)
        opts.update(kwargs)
        system = ZeroForgeSystem(clip=clip or tiny_clip(), queries=list(queries), decoder=pretrained_like_decoder(),
                                 flow=ConditionalRealNVP(8, 16, 32, 2), renderer=VoxelEARenderer(render_size=32), **opts)
        system.setup("fit")
        return system

    return make
