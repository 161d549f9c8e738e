"""Input encodings: positional encoding, mip-NeRF integrated PE, random Fourier features.

All three are one operation, a Fourier feature map over a frequency matrix ``W`` (rows ``ω_k``):

    γ(μ, Σ) = [exp(−½·diag(W Σ Wᵀ)) ⊙ sin(W μ),  exp(−½·diag(W Σ Wᵀ)) ⊙ cos(W μ)]

(mip-NeRF eq. 14, Barron et al. 2021). With ``Σ = 0`` (exact points) it is the ordinary Fourier
feature map; with ``Σ = s²I`` every frequency is damped by ``exp(−½ s² ‖ω‖²)``. The encodings
differ only in ``W``:

* :class:`PositionalEncoding` / :class:`IntegratedPositionalEncoding`: axis-aligned ``2^ℓ e_j``
  for ``ℓ = 0 … L−1`` (NeRF eq. 4 uses ``2^ℓ π``; the NeRF code uses ``2^ℓ``; ``scale_pi`` picks).
* :class:`RandomFourierEncoding`: Dream Fields' ``ω = 2^u d`` with ``u ~ U[0, L]`` and ``d``
  uniform on the sphere (Jain thesis eq. 4.6), plus the 3 axis unit vectors (specs/dreamfields.md §2.4).
"""

import math
from typing import Literal, Optional

import torch
from torch import Tensor, nn


class Encoding(nn.Module):
    """Base class: ``forward(x [..., 3], cov=None) -> [..., out_dim]``."""

    out_dim: int


class FourierEncoding(Encoding):
    """Fourier features over a fixed (non-trainable, checkpointed) frequency matrix.

    Args:
        basis: ``[K, 3]`` frequency rows ``ω_k``.
        include_input: prepend the raw coordinates.
    """

    def __init__(self, basis: Tensor, include_input: bool = False) -> None:
        super().__init__()
        self.register_buffer("basis", basis.float())
        self.include_input = include_input
        self.out_dim = 2 * basis.shape[0] + (3 if include_input else 0)

    def forward(self, x: Tensor, cov: Optional[Tensor] = None) -> Tensor:
        """Encode points (or Gaussians).

        Args:
            x: ``[..., 3]`` points or Gaussian means.
            cov: None (exact points), ``[..., 3]`` diagonal covariance, or ``[..., 3, 3]`` full.

        Returns:
            ``[..., out_dim]`` features ``[x?, damped sin, damped cos]``.
        """
        proj = x @ self.basis.T  # [..., K]  W μ
        feats = [torch.sin(proj), torch.cos(proj)]
        if cov is not None:
            if cov.shape[-1] == 3 and cov.dim() == x.dim():  # diagonal Σ: diag(WΣWᵀ)_k = Σ_j W_kj² Σ_jj
                var = cov @ (self.basis**2).T  # [..., K]
            else:  # full Σ: diag(W Σ Wᵀ)
                var = torch.einsum("kj,...jl,kl->...k", self.basis, cov, self.basis)
            damp = torch.exp(-0.5 * var)
            feats = [f * damp for f in feats]
        if self.include_input:
            feats = [x] + feats
        return torch.cat(feats, dim=-1)


def axis_aligned_basis(num_freqs: int, min_deg: int = 0, scale_pi: bool = False) -> Tensor:
    """``[3·L, 3]`` rows ``2^ℓ e_j`` (times π if ``scale_pi``), ordered by level then axis."""
    scales = 2.0 ** torch.arange(min_deg, min_deg + num_freqs, dtype=torch.float32)
    if scale_pi:
        scales = scales * math.pi
    return (scales[:, None, None] * torch.eye(3)[None]).reshape(-1, 3)


class PositionalEncoding(FourierEncoding):
    """NeRF positional encoding ``γ(x) = [x, sin(2^ℓ x), cos(2^ℓ x)]_{ℓ<L}`` (NeRF eq. 4).

    Args:
        num_freqs: ``L`` (10 for positions and 4 for directions in NeRF; 6 for Dream Fields'
            "simplified NeRF" rows).
        include_input: prepend ``x`` (NeRF code does: 3 + 6L dims).
        scale_pi: frequencies ``2^ℓ π`` as in the paper's equation rather than the code's ``2^ℓ``.
    """

    def __init__(self, num_freqs: int = 10, include_input: bool = True, scale_pi: bool = False) -> None:
        super().__init__(axis_aligned_basis(num_freqs, scale_pi=scale_pi), include_input)


class IntegratedPositionalEncoding(FourierEncoding):
    """mip-NeRF integrated positional encoding over frequencies ``2^ℓ``, ``ℓ ∈ [min_deg, max_deg)``."""

    def __init__(self, min_deg: int = 0, max_deg: int = 16, include_input: bool = False) -> None:
        super().__init__(axis_aligned_basis(max_deg - min_deg, min_deg), include_input)


class RandomFourierEncoding(FourierEncoding):
    """Dream Fields' IPE over random Fourier frequencies (Jain thesis §4.3.1, eq. 4.6).

    Args:
        num_random: number ``K`` of random frequencies (128, ref impl; specs/dreamfields.md §2.4).
        max_log2: ``L``; magnitudes ``2^u``, ``u ~ U[0, L]`` (8 for Dream Fields, 6 for the
            "low-frequency" ablation rows).
        include_axis: prepend the 3 axis unit frequencies (ref impl) → 131 rows, 262-d encoding.
        basis_kind: ``thesis`` (true unit vectors, real magnitudes) or ``official`` (the reference
            code's quirks: Gaussian draws normalised over the sample axis and magnitudes·directions
            truncated to integers).
        seed: the basis is drawn once from this seed and kept as a buffer.
    """

    def __init__(
        self,
        num_random: int = 128,
        max_log2: float = 8.0,
        include_axis: bool = True,
        basis_kind: Literal["thesis", "official"] = "thesis",
        seed: int = 0,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        gauss = torch.randn(num_random, 3, generator=g)
        mags = 2.0 ** (max_log2 * torch.rand(num_random, 1, generator=g))
        if basis_kind == "thesis":
            rows = mags * torch.nn.functional.normalize(gauss, dim=-1)
        else:  # ref impl: normalise over the 128 samples (axis 0) and truncate rads·dirs to integers
            rows = torch.trunc(mags * gauss / gauss.norm(dim=0, keepdim=True))
        if include_axis:
            rows = torch.cat([torch.eye(3), rows], dim=0)
        super().__init__(rows, include_input=False)
