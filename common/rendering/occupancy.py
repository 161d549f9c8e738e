"""Empty-space skipping with nerfacc's occupancy grid (CUDA only).

:class:`OccupancyGridRenderer` is a drop-in :class:`~common.rendering.VolumeRenderer`: on CUDA it
marches rays through ``nerfacc.OccGridEstimator`` with a fixed step (``render_step_size``), skipping
cells whose density is below ``occ_threshold`` and stopping rays whose transmittance falls under
``early_stop_eps``. On CPU (nerfacc's grid traversal is CUDA-only) it falls back to the dense
stratified path of the parent class, which stays the reference. With ``occ_threshold=0`` and
``early_stop_eps=0`` both paths integrate the same field over the same interval and agree up to the
quadrature difference between fixed steps and stratified segments.
"""

from typing import Optional

import nerfacc
import torch
from torch import Tensor

from common.rendering.volume import RenderOutput, VolumeRenderer, _background_value, composite


class OccupancyGridRenderer(VolumeRenderer):
    """Volume renderer with nerfacc occupancy-grid sampling on CUDA.

    Args:
        grid_resolution: cells per side of the occupancy grid.
        render_step_size: marching step along rays (scene units). Default: box diagonal / n_samples.
        occ_threshold: density·step below which a cell counts as empty.
        early_stop_eps: stop a ray once its transmittance is below this.
        update_every: refresh the grid every N training steps (call :meth:`update`).
        (other arguments as :class:`VolumeRenderer`)
    """

    def __init__(self, grid_resolution: int = 128, render_step_size: Optional[float] = None,
                 occ_threshold: float = 0.01, early_stop_eps: float = 1e-4, update_every: int = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        b = self.bound
        self.estimator = nerfacc.OccGridEstimator(roi_aabb=[-b, -b, -b, b, b, b], resolution=grid_resolution, levels=1)
        self.render_step_size = render_step_size or (2 * b * 3**0.5) / self.n_samples
        self.occ_threshold, self.early_stop_eps, self.update_every = occ_threshold, early_stop_eps, update_every

    def update(self, field, step: int) -> None:
        """Refresh the occupancy grid from the field's density (training, CUDA only)."""
        if not self.estimator.binaries.is_cuda:
            return
        self.estimator.update_every_n_steps(
            step=step, occ_eval_fn=lambda x: field.density(x) * self.render_step_size,
            occ_thre=self.occ_threshold, n=self.update_every,
        )

    def forward(self, field, rays_o: Tensor, rays_d: Tensor, background=None, **kwargs) -> RenderOutput:
        if not rays_o.is_cuda or kwargs.get("return_weights") or kwargs.get("radii") is not None:
            return super().forward(field, rays_o, rays_d, background=background, **kwargs)
        lead = rays_o.shape[:-1]
        o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)

        def sigma_fn(t0, t1, ray_idx):
            x = o[ray_idx] + d[ray_idx] * ((t0 + t1) / 2)[:, None]
            return field.density(x)

        def rgb_sigma_fn(t0, t1, ray_idx):
            x = o[ray_idx] + d[ray_idx] * ((t0 + t1) / 2)[:, None]
            out = field(x, torch.nn.functional.normalize(d[ray_idx], dim=-1))
            return out.color, out.density

        ray_idx, t0, t1 = self.estimator.sampling(
            o, d, sigma_fn=sigma_fn, render_step_size=self.render_step_size, stratified=self.training and self.jitter,
            alpha_thre=0.0, early_stop_eps=self.early_stop_eps,
        )
        rgb, opacity, depth, _ = nerfacc.rendering(t0, t1, ray_idx, n_rays=o.shape[0], rgb_sigma_fn=rgb_sigma_fn)
        bg = _background_value(self.background if background is None else background)
        if bg is not None:
            rgb = composite(rgb, opacity[..., 0], bg if not isinstance(bg, Tensor) else bg.reshape(-1, bg.shape[-1]))
        # nerfacc.rendering returns depth normalised by opacity; the dense path returns Σ w t.
        return RenderOutput(rgb.reshape(*lead, -1), opacity[..., 0].reshape(lead), (depth * opacity)[..., 0].reshape(lead))
