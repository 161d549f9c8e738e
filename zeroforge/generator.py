"""The generator ``G = D ∘ F`` (specs/zeroforge.md §2, §3.4–3.6): condition + noise -> latent -> occupancy grid.

``s = F⁻¹(z; c)``, ``o = D(s, grid)`` on the ``N³`` query grid, then soft voxels
``V = sigmoid(β(o − γ))`` for training (eq. 5 with its sign fixed, A1) or hard voxels ``o > γ`` for
inference. Decoding is chunked over points, with optional activation checkpointing (A18).
"""

from typing import Optional

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from zeroforge.geometry import make_grid

__all__ = ["soft_binarize", "hard_binarize", "decode_grid", "generate_latents", "check_latent_sizes"]


def soft_binarize(o: Tensor, beta: float = 200.0, gamma: float = 0.05) -> Tensor:
    """``B(o; β, γ) = 1 / (1 + exp(−β(o − γ)))`` (eq. 5; A1 fixes the paper's sign slip).

    Example:
        >>> float(soft_binarize(torch.tensor(0.05)))
        0.5
    """
    return torch.sigmoid(beta * (o - gamma))


def hard_binarize(o: Tensor, gamma: float = 0.05) -> Tensor:
    """``(o > γ)`` as float {0, 1}, detached (inference, §3.4)."""
    return (o.detach() > gamma).float()


def decode_grid(decoder: nn.Module, s: Tensor, resolution: int, chunk: Optional[int] = None,
                use_checkpoint: bool = False) -> Tensor:
    """Occupancy logits ``[B, N, N, N]`` of latents ``s [B, d]`` on the ``linspace(-0.5, 0.5, N)`` grid.

    Args:
        decoder: ``(points [B, P, 3], s [B, d]) -> [B, P]``.
        s: shape embeddings.
        resolution: N.
        chunk: points per decoder call (None: all at once).
        use_checkpoint: recompute each chunk in the backward pass instead of storing its activations.
    """
    grid = make_grid(resolution, device=s.device, dtype=s.dtype)  # [N³, 3], x slowest
    B, P = s.shape[0], grid.shape[0]
    chunk = chunk or P
    outs = []
    for start in range(0, P, chunk):
        pts = grid[start:start + chunk].expand(B, -1, -1)  # [B, p, 3]
        if use_checkpoint and torch.is_grad_enabled():
            outs.append(activation_checkpoint(decoder, pts, s, use_reentrant=False))
        else:
            outs.append(decoder(pts, s))
    return torch.cat(outs, dim=1).view(B, resolution, resolution, resolution)  # [b, x, y, z]


def generate_latents(flow: nn.Module, cond: Tensor, noise: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                     clip_noise: Optional[float] = None) -> Tensor:
    """``s = F⁻¹(z; c)`` ``[B, d]``; ``z ~ N(0, I)`` when ``noise`` is None (optionally clipped to ``[−clip, clip]``, [C])."""
    if noise is None:
        noise = torch.randn(cond.shape[0], flow.latent_dim, generator=generator).to(cond)
        if clip_noise is not None:
            noise = noise.clamp(-clip_noise, clip_noise)
    return flow.sample(noise, cond)


def check_latent_sizes(flow: nn.Module, decoder: nn.Module, cond_dim: Optional[int] = None) -> None:
    """Raise a clear error when the flow's latent size differs from the decoder's, or its condition size from CLIP's."""
    if flow.latent_dim != decoder.latent_dim:
        raise ValueError(f"the flow maps to {flow.latent_dim}-d shape embeddings but the decoder reads {decoder.latent_dim}-d "
                         "ones: set flow.init_args.latent_dim and decoder.init_args.latent_dim to the autoencoder's latent_dim")
    if cond_dim is not None and flow.cond_dim != cond_dim:
        raise ValueError(f"the flow is conditioned on {flow.cond_dim}-d vectors but the CLIP embeds to {cond_dim}-d: set "
                         f"flow.init_args.cond_dim: {cond_dim} (the condition width must equal the CLIP width, A8)")


class TextToShapeMixin:
    """Feed-forward text -> voxels for a LightningModule holding ``clip``, ``flow`` and ``decoder`` (§3.12).

    One batched pass for a list of prompts, no per-prompt optimisation: ``g(t)`` -> ``F⁻¹(z; g(t))`` ->
    ``D`` on the ``N³`` grid -> ``o > γ``. Expects ``hparams.gamma`` and ``hparams.decode_chunk``.
    """

    @torch.no_grad()
    def generate(self, prompts, noise="zero", resolution: int = 64, generator: Optional[torch.Generator] = None,
                 clip_noise: Optional[float] = None):
        """``(logits [B, N, N, N], voxels [B, N, N, N] float {0, 1})`` for ``B`` prompts.

        Args:
            prompts: list of B text prompts (used as given, no template; [C] test script).
            noise: ``"zero"`` (the "mean shape", z = 0, [C]), ``"random"`` (z ~ N(0, I)), or a ``[B, d]`` tensor.
            resolution: grid size N.
            generator: RNG for ``"random"``.
            clip_noise: clip random noise to ``[−c, c]`` (the authors' visualisation uses 1).
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) == 0:
            raise ValueError("the prompt list is empty: give at least one text prompt to generate a shape")
        cond = self.clip.encode_text(list(prompts)).to(self.device)  # [B, D], checks blank prompts
        check_latent_sizes(self.flow, self.decoder, cond.shape[1])
        if isinstance(noise, Tensor):
            z = noise.to(cond)
        elif noise == "zero":
            z = cond.new_zeros(cond.shape[0], self.flow.latent_dim)
        elif noise == "random":
            z = None
        else:
            raise ValueError(f"noise must be 'zero', 'random' or a tensor, got {noise!r}")
        s = generate_latents(self.flow, cond, z, generator=generator, clip_noise=clip_noise)
        logits = decode_grid(self.decoder, s, resolution, self.hparams.decode_chunk)
        return logits, hard_binarize(logits, self.hparams.gamma)
