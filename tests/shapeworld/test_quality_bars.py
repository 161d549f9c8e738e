"""Reduced quality bars on the shipped shapeworld priors (skipped until their weights are shipped).

Full bars (shapeworld/README.md): each CLIP retrieves the correct kind × colour caption top-1 for
>= 90% of 500 held-out renders. Here: 100 held-out renders (a 50-object subset, 2 views each).
"""

import time

import pytest

from shapeworld.metrics import BAR_DDIM_STEPS, caption_retrieval, diffusion_prompt_retrieval, heldout_retrieval_set
from shapeworld.priors import DIFFUSION_DIR, clip_paths, shapeworld_clip, shapeworld_diffusion

ROLES = [r for r in ("guidance", "heldout") if clip_paths(r)[1].is_file()]


@pytest.mark.skipif(not ROLES, reason="shapeworld CLIP weights not shipped yet (see shapeworld/README.md)")
@pytest.mark.parametrize("role", ROLES or ["guidance"])
def test_clip_retrieval_bar(role, tmp_path):
    t0 = time.time()
    clip = shapeworld_clip(role)
    assert time.time() - t0 < 10, "loading the shipped CLIP should take seconds"
    images, pairs = heldout_retrieval_set(50, 2, cache_dir=str(tmp_path))
    assert caption_retrieval(clip, images, pairs) >= 0.9


HAS_DIFFUSION = clip_paths("heldout")[1].is_file() and (DIFFUSION_DIR / "model_index.json").is_file()
needs_diffusion = pytest.mark.skipif(not HAS_DIFFUSION, reason="shapeworld diffusion prior / held-out CLIP not "
                                     "shipped yet (see shapeworld/README.md)")


@pytest.fixture(scope="module")
def diffusion_retrieval() -> dict[str, float]:
    """Reduced bar sampling: 4 DDIM samples (30 steps, η = 1, s = 3: the bar's sampler) per held-out prompt, seed 0."""
    fractions, _ = diffusion_prompt_retrieval(shapeworld_diffusion(), shapeworld_clip("heldout"), n=4, steps=BAR_DDIM_STEPS,
                                              guidance_scale=3.0, eta=1.0)
    return fractions


@needs_diffusion
def test_diffusion_prior_samples_are_mostly_recognised(diffusion_retrieval):
    """Regression guard below the bar: over the 40 samples, >= 80% retrieved as their own prompt (the full
    benchmark measures 0.90 / 0.86 / 0.88 with 16 samples at seeds 0 / 1 / 2; with 50 DDIM steps it was 0.79, with
    deterministic DDIM 0.32)."""
    assert sum(diffusion_retrieval.values()) / len(diffusion_retrieval) >= 0.8


@needs_diffusion
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="known: the shipped prior (3,000 CPU steps) recognisably draws every prompt but misses the "
                          "bar on a few kinds (cone vs. pyramid, cube; shapeworld/README.md); "
                          "strict: when a retrained prior passes, drop this mark")
def test_diffusion_prior_bar(diffusion_retrieval):
    """The issue's bar, reduced to 4 samples: for every held-out prompt >= 80%, i.e. all 4, retrieved as itself."""
    assert min(diffusion_retrieval.values()) >= 0.8, diffusion_retrieval
