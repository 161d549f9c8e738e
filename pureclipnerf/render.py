"""DVGO-style volume rendering of a voxel grid: box-clipped fixed-step ray marching (specs/pureclipnerf.md §3.6).

For each ray (unit direction):

1. intersect it with the scene box and clamp to ``[near, far]``; place ``ceil(length/step)`` samples
   (at least 1) from the entry point, ``step = stepsize·voxel_size`` (0.5 voxel, deterministic, no
   jitter), dropping samples outside the box or whose nearest vertex is masked by the occupancy mask;
2. post-activated α of the interpolated raw density with δ = ``stepsize·voxel_size/voxel_size_base``
   (base-voxel units, §3.5) — written through the optical thickness ``τ = δ·softplus(σ_raw + b)``:
   ``α = 1 − e^{−τ}``, ``T_i = exp(−Σ_{j<i} τ_j)``;
3. free-space skipping (DVGO ``fast_color_thres``): samples with ``α ≤ thres`` are dropped (no gradient);
4. early termination: samples after the transmittance falls below ``early_stop_T`` (1e-3) are
   dropped; the one that crosses it still counts;
5. ``w_i = T_i α_i`` (paper eq. 1); colour ``C = Σ w_i c_i`` over samples with ``w_i > thres`` and
   ``c_i = sigmoid(trilerp(V_c))``; ``T_last = exp(−Σ τ_i)``; output ``C + T_last·bg``.

The ragged CUDA kernels of the released code are replaced by padded ``[R, S]`` tensors with a validity
mask ([S]).
"""

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from common.rendering.aabb import ray_aabb
from common.rendering.volume import RenderOutput
from pureclipnerf.gridmath import nearest_mask, trilerp
from pureclipnerf.grids import VoxelGridField

__all__ = ["GridRenderOutput", "VoxelGridRenderer"]


@dataclass
class GridRenderOutput(RenderOutput):
    """A voxel-grid render (leading shape ``[...]`` of the rays).

    Attributes:
        rgb: ``[..., 3]`` colour composited on the background (premultiplied when ``background=None``).
        opacity: ``[...]`` ``1 − T_last``.
        depth: ``[...]`` ``Σ w_i t_i`` (not normalised).
        t_last: ``[...]`` transmittance left after the last counted sample (background weight).
        n_samples: samples per ray of the padded batch (``S``).
    """

    t_last: Optional[Tensor] = None
    n_samples: int = 0

    @property
    def transmittance(self) -> Tensor:
        """``[...]`` ``T_last`` (exact, not ``1 − opacity``)."""
        return self.t_last if self.t_last is not None else 1.0 - self.opacity


