"""The diffusion bar's sampler (``shapeworld.metrics.diffusion_prompt_retrieval``) on tiny pipelines: it samples with
the prior's own training schedule, and latent priors are sampled without x̂₀ clipping and decoded before retrieval."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import ddpm.sampling
from common.priors.diffusion import DiffusionModel, tiny_pipeline_dir
from common.testing import tiny_models
from shapeworld.captions import HELDOUT_PROMPT_PAIRS
from shapeworld.metrics import diffusion_prompt_retrieval


@pytest.fixture
def made(monkeypatch) -> list:
    """Records ``(args, kwargs, scheduler)`` of every ``ddpm.sampling.make_scheduler`` call."""
    calls, real = [], ddpm.sampling.make_scheduler

    def recording(*args, **kwargs):
        calls.append((args, kwargs, real(*args, **kwargs)))
        return calls[-1][2]

    monkeypatch.setattr(ddpm.sampling, "make_scheduler", recording)
    return calls


@pytest.mark.parametrize("name, schedule, latent", [("tiny:pixel", "linear", False), ("tiny:sd", "scaled_linear", True)])
def test_bar_sampler_uses_the_prior_schedule_and_decodes_latents(name, schedule, latent, made):
    prior = DiffusionModel(model=name, precision="fp32").load()
    pairs = list(HELDOUT_PROMPT_PAIRS[:2])
    fractions, samples = diffusion_prompt_retrieval(prior, tiny_models.tiny_clip(), n=2, steps=2, pairs=pairs)
    (args, kwargs, _), = made
    assert args[4] == schedule and kwargs["clip_sample"] is not latent
    assert args[2:4] == (prior.scheduler_config["beta_start"], prior.scheduler_config["beta_end"])
    f = 2 ** (len(prior.vae.config.block_out_channels) - 1) if latent else 1  # the VAE's downsampling factor
    size = prior.unet.config.sample_size * f
    assert samples.shape == (4, 3, size, size) and 0 <= samples.min() and samples.max() <= 1
    assert len(fractions) == 2 and all(0.0 <= f <= 1.0 for f in fractions.values())


@pytest.mark.parametrize("spacing, first", [(None, 500), ("trailing", 999)])
def test_bar_sampler_follows_the_prior_timestep_spacing(spacing, first, made):
    """A prior's folder may name its sampler's spacing; 2 steps over T = 1000 start at t = 500 (leading) or 999."""
    prior = DiffusionModel(model="tiny:pixel", precision="fp32").load()
    if spacing is not None:
        prior.scheduler_config["timestep_spacing"] = spacing
    else:
        prior.scheduler_config.pop("timestep_spacing", None)
    diffusion_prompt_retrieval(prior, tiny_models.tiny_clip(), n=1, steps=2, pairs=list(HELDOUT_PROMPT_PAIRS[:1]))
    (_, _, scheduler), = made
    assert scheduler.config.timestep_spacing == (spacing or "leading")
    assert int(scheduler.timesteps[0]) == first


@pytest.fixture
def scales(monkeypatch) -> list:
    """Records the guidance scale of every ``ddpm.sampling.sample`` call."""
    calls, real = [], ddpm.sampling.sample

    def recording(*args, **kwargs):
        calls.append(kwargs["guidance_scale"])
        return real(*args, **kwargs)

    monkeypatch.setattr(ddpm.sampling, "sample", recording)
    return calls


@pytest.fixture
def pipe(tmp_path) -> Path:
    """A writable copy of the tiny pixel pipeline folder."""
    root = tmp_path / "pipe"
    shutil.copytree(tiny_pipeline_dir("tiny:pixel"), root)
    return root


@pytest.mark.parametrize("folder, given, used", [(None, None, 3.0), ({"guidance_scale": 2.0}, None, 2.0),
                                                 ({"guidance_scale": 2.0}, 4.5, 4.5)])
def test_bar_sampler_takes_the_guidance_scale_from_the_prior_folder(folder, given, used, scales, pipe):
    """``sampler.json`` in a pipeline folder names the scale its figures were measured with; an explicit one wins."""
    if folder is not None:
        (pipe / "sampler.json").write_text(json.dumps(folder))
    prior = DiffusionModel(model=str(pipe), precision="fp32").load()
    assert prior.sampler_config == (folder or {})
    diffusion_prompt_retrieval(prior, tiny_models.tiny_clip(), n=1, steps=2, guidance_scale=given,
                               pairs=list(HELDOUT_PROMPT_PAIRS[:2]))
    assert scales == [used, used]


@pytest.mark.parametrize("text, match", [("{guidance", "not valid JSON"), ("[2.0]", "JSON object")])
def test_a_malformed_sampler_json_is_refused_by_name(text, match, pipe):
    (pipe / "sampler.json").write_text(text)
    with pytest.raises(ValueError, match=match):
        DiffusionModel(model=str(pipe), precision="fp32").load()


def test_bar_pass_probability_is_the_binomial_tail_product():
    from scipy.stats import binom

    from shapeworld.metrics import bar_pass_probability

    ps = [0.9, 0.75, 1.0, 0.5]
    # ≥ 80 % of 16 means 13 of 16: P(X ≥ 13) = sf(12); four prompts must all pass
    expected = float(binom.sf(12, 16, 0.9) * binom.sf(12, 16, 0.75) * binom.sf(12, 16, 0.5))
    assert bar_pass_probability(ps) == pytest.approx(expected, rel=1e-12)
    assert bar_pass_probability({"a": 0.9}) == pytest.approx(0.9316, abs=1e-4)
    # a threshold that lands on a whole count (0.75·16 = 12) needs exactly that many, not one more
    assert bar_pass_probability([0.7], threshold=0.75) == pytest.approx(float(binom.sf(11, 16, 0.7)), rel=1e-12)
    assert bar_pass_probability([0.7], n=64) == pytest.approx(float(binom.sf(51, 64, 0.7)), rel=1e-12)
    assert bar_pass_probability([1.0] * 10) == 1.0 and bar_pass_probability([0.0]) == 0.0


@pytest.mark.parametrize("bad, n", [([], 16), ([1.2], 16), ([0.5], 0)])
def test_bar_pass_probability_refuses_bad_input(bad, n):
    from shapeworld.metrics import bar_pass_probability

    with pytest.raises(ValueError, match="fractions in"):
        bar_pass_probability(bad, n=n)
