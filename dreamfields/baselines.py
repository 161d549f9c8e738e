"""Scene parameterisations of the thesis appendix (§10.4–10.5; specs/dreamfields.md §10).

* 3D voxel baseline: :class:`common.fields.VoxelGridField` (128³ RGB + density, trilinear, softplus
  density, sigmoid colour) under the same renderer, losses and augmentations; only a config preset
  (``dreamfields/presets/baselines/voxel.yaml``).
* 2D pixel baseline: :class:`PixelImage`, a single RGBα image optimised with the CLIP loss, random
  backgrounds, the transmittance loss and a squared total-variation term (no rendering, no views).
* SDF parameterisation: :class:`VolSDFField`, VolSDF density ``σ(x) = α·Φ_β(−d(x))`` on top of Dream
  Fields' residual MLP, with :func:`eikonal_loss` ``E_x[(‖∇d(x)‖ − 1)²]``.
"""

import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from common.fields.base import Field, FieldOutput
from common.fields.encodings import Encoding, RandomFourierEncoding
from common.fields.mlp import ResidualMLP

__all__ = ["PixelImage", "VolSDFField", "laplace_cdf", "eikonal_loss"]


class PixelImage(nn.Module):
    """The 2D pixel baseline: one RGBα image, ``sigmoid`` of raw parameters (§10.1, suggested).

    Args:
        size: image side (224, the CLIP input size).
        init_std: std of the raw initial values around 0 (colour and alpha start near 0.5).
    """

    def __init__(self, size: int = 224, init_std: float = 0.01) -> None:
        super().__init__()
        if size < 2:
            raise ValueError(f"pixel image size must be >= 2, got {size}")
        self.size = size
        self.raw = nn.Parameter(init_std * torch.randn(1, 4, size, size))

    def forward(self) -> tuple[Tensor, Tensor]:
        """``(premultiplied rgb [1, 3, S, S], alpha [1, 1, S, S])`` in [0, 1]."""
        rgba = torch.sigmoid(self.raw)
        alpha = rgba[:, 3:]
        return rgba[:, :3] * alpha, alpha


def laplace_cdf(s: Tensor, beta: Tensor) -> Tensor:
    """CDF ``Φ_β(s)`` of a zero-mean Laplace distribution with scale β (VolSDF eq. 3).

    ``½·exp(s/β)`` for ``s ≤ 0`` and ``1 − ½·exp(−s/β)`` for ``s > 0``.
    """
    e = 0.5 * torch.exp(-s.abs() / beta)
    return torch.where(s <= 0, e, 1 - e)


class VolSDFField(Field):
    """Dream Fields with a signed-distance parameterisation (thesis §10.5): the residual MLP outputs
    ``(rgb, d)``; ``σ = α·Φ_β(−d)`` with ``α = 1/β`` and a learnable β (VolSDF's choice; suggested).

    Args:
        encoding: point encoding (default: Dream Fields' IPE over random Fourier features).
        width, hidden, n_blocks: residual-MLP sizes (as the NeRF default).
        beta_init: initial β (0.1).
        learn_beta: optimise β (as ``log β``).
        sphere_init_radius: add ``‖x‖₂ − r`` to the network's distance and zero the distance row of the
            output layer, so that training starts from the exact SDF of a sphere of radius r (geometric
            initialisation; the raw IPE network has ‖∇d‖ ≫ 1); None starts from the raw network output.
    """

    def __init__(self, encoding: Optional[Encoding] = None, width: int = 128, hidden: int = 256, n_blocks: int = 4,
                 beta_init: float = 0.1, learn_beta: bool = True, sphere_init_radius: Optional[float] = 0.5) -> None:
        super().__init__()
        if beta_init <= 0:
            raise ValueError(f"beta_init must be positive, got {beta_init}")
        self.encoding = encoding if encoding is not None else RandomFourierEncoding()
        self.trunk = ResidualMLP(self.encoding.out_dim, 4, width, hidden, n_blocks)
        log_beta = torch.tensor(math.log(beta_init))
        if learn_beta:
            self.log_beta = nn.Parameter(log_beta)
        else:
            self.register_buffer("log_beta", log_beta)
        self.sphere_init_radius = sphere_init_radius
        if sphere_init_radius is not None:  # d(x) = ‖x‖ − r exactly at the start (‖∇d‖ = 1: Eikonal loss 0)
            with torch.no_grad():
                self.trunk.out.weight[3].zero_()
                self.trunk.out.bias[3].zero_()

    @property
    def beta(self) -> Tensor:
        return self.log_beta.exp()

    def _raw(self, x: Tensor, cov: Optional[Tensor] = None) -> Tensor:
        out = self.trunk(self.encoding(x, cov))  # [..., 4] = (rgb, d)
        if self.sphere_init_radius is not None:
            out = torch.cat([out[..., :3], out[..., 3:] + x.norm(dim=-1, keepdim=True) - self.sphere_init_radius], -1)
        return out

    def sdf(self, x: Tensor, cov: Optional[Tensor] = None) -> Tensor:
        """``[...]`` signed distance d(x) (negative inside)."""
        return self._raw(x, cov)[..., 3]

    def sdf_to_density(self, d: Tensor) -> Tensor:
        """``σ = α·Φ_β(−d)`` with ``α = 1/β``; ``σ(0) = α/2``, decreasing in d."""
        beta = self.beta
        return laplace_cdf(-d, beta) / beta

    def forward(self, x: Tensor, d: Optional[Tensor] = None, cov: Optional[Tensor] = None) -> FieldOutput:
        out = self._raw(x, cov)
        return FieldOutput(self.sdf_to_density(out[..., 3]), torch.sigmoid(out[..., :3]))

    def density(self, x: Tensor) -> Tensor:
        return self.sdf_to_density(self.sdf(x))

    def surface_density(self) -> float:
        """The density on the zero level set, ``α/2`` (the mesh iso-level)."""
        return float(0.5 / self.beta.detach())


def eikonal_loss(sdf_fn: Callable[[Tensor], Tensor], points: Tensor) -> Tensor:
    """``mean((‖∇_x d(x)‖ − 1)²)`` at ``points`` ``[N, 3]`` (IGR/VolSDF Eikonal term), differentiable."""
    x = points.detach().requires_grad_(True)
    with torch.enable_grad():
        d = sdf_fn(x)
        (grad,) = torch.autograd.grad(d.sum(), x, create_graph=True)
    return ((grad.norm(dim=-1) - 1.0) ** 2).mean()
