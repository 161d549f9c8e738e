"""Session-scoped pytest fixtures with the tiny priors; use with ``from common.testing.fixtures import *``
in a ``conftest.py``. Each tiny model is built once per session (design.md: build once per session)."""

import pytest

from common.testing.tiny_models import save_tiny_pixel_pipeline, save_tiny_sd_pipeline, tiny_clip

__all__ = ["tiny_clip_model", "tiny_sd_dir", "tiny_pixel_dir", "tiny_pixel_uncond_dir"]


@pytest.fixture(scope="session")
def tiny_clip_model():
    """A loaded tiny random CLIPModel (seed 0)."""
    return tiny_clip(seed=0)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """Folder of a tiny random SD-style pipeline (16² latents, 32² images)."""
    return save_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny_sd"), seed=0)


@pytest.fixture(scope="session")
def tiny_pixel_dir(tmp_path_factory):
    """Folder of a tiny random text-conditional pixel-space pipeline (16² RGB)."""
    return save_tiny_pixel_pipeline(tmp_path_factory.mktemp("tiny_px"), seed=0, conditional=True)


@pytest.fixture(scope="session")
def tiny_pixel_uncond_dir(tmp_path_factory):
    """Folder of a tiny random unconditional pixel-space pipeline (UNet2DModel, 16² RGB)."""
    return save_tiny_pixel_pipeline(tmp_path_factory.mktemp("tiny_px_u"), seed=0, conditional=False)
