"""Stage A of VectorFusion: raster samples from the diffusion model, then CLIP rejection (spec §2.7).

"We sample K images from Stable Diffusion with the style suffix and keep the one most consistent
with the caption under CLIP ViT-B/16" (thesis §6.4.1, DALL-E-style reranking). Sampling uses the
frozen networks of :class:`~common.priors.diffusion.DiffusionModel` (UNet with classifier-free
guidance ``ε_u + s(ε_c − ε_u)``, VAE decoder) and a diffusers scheduler built from the model's own
``ᾱ_t``: PNDM (SD's default, 50 steps, s = 7.5 [S]) with SD's settings (``skip_prk_steps``,
``steps_offset=1``, ``set_alpha_to_one=False``), or DDIM / DDPM.
"""

from typing import Literal

import torch
from torch import Tensor, nn

from common.priors.clip import CLIPModel
from common.priors.diffusion import DiffusionModel

SchedulerName = Literal["pndm", "ddim", "ddpm"]


def make_scheduler(diffusion: DiffusionModel, name: SchedulerName = "pndm"):
    """A diffusers sampling scheduler over the model's training schedule (ε-prediction inputs).

    ``β_t = 1 − ᾱ_t / ᾱ_{t−1}`` is recovered from the wrapper's ``ᾱ``, so the sampler matches the
    pipeline's training schedule whatever scheduler class the pipeline folder names.
    :meth:`DiffusionModel.predict_noise` already converts v-/x0-predictions to ε.
    """
    import diffusers

    ab = diffusion.alpha_bar.double().cpu()
    betas = (1 - ab / torch.cat([ab.new_ones(1), ab[:-1]])).float().numpy()
    common = dict(num_train_timesteps=len(betas), trained_betas=betas, prediction_type="epsilon")
    if name == "pndm":
        return diffusers.PNDMScheduler(skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1, **common)
    if name == "ddim":
        return diffusers.DDIMScheduler(set_alpha_to_one=False, steps_offset=1,
                                       clip_sample=not diffusion.is_latent, **common)
    if name == "ddpm":
        return diffusers.DDPMScheduler(clip_sample=not diffusion.is_latent, **common)
    raise ValueError(f"unknown scheduler {name!r}; use 'pndm', 'ddim' or 'ddpm'")


@torch.no_grad()
def sample_images(diffusion: DiffusionModel, prompt: str, num_samples: int, steps: int = 50,
                  guidance_scale: float = 7.5, scheduler: SchedulerName = "pndm", negative_prompt: str = "",
                  batch_size: int | None = None, generator: torch.Generator | None = None, eta: float = 0.0) -> Tensor:
    """Draw ``num_samples`` images with classifier-free guidance (spec §2.7).

    Args:
        diffusion: the frozen diffusion prior (latent or pixel space).
        prompt: the full prompt (caption + style suffix); ignored by unconditional models.
        num_samples: K.
        steps: sampler steps (50 [S]).
        guidance_scale: CFG scale s (7.5 [S]; ω = s − 1, AMB-6). Must be 1 for unconditional models.
        scheduler: ``"pndm"`` [S], ``"ddim"`` or ``"ddpm"``.
        negative_prompt: the unconditional prompt ("").
        batch_size: samples per UNet batch (default: all at once).
        generator: CPU generator for the initial noise (and stochastic schedulers).
        eta: DDIM η (0: deterministic; 1: fresh noise at every step). Ignored by PNDM and DDPM.

    Returns:
        ``[K, 3, H, W]`` images in [0, 1] at the model's native resolution.
    """
    diffusion.load()
    context = diffusion.text_context(prompt, negative_prompt) if diffusion.is_conditional else None
    if context is None and guidance_scale != 1.0:
        guidance_scale = 1.0  # an unconditional model has nothing to guide towards
    size = diffusion.unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    out, batch_size = [], batch_size or num_samples
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        sched = make_scheduler(diffusion, scheduler)
        sched.set_timesteps(steps)
        x = torch.randn(n, diffusion.channels, size, size, generator=generator).to(diffusion.device)
        x = x * sched.init_noise_sigma
        for t in sched.timesteps:
            x_in = sched.scale_model_input(x, t)
            eps = diffusion.predict_noise(x_in, t.to(diffusion.device).expand(n), context, guidance_scale)
            kw = {"ddpm": {"generator": generator}, "ddim": {"generator": generator, "eta": eta}}.get(scheduler, {})
            x = sched.step(eps.float(), t, x.float(), **kw).prev_sample
        out.append(diffusion.decode(x))
    return torch.cat(out).float()


