"""Reduced quality bars on the shipped shapeworld priors (skipped until their weights are shipped).

Full bars (shapeworld/README.md): each CLIP retrieves the correct kind × colour caption top-1 for
>= 90% of 500 held-out renders. Here: 100 held-out renders (a 50-object subset, 2 views each).
"""

import time

import pytest

from shapeworld.metrics import caption_retrieval, diffusion_prompt_retrieval, heldout_retrieval_set
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


@pytest.mark.skipif(not (clip_paths("heldout")[1].is_file() and (DIFFUSION_DIR / "model_index.json").is_file()),
                    reason="shapeworld diffusion prior / held-out CLIP not shipped yet (see shapeworld/README.md)")
@pytest.mark.xfail(strict=True, raises=AssertionError, reason="known: the shipped prior (1,500 CPU steps) draws the right shape and colour but "
                   "leaves noisy grey backgrounds, so retrieval is 0.32 on average (shapeworld/README.md); "
                   "strict: when a retrained prior passes, drop this mark")
def test_diffusion_prior_bar():
    """Reduced bar: 4 DDIM samples (50 steps, η = 1, s = 3) per held-out prompt; >= 80% retrieved as their own prompt."""
    fractions, _ = diffusion_prompt_retrieval(shapeworld_diffusion(), shapeworld_clip("heldout"), n=4, steps=50,
                                              guidance_scale=3.0, eta=1.0)
    assert sum(fractions.values()) / len(fractions) >= 0.8  # equal n per prompt: the mean over all 40 samples
