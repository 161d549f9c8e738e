"""Emission–absorption volume rendering through nerfacc.

For segment ``i`` of a ray with length ``δ_i``, density ``σ_i`` and colour ``c_i``
(Jain thesis eqs. 4.1–4.4; Mildenhall et al. 2020 eq. 3):

* ``α_i = 1 − exp(−σ_i δ_i)``, ``T_i = exp(−Σ_{j<i} σ_j δ_j)``, ``w_i = T_i α_i``;
* premultiplied colour ``C = Σ w_i c_i``, opacity ``A = Σ w_i = 1 − exp(−Σ σ_i δ_i)``;
* transmittance of the ray ``T = 1 − A``; depth ``D = Σ w_i t_mid,i``;
* over a background ``B``: ``C + (1 − A)·B``.

The weights come from ``nerfacc.render_weight_from_density`` and the sums from
``nerfacc.accumulate_along_rays`` (both run on CPU for dense ``[R, S]`` samples). On CUDA,
:class:`OccupancyGridSampler` can skip empty space with nerfacc's occupancy grid.
"""

from dataclasses import dataclass
from typing import Callable, Literal, Optional, Union

import nerfacc
import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from common.fields.base import Field, FieldOutput
from common.rendering.aabb import ray_aabb
from common.rendering.samplers import conical_frustum_gaussian, stratified_segments


@dataclass
class RenderOutput:
    """What a render returns, per ray (leading shape ``[...]`` of the rays).

    Attributes:
        rgb: ``[..., C]`` colour: premultiplied if no background was given, else composited.
        opacity: ``[...]`` accumulated opacity ``A`` in ``[0, 1]``.
        depth: ``[...]`` expected depth ``Σ w_i t_mid,i`` (not normalised by ``A``).
        weights: ``[..., S]`` per-segment weights (None for the packed occupancy-grid path).
        density_com: ``[3]`` σ-weighted centre of the sample points (Dream Fields origin tracking),
            no gradient; None when not requested.
    """

    rgb: Tensor
    opacity: Tensor
    depth: Tensor
    weights: Optional[Tensor] = None
    density_com: Optional[Tensor] = None

    @property
    def transmittance(self) -> Tensor:
        """``[...]`` ray transmittance ``T = 1 − A``."""
        return 1.0 - self.opacity


def composite(rgb_premultiplied: Tensor, opacity: Tensor, background: Union[Tensor, float]) -> Tensor:
    """``C + (1 − A)·B`` for premultiplied ``C`` ``[..., C]``, opacity ``[...]`` and a background
    broadcastable to ``[..., C]``."""
    return rgb_premultiplied + (1.0 - opacity[..., None]) * background


def _background_value(background: Union[None, str, float, Tensor]) -> Union[None, float, Tensor]:
    if background is None or background == "none":
        return None
    if background == "white":
        return 1.0
    if background == "black":
        return 0.0
    return background


