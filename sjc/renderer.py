"""SJC's volume renderer: fixed-step ray marching through the AABB, Eq. (25) compositing.

``shared/specs/sjc.md`` §2.2 ([P]: Eq. 25; [C]: every number). It differs from
:class:`common.rendering.VolumeRenderer` (``S`` stratified segments per ray, midpoints, nerfacc
weights) in the ways the authors' code does, so it is implemented here:

1. rays enter and leave the box at ``t_min``, ``t_max`` (slab test, ``t ≥ 0``); sample ``j`` sits at
   the *segment start* ``t_j = t_min + j·d`` with a **fixed** step ``d = step_ratio·voxel = 0.01``,
   no jitter, kept while ``j·d < t_max − t_min``; every ray of the view is padded to the same
   ``k = ⌊max(t_max − t_min)/d⌋ + 1`` samples (padded samples have σ = 0); a ray that misses the
   box gets no sample and renders pure background (A17);
2. Eq. (25): ``α_j = 1 − exp(−σ_j d)``, ``T_j = Π_{l<j}(1 − α_l)``, ``w_j = α_j T_j``;
3. ``C = Σ_j w_j f_j + (1 − Σ_j w_j)·bg(dir)``; features are looked up only where
   ``w_j > weight_thresh`` (1e-4, the code's speed shortcut; 0 disables it), the background weight
   always uses the full ``Σ w``;
4. depth ``= Σ_j w_j t_j + (1 − Σ_j w_j)·10`` (the background counts as distance 10);
5. the weights are returned as a padded ``[R, k]`` matrix for the emptiness loss (Eq. 26).

``tests/sjc/test_renderer.py`` checks it against a numpy reference, against finite differences and
against :class:`common.rendering.VolumeRenderer` on the same field.
"""

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from common.rendering.aabb import ray_aabb

__all__ = ["SJCRenderer", "SJCRenderOutput", "composite_weights"]


@dataclass
class SJCRenderOutput:
    """What :class:`SJCRenderer` returns for rays of leading shape ``[...]`` (``R`` rays in all).

    Attributes:
        image: ``[..., c]`` composited features (model space: SD latents or [−1, 1] pixels).
        opacity: ``[...]`` ``Σ_j w_j`` in [0, 1].
        depth: ``[...]`` expected distance ``Σ w t + (1 − Σ w)·bg_depth``.
        weights: ``[R, k]`` per-sample weights, zero-padded (``k ≥ 1``).
        n_samples: k, the padded samples per ray of this render.
    """

    image: Tensor
    opacity: Tensor
    depth: Tensor
    weights: Tensor
    n_samples: int


def composite_weights(sigma: Tensor, step: float) -> Tensor:
    """Eq. (25) weights ``w_j = α_j·Π_{l<j}(1 − α_l)`` with ``α_j = 1 − exp(−σ_j d)``.

    Args:
        sigma: ``[R, k]`` densities (0 at padded samples).
        step: d.

    Returns:
        ``[R, k]`` weights.

    Example:
        >>> [round(w, 7) for w in composite_weights(torch.tensor([[1.0, 2.0, 0.5]]), 0.1)[0].tolist()]
        [0.0951626, 0.1640192, 0.0361301]
    """
    tau = sigma * step  # [R, k] optical depth of each segment
    alpha = 1 - torch.exp(-tau)
    # T_j = exp(−Σ_{l<j} σ_l d): exclusive cumulative sum (exactly Π_{l<j}(1 − α_l))
    trans = torch.exp(-torch.cat([torch.zeros_like(tau[:, :1]), torch.cumsum(tau, dim=1)[:, :-1]], dim=1))
    return alpha * trans


