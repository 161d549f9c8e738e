"""SJC's learnable background: a tiny c×4×4 texture indexed by ray direction (spec §2.4, [C] only).

The paper does not mention a background; the authors' code composites every ray over a learnable
texture ``B ∈ R^{c×4×4}`` (init N(0, 1), learning rate 1e-4) looked up by a spherical mapping of the
unit ray direction ``(dx, dy, dz)``:

* ``u = atan2(sqrt(dx² + dy²), dz)/π ∈ [0, 1]`` (polar angle from +z),
* ``v = atan2(dy, dx)/(2π) + ½ ∈ [0, 1]`` (azimuth around z),
* bilinear sample at grid coordinates ``(2u − 1, 2v − 1)`` (the first indexes the texture width),
  ``align_corners=False``, zero padding.

The texture goes through the field's feature → colour map (identity for SD); the renderer applies it.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SphericalBackground", "direction_to_uv"]


def direction_to_uv(d: Tensor) -> Tensor:
    """``[..., 2]`` texture coordinates ``(u, v)`` in [0, 1]² of unit directions ``[..., 3]`` (spec §2.4).

    Example:
        >>> direction_to_uv(torch.tensor([[0.0, 0.0, 1.0]])).tolist()
        [[0.0, 0.5]]
    """
    dx, dy, dz = d.unbind(-1)
    u = torch.atan2(torch.sqrt(dx**2 + dy**2), dz) / math.pi
    v = torch.atan2(dy, dx) / (2 * math.pi) + 0.5
    return torch.stack([u, v], dim=-1)


class SphericalBackground(nn.Module):
    """Learnable ``c × res × res`` background texture looked up by ray direction.

    Args:
        channels: c (4 for SD latents, 3 for pixels).
        resolution: texture side (4, [C]).
        init_value: None draws N(0, 1) per texel ([C]); a float fills the texture with that raw value
            (e.g. 1.0 for a white start in a [−1, 1] pixel space; not in the paper or code).

    Shape:
        - directions: ``[..., 3]`` unit vectors.
        - output: ``[..., c]`` raw texture values (the renderer applies the field's colour map).
    """

    def __init__(self, channels: int = 4, resolution: int = 4, init_value: Optional[float] = None) -> None:
        super().__init__()
        if channels < 1 or resolution < 1:
            raise ValueError(f"background needs channels >= 1 and resolution >= 1, got {channels}, {resolution}")
        self.channels = channels
        init = torch.randn(1, channels, resolution, resolution) if init_value is None else \
            torch.full((1, channels, resolution, resolution), float(init_value))
        self.texture = nn.Parameter(init)

    def forward(self, directions: Tensor) -> Tensor:
        lead = directions.shape[:-1]
        uv = direction_to_uv(directions.reshape(-1, 3))  # [R, 2]
        grid = (2 * uv - 1).to(self.texture.dtype).view(1, 1, -1, 2)  # (x -> width, y -> height)
        out = F.grid_sample(self.texture, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # [1,c,1,R]
        return out.view(self.channels, -1).t().reshape(*lead, self.channels)
