"""Quality measures of the shapeworld priors (the issue's quality bars).

* CLIP: top-1 retrieval of the correct caption among all kind × colour captions
  (:func:`caption_retrieval`), on held-out renders; bar ≥ 90 % on 500 renders.
* Diffusion prior: fraction of samples of a prompt that the held-out CLIP retrieves as that prompt
  (:func:`prompt_retrieval`); bar ≥ 80 % of 16 samples for each of 10 held-out prompts.
"""

import math
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor

from common.priors.clip import CLIPModel
from shapeworld.captions import RETRIEVAL_TEMPLATE, all_captions


@torch.no_grad()
def caption_retrieval(clip: CLIPModel, images: Tensor, pairs: Tensor, template: str = RETRIEVAL_TEMPLATE,
                      batch: int = 256) -> float:
    """Top-1 accuracy of retrieving caption ``pairs[i]`` for ``images[i]`` among :func:`all_captions`.

    Args:
        clip: a loaded CLIP.
        images: ``[N, 3, H, W]`` in ``[0, 1]``.
        pairs: ``[N]`` indices into ``all_captions(template)``.
        template: caption template.
    """
    txt = clip.encode_text(all_captions(template))  # [P, D]
    hits = []
    for i in range(0, images.shape[0], batch):
        img = clip.encode_image(images[i:i + batch].to(clip.device))
        hits.append((img @ txt.t()).argmax(1).cpu() == pairs[i:i + batch].cpu())
    return torch.cat(hits).float().mean().item()


@torch.no_grad()
def prompt_retrieval(clip: CLIPModel, images: Tensor, prompt_pairs: Sequence[int], template: str = RETRIEVAL_TEMPLATE) -> Tensor:
    """Per-sample hit (``[N]`` bool): the sample's own (kind, colour) caption ranks first."""
    return torch.tensor([]) if len(images) == 0 else (
        (clip.encode_image(images.to(clip.device)) @ clip.encode_text(all_captions(template)).t()).argmax(1).cpu()
        == torch.as_tensor(list(prompt_pairs)))


def heldout_retrieval_set(n_objects: int = 250, views: int = 2, backgrounds: Sequence[str] = ("white",),
                          cache_dir: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """``(images [N, 3, 64, 64] in [0, 1], pairs [N])``: the held-out renders of the CLIP bar (N = objects × views),
    composited deterministically (item seed 1) over ``backgrounds``."""
    from shapeworld.images import ImageCaptionDataset, cached_views
    from shapeworld.render import CameraRanges

    specs, renders = cached_views("heldout", n_objects, views, 64, CameraRanges(), seed=0, cache_dir=cache_dir)
    ds = ImageCaptionDataset(specs, renders, tuple(backgrounds), deterministic=True, seed=1)
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([it["image"] for it in items]), torch.tensor([it["pair"] for it in items])


def bar_pass_probability(fractions: Mapping[str, float] | Sequence[float], n: int = 16, threshold: float = 0.8) -> float:
    """Chance that a sampler passes the diffusion bar in one draw of ``n`` samples per prompt.

    A prompt whose samples are each retrieved with probability ``p`` (``fractions``, e.g. measured on many real
    renders) passes when at least ``⌈threshold·n⌉`` of its ``n`` independent samples are, i.e. with probability
    ``P(Binomial(n, p) ≥ ⌈threshold·n⌉)``; the bar needs every prompt to pass, so the product over prompts.
    With ``n = 16`` and ``threshold = 0.8``: 13 of 16 (``p = 0.9`` passes 93 % of draws, ``p = 0.8`` 60 %).
    """
    ps = list(fractions.values()) if isinstance(fractions, Mapping) else list(fractions)
    if not ps or any(not 0.0 <= p <= 1.0 for p in ps) or n < 1:
        raise ValueError(f"need n ≥ 1 and one or more fractions in [0, 1], got n={n}, {ps}")
    k_min = math.ceil(threshold * n - 1e-9)  # 0.8·16 = 12.8 → 13
    return math.prod(sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(k_min, n + 1)) for p in ps)


