"""Regularisers shared by the text-to-3D methods; each cites the equation it implements.

* :func:`transmittance_loss` / :func:`transmittance_target` / :class:`TransmittanceLoss`: Dream
  Fields ``L_T = −min(τ, mean T)`` (thesis eq. 4.8–4.9) with τ annealed 0.4 -> 0.88 over 500 steps
  (``shared/specs/dreamfields.md`` §5.2; PureCLIPNeRF uses the same with scale 1: 0.5 -> 0.9).
* :func:`beta_prior_loss`: Neural Volumes beta prior, thesis eq. 4.10.
* :func:`total_variation`: TV over the last 2 (image) or 3 (grid) axes (Dream Fields §10.1 squared,
  PureCLIPNeRF §3.9 mean-abs).
* :func:`binary_entropy_loss`: background-transmittance entropy (PureCLIPNeRF §3.9.4, DVGO).
* :func:`emptiness_loss` / :func:`emptiness_weight`: SJC eq. 26 and its λ schedule (sjc.md §2.8).
"""

import math
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "transmittance_loss",
    "transmittance_target",
    "camera_scale",
    "TransmittanceLoss",
    "beta_prior_loss",
    "total_variation",
    "binary_entropy_loss",
    "emptiness_loss",
    "emptiness_weight",
]


def transmittance_loss(transmittance: Tensor, target: float) -> Tensor:
    """``L_T = −min(τ, mean(T))`` (thesis eq. 4.8).

    The gradient is exactly zero when ``mean(T) ≥ τ`` (ties included), otherwise ``−1/N`` per
    element.

    Args:
        transmittance: per-ray transmittance T, any shape (the full uncropped render, A6).
        target: τ in [0, 1].

    Example:
        >>> round(transmittance_loss(torch.full((4,), 0.95), 0.88).item(), 4)
        -0.88
    """
    mean = transmittance.mean()
    return -torch.where(mean < target, mean, torch.full_like(mean, target))


def camera_scale(focal_mult: float = 1.2, radius: float = 4.0, base_radius: float = 4.0) -> float:
    """Dream Fields' opacity-target scale ``m_focal²/((radius/base)²·1.2)`` (= 1.2 at the defaults;
    keeps the object's cross-section fixed as focal length and distance vary, §5.2)."""
    return focal_mult**2 / ((radius / base_radius) ** 2 * 1.2)


def transmittance_target(step: int, anneal_steps: int = 500, opacity_start: float = 0.5,
                         opacity_end: float = 0.1, scale: float = 1.2) -> float:
    """Annealed target τ_i: geometric interpolation of the opacity (dreamfields.md §5.2, A4).

    ``u = min(i/anneal_steps, 1)``, ``1 − τ = min(1, scale·exp((1−u)·ln o₀ + u·ln o₁))``.
    Defaults give τ(0) = 0.40, τ(250) = 0.7317, τ(≥500) = 0.88 (Dream Fields); ``scale=1`` gives
    PureCLIPNeRF's 0.5 -> 0.9.
    """
    u = min(max(step, 0) / anneal_steps, 1.0) if anneal_steps > 0 else 1.0
    opacity = math.exp((1 - u) * math.log(opacity_start) + u * math.log(opacity_end))
    return 1.0 - min(1.0, scale * opacity)


class TransmittanceLoss(nn.Module):
    """``−min(τ_i, mean T)`` with the annealed τ_i of :func:`transmittance_target`.

    Args:
        anneal_steps, opacity_start, opacity_end, scale: see :func:`transmittance_target`.
    """

    def __init__(self, anneal_steps: int = 500, opacity_start: float = 0.5, opacity_end: float = 0.1,
                 scale: float = 1.2) -> None:
        super().__init__()
        self.anneal_steps, self.opacity_start, self.opacity_end, self.scale = anneal_steps, opacity_start, opacity_end, scale

    def target(self, step: int) -> float:
        """τ at ``step``."""
        return transmittance_target(step, self.anneal_steps, self.opacity_start, self.opacity_end, self.scale)

    def forward(self, transmittance: Tensor, step: int) -> Tensor:
        return transmittance_loss(transmittance, self.target(step))


def beta_prior_loss(transmittance: Tensor, eps: float = 1e-6) -> Tensor:
    """Beta prior ``mean(log T + log(1 − T))`` with T clamped to [ε, 1−ε] (thesis eq. 4.10)."""
    t = transmittance.clamp(eps, 1 - eps)
    return (t.log() + (1 - t).log()).mean()


def total_variation(x: Tensor, dims: int = 2, power: int = 1) -> Tensor:
    """Mean total variation over the last ``dims`` axes, averaged over axes.

    ``TV = (1/dims)·Σ_axes mean|Δ_axis x|^power`` with forward differences. ``power=1`` is
    PureCLIPNeRF's mean-abs TV (spec §3.9.3), ``power=2`` the squared TV of the Dream Fields 2D
    baseline (dreamfields.md §10.1).

    Example:
        >>> total_variation(torch.ones(1, 3, 4, 4)).item()
        0.0
    """
    if dims < 1 or x.ndim < dims:
        raise ValueError(f"total_variation over {dims} axes needs a tensor with at least {dims} dims")
    terms = [x.diff(dim=-k).abs().pow(power).mean() for k in range(1, dims + 1)]
    return torch.stack(terms).mean()


def binary_entropy_loss(p: Tensor, eps: float = 1e-6) -> Tensor:
    """``mean(−(p log p + (1−p) log(1−p)))`` with p clamped to [ε, 1−ε] (PureCLIPNeRF L_σ, §3.9.4)."""
    q = p.clamp(eps, 1 - eps)
    return -(q * q.log() + (1 - q) * (1 - q).log()).mean()


def emptiness_loss(weights: Tensor, beta: float = 10.0) -> Tensor:
    """SJC emptiness loss ``mean(log(1 + β·w))`` over the padded weight matrix (SJC eq. 26, A6).

    Args:
        weights: rendering weights w (any shape, e.g. ``[k, R]``; padded entries are 0 and only
            change the divisor).
        beta: β (10).

    Example:
        >>> round(emptiness_loss(torch.tensor([0.0, 0.1, 0.5, 0.2])).item(), 7)
        0.8958797
    """
    return torch.log1p(beta * weights).mean()


def emptiness_weight(step: int, total_steps: int, lambdas: Sequence[float] = (1e4, 2e5),
                     switch_frac: float = 0.5) -> float:
    """Two-stage emptiness weight: λ₁ for ``step < K``, λ₂ for ``step ≥ K`` with K = ⌊frac·N⌋ (sjc.md §2.8)."""
    return float(lambdas[0] if step < int(switch_frac * total_steps) else lambdas[1])