class VolumeRenderer(nn.Module):
    """Renders a :class:`~common.fields.base.Field` along rays (stratified samples, nerfacc weights).

    It owns no field parameters: ``renderer(field, rays_o, rays_d)``.

    Args:
        n_samples: segments per ray during training.
        n_samples_eval: segments per ray when not training (default: ``n_samples``).
        bound: scene box ``[-bound, bound]^3``.
        intersect_box: place the samples inside each ray's entry/exit interval with the box
            (rays that miss get zero density); otherwise sample ``[near, far]``.
        near, far: sampling interval when ``intersect_box`` is off.
        mask_outside: multiply density by ``1[‖x‖∞ ≤ bound]`` (Dream Fields' scene bounds, §4.4.6).
        sampling: ``bins`` (NeRF stratified) or ``endpoints`` (Dream Fields jittered endpoints).
        jitter: random sample offsets in training; evaluation never jitters.
        chunk: rays per chunk (rendering of large images in pieces).
        checkpoint_chunks: recompute each chunk in backward (activation checkpointing) to save memory.
        background: ``none`` (premultiplied output), ``white`` or ``black``; a tensor can also be
            passed per call.
        with_covariance: pass mip-NeRF frustum covariances (diagonal) to the field as ``cov``.
    """

    def __init__(
        self,
        n_samples: int = 64,
        n_samples_eval: Optional[int] = None,
        bound: float = 1.0,
        intersect_box: bool = True,
        near: float = 2.0,
        far: float = 6.0,
        mask_outside: bool = True,
        sampling: Literal["bins", "endpoints"] = "bins",
        jitter: bool = True,
        chunk: int = 8192,
        checkpoint_chunks: bool = False,
        background: Literal["none", "white", "black"] = "none",
        with_covariance: bool = False,
    ) -> None:
        super().__init__()
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if far <= near:
            raise ValueError(f"far ({far}) must be greater than near ({near})")
        self.n_samples, self.n_samples_eval = n_samples, n_samples_eval or n_samples
        self.bound, self.intersect_box, self.near, self.far = bound, intersect_box, near, far
        self.mask_outside, self.sampling, self.jitter = mask_outside, sampling, jitter
        self.chunk, self.checkpoint_chunks = chunk, checkpoint_chunks
        self.background = background
        self.with_covariance = with_covariance

    def ray_intervals(self, rays_o: Tensor, rays_d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(near, far, hit)`` per ray, each ``[R]``."""
        if self.intersect_box:
            near, far, hit = ray_aabb(rays_o, rays_d, -self.bound, self.bound)
            far = torch.where(hit, far, near + 1e-3)  # tiny interval for misses, all samples masked
            return near, torch.maximum(far, near + 1e-3), hit
        near = torch.full(rays_o.shape[:-1], self.near, dtype=rays_o.dtype, device=rays_o.device)
        far = torch.full_like(near, self.far)
        return near, far, torch.ones_like(near, dtype=torch.bool)

    def forward(
        self,
        field: Union[Field, Callable[..., FieldOutput]],
        rays_o: Tensor,
        rays_d: Tensor,
        background: Union[None, str, float, Tensor] = None,
        radii: Optional[Tensor] = None,
        n_samples: Optional[int] = None,
        jitter: Optional[bool] = None,
        generator: Optional[torch.Generator] = None,
        return_weights: bool = False,
        return_com: bool = False,
    ) -> RenderOutput:
        """Render rays of any leading shape ``[...]``.

        Args:
            field: the field (or any callable ``(x, d, cov) -> FieldOutput``).
            rays_o, rays_d: ``[..., 3]``; ``rays_d`` should be unit length for metric depth.
            background: overrides the renderer's background (``[..., C]`` tensor, float or name).
            radii: ``[...]`` mip-NeRF cone radii (needed with ``with_covariance``).
            n_samples, jitter: per-call overrides.
            return_weights: keep the ``[..., S]`` weights.
            return_com: compute the σ-weighted centre of the sample points (no grad).
        """
        lead = rays_o.shape[:-1]
        o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
        r = radii.reshape(-1) if radii is not None else None
        n = n_samples or (self.n_samples if self.training else self.n_samples_eval)
        jit = (self.jitter and self.training) if jitter is None else jitter
        bg = _background_value(self.background if background is None else background)
        if isinstance(bg, Tensor) and bg.dim() > 1:
            bg = bg.reshape(-1, bg.shape[-1])

        pieces, com_num, com_den = [], 0.0, 0.0
        for start in range(0, o.shape[0], self.chunk):
            sl = slice(start, start + self.chunk)
            args = (field, o[sl], d[sl], None if r is None else r[sl], n, jit, generator)
            if self.checkpoint_chunks and torch.is_grad_enabled():
                out = checkpoint(self._render_chunk, *args, use_reentrant=False)
            else:
                out = self._render_chunk(*args)
            rgb, opacity, depth, weights, num, den = out
            pieces.append((rgb, opacity, depth, weights if return_weights else None))
            if return_com:
                com_num, com_den = com_num + num, com_den + den
        rgb = torch.cat([p[0] for p in pieces])
        opacity = torch.cat([p[1] for p in pieces])
        depth = torch.cat([p[2] for p in pieces])
        weights = torch.cat([p[3] for p in pieces]).reshape(*lead, -1) if return_weights else None
        if bg is not None:
            rgb = composite(rgb, opacity, bg)
        com = (com_num / com_den.clamp_min(1e-12)) if return_com else None
        return RenderOutput(rgb.reshape(*lead, -1), opacity.reshape(lead), depth.reshape(lead), weights, com)

    def _render_chunk(self, field, o, d, radii, n, jit, generator):
        near, far, hit = self.ray_intervals(o, d)
        t0, t1 = stratified_segments(near, far, n, jitter=jit, mode=self.sampling, generator=generator)
        if self.with_covariance:
            if radii is None:
                raise ValueError("with_covariance=True needs per-ray `radii` (see common.rendering.pixel_radii)")
            x, cov = conical_frustum_gaussian(o, d, t0, t1, radii, diagonal=True)  # [R,S,3], [R,S,3]
        else:
            x, cov = o[:, None, :] + d[:, None, :] * ((t0 + t1) / 2)[..., None], None
        dirs = torch.nn.functional.normalize(d, dim=-1)[:, None, :].expand_as(x)
        out = field(x, dirs, cov) if cov is not None else field(x, dirs)
        sigma = out.density  # [R, S]
        if self.mask_outside:
            sigma = sigma * (x.abs().amax(dim=-1) <= self.bound).to(sigma)
        sigma = sigma * hit[:, None].to(sigma)
        weights, _, _ = nerfacc.render_weight_from_density(t0, t1, sigma)  # [R, S]
        rgb = nerfacc.accumulate_along_rays(weights, out.color)  # [R, C]
        opacity = nerfacc.accumulate_along_rays(weights, None)[..., 0]  # [R]
        depth = nerfacc.accumulate_along_rays(weights, ((t0 + t1) / 2)[..., None])[..., 0]
        with torch.no_grad():
            s = sigma.detach()
            num, den = (s[..., None] * x.detach()).sum(dim=(0, 1)), s.sum()
        return rgb, opacity, depth, weights, num, den


def render_rays(field, rays_o: Tensor, rays_d: Tensor, **kwargs) -> RenderOutput:
    """Functional form: ``render_rays(field, rays_o, rays_d, n_samples=64, bound=1.0, ...)``.

    Constructor arguments of :class:`VolumeRenderer` and call arguments of its ``forward`` can be
    mixed in ``kwargs``; the renderer runs in evaluation mode unless ``jitter=True`` is passed.
    """
    ctor = {k: kwargs.pop(k) for k in list(kwargs) if k in VolumeRenderer.__init__.__code__.co_varnames}
    renderer = VolumeRenderer(**ctor).eval()
    return renderer(field, rays_o, rays_d, **kwargs)


__all__ = ["RenderOutput", "VolumeRenderer", "composite", "render_rays"]
