"""Noise-schedule algebra shared by DDPM, SDS and SJC: ᾱ_t ↔ σ_t, CFG, timestep ranges, weights.

Notation (``shared/specs/sds_ddpm.md`` §2; never call a per-step ``1 − β_t`` "alpha"):

* ``alpha_bar[t] = ᾱ_t = Π_{s≤t}(1 − β_s)`` (DDPM, Ho et al. 2020);
* ``signal_scale = sqrt(ᾱ_t)`` and ``noise_scale = sqrt(1 − ᾱ_t)`` are the thesis' α_t and σ_t
  (variance preserving: ``z_t = α_t x + σ_t ε``, α_t² + σ_t² = 1);
* the VE (Karras / SJC) noise level is ``sigma = sqrt((1 − ᾱ)/ᾱ)``, with inverse
  ``ᾱ = 1/(1 + σ²)`` (``shared/specs/sjc.md`` §1.2), and ``x_VE = z_t/sqrt(ᾱ)``.
"""

from typing import Literal, Tuple

import torch
from torch import Tensor

__all__ = [
    "sigma_from_alpha_bar",
    "alpha_bar_from_sigma",
    "ve_to_vp_input",
    "classifier_free_guidance",
    "nearest_timestep",
    "timestep_range",
    "sds_weight",
    "v_to_epsilon",
]

Weighting = Literal["sigma2", "uniform", "sigma2_alpha"]


def sigma_from_alpha_bar(alpha_bar: Tensor) -> Tensor:
    """VE noise level ``σ = sqrt((1 − ᾱ)/ᾱ)`` (SJC eq. 2 conversion, spec §1.2).

    Example:
        >>> float(sigma_from_alpha_bar(torch.tensor(0.5)))
        1.0
    """
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def alpha_bar_from_sigma(sigma: Tensor) -> Tensor:
    """Inverse of :func:`sigma_from_alpha_bar`: ``ᾱ = 1/(1 + σ²)``."""
    return 1 / (1 + sigma**2)


def ve_to_vp_input(x: Tensor, sigma: Tensor) -> Tensor:
    """UNet input for a VE sample ``x = y + σ n``: ``z_t = x/sqrt(1 + σ²) = sqrt(ᾱ)·x`` (SJC §1.2)."""
    return x / (1 + sigma**2).sqrt()


def classifier_free_guidance(eps_cond: Tensor, eps_uncond: Tensor, guidance_scale: float) -> Tensor:
    """``ε̂ = ε_u + s·(ε_c − ε_u)`` (Diffusers convention; eq. 6.3 of the thesis with ω = s − 1).

    ``s = 1`` returns ``ε_c``; ``s = 0`` returns ``ε_u`` (spec sds_ddpm.md §3.5).
    """
    if guidance_scale == 1.0:
        return eps_cond
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def nearest_timestep(sigma: Tensor, sigmas: Tensor) -> Tensor:
    """Index t of the tick whose ``σ_t`` is nearest to ``sigma`` (SJC nearest-tick snapping, [C]).

    Args:
        sigma: ``[*]`` noise levels.
        sigmas: ``[T]`` ascending table ``σ_t``.

    Returns:
        ``[*]`` int64 timesteps.
    """
    sigma = torch.as_tensor(sigma, dtype=sigmas.dtype, device=sigmas.device)
    return (sigma.reshape(-1, 1) - sigmas.reshape(1, -1)).abs().argmin(dim=-1).reshape(sigma.shape)


def timestep_range(num_train_timesteps: int, t_min: float, t_max: float) -> Tuple[int, int]:
    """Integer timestep bounds (inclusive) from fractions (``t < 1``) or indices (``t ≥ 1``).

    DreamFusion's ``U(0.02, 0.98)`` maps to 20..980 for T = 1000; VectorFusion's 50..950 is given
    as integers (sds_ddpm.md §4.5, B3).
    """
    lo = round(t_min * num_train_timesteps) if t_min < 1 else int(t_min)
    hi = round(t_max * num_train_timesteps) if t_max <= 1 else int(t_max)
    hi = min(hi, num_train_timesteps - 1)
    if not 0 <= lo <= hi:
        raise ValueError(f"empty timestep range [{t_min}, {t_max}] for T = {num_train_timesteps}")
    return lo, hi


def sds_weight(alpha_bar: Tensor, weighting: Weighting = "sigma2") -> Tensor:
    """SDS weight w(t) (sds_ddpm.md §4.4): ``"sigma2"`` = 1 − ᾱ_t (default), ``"uniform"`` = 1,
    ``"sigma2_alpha"`` = sqrt(ᾱ_t)·(1 − ᾱ_t)."""
    if weighting == "sigma2":
        return 1 - alpha_bar
    if weighting == "uniform":
        return torch.ones_like(alpha_bar)
    if weighting == "sigma2_alpha":
        return alpha_bar.sqrt() * (1 - alpha_bar)
    raise ValueError(f"unknown SDS weighting {weighting!r}; use 'sigma2', 'uniform' or 'sigma2_alpha'")


def v_to_epsilon(v: Tensor, z_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """ε from a v-prediction: ``ε = sqrt(ᾱ)·v + sqrt(1 − ᾱ)·z_t`` (sjc.md §1.2)."""
    return alpha_bar.sqrt() * v + (1 - alpha_bar).sqrt() * z_t
