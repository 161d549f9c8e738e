"""Reduced quality bars on the shipped shapeworld priors (skipped until their weights are shipped).

Full bars (shapeworld/README.md): each CLIP retrieves the correct kind × colour caption top-1 for
>= 90% of 500 held-out renders. Here: 100 held-out renders (a 50-object subset, 2 views each).
"""

import time

import pytest
import torch

from ddpm.sampling import make_scheduler, sample
from shapeworld.captions import HELDOUT_PROMPT_PAIRS, heldout_prompts, pair_index
from shapeworld.images import ImageCaptionDataset, cached_views
from shapeworld.metrics import caption_retrieval, prompt_retrieval
from shapeworld.priors import DIFFUSION_DIR, clip_paths, shapeworld_clip, shapeworld_diffusion
from shapeworld.render import CameraRanges

ROLES = [r for r in ("guidance", "heldout") if clip_paths(r)[1].is_file()]


@pytest.mark.skipif(not ROLES, reason="shapeworld CLIP weights not shipped yet (see shapeworld/README.md)")
@pytest.mark.parametrize("role", ROLES or ["guidance"])
def test_clip_retrieval_bar(role, tmp_path):
    t0 = time.time()
    clip = shapeworld_clip(role)
    assert time.time() - t0 < 10, "loading the shipped CLIP should take seconds"
    specs, views = cached_views("heldout", 50, 2, 64, CameraRanges(), seed=0, cache_dir=str(tmp_path))
    ds = ImageCaptionDataset(specs, views, ("white",), deterministic=True, seed=1)
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([it["image"] for it in items])
    pairs = torch.tensor([it["pair"] for it in items])
    assert caption_retrieval(clip, images, pairs) >= 0.9


@pytest.mark.skipif(not (clip_paths("heldout")[1].is_file() and (DIFFUSION_DIR / "model_index.json").is_file()),
                    reason="shapeworld diffusion prior / held-out CLIP not shipped yet (see shapeworld/README.md)")
@pytest.mark.xfail(strict=True, reason="known: the shipped prior (1,500 CPU steps) draws the right shape and colour but "
                   "leaves noisy grey backgrounds, so retrieval is 0.32 on average (shapeworld/README.md); "
                   "strict: when a retrained prior passes, drop this mark")
def test_diffusion_prior_bar():
    """Reduced bar: 4 DDIM samples (50 steps, s = 3) per held-out prompt; >= 80% retrieved as their own prompt."""
    prior, clip = shapeworld_diffusion(), shapeworld_clip("heldout")
    hits = []
    for prompt, (kind, colour) in zip(heldout_prompts(), HELDOUT_PROMPT_PAIRS):
        ctx = prior.text_context([prompt] * 4)
        x = sample(prior.unet, make_scheduler("ddim"), (4, 3, 32, 32), 50, ctx.cond, ctx.uncond, guidance_scale=3.0,
                   generator=torch.Generator().manual_seed(0))
        hits.append(prompt_retrieval(clip, (x + 1) / 2, [pair_index(kind, colour)] * 4))
    assert torch.cat(hits).float().mean() >= 0.8
