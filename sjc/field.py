"""SJC's voxel radiance field: a dense density grid and a c-channel feature grid over an AABB.

Follows ``shared/specs/sjc.md`` §2.1 (all numbers [C], from the authors' release):

* density grid ``V_dens`` of shape ``[1, 1, Nz, Ny, Nx]``, raw values initialised to **0**;
* appearance grid ``V_app`` of shape ``[1, c, Nz, Ny, Nx]``, i.i.d. **N(0, 1)**; ``c = 4`` for Stable
  Diffusion (the grid stores SD latent features, §2.3), ``c = 3`` for pixel-space models;
* density ``σ(x) = softplus(exp(s)·v(x) + b)``: ``v`` is the *trilinearly interpolated raw* value
  (interpolate first, then activate), ``b = −1`` a fixed shift, ``s = d_scale`` a learnable scalar
  initialised to 0 (A15), so the initial density is ``softplus(−1) = 0.313262`` everywhere;
* features → colour: **identity** (SD latents, and the code's pixel default, A16) or the optional
  ``2·sigmoid(f) − 1`` that maps to the [−1, 1] pixel range;
* no coarse-to-fine upsampling, no pruning, no TV (§2.1).

Sampling convention [C] (this is where SJC differs from :func:`common.fields.voxel.trilinear_sample`,
which puts the corner voxels' *centres* on the box corners and clamps at the border): voxel ``i``
sits at its **centre** ``aabb_min + (i + ½)·Δ`` (``F.grid_sample(align_corners=False)``) and
points beyond the outermost centres blend towards raw **0** (``padding_mode='zeros'``). Inside the
hull of the voxel centres the two agree once common's bound is shrunk by half a voxel
(``tests/sjc/test_field.py``).
"""

from typing import Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.fields.base import Field, FieldOutput

__all__ = ["SJCVoxelField", "sample_grid", "FeatureActivation"]

FeatureActivation = Literal["identity", "sigmoid_pm1"]


def sample_grid(grid: Tensor, x: Tensor, aabb_min: Tensor, aabb_max: Tensor) -> Tensor:
    """Trilinear interpolation with voxel values at voxel centres and zero padding (spec §2.1, T5).

    Args:
        grid: ``[1, C, Nz, Ny, Nx]`` voxel values (the last grid axis is x).
        x: ``[N, 3]`` world points (x, y, z).
        aabb_min, aabb_max: ``[3]`` box corners.

    Returns:
        ``[N, C]`` values; a point beyond the outermost voxel centres blends towards 0.

    Example:
        >>> g = torch.arange(8.0).view(1, 1, 2, 2, 2)
        >>> sample_grid(g, torch.tensor([[-0.5, -0.5, -0.5]]), -torch.ones(3), torch.ones(3)).item()
        0.0
    """
    coords = 2 * (x - aabb_min) / (aabb_max - aabb_min) - 1  # [N, 3] in [-1, 1] over the box
    coords = coords.to(grid.dtype).view(1, -1, 1, 1, 3)  # grid_sample reads (x, y, z) -> (W, H, D)
    out = F.grid_sample(grid, coords, mode="bilinear", padding_mode="zeros", align_corners=False)  # [1, C, N, 1, 1]
    return out.view(grid.shape[1], -1).t()


class SJCVoxelField(Field):
    """Dense voxel grid of raw density and c-channel features (SJC §4.2, "Rendering with latent 3D features").

    Args:
        resolution: voxels per axis, one int or ``[Nx, Ny, Nz]`` (100, [C]).
        channels: feature channels c (4: SD latents; 3: pixel-space models).
        bbox_len: half side of the box ``[−bbox_len, bbox_len]³`` (1.0, [C]).
        density_shift: fixed shift b inside the softplus (−1.0, [C]).
        init_density: initial raw density v (0.0, [C]).
        init_feature_std: std of the i.i.d. normal feature init (1.0, [C]).
        learn_density_scale: make ``d_scale`` learnable (A15: yes).
        feature_activation: ``"identity"`` (default, A16) or ``"sigmoid_pm1"`` (``2·sigmoid(f) − 1``).

    Shape:
        - x: ``[..., 3]`` points.
        - output: :class:`~common.fields.base.FieldOutput` with density ``[...]`` and color ``[..., c]``.
    """

    def __init__(
        self,
        resolution: Union[int, Sequence[int]] = 100,
        channels: int = 4,
        bbox_len: float = 1.0,
        density_shift: float = -1.0,
        init_density: float = 0.0,
        init_feature_std: float = 1.0,
        learn_density_scale: bool = True,
        feature_activation: FeatureActivation = "identity",
    ) -> None:
        super().__init__()
        nx, ny, nz = (resolution,) * 3 if isinstance(resolution, int) else tuple(int(r) for r in resolution)
        if min(nx, ny, nz) < 2:
            raise ValueError(f"grid resolution must be at least 2 per axis, got {(nx, ny, nz)}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if bbox_len <= 0:
            raise ValueError(f"bbox_len must be positive, got {bbox_len}")
        if feature_activation not in ("identity", "sigmoid_pm1"):
            raise ValueError(f"feature_activation must be 'identity' or 'sigmoid_pm1', got {feature_activation!r}")
        self.resolution = (nx, ny, nz)
        self.out_channels = channels
        self.bound = float(bbox_len)
        self.density_shift = float(density_shift)
        self.feature_activation = feature_activation
        self.density_grid_param = nn.Parameter(torch.full((1, 1, nz, ny, nx), float(init_density)))
        self.feature_grid = nn.Parameter(init_feature_std * torch.randn(1, channels, nz, ny, nx))
        self.d_scale = nn.Parameter(torch.zeros(()), requires_grad=learn_density_scale)
        self.register_buffer("aabb_min", torch.full((3,), -float(bbox_len)), persistent=False)
        self.register_buffer("aabb_max", torch.full((3,), float(bbox_len)), persistent=False)

    @property
    def voxel_size(self) -> float:
        """Edge of a voxel (the smallest over the axes for non-cubic grids): 2/100 = 0.02 by default."""
        return 2 * self.bound / max(self.resolution)

    def raw_density(self, x: Tensor) -> Tensor:
        """``[...]`` interpolated raw density v(x) (before the activation)."""
        lead = x.shape[:-1]
        return sample_grid(self.density_grid_param, x.reshape(-1, 3), self.aabb_min, self.aabb_max).reshape(lead)

    def density(self, x: Tensor) -> Tensor:
        """``[...]`` density ``softplus(exp(s)·v(x) + b)`` (spec §2.1: interpolate, then activate)."""
        return F.softplus(self.d_scale.exp() * self.raw_density(x) + self.density_shift)

    def activate(self, features: Tensor) -> Tensor:
        """Feature → colour map, shared with the background (identity, or ``2·sigmoid − 1``)."""
        return features if self.feature_activation == "identity" else 2 * torch.sigmoid(features) - 1

    def features(self, x: Tensor) -> Tensor:
        """``[..., c]`` activated features at ``[..., 3]`` points."""
        lead = x.shape[:-1]
        raw = sample_grid(self.feature_grid, x.reshape(-1, 3), self.aabb_min, self.aabb_max)
        return self.activate(raw).reshape(*lead, self.out_channels)

    def forward(self, x: Tensor, d: Optional[Tensor] = None, cov: Optional[Tensor] = None) -> FieldOutput:
        """Density and features at ``x``; view directions are ignored (no view dependence, §2.1)."""
        return FieldOutput(self.density(x), self.features(x))

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, channels={self.out_channels}, bbox_len={self.bound}, "
                f"feature_activation={self.feature_activation}")
