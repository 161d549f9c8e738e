"""The field interface every radiance field of the suite shares.

A *field* maps points ``x`` of shape ``[..., 3]`` (and optionally unit view directions ``d`` of the
same shape) to a density ``σ ≥ 0`` of shape ``[...]`` and a colour in ``[0, 1]`` of shape
``[..., C]`` (``C = 3`` for RGB; latent fields such as SJC's use ``C = 4``). Renderers only ever call
:meth:`Field.forward` (or :meth:`density` for occupancy and meshes); they never own the parameters.
"""

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn


@dataclass
class FieldOutput:
    """What a field returns at a batch of points.

    Attributes:
        density: ``[...]`` volume density σ ≥ 0 (per unit length).
        color: ``[..., C]`` colour (or latent features), RGB in ``[0, 1]``.
    """

    density: Tensor
    color: Tensor


class Field(nn.Module):
    """Base class: subclasses implement :meth:`forward`; :meth:`density` defaults to it."""

    #: number of colour channels the field outputs
    out_channels: int = 3

    def forward(self, x: Tensor, d: Optional[Tensor] = None, cov: Optional[Tensor] = None) -> FieldOutput:
        """Evaluate the field.

        Args:
            x: ``[..., 3]`` points (segment means for mip-NeRF-style fields).
            d: ``[..., 3]`` unit view directions, or None for view-independent fields.
            cov: ``[..., 3, 3]`` or ``[..., 3]`` (diagonal) point covariances for integrated encodings;
                fields that ignore it treat points as exact.
        """
        raise NotImplementedError

    def density(self, x: Tensor) -> Tensor:
        """``[...]`` density at ``[..., 3]`` points (used for meshes and occupancy grids)."""
        return self.forward(x).density

    @torch.no_grad()
    def density_grid(self, resolution: int, bound: float = 1.0, chunk: int = 65536) -> Tensor:
        """``[R, R, R]`` density sampled on a regular grid over ``[-bound, bound]^3`` (index order x, y, z)."""
        lin = torch.linspace(-bound, bound, resolution, device=_device_of(self))
        pts = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), dim=-1).reshape(-1, 3)
        out = torch.cat([self.density(pts[i : i + chunk]) for i in range(0, pts.shape[0], chunk)])
        return out.reshape(resolution, resolution, resolution)


def _device_of(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
