"""Samples along rays: stratified segments with jitter, and mip-NeRF conical-frustum Gaussians."""

from typing import Literal, Optional

import torch
from torch import Tensor


def stratified_segments(
    near: Tensor,
    far: Tensor,
    n_samples: int,
    jitter: bool = True,
    mode: Literal["bins", "endpoints"] = "bins",
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """Split ``[near, far]`` of each ray into ``n_samples`` contiguous segments.

    ``mode='bins'`` (NeRF-style stratified sampling, Mildenhall et al. 2020 eq. 2): the interior
    edges of ``n_samples`` equal bins each move by ``U(−½, ½)·Δ`` while the outer edges stay at
    ``near`` and ``far``, so the segments always tile ``[near, far]`` exactly (the transmittance of
    a homogeneous medium is exact whatever the jitter). ``mode='endpoints'`` (Dream Fields,
    specs/dreamfields.md §2.3): all ``N+1`` endpoints ``t_k = near + kΔ`` get independent
    ``U(−½, ½)·Δ`` noise, the outer ones too.

    Args:
        near, far: ``[R]`` interval per ray.
        n_samples: segments per ray ``S``.
        jitter: random offsets (training); False gives the deterministic midpoints (evaluation).

    Returns:
        ``(t_starts, t_ends)``, each ``[R, S]``, non-decreasing along the ray.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    steps = torch.linspace(0.0, 1.0, n_samples + 1, device=near.device, dtype=near.dtype)  # [S+1]
    span = (far - near)[:, None]
    edges = near[:, None] + span * steps  # [R, S+1]
    if jitter:
        noise = (torch.rand(edges.shape, generator=generator, device="cpu").to(edges) - 0.5) * span / n_samples
        if mode == "bins":
            noise[:, 0] = 0.0
            noise[:, -1] = 0.0
        edges = edges + noise
    return edges[:, :-1], edges[:, 1:]


def conical_frustum_gaussian(
    rays_o: Tensor, rays_d: Tensor, t_starts: Tensor, t_ends: Tensor, radii: Tensor, diagonal: bool = False
) -> tuple[Tensor, Tensor]:
    """Mean and covariance of each segment's conical frustum (mip-NeRF, Barron et al. 2021, eq. 7–8).

    With ``t_μ = (t0+t1)/2``, ``t_δ = (t1−t0)/2`` and ṙ the cone radius at unit distance:
    ``μ_t = t_μ + 2 t_μ t_δ² / (3t_μ² + t_δ²)``,
    ``σ_t² = t_δ²/3 − (4/15)·t_δ⁴(12t_μ² − t_δ²)/(3t_μ² + t_δ²)²``,
    ``σ_r² = ṙ²·(t_μ²/4 + (5/12)t_δ² − (4/15)·t_δ⁴/(3t_μ² + t_δ²))``,
    ``mean = o + μ_t d``, ``Σ = σ_t² d dᵀ + σ_r² (I − d dᵀ/‖d‖²)``.

    Args:
        rays_o, rays_d: ``[R, 3]``.
        t_starts, t_ends: ``[R, S]``.
        radii: ``[R]`` ṙ (pixel width at unit distance · 2/√12).
        diagonal: return only the diagonal of Σ, ``[R, S, 3]``.

    Returns:
        ``(mean [R, S, 3], cov [R, S, 3, 3] or [R, S, 3])``.
    """
    t_mu, t_delta = (t_starts + t_ends) / 2, (t_ends - t_starts) / 2
    denom = (3 * t_mu**2 + t_delta**2).clamp_min(1e-10)
    mu_t = t_mu + 2 * t_mu * t_delta**2 / denom
    var_t = t_delta**2 / 3 - (4 / 15) * t_delta**4 * (12 * t_mu**2 - t_delta**2) / denom**2
    var_r = radii[:, None] ** 2 * (t_mu**2 / 4 + (5 / 12) * t_delta**2 - (4 / 15) * t_delta**4 / denom)
    mean = rays_o[:, None, :] + mu_t[..., None] * rays_d[:, None, :]  # [R, S, 3]
    d_outer_diag = rays_d**2  # [R, 3]
    d_norm_sq = (rays_d**2).sum(-1, keepdim=True).clamp_min(1e-10)  # [R, 1]
    if diagonal:
        null_diag = 1 - d_outer_diag / d_norm_sq
        cov = var_t[..., None] * d_outer_diag[:, None, :] + var_r[..., None] * null_diag[:, None, :]
        return mean, cov
    d_outer = rays_d[:, :, None] * rays_d[:, None, :]  # [R, 3, 3]
    eye = torch.eye(3, dtype=rays_d.dtype, device=rays_d.device)
    null_outer = eye - d_outer / d_norm_sq[..., None]
    cov = var_t[..., None, None] * d_outer[:, None] + var_r[..., None, None] * null_outer[:, None]
    return mean, cov


def pixel_radii(focal, n_rays: int, dtype=torch.float32, device=None) -> Tensor:
    """``[R]`` mip-NeRF cone radius at unit distance for rays of a camera with focal length ``focal``
    (pixel width at unit depth ``1/f`` times ``2/√12``)."""
    focal = torch.as_tensor(focal, dtype=dtype, device=device)
    return (2.0 / 12**0.5) / focal.expand(n_rays) if focal.dim() == 0 else (2.0 / 12**0.5) / focal