class VoxelGridRenderer(nn.Module):
    """Renders a :class:`~pureclipnerf.grids.VoxelGridField` along rays (it owns no parameters).

    Args:
        stepsize: sample spacing in voxels (0.5, [C]).
        near, far: ray interval, ``4 ∓ √3`` for cameras at radius 4 ([C] = Dream Fields).
        fast_color_thres: free-space threshold on α and on the weights (1e-7, DVGO; 0 disables).
        early_stop_T: stop a ray once its transmittance falls below this (1e-3, [C]; 0 disables).
        use_occupancy: skip samples whose nearest vertex is masked by the field's occupancy mask.
        chunk: rays per chunk when rendering without gradients (large evaluation renders).

    Shape:
        rays_o, rays_d: ``[..., 3]`` (``rays_d`` unit length) → :class:`GridRenderOutput` over ``[...]``.
    """

    def __init__(self, stepsize: float = 0.5, near: float = 4.0 - math.sqrt(3.0), far: float = 4.0 + math.sqrt(3.0),
                 fast_color_thres: float = 1e-7, early_stop_T: float = 1e-3, use_occupancy: bool = True,
                 chunk: int = 16384) -> None:
        super().__init__()
        if stepsize <= 0:
            raise ValueError(f"stepsize must be > 0, got {stepsize}")
        if far <= near:
            raise ValueError(f"far ({far}) must be greater than near ({near})")
        self.stepsize, self.near, self.far = stepsize, near, far
        self.fast_color_thres, self.early_stop_T = fast_color_thres, early_stop_T
        self.use_occupancy, self.chunk = use_occupancy, chunk

    def sample_intervals(self, field: VoxelGridField, rays_o: Tensor, rays_d: Tensor):
        """``(t [R, S], valid [R, S], step)``: fixed-step sample distances from each ray's box entry."""
        near, far, hit = ray_aabb(rays_o, rays_d, field.xyz_min, field.xyz_max)
        t0 = near.clamp_min(self.near)
        t1 = far.clamp_max(self.far)
        step = self.stepsize * field.voxel_size
        length = (t1 - t0).clamp_min(0.0)
        n = torch.ceil(length / step).clamp_min(1).long()  # [R] ceil(len/step), at least 1
        n = torch.where(hit & (t1 > t0), n, torch.ones_like(n))
        s_max = int(n.max()) if n.numel() else 1
        k = torch.arange(s_max, device=rays_o.device)
        t = t0[:, None] + k[None, :] * step  # [R, S]
        valid = (k[None, :] < n[:, None]) & (hit & (t1 > t0))[:, None]
        return t, valid, step

    def forward(self, field: VoxelGridField, rays_o: Tensor, rays_d: Tensor,
                background: Union[None, float, Tensor] = 1.0,
                grids: Optional[Tuple[Tensor, Tensor]] = None) -> GridRenderOutput:
        """Render rays.

        Args:
            field: the voxel model.
            rays_o, rays_d: ``[..., 3]`` origins and unit directions.
            background: 1 (white, training [C]), 0, a ``[3]`` colour, or None (premultiplied output).
            grids: ``field.raw_grids()`` when the caller already has them (Vox Imp runs its MLPs once).
        """
        lead = rays_o.shape[:-1]
        o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
        dens_grid, color_grid = field.raw_grids() if grids is None else grids  # [1, X, Y, Z], [3, X, Y, Z]
        if torch.is_grad_enabled() or o.shape[0] <= self.chunk:
            parts = [self._render(field, dens_grid, color_grid, o, d)]
        else:
            parts = [self._render(field, dens_grid, color_grid, o[i:i + self.chunk], d[i:i + self.chunk])
                     for i in range(0, o.shape[0], self.chunk)]
        rgb = torch.cat([p[0] for p in parts])
        t_last = torch.cat([p[1] for p in parts])
        depth = torch.cat([p[2] for p in parts])
        if background is not None:
            bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
            rgb = rgb + t_last[:, None] * bg
        return GridRenderOutput(rgb.reshape(*lead, 3), (1.0 - t_last).reshape(lead), depth.reshape(lead),
                                t_last=t_last.reshape(lead), n_samples=max(p[3] for p in parts))

    def _render(self, field: VoxelGridField, dens_grid: Tensor, color_grid: Tensor, o: Tensor, d: Tensor):
        R = o.shape[0]
        t, valid, _ = self.sample_intervals(field, o, d)  # [R, S]
        S = t.shape[1]
        vidx = valid.nonzero(as_tuple=True)
        x = o[vidx[0]] + t[vidx][:, None] * d[vidx[0]]  # [P, 3] packed sample points
        keep = ((x >= field.xyz_min) & (x <= field.xyz_max)).all(-1)  # drop samples past the box exit
        if self.use_occupancy and field.use_occupancy:  # skip samples whose nearest vertex is masked
            keep &= nearest_mask(field.occupancy, x, field.xyz_min, field.xyz_max)
        if not bool(keep.all()):
            vidx, x = (vidx[0][keep], vidx[1][keep]), x[keep]
        delta = self.stepsize * field.voxel_ratio  # δ in base-voxel units (§3.5)
        raw = trilerp(dens_grid, x, field.xyz_min, field.xyz_max)[:, 0]  # [P]
        tau_p = delta * torch.nn.functional.softplus(raw + field.shift)  # optical thickness; α = 1 − e^{−τ}
        if self.fast_color_thres > 0:  # free-space skipping: dropped samples carry no gradient
            tau_p = torch.where(-torch.expm1(-tau_p) > self.fast_color_thres, tau_p, torch.zeros_like(tau_p))
        tau = tau_p.new_zeros(R, S).index_put(vidx, tau_p)  # [R, S]
        excl = torch.cumsum(tau, dim=1) - tau  # Σ_{j<i} τ_j
        if self.early_stop_T > 0:  # keep samples entered with T_i ≥ threshold (the crossing one counts)
            stop = torch.exp(-excl.detach()) < self.early_stop_T
            if bool(stop.any()):
                tau = tau.masked_fill(stop, 0.0)
                excl = torch.cumsum(tau, dim=1) - tau
        weights = torch.exp(-excl) * -torch.expm1(-tau)  # w_i = T_i α_i  [R, S]
        t_last = torch.exp(-tau.sum(dim=1))  # [R]
        w_p = weights[vidx]  # [P]
        cmask = w_p.detach() > self.fast_color_thres if self.fast_color_thres > 0 else torch.ones_like(w_p, dtype=torch.bool)
        logits = trilerp(color_grid, x[cmask], field.xyz_min, field.xyz_max)  # [Q, 3]
        rgb = w_p.new_zeros(R, 3).index_add(0, vidx[0][cmask], w_p[cmask][:, None] * torch.sigmoid(logits))
        depth = w_p.new_zeros(R).index_add(0, vidx[0], w_p * t[vidx])
        return rgb, t_last, depth, S
