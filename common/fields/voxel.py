"""Dense voxel grids sampled by trilinear interpolation, optionally followed by a small MLP."""

from typing import Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.fields.activations import DensityActivation, density_activation
from common.fields.base import Field, FieldOutput


def trilinear_sample(grid: Tensor, x: Tensor, bound: float = 1.0) -> Tensor:
    """Trilinearly interpolate a grid at points.

    The grid covers ``[-bound, bound]^3`` with its corner voxels' centres on the box corners
    (``grid_sample(align_corners=True)``); points outside are clamped to the border.

    Args:
        grid: ``[C, Dz, Dy, Dx]`` values (index order z, y, x).
        x: ``[..., 3]`` points (x, y, z).

    Returns:
        ``[..., C]`` interpolated values.
    """
    lead = x.shape[:-1]
    coords = (x / bound).reshape(1, -1, 1, 1, 3).to(grid.dtype)  # grid_sample reads (x, y, z) → (W, H, D)
    out = F.grid_sample(grid[None], coords, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(grid.shape[0], -1).T.reshape(*lead, grid.shape[0])


class VoxelGridField(Field):
    """A learnable dense grid of raw density and colour features (Dream Fields' 3D voxel baseline,
    thesis §10.4: 128³ RGB-α; SJC's and PureCLIPNeRF's explicit grids).

    Args:
        resolution: grid size (one int for a cube, or ``[Rx, Ry, Rz]``).
        bound: the grid covers ``[-bound, bound]^3``.
        feature_dim: colour/feature channels stored per voxel (3 for direct RGB).
        out_channels: output colour channels (3 for RGB, 4 for SD latents).
        density_activation: σ from the raw density.
        color_activation: ``sigmoid`` for RGB in [0,1], ``none`` for latents.
        init_density: initial raw density everywhere.
        init_std: std of the initial colour features.
        mlp_hidden: 0 reads colours directly from the grid; > 0 decodes ``feature_dim`` grid features
            with a 2-layer MLP of that width (hybrid grid + MLP).
    """

    def __init__(
        self,
        resolution: Union[int, Sequence[int]] = 128,
        bound: float = 1.0,
        feature_dim: int = 3,
        out_channels: int = 3,
        density_activation: DensityActivation = "softplus",
        color_activation: Literal["sigmoid", "none"] = "sigmoid",
        init_density: float = -5.0,
        init_std: float = 0.1,
        mlp_hidden: int = 0,
    ) -> None:
        super().__init__()
        rx, ry, rz = (resolution,) * 3 if isinstance(resolution, int) else tuple(resolution)
        self.bound, self.out_channels = bound, out_channels
        self.density_kind, self.color_kind = density_activation, color_activation
        self.density_grid_param = nn.Parameter(torch.full((1, rz, ry, rx), float(init_density)))
        self.feature_grid = nn.Parameter(init_std * torch.randn(feature_dim, rz, ry, rx))
        if mlp_hidden > 0:
            self.decoder: Optional[nn.Module] = nn.Sequential(
                nn.Linear(feature_dim, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, out_channels)
            )
        else:
            if feature_dim != out_channels:
                raise ValueError(f"feature_dim ({feature_dim}) must equal out_channels ({out_channels}) without an MLP")
            self.decoder = None

    def _color(self, feats: Tensor) -> Tensor:
        c = self.decoder(feats) if self.decoder is not None else feats
        return torch.sigmoid(c) if self.color_kind == "sigmoid" else c

    def forward(self, x: Tensor, d: Optional[Tensor] = None, cov: Optional[Tensor] = None) -> FieldOutput:
        raw = trilinear_sample(torch.cat([self.density_grid_param, self.feature_grid]), x, self.bound)  # [..., 1+F]
        return FieldOutput(density_activation(raw[..., 0], self.density_kind), self._color(raw[..., 1:]))

    def density(self, x: Tensor) -> Tensor:
        return density_activation(trilinear_sample(self.density_grid_param, x, self.bound)[..., 0], self.density_kind)
