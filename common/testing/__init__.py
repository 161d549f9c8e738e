"""Tiny random-initialised models of the real prior classes, for CPU tests (no network, seeded)."""

from common.testing.tiny_models import (
    TINY_CLIP_CONFIG,
    save_tiny_pixel_pipeline,
    save_tiny_sd_pipeline,
    tiny_clip,
    tiny_pixel_diffusion,
    tiny_sd,
    write_toy_tokenizer,
)

__all__ = [
    "TINY_CLIP_CONFIG",
    "tiny_clip",
    "write_toy_tokenizer",
    "save_tiny_sd_pipeline",
    "save_tiny_pixel_pipeline",
    "tiny_sd",
    "tiny_pixel_diffusion",
]
