"""CLIP-Forge stage 2: the conditional RealNVP ``F`` over shape embeddings (specs/zeroforge.md §3.3, [CF]).

``[Coupling_1, BNFlow_1, …, Coupling_n, BNFlow_n]`` with alternating half masks. "Direct" maps data
``x`` (a shape embedding) to noise ``u``; sampling runs the inverse over the modules in reverse order
from ``z ~ N(0, I)``. ``log p(x|c) = Σ_i[−½u_i² − ½log 2π] + logdet``.

BatchNormFlow has momentum 0 ([CF]): in train mode the running statistics are overwritten by the last
batch's. The inverse pass (sampling) always uses the running statistics; ZeroForge keeps the flow in
eval mode (A9).
"""

import math
from typing import Tuple

import torch
from torch import Tensor, nn

__all__ = ["CouplingLayer", "BatchNormFlow", "ConditionalRealNVP"]


class CouplingLayer(nn.Module):
    """Affine coupling conditioned on ``c`` (§3.3): the masked half passes through, the rest is scaled and shifted.

    ``a = [x⊙m, c]``; ``log s = S(a)⊙(1−m)`` (Tanh MLP); ``t = T(a)⊙(1−m)`` (ReLU MLP);
    direct ``y = x⊙exp(log s) + t`` (logdet ``Σ log s``); inverse ``x = (y − t)⊙exp(−log s)``.

    Args:
        dim: latent size d.
        cond_dim: condition size (the CLIP embedding width).
        hidden: MLP width (1024).
        mask: ``[d]`` float mask, 1 where the input passes through.
    """

    def __init__(self, dim: int, cond_dim: int, hidden: int, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.scale_net = nn.Sequential(nn.Linear(dim + cond_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                       nn.Linear(hidden, dim))
        self.translate_net = nn.Sequential(nn.Linear(dim + cond_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                           nn.Linear(hidden, dim))

    def _st(self, x: Tensor, cond: Tensor) -> Tuple[Tensor, Tensor]:
        a = torch.cat([x * self.mask, cond], dim=-1)  # [B, d + c]
        free = 1.0 - self.mask
        return self.scale_net(a) * free, self.translate_net(a) * free

    def forward(self, x: Tensor, cond: Tensor, inverse: bool = False) -> Tuple[Tensor, Tensor]:
        log_s, t = self._st(x, cond)  # x⊙m = y⊙m, so S and T read the same input both ways
        if not inverse:
            return x * torch.exp(log_s) + t, log_s.sum(-1)
        return (x - t) * torch.exp(-log_s), -log_s.sum(-1)


class BatchNormFlow(nn.Module):
    """Invertible batch normalisation with momentum 0 (§3.3).

    Direct: ``y = exp(log γ)⊙(x − μ)/sqrt(var) + β``, logdet ``Σ(log γ − ½ log var)``. Train mode uses
    the batch mean and variance (+ eps) and writes them into the running buffers; eval mode and the
    inverse use the running buffers. (The logdet uses the same ``var`` as the transform, so it is the
    exact log-Jacobian; [CF] writes ``log(var + 1e-6)``, a 1e-6 difference.)
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.log_gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: Tensor, cond: Tensor = None, inverse: bool = False) -> Tuple[Tensor, Tensor]:
        if not inverse:
            if self.training:
                mean = x.mean(0)
                var = (x - mean).pow(2).mean(0) + self.eps
                with torch.no_grad():  # momentum 0: the running statistics become the batch's
                    self.running_mean.copy_(mean.detach())
                    self.running_var.copy_(var.detach())
            else:
                mean, var = self.running_mean, self.running_var
            y = torch.exp(self.log_gamma) * (x - mean) / var.sqrt() + self.beta
            return y, (self.log_gamma - 0.5 * torch.log(var)).sum().expand(x.shape[0])
        mean, var = self.running_mean, self.running_var
        y = (x - self.beta) / torch.exp(self.log_gamma) * var.sqrt() + mean
        return y, (-self.log_gamma + 0.5 * torch.log(var)).sum().expand(x.shape[0])


class ConditionalRealNVP(nn.Module):
    """CLIP-Forge's latent flow ``F`` (§3.3): ``n_blocks`` × (coupling + BatchNormFlow), masks alternating.

    Args:
        latent_dim: shape-embedding size d (128).
        cond_dim: condition size c (512 for ViT-B/32; must equal the CLIP embedding width, A8).
        hidden: coupling MLP width (1024).
        n_blocks: coupling blocks (5).

    Shape:
        :meth:`direct` ``x [B, d], c [B, c]`` -> ``(u [B, d], logdet [B])``; :meth:`inverse` the reverse;
        :meth:`sample` ``z [B, d], c [B, c]`` -> ``s [B, d]``.
    """

    def __init__(self, latent_dim: int = 128, cond_dim: int = 512, hidden: int = 1024, n_blocks: int = 5) -> None:
        super().__init__()
        self.latent_dim, self.cond_dim = latent_dim, cond_dim
        mask = (torch.arange(latent_dim) < latent_dim // 2).float()  # "realnvp_half": m_1[i] = 1 for i < d/2
        layers = []
        for _ in range(n_blocks):
            layers += [CouplingLayer(latent_dim, cond_dim, hidden, mask), BatchNormFlow(latent_dim)]
            mask = 1.0 - mask  # m_{j+1} = 1 − m_j
        self.layers = nn.ModuleList(layers)

    def _check(self, x: Tensor, cond: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.latent_dim:
            raise ValueError(f"flow input must be [B, {self.latent_dim}] (latent_dim), got {tuple(x.shape)}")
        if cond.ndim != 2 or cond.shape != (x.shape[0], self.cond_dim):
            raise ValueError(f"flow condition must be [B={x.shape[0]}, {self.cond_dim}] (cond_dim = the CLIP "
                             f"embedding width), got {tuple(cond.shape)}")

    def direct(self, x: Tensor, cond: Tensor) -> Tuple[Tensor, Tensor]:
        """Data -> noise: ``(u, logdet)`` with ``logdet = log|det ∂u/∂x|`` per row."""
        self._check(x, cond)
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, u: Tensor, cond: Tensor) -> Tuple[Tensor, Tensor]:
        """Noise -> data: ``(x, logdet)`` with ``logdet = log|det ∂x/∂u|`` per row."""
        self._check(u, cond)
        logdet = u.new_zeros(u.shape[0])
        for layer in reversed(self.layers):
            u, ld = layer(u, cond, inverse=True)
            logdet = logdet + ld
        return u, logdet

    def log_prob(self, x: Tensor, cond: Tensor) -> Tensor:
        """``[B]`` ``log p(x|c) = Σ_i[−½u_i² − ½log 2π] + logdet``."""
        u, logdet = self.direct(x, cond)
        return (-0.5 * u.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1) + logdet

    def sample(self, noise: Tensor, cond: Tensor) -> Tensor:
        """Shape embeddings ``F⁻¹(z; c)`` ``[B, d]`` (§3.4)."""
        return self.inverse(noise, cond)[0]