class SJCRenderer(nn.Module):
    """Fixed-step marching renderer of SJC (spec §2.2). It owns no field parameters.

    Args:
        step_ratio: step as a fraction of the voxel edge (0.5, [C]; 0.01 for the 100³ grid).
        weight_thresh: look features up only where ``w > weight_thresh`` (1e-4, [C]); 0 looks up every
            in-box sample.
        bg_depth: distance given to the background in the depth map (10.0, [C]).
        chunk: rays per chunk (None: all rays at once). Chunks share one padded k, so chunking does
            not change any output, the emptiness divisor included.

    Shape:
        - rays_o, rays_d: ``[..., 3]``; directions must be unit length (depth is metric).
        - output: :class:`SJCRenderOutput`.
    """

    def __init__(self, step_ratio: float = 0.5, weight_thresh: float = 1e-4, bg_depth: float = 10.0,
                 chunk: Optional[int] = None) -> None:
        super().__init__()
        if step_ratio <= 0:
            raise ValueError(f"step_ratio must be positive, got {step_ratio}")
        if weight_thresh < 0:
            raise ValueError(f"weight_thresh must be >= 0, got {weight_thresh}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1 or None, got {chunk}")
        self.step_ratio, self.weight_thresh, self.bg_depth, self.chunk = step_ratio, weight_thresh, bg_depth, chunk

    def step_size(self, field) -> float:
        """d = step_ratio × voxel edge."""
        return self.step_ratio * field.voxel_size

    def forward(self, field, rays_o: Tensor, rays_d: Tensor,
                background: Optional[Callable[[Tensor], Tensor]] = None) -> SJCRenderOutput:
        """Render rays of any leading shape.

        Args:
            field: an :class:`~sjc.field.SJCVoxelField` (``density``, ``features``, ``activate``,
                ``aabb_min``/``aabb_max``, ``voxel_size``).
            rays_o, rays_d: ``[..., 3]`` origins and unit directions.
            background: callable ``[R, 3] directions -> [R, c]`` raw values (e.g.
                :class:`~sjc.background.SphericalBackground`); None composites over 0.
        """
        lead = rays_o.shape[:-1]
        o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
        step = self.step_size(field)
        near, far, hit = ray_aabb(o, d, field.aabb_min, field.aabb_max)  # near clamped to >= 0
        length = torch.where(hit, far - near, torch.zeros_like(near))  # [R]; misses: no sample
        max_len = float(length.max()) if length.numel() else 0.0
        k = int(math.floor(max_len / step)) + 1 if max_len > 0 else 0
        chunk = self.chunk or max(o.shape[0], 1)
        parts = [self._render_chunk(field, o[s:s + chunk], d[s:s + chunk], near[s:s + chunk], length[s:s + chunk],
                                    k, step, background) for s in range(0, o.shape[0], chunk)]
        image, opacity, depth, weights = (torch.cat([p[i] for p in parts]) for i in range(4))
        return SJCRenderOutput(image.reshape(*lead, -1), opacity.reshape(lead), depth.reshape(lead), weights, max(k, 1))

    def _render_chunk(self, field, o: Tensor, d: Tensor, near: Tensor, length: Tensor, k: int, step: float,
                      background) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        R, c = o.shape[0], field.out_channels
        j = torch.arange(max(k, 1), device=o.device, dtype=o.dtype)  # [k]
        valid = (j * step)[None, :] < length[:, None]  # [R, k]; padded / out-of-box samples are False
        valid &= k > 0
        t = near[:, None] + j[None, :] * step  # [R, k] segment starts (no jitter)
        pts = o[:, None, :] + d[:, None, :] * t[..., None]  # [R, k, 3]

        sigma = torch.zeros(R, max(k, 1), dtype=field.feature_grid.dtype, device=o.device)
        if valid.any():
            sigma = sigma.masked_scatter(valid, field.density(pts[valid]))  # density only in the box
        w = composite_weights(sigma, step)  # [R, k], Eq. (25)

        look = valid if self.weight_thresh <= 0 else valid & (w.detach() > self.weight_thresh)
        image = torch.zeros(R, c, dtype=w.dtype, device=o.device)
        if look.any():
            ray_idx = look.nonzero()[:, 0]
            image = image.index_add(0, ray_idx, w[look][:, None] * field.features(pts[look]))  # Σ_j w_j f_j
        opacity = w.sum(dim=1)  # [R]
        if background is not None:
            image = image + (1 - opacity)[:, None] * field.activate(background(d))
        depth = (w * t).sum(dim=1) + (1 - opacity) * self.bg_depth
        return image, opacity, depth, w
