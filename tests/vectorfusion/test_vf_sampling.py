"""Stage A: raster sampling through the diffusion wrapper and CLIP rejection (spec §2.7)."""

import pytest
import torch

from common.priors.diffusion import DiffusionModel
from common.testing.tiny_models import tiny_clip
from vectorfusion.sampling import RasterSampler, clip_rerank, make_scheduler, sample_images


@pytest.fixture(scope="module")
def tiny_sd():
    return DiffusionModel("tiny:sd").load()


@pytest.mark.parametrize("name", ["pndm", "ddim", "ddpm"])
def test_scheduler_reproduces_the_training_schedule(tiny_sd, name):
    sched = make_scheduler(tiny_sd, name)
    assert torch.allclose(sched.alphas_cumprod.double(), tiny_sd.alpha_bar.double().cpu(), rtol=1e-5)
    if name == "pndm":
        assert sched.config.skip_prk_steps and sched.config.steps_offset == 1 and not sched.config.set_alpha_to_one


def test_sample_images_shapes_range_and_seed(tiny_sd):
    a = sample_images(tiny_sd, "a red cube", 3, steps=2, generator=torch.Generator().manual_seed(0))
    b = sample_images(tiny_sd, "a red cube", 3, steps=2, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 3, 32, 32) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.allclose(a, b, atol=1e-5)  # batching does not change the samples


def test_stochastic_ddim_is_seeded_and_differs_from_deterministic(tiny_sd):
    def draw(eta, seed=0):
        return sample_images(tiny_sd, "a red cube", 2, steps=3, scheduler="ddim", eta=eta,
                             generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(1.0), draw(1.0))  # the generator also drives the per-step noise
    assert torch.equal(draw(0.0), draw(0.0))
    assert (draw(1.0) - draw(0.0)).abs().max() > 1e-3  # η = 1 re-injects noise; η = 0 does not


def test_rejection_picks_the_highest_clip_score_sample():
    clip = tiny_clip(seed=0)
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    best, scores = clip_rerank(clip, images, "a red cube")
    direct = (clip.encode_image(images) @ clip.encode_text(["a red cube"]).T).squeeze(-1)
    assert torch.allclose(scores, direct, atol=1e-6)
    assert best == int(direct.argmax()) and scores[best] == scores.max()
    # moving the best image elsewhere moves the choice with it
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    assert clip_rerank(clip, images[perm], "a red cube")[0] == int((perm == best).nonzero())


def test_raster_sampler_reranks_on_the_caption(tiny_sd):
    clip = tiny_clip(seed=0)
    sampler = RasterSampler(clip, num_samples=3, steps=2)
    samples, best, scores = sampler(tiny_sd, "a red cube", "a red cube. pixel art",
                                    generator=torch.Generator().manual_seed(0))
    assert samples.shape[0] == 3 and scores.shape == (3,) and best == int(scores.argmax())
    assert best == clip_rerank(clip, samples, "a red cube")[0]


def test_sampler_needs_a_clip_for_rejection():
    with pytest.raises(ValueError, match="reranking clip"):
        RasterSampler(None, num_samples=4)
    assert RasterSampler(None, num_samples=1).num_samples == 1