#: DDIM steps of the diffusion bar's sampler (η = 1), chosen on validation prompts (see
#: :func:`diffusion_prompt_retrieval`)
BAR_DDIM_STEPS = 30
#: the bar's guidance scale for a prior whose folder names none (its ``sampler.json``)
DEFAULT_BAR_GUIDANCE_SCALE = 3.0


@torch.no_grad()
def diffusion_prompt_retrieval(prior, clip: CLIPModel, n: int = 16, steps: int = BAR_DDIM_STEPS,
                               guidance_scale: Optional[float] = None,
                               seed: int = 0, eta: float = 1.0, pairs: Optional[Sequence[tuple[str, str]]] = None
                               ) -> tuple[dict[str, float], Tensor]:
    """The diffusion-prior bar: ``n`` DDIM samples of each held-out prompt, retrieved by ``clip``.

    Args:
        prior: a loaded text-conditional :class:`~common.priors.diffusion.DiffusionModel`, pixel or latent (latent
            samples are decoded by its VAE before retrieval, and their x̂₀ is not clipped). Sampled on its own
            training schedule, with the timestep spacing its scheduler config names (``leading`` if none).
        clip: the retrieval CLIP (the held-out one for the bar).
        guidance_scale: classifier-free guidance scale; ``None``: the one the prior's folder names
            (``sampler.json``, chosen per prior on validation prompts: a better-trained prior is over-guided at
            a scale that suits a weaker one, shapeworld/README.md), else :data:`DEFAULT_BAR_GUIDANCE_SCALE`.
        steps: DDIM steps. 30, chosen on colour-shifted validation prompts (not the bar's own): with
            η = 1 the shipped prior's samples get worse with more, smaller steps (0.90 validation mean
            at 30 steps, 0.81 at 50, 0.31 on the four weakest bar prompts at 200; shapeworld/README.md).
        eta: DDIM η. 1 (stochastic, the default) re-injects noise at every step; the shipped prior's
            deterministic (η = 0) samples keep a noisy background because its ε at high t is
            poorly calibrated (shapeworld/README.md), which stochastic steps correct.
        pairs: ``(kind, colour)`` pairs to prompt (held-out phrasing); default: the bar's ten
            (:data:`~shapeworld.captions.HELDOUT_PROMPT_PAIRS`). E.g. :func:`~shapeworld.captions.colour_shifted_pairs`
            for validation prompts.

    Returns:
        ``({prompt: fraction of its samples retrieved as its own (kind, colour) caption}, samples
        [P·n, 3, S, S] in [0, 1], one prompt after another)`` for P pairs.
    """
    from ddpm.sampling import make_scheduler, sample
    from shapeworld.captions import HELDOUT_PROMPT_PAIRS, heldout_prompts, pair_index

    size = prior.unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    fractions, samples = {}, []
    cfg = prior.scheduler_config  # the schedule the prior was trained with
    scheduler = make_scheduler("ddim", cfg["num_train_timesteps"], cfg["beta_start"], cfg["beta_end"], cfg["beta_schedule"],
                               prediction_type=prior.prediction_type,
                               clip_sample=not prior.is_latent,  # latents are not bounded: no x̂₀ clipping
                               timestep_spacing=cfg.get("timestep_spacing", "leading"))  # as the prior's folder says
    pairs = HELDOUT_PROMPT_PAIRS if pairs is None else pairs
    if guidance_scale is None:
        guidance_scale = float(prior.sampler_config.get("guidance_scale", DEFAULT_BAR_GUIDANCE_SCALE))
    for prompt, (kind, colour) in zip(heldout_prompts(pairs=pairs), pairs):
        ctx = prior.text_context([prompt] * n)
        x = sample(prior.unet, scheduler, (n, prior.channels, size, size), steps, ctx.cond, ctx.uncond,
                   guidance_scale=guidance_scale, eta=eta, generator=torch.Generator().manual_seed(seed))
        x = prior.decode(x)  # [0, 1]
        samples.append(x)
        fractions[prompt] = prompt_retrieval(clip, x, [pair_index(kind, colour)] * n).float().mean().item()
    return fractions, torch.cat(samples)
