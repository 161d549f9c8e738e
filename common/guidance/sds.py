"""Score Distillation Sampling (DreamFusion; thesis §6.3.3 eq. 6.4, latent SDS eq. 6.7).

``∇_θ L_SDS = E_{t,ε}[ w(t)·(ε̂_φ(z_t; y, t) − ε)·∂x/∂θ ]`` with ``z_t = sqrt(ᾱ_t)·x + sqrt(1−ᾱ_t)·ε``.
SDS is defined by its gradient: the U-Net runs under ``no_grad`` (its Jacobian is dropped, §4.3 of
``shared/specs/sds_ddpm.md``) and the gradient reaches the generator through the surrogate
``Σ(stopgrad(g)·x)/B`` whose derivative is exactly ``g/B`` (B6). For latent models the surrogate
is taken on ``z = scaling·E(2x − 1)``, so gradients pass through the (fp32) VAE encoder, any
resizing and augmentation, and the renderer, but never through the U-Net (eq. 6.7, with the
double-noising typo fixed: ``z_t = α_t z + σ_t ε`` once, B5).
"""

from typing import Dict, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from common.guidance.base import Guidance, check_prompt, surrogate_loss
from common.priors.clip import check_images
from common.priors.diffusion import DiffusionModel, TextContext
from common.priors.schedule import Weighting, sds_weight, timestep_range

__all__ = ["SDSGuidance", "to_model_space"]

InputSpace = Literal["rgb", "model"]


def to_model_space(diffusion: DiffusionModel, images: Tensor, input_space: InputSpace,
                   resolution: Optional[int]) -> Tensor:
    """Map guidance inputs to the diffusion model's space, differentiably.

    ``"rgb"``: ``[B, 3, H, W]`` in [0, 1] -> bilinear resize to ``resolution`` (default: the model's
    native image size) -> :meth:`DiffusionModel.encode` (SD latents or [−1, 1] pixels).
    ``"model"``: the tensor already is a latent / [−1, 1] image (SJC renders latents directly).
    """
    if input_space == "model":
        if images.ndim != 4 or images.shape[1] != diffusion.channels:
            raise ValueError(f"model-space input must be [B, {diffusion.channels}, h, w], got {tuple(images.shape)}")
        return images
    if input_space != "rgb":
        raise ValueError(f"input_space must be 'rgb' or 'model', got {input_space!r}")
    check_images(images)
    if resolution is None:
        size = diffusion.unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        if diffusion.is_latent:
            size *= 2 ** (len(diffusion.vae.config.block_out_channels) - 1)
        resolution = size
    if images.shape[-2:] != (resolution, resolution):
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return diffusion.encode(images)


def make_context(diffusion: DiffusionModel, prompt, batch: int, negative_prompt: str) -> Optional[TextContext]:
    """A :class:`TextContext` from a prompt, a list of prompts, or a given context."""
    if isinstance(prompt, TextContext):
        return prompt
    if not diffusion.is_conditional:
        return None
    return diffusion.text_context(check_prompt(prompt, batch), negative_prompt)


