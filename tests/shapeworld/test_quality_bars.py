"""Quality bars on the shipped shapeworld priors (skipped until their weights are shipped).

CLIPs, reduced (full bar, shapeworld/README.md: the correct kind × colour caption top-1 for >= 90% of 500
held-out renders): here 100 held-out renders (a 50-object subset, 2 views each). The diffusion prior's bar is
checked in full (16 samples per held-out prompt, the bar's sampler and seed).
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
    """The bar's own sampling, not reduced: 16 DDIM samples (30 steps, η = 1, the guidance scale the shipped folder's
    sampler.json names: the bar's sampler) per held-out prompt, seed 0, as `benchmarks/shapeworld_priors_quality.py`.
    (With 4 samples, "≥ 80 %" would mean all 4; 16 samples take about 2 minutes on one thread.)"""
    fractions, _ = diffusion_prompt_retrieval(shapeworld_diffusion(), shapeworld_clip("heldout"), n=16, steps=BAR_DDIM_STEPS,
                                              guidance_scale=None, eta=1.0)
    return fractions


@needs_diffusion
@pytest.mark.timeout(600)  # the fixture's 160 samples: about 2 minutes on one thread, more beside other tests
def test_diffusion_prior_samples_are_mostly_recognised(diffusion_retrieval):
    """Regression guard on the mean: the shipped prior measures 0.97 / 0.95 / 0.97 / 0.93 at seeds 0-3 (the second
    weights 0.91 / 0.91 / 0.90 at s = 2, the first 0.90 / 0.86 / 0.88 at s = 3; with 50 DDIM steps the first was 0.79,
    with deterministic DDIM 0.32)."""
    assert sum(diffusion_retrieval.values()) / len(diffusion_retrieval) >= 0.9


@needs_diffusion
@pytest.mark.timeout(600)
def test_diffusion_prior_bar(diffusion_retrieval):
    """The issue's bar: for every held-out prompt >= 80 % of 16 samples (13 of 16) retrieved as itself. Met at this,
    the bar's, seed with two samples to spare (worst 14 of 16), and at seed 2; not at seeds 1 and 3 (a perfect prior
    would pass 74 % of such draws: "The bar's ceiling", shapeworld/README.md)."""
    assert min(diffusion_retrieval.values()) >= 0.8, diffusion_retrieval
