"""The generator ``G = D ∘ F`` (specs/zeroforge.md §2, §3.4–3.6): condition + noise -> latent -> occupancy grid.

``s = F⁻¹(z; c)``, ``o = D(s, grid)`` on the ``N³`` query grid, then soft voxels
``V = sigmoid(β(o − γ))`` for training (eq. 5 with its sign fixed, A1) or hard voxels ``o > γ`` for
inference. Decoding is chunked over points, with optional activation checkpointing (A18).
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from zeroforge.geometry import make_grid

INFERENCE_ROWS = 8192  # decoder rows (shapes × points) per call at inference: the per-point MLP is memory-bound,
# and rows of ~5–11k ran ~6× faster than one call over a batch of 11 shapes × 32³ points (CPU, 1 thread, 2026-12-06)

__all__ = ["INFERENCE_ROWS", "soft_binarize", "hard_binarize", "decode_grid", "decode_grid_coarse_to_fine",
           "inference_chunk", "decode_for_inference", "generate_latents", "check_latent_sizes"]


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


def inference_chunk(decode_chunk: Optional[int], batch: int) -> int:
    """Points per decoder call at inference: ``decode_chunk`` when set, else ``INFERENCE_ROWS // batch``."""
    return decode_chunk or max(1, INFERENCE_ROWS // batch)


def decode_grid_coarse_to_fine(decoder: nn.Module, s: Tensor, resolution: int, gamma: float, coarse_resolution: int,
                               chunk: Optional[int] = None, band: int = 0) -> Tuple[Tensor, Tensor]:
    """Occupancy logits on the ``N³`` grid from a coarse pass plus exact decoding near the surface only (inference).

    One level of ONet's multiresolution iso-surface extraction (MISE), written here because no dependency
    provides it for a point decoder: decode the ``n³`` coarse grid (both grids span ``[-0.5, 0.5]`` end-point to
    end-point), mark the coarse cells whose 8 corners are not all on one side of ``γ`` (MISE's active cells), grow
    that set by ``band`` cells (0: MISE's rule; 1: a safety margin, ~2–3× more points), and decode exactly only
    the fine points inside it; elsewhere the trilinear upsampling of the coarse logits is used. Outside the marked
    cells all 8 corners share a side of ``γ``, so the interpolated logit does too: the hard voxels ``o > γ`` equal
    the dense ones except where the surface bulges into a cell without crossing a coarse corner, or a feature is
    thinner than a coarse cell (the trade-off MISE makes). Not differentiable (no training use).

    Returns:
        ``(logits [B, N, N, N], n_decoded [B])``: the logits (exact in the band) and the number of fine points
        decoded per shape (the coarse ``n³`` not included).
    """
    B, N, n = s.shape[0], resolution, coarse_resolution
    if not 2 <= n < N:
        raise ValueError(f"coarse_resolution must be in [2, {N}) for a {N}³ grid, got {n}")
    coarse = decode_grid(decoder, s, n, inference_chunk(chunk, B))  # [B, n, n, n]
    logits = F.interpolate(coarse[:, None], size=(N, N, N), mode="trilinear", align_corners=True)[:, 0]
    inside = (coarse > gamma).float()[:, None]  # [B, 1, n, n, n]
    mixed = F.max_pool3d(inside, 2, stride=1) != -F.max_pool3d(-inside, 2, stride=1)  # [B, 1, n−1, n−1, n−1] cells
    if band > 0:
        mixed = F.max_pool3d(mixed.float(), 2 * band + 1, stride=1, padding=band) > 0
    cell = torch.clamp(torch.arange(N, device=s.device) * (n - 1) // (N - 1), max=n - 2)  # coarse cell of fine index
    refine = mixed[:, 0][:, cell][:, :, cell][:, :, :, cell]  # [B, N, N, N]
    grid = make_grid(N, device=s.device, dtype=s.dtype)  # [N³, 3], x slowest, the order of logits.view(B, -1)
    flat, mask = logits.view(B, -1), refine.view(B, -1)
    for b in range(B):
        idx = mask[b].nonzero().squeeze(1)
        step = chunk or INFERENCE_ROWS
        for start in range(0, idx.numel(), step):
            sel = idx[start:start + step]
            flat[b, sel] = decoder(grid[sel][None], s[b:b + 1])[0]
    return logits, mask.sum(dim=1)


def decode_for_inference(decoder: nn.Module, s: Tensor, resolution: int, gamma: float, decode_chunk: Optional[int] = None,
                         coarse_resolution: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """``(logits [B, N, N, N], n_decoded [B])`` at inference: every grid point in chunks of
    :func:`inference_chunk`, or coarse-to-fine from ``coarse_resolution`` (:func:`decode_grid_coarse_to_fine`)."""
    if coarse_resolution:
        return decode_grid_coarse_to_fine(decoder, s, resolution, gamma, coarse_resolution, decode_chunk)
    logits = decode_grid(decoder, s, resolution, inference_chunk(decode_chunk, s.shape[0]))
    return logits, torch.full((s.shape[0],), resolution ** 3, device=s.device)


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
                 clip_noise: Optional[float] = None, coarse_resolution: Optional[int] = None):
        """``(logits [B, N, N, N], voxels [B, N, N, N] float {0, 1})`` for ``B`` prompts.

        Args:
            prompts: list of B text prompts (used as given, no template; [C] test script).
            noise: ``"zero"`` (the "mean shape", z = 0, [C]), ``"random"`` (z ~ N(0, I)), or a ``[B, d]`` tensor.
            resolution: grid size N.
            generator: RNG for ``"random"``.
            clip_noise: clip random noise to ``[−c, c]`` (the authors' visualisation uses 1).
            coarse_resolution: decode coarse-to-fine from this grid size (:func:`decode_grid_coarse_to_fine`;
                the logits are exact only near the surface); None decodes every point of the ``N³`` grid.

        The decoder runs on chunks of ``hparams.decode_chunk`` points per shape, or, when that is None, of
        ``INFERENCE_ROWS / B`` points (the same logits, several times faster than one call on CPU).
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
        logits, _ = decode_for_inference(self.decoder, s, resolution, self.hparams.gamma, self.hparams.decode_chunk,
                                         coarse_resolution)
        return logits, hard_binarize(logits, self.hparams.gamma)
