"""Noise schedule and samplers of DDPM through diffusers schedulers (sds_ddpm.md §3.2, §3.4, §3.5).

The denoiser predicts ε (DDPM's parameterisation, the default) or v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x_0
(Salimans & Ho 2022, "Progressive distillation", §4; ``prediction_type="v_prediction"``, as Stable
Diffusion 2.x); the scheduler converts either to x̂_0, and classifier-free guidance is the same linear
combination of the two outputs for both.

* Schedule [external: DDPM paper]: T = 1000, β linear from 1e-4 to 0.02; ᾱ_t = Π_{s≤t}(1 − β_s).
* Ancestral sampling (Ho et al. 2020, Algorithm 2 / eq. 11): ``DDPMScheduler.step`` with posterior
  variance β̃_t (``variance_type="fixed_small"``, the spec's default) or β_t (``"fixed_large"``).
* DDIM (thesis eq. 6.2; Song et al. 2021 eq. 12): ``DDIMScheduler.step``; ``eta = 0`` is deterministic,
  ``eta = 1`` matches the ancestral variance.
* Classifier-free guidance (thesis eq. 6.3): ``ε̂ = ε_u + s·(ε_c − ε_u)``, i.e. ω = s − 1.
"""

from typing import Callable, Literal, Optional

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor, nn

from common.priors.schedule import classifier_free_guidance

Sampler = Literal["ddpm", "ddim"]
PredictionType = Literal["epsilon", "v_prediction"]


def make_scheduler(
    sampler: Sampler = "ddpm",
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    beta_schedule: str = "linear",
    variance_type: Literal["fixed_small", "fixed_large"] = "fixed_small",
    clip_sample: bool = True,
    prediction_type: PredictionType = "epsilon",
    timestep_spacing: Literal["leading", "trailing", "linspace"] = "leading",
):
    """A diffusers scheduler over the DDPM schedule for a denoiser that predicts ``prediction_type``.

    ``timestep_spacing`` places a K-step sampler's timesteps: ``leading`` (diffusers' default; 30 steps start at
    t = 957), ``trailing`` (start at t = T − 1; Lin et al., WACV 2024, for schedules whose ᾱ at t = 957 still
    holds signal) or ``linspace``.
    """
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"unknown prediction_type {prediction_type!r}; use 'epsilon' or 'v_prediction'")
    common = dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                  beta_schedule=beta_schedule, clip_sample=clip_sample, prediction_type=prediction_type,
                  timestep_spacing=timestep_spacing)
    if sampler == "ddpm":
        return DDPMScheduler(variance_type=variance_type, **common)
    if sampler == "ddim":
        return DDIMScheduler(set_alpha_to_one=True, **common)
    raise ValueError(f"unknown sampler {sampler!r}; use 'ddpm' (ancestral) or 'ddim'")


def predict_noise(unet: nn.Module, x_t: Tensor, t: Tensor, context: Optional[Tensor] = None,
                  null: Optional[Tensor] = None, guidance_scale: float = 1.0) -> Tensor:
    """``ε_φ(x_t, y, t)`` (or ``v_φ`` for a v-prediction UNet) with optional classifier-free guidance (one
    batched UNet call for both halves).

    Args:
        unet: ``UNet2DModel`` (``context`` None) or ``UNet2DConditionModel``.
        x_t: ``[B, C, H, W]`` noisy sample.
        t: ``[B]`` integer timesteps.
        context: ``[B, L, D]`` condition, or None (unconditional).
        null: ``[B, L, D]`` null condition (needed when ``guidance_scale != 1``).
        guidance_scale: s of ``ε_u + s·(ε_c − ε_u)``.
    """
    if context is None:
        return unet(x_t, t).sample
    if guidance_scale == 1.0:
        return unet(x_t, t, encoder_hidden_states=context).sample
    if null is None:
        raise ValueError("classifier-free guidance needs the null (empty-prompt) condition")
    eps = unet(torch.cat([x_t, x_t]), torch.cat([t, t]), encoder_hidden_states=torch.cat([null, context])).sample
    eps_u, eps_c = eps.chunk(2)
    return classifier_free_guidance(eps_c, eps_u, guidance_scale)


@torch.no_grad()
def sample(
    unet: nn.Module,
    scheduler,
    shape: tuple[int, int, int, int],
    num_inference_steps: int = 1000,
    context: Optional[Tensor] = None,
    null: Optional[Tensor] = None,
    guidance_scale: float = 1.0,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
    callback: Optional[Callable[[int, Tensor], None]] = None,
    x_T: Optional[Tensor] = None,
    clamp: Optional[bool] = None,
) -> Tensor:
    """Draw samples ``x_0`` ``[B, C, H, W]`` (in ``[-1, 1]`` for images) starting from ``x_T ~ N(0, I)``.

    Args:
        unet: the denoiser (ε- or v-prediction).
        scheduler: a ``DDPMScheduler`` (ancestral) or ``DDIMScheduler`` from :func:`make_scheduler`, with
            the UNet's ``prediction_type``.
        shape: ``(B, C, H, W)``.
        num_inference_steps: number of denoising steps (strided timesteps when < T).
        context, null, guidance_scale: conditioning and CFG (see :func:`predict_noise`).
        eta: DDIM noise (0 = deterministic); ignored by the ancestral sampler.
        generator: CPU generator for the initial noise and the per-step noise.
        device: device of the sample (default: the UNet's).
        callback: called as ``callback(i, x_t)`` after every step.
        x_T: ``[B, C, H, W]`` initial noise (default: drawn from ``generator``).
        clamp: clamp the result to [−1, 1]; default: as the scheduler clips x̂₀ (``clip_sample``), i.e. yes for
            images and no for latents, which are not bounded.
    """
    device = device or next(unet.parameters()).device
    x = (torch.randn(shape, generator=generator) if x_T is None else x_T).to(device)  # x_T ~ N(0, I)
    scheduler.set_timesteps(num_inference_steps, device=device)
    extra = {"eta": eta} if isinstance(scheduler, DDIMScheduler) else {}
    for i, t in enumerate(scheduler.timesteps):
        tt = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
        eps = predict_noise(unet, x, tt, context, null, guidance_scale)
        x = scheduler.step(eps, t, x, generator=generator, **extra).prev_sample
        if callback is not None:
            callback(i, x)
    clamp = scheduler.config.clip_sample if clamp is None else clamp
    return x.clamp(-1.0, 1.0) if clamp else x
