"""Fixtures of the SJC tests: the tiny random priors of common.testing and an analytic Gaussian prior."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from common.priors.diffusion import DiffusionModel
from common.testing.fixtures import *  # noqa: F401,F403  (tiny_sd_dir, tiny_pixel_dir, tiny_pixel_uncond_dir)


class AnalyticGaussianDiffusion(DiffusionModel):
    """The exact ε-predictor of Gaussian data N(μ, s²I) on SD's scaled-linear schedule (spec §7, T14).

    ``ε*(z_t) = σ_t (z_t − α_t μ)/(α_t² s² + σ_t²)`` with ``α_t = sqrt(ᾱ_t)``, ``σ_t = sqrt(1 − ᾱ_t)``.
    It goes through the same :class:`DiffusionModel` interface (denoise, sigmas, load) as real models.
    """

    def __init__(self, mean=(0.5, -0.3, 0.2, 0.1), std: float = 0.05) -> None:
        super().__init__(model="analytic-gaussian")
        self.mean_value, self.std = tuple(mean), std

    def _load_networks(self):
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        self._tensors["alpha_bar"] = torch.cumprod(1 - betas, dim=0)
        unet = nn.Identity()
        unet.config = SimpleNamespace(in_channels=len(self.mean_value), sample_size=16)
        return {"unet": unet}

    def predict_noise(self, z_t, t, context=None, guidance_scale=1.0):
        t = torch.as_tensor(t).long().reshape(-1).expand(z_t.shape[0])
        ab = self.alpha_bar.to(z_t.device)[t].to(z_t.dtype).view(-1, 1, 1, 1)
        a, s = ab.sqrt(), (1 - ab).sqrt()
        mu = torch.tensor(self.mean_value, dtype=z_t.dtype, device=z_t.device).view(1, -1, 1, 1)
        return s * (z_t - a * mu) / (a**2 * self.std**2 + s**2)


def _naive_trilinear(grid: np.ndarray, p: np.ndarray, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """Loop reference: values at voxel centres lo + (i + ½)Δ, 8 neighbours, out-of-range neighbours = 0.

    grid: [C, Nz, Ny, Nx]; p: [3] (x, y, z). Returns [C].
    """
    C, nz, ny, nx = grid.shape
    n = (nx, ny, nz)
    out = np.zeros(C)
    base, frac = [], []
    for a in range(3):
        delta = (hi - lo) / n[a]
        u = (p[a] - lo) / delta - 0.5  # continuous index of the centre grid
        i0 = math.floor(u)
        base.append(i0)
        frac.append(u - i0)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                ix, iy, iz = base[0] + dx, base[1] + dy, base[2] + dz
                wgt = (frac[0] if dx else 1 - frac[0]) * (frac[1] if dy else 1 - frac[1]) * (frac[2] if dz else 1 - frac[2])
                if 0 <= ix < nx and 0 <= iy < ny and 0 <= iz < nz:
                    out += wgt * grid[:, iz, iy, ix]
    return out


@pytest.fixture(scope="session")
def naive_trilinear():
    """The loop reference of spec T5 (voxel centres at lo + (i + ½)Δ, zero outside)."""
    return _naive_trilinear


@pytest.fixture(scope="session")
def analytic_diffusion_cls():
    """:class:`AnalyticGaussianDiffusion` (a class, so tests choose μ and s)."""
    return AnalyticGaussianDiffusion