class SDSGuidance(Guidance):
    """Score Distillation Sampling with a frozen diffusion prior (pixel or latent).

    Args:
        diffusion: the frozen :class:`DiffusionModel`.
        guidance_scale: CFG scale s in ``ε_u + s(ε_c − ε_u)`` (ω = s − 1; default 100, §4.6).
        t_min: lowest timestep, a fraction of T (< 1) or an index (DreamFusion 0.02; VectorFusion 50).
        t_max: highest timestep, fraction (≤ 1) or index (0.98; VectorFusion 950).
        weighting: w(t): ``"sigma2"`` = 1 − ᾱ_t (default), ``"uniform"``, ``"sigma2_alpha"``.
        input_space: ``"rgb"`` (images in [0, 1], encoded with the VAE for latent models) or
            ``"model"`` (latents / [−1, 1] pixels given directly, e.g. VectorFusion latent SDS on
            its own encoded crops, or rendered latents).
        resolution: resize RGB inputs to this size before encoding (default: native size).
        negative_prompt: unconditional prompt of CFG (default ``""``).

    Shape:
        - images: ``[B, 3, H, W]`` in [0, 1] (``"rgb"``) or ``[B, C, h, w]`` (``"model"``).
        - output: ``{"loss_sds": scalar}``; ``∂loss/∂x = w(t)(ε̂ − ε)/B`` in model space.
    """

    def __init__(
        self,
        diffusion: DiffusionModel,
        guidance_scale: float = 100.0,
        t_min: float = 0.02,
        t_max: float = 0.98,
        weighting: Weighting = "sigma2",
        input_space: InputSpace = "rgb",
        resolution: Optional[int] = None,
        negative_prompt: str = "",
    ) -> None:
        super().__init__()
        self.diffusion = diffusion
        self.guidance_scale = guidance_scale
        self.t_min, self.t_max = t_min, t_max
        self.weighting = weighting
        self.input_space = input_space
        self.resolution = resolution
        self.negative_prompt = negative_prompt
        sds_weight(torch.zeros(1), weighting)  # validate the name early

    def sample_timesteps(self, batch: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``[B]`` integer timesteps uniform on ``[t_min, t_max]`` (inclusive, §4.5)."""
        lo, hi = timestep_range(self.diffusion.num_train_timesteps, self.t_min, self.t_max)
        dev = generator.device if generator is not None else self.diffusion.device
        return torch.randint(lo, hi + 1, (batch,), generator=generator, device=dev).to(self.diffusion.device)

    @torch.no_grad()
    def sds_grad(self, x: Tensor, context: Optional[TextContext], t: Tensor, noise: Tensor) -> Tensor:
        """``g = w(t)·(ε̂(z_t; y, t) − ε)`` with ``z_t = sqrt(ᾱ_t)x + sqrt(1−ᾱ_t)ε`` (eq. 6.4), no gradient.

        Args:
            x: ``[B, C, h, w]`` model-space sample.
            context: text conditioning (``None`` for unconditional models).
            t: ``[B]`` timesteps.
            noise: ``[B, C, h, w]`` ε ~ N(0, I).
        """
        ab = self.diffusion.alpha_bar.to(x.device)[t].to(x.dtype).view(-1, 1, 1, 1)
        z_t = ab.sqrt() * x.detach() + (1 - ab).sqrt() * noise
        eps_hat = self.diffusion.predict_noise(z_t, t, context, self.guidance_scale)
        return sds_weight(ab, self.weighting) * (eps_hat - noise)

    def forward(self, images: Tensor, prompt: Union[str, Sequence[str], TextContext], step: int = 0,
                t: Optional[Tensor] = None, noise: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """SDS surrogate ``{"loss_sds": Σ(stopgrad(g)·x)/B}``; its value is not meaningful, its gradient is.

        Args:
            images: see class ``Shape``.
            prompt: prompt(s) or a precomputed :class:`TextContext`.
            step: global step (unused; for the common interface).
            t: optional fixed ``[B]`` timesteps; noise: optional fixed ε; generator: RNG for both.
        """
        self.diffusion._ensure_loaded()
        x = to_model_space(self.diffusion, images, self.input_space, self.resolution)  # [B, C, h, w]
        B = x.shape[0]
        context = make_context(self.diffusion, prompt, B, self.negative_prompt)
        if t is None:
            t = self.sample_timesteps(B, generator)
        t = torch.as_tensor(t, device=x.device).long().reshape(-1).expand(B)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device if generator is None else generator.device,
                                dtype=x.dtype).to(x.device)
        g = self.sds_grad(x, context, t, noise)
        self.last_info = {"sds_grad_norm": g.norm().detach(), "sds_t": t.float().mean()}
        return {"loss_sds": surrogate_loss(x, g)}