@torch.no_grad()
def clip_rerank(clip: CLIPModel, images: Tensor, caption: str) -> tuple[int, Tensor]:
    """Index of the image most similar to ``caption`` under ``clip`` (cosine), and all scores.

    Args:
        clip: the reranking CLIP (OpenAI ViT-B/16 [S]).
        images: ``[K, 3, H, W]`` in [0, 1].
        caption: the text to match (the caption without the style suffix by default, AMB-5).

    Returns:
        ``(argmax index, [K] cosine similarities)``; ties go to the lowest index.
    """
    img = clip.encode_image(images.clamp(0, 1))  # [K, D] unit norm
    txt = clip.encode_text([caption])  # [1, D]
    scores = (img @ txt.T).squeeze(-1)  # [K]
    return int(scores.argmax()), scores


class RasterSampler(nn.Module):
    """Best-of-K raster sampling (spec §2.7); holds the reranking CLIP (frozen, not in checkpoints).

    Args:
        clip: reranking CLIP (OpenAI ViT-B/16 [S]); required when ``num_samples > 1``.
        num_samples: K (4 [S]; ablations 1, 20).
        steps: sampler steps (50 [S]).
        guidance_scale: CFG scale of sampling (7.5 [S]).
        scheduler: ``"pndm"`` [S], ``"ddim"`` or ``"ddpm"``.
        eta: DDIM η (``scheduler: ddim`` only).
        batch_size: samples per UNet batch (default: all K at once).
        rerank_text: ``"caption"`` (the caption alone, like the evaluation, AMB-5) or ``"prompt"``
            (caption + style suffix).
    """

    def __init__(self, clip: CLIPModel | None = None, num_samples: int = 4, steps: int = 50,
                 guidance_scale: float = 7.5, scheduler: SchedulerName = "pndm", batch_size: int | None = None,
                 rerank_text: Literal["caption", "prompt"] = "caption", eta: float = 0.0) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if num_samples > 1 and clip is None:
            raise ValueError("rejection sampling with num_samples > 1 needs a reranking clip: set sampler.clip "
                             "(OpenAI ViT-B/16 in the paper), or num_samples: 1")
        self.clip = clip
        self.num_samples, self.steps, self.guidance_scale = num_samples, steps, guidance_scale
        self.scheduler, self.batch_size, self.rerank_text, self.eta = scheduler, batch_size, rerank_text, eta

    def load(self) -> "RasterSampler":
        """Load the reranking CLIP's weights (call from ``setup``)."""
        if self.clip is not None:
            self.clip.load()
        return self

    def forward(self, diffusion: DiffusionModel, caption: str, prompt: str, negative_prompt: str = "",
                generator: torch.Generator | None = None) -> tuple[Tensor, int, Tensor]:
        """Sample K images for ``prompt`` and pick the best for ``caption`` (or ``prompt``).

        Returns:
            ``(samples [K, 3, H, W] in [0, 1], best index, scores [K])`` (scores are 0 for K = 1).
        """
        samples = sample_images(diffusion, prompt, self.num_samples, self.steps, self.guidance_scale,
                                self.scheduler, negative_prompt, self.batch_size, generator, self.eta)
        if self.clip is None:
            return samples, 0, torch.zeros(len(samples))
        text = caption if self.rerank_text == "caption" else prompt
        best, scores = clip_rerank(self.clip, samples.to(self.clip.device), text)
        return samples, best, scores.cpu()
