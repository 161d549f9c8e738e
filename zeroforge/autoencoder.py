"""CLIP-Forge stage 1: voxel encoder ``E`` and occupancy decoder ``D`` (specs/zeroforge.md §3.2, [CF]).

``E`` (VoxelEncoderBN) maps a binary grid ``[B, R, R, R]`` to a shape embedding ``s ∈ R^d`` (d = 128),
adding ``0.1·N(0, I)`` to ``s`` in train mode ("add_noise" latent augmentation). ``D``
(Occ_Simple_Decoder) evaluates ``s`` at 3D points with five fully connected residual blocks applied
per point (the paper's "5 3-dimensional ResNet decoder blocks", A15), with no output sigmoid.
"""

from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["VoxelEncoderBN", "ResnetBlockFC", "OccSimpleDecoder", "compute_iou", "check_voxel_batch"]


def check_voxel_batch(voxels: Tensor, resolution: int, name: str = "voxels") -> None:
    """Raise a clear ``ValueError`` unless ``voxels`` is a float/bool ``[B, R, R, R]`` grid with values in {0, 1}."""
    if not isinstance(voxels, Tensor):
        raise ValueError(f"{name} must be a tensor [B, {resolution}, {resolution}, {resolution}], got {type(voxels).__name__}")
    if voxels.ndim != 4 or tuple(voxels.shape[1:]) != (resolution,) * 3:
        raise ValueError(f"{name} must have shape [B, {resolution}, {resolution}, {resolution}] (the encoder's "
                         f"resolution), got {tuple(voxels.shape)}. Resample the grids or set the encoder's resolution.")
    if not (voxels.dtype == torch.bool or voxels.is_floating_point()):
        raise ValueError(f"{name} must be bool or float occupancy, got dtype {voxels.dtype}")


class VoxelEncoderBN(nn.Module):
    """CLIP-Forge's voxel encoder (§3.2): conv_in, four BN–ReLU–stride-2 convs, flatten, Linear.

    Args:
        resolution: input grid size R (32 in CLIP-Forge; must be divisible by 16).
        latent_dim: shape-embedding size d (128).
        channels: widths of conv_in and the four strided convs (32, 64, 128, 256, 512).
        latent_noise: std of the Gaussian added to ``s`` in train mode (0.1, [CF] "add_noise").

    Shape:
        ``[B, R, R, R]`` in {0, 1} -> ``[B, d]``.
    """

    def __init__(self, resolution: int = 32, latent_dim: int = 128, channels: Sequence[int] = (32, 64, 128, 256, 512),
                 latent_noise: float = 0.1) -> None:
        super().__init__()
        if resolution % 16 != 0:
            raise ValueError(f"encoder resolution must be divisible by 16 (four stride-2 convs), got {resolution}")
        if len(channels) != 5:
            raise ValueError(f"channels must list 5 widths (conv_in + 4 strided convs), got {list(channels)}")
        self.resolution, self.latent_dim, self.latent_noise = resolution, latent_dim, latent_noise
        c = list(channels)
        self.conv_in = nn.Conv3d(1, c[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.BatchNorm3d(c[i]), nn.ReLU(), nn.Conv3d(c[i], c[i + 1], 3, padding=1, stride=2))
            for i in range(4))
        side = resolution // 16
        self.fc = nn.Linear(c[4] * side ** 3, latent_dim)

    def forward(self, voxels: Tensor) -> Tensor:
        check_voxel_batch(voxels, self.resolution)
        x = self.conv_in(voxels.float()[:, None])  # [B, c0, R, R, R]
        for block in self.blocks:
            x = block(x)  # halves the resolution: R/2, R/4, R/8, R/16
        s = self.fc(torch.relu(x.flatten(1)))  # [B, d]
        if self.training and self.latent_noise > 0:
            s = s + self.latent_noise * torch.randn_like(s)
        return s


class ResnetBlockFC(nn.Module):
    """``h + fc_1(ReLU(fc_0(ReLU(h))))`` with ``fc_1.weight`` initialised to zero ([CF] ONet block).

    Shape:
        ``[..., H]`` -> ``[..., H]``.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.fc_0 = nn.Linear(size, size)
        self.fc_1 = nn.Linear(size, size)
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc_1(torch.relu(self.fc_0(torch.relu(h))))


class OccSimpleDecoder(nn.Module):
    """CLIP-Forge's Occ_Simple_Decoder (§3.2): ``o = fc_out(ReLU(blocks(fc_p(p) + fc_z(s))))``, no sigmoid.

    Args:
        latent_dim: shape-embedding size d (128).
        hidden: width of the residual blocks (128).
        n_blocks: residual blocks (5).

    Shape:
        points ``[B, P, 3]`` in the unit cube frame, ``s`` ``[B, d]`` -> logits ``[B, P]``.
    """

    def __init__(self, latent_dim: int = 128, hidden: int = 128, n_blocks: int = 5) -> None:
        super().__init__()
        self.latent_dim, self.hidden = latent_dim, hidden
        self.fc_p = nn.Linear(3, hidden)
        self.fc_z = nn.Linear(latent_dim, hidden)
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden) for _ in range(n_blocks))
        self.fc_out = nn.Linear(hidden, 1)

    def embed(self, points: Tensor, s: Tensor) -> Tensor:
        """``[B, P, H]`` input features ``fc_p(p) + fc_z(s)``."""
        if s.ndim != 2 or s.shape[1] != self.latent_dim:
            raise ValueError(f"shape embedding must be [B, {self.latent_dim}], got {tuple(s.shape)}")
        return self.fc_p(points) + self.fc_z(s)[:, None, :]

    def head(self, h: Tensor) -> Tensor:
        """``[B, P]`` occupancy logits from features ``[B, P, H]``."""
        return self.fc_out(torch.relu(h)).squeeze(-1)

    def forward(self, points: Tensor, s: Tensor) -> Tensor:
        h = self.embed(points, s)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def compute_iou(pred: Tensor, target: Tensor) -> Tensor:
    """Per-shape IoU ``|A ∩ B| / |A ∪ B|`` of boolean grids ``[B, ...]`` (1 where both are empty).

    Example:
        >>> float(compute_iou(torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool))[0])
        1.0
    """
    a, b = pred.bool().flatten(1), target.bool().flatten(1)
    inter = (a & b).sum(1).float()
    union = (a | b).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
