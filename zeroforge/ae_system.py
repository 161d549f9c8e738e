"""CLIP-Forge stage 1 as a LightningModule: the voxel autoencoder (specs/zeroforge.md §3.2, [CF]).

Each step encodes the 32³ grids (with 0.1·N(0, I) latent noise in train mode), decodes
``points_per_step`` random query points per shape, and regresses their {0, 1} occupancy with MSE
(no sigmoid). Validation decodes the ``R³`` cell centres, thresholds at ``o ≥ γ`` and reports the
IoU against the input grid (CLIP-Forge's model-selection metric, ``val/iou``).

Data frame: batches come from :class:`zeroforge.data.ShapeNetVoxelDataModule` (unit cube, ``data_bound
= 0.5``) or :class:`shapeworld.voxels.VoxelDataModule` (``[-1, 1]^3``, ``data_bound = 1``); points are
scaled by ``0.5 / data_bound`` into the decoder's ``[-0.5, 0.5]^3`` frame.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from common.checks import check_finite_loss
from zeroforge.autoencoder import OccSimpleDecoder, VoxelEncoderBN, compute_iou
from zeroforge.geometry import cell_centres

__all__ = ["CLIPForgeAutoencoderSystem"]


class CLIPForgeAutoencoderSystem(LightningModule):
    """Trains ``E`` and ``D`` of CLIP-Forge.

    Args:
        encoder: the voxel encoder (default: CLIP-Forge's, 32³ -> 128).
        decoder: the occupancy decoder (default: CLIP-Forge's, width 128, 5 blocks).
        lr: Adam learning rate (1e-4, [CF]).
        weight_decay: Adam weight decay (1e-5, [CF]).
        points_per_step: query points per shape per step (5000, [CF]); batches without ``points`` use
            the grid's cell centres and voxels as points and labels.
        gamma: occupancy threshold of the validation IoU (0.05).
        data_bound: half side of the box that the data's grids and points cover (0.5 ShapeNet/ONet, 1.0 shapeworld).
    """

    def __init__(self, encoder: Optional[VoxelEncoderBN] = None, decoder: Optional[OccSimpleDecoder] = None, lr: float = 1e-4,
                 weight_decay: float = 1e-5, points_per_step: int = 5000, gamma: float = 0.05, data_bound: float = 0.5) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "decoder"])
        self.encoder = encoder if encoder is not None else VoxelEncoderBN()
        self.decoder = decoder if decoder is not None else OccSimpleDecoder()
        if self.encoder.latent_dim != self.decoder.latent_dim:
            raise ValueError(f"encoder latent_dim {self.encoder.latent_dim} != decoder latent_dim {self.decoder.latent_dim}")

    def _points(self, batch: dict) -> tuple[Tensor, Tensor]:
        """``[B, P, 3]`` query points in the decoder frame and ``[B, P]`` occupancy, ``P ≤ points_per_step``."""
        if "points" in batch:
            pts, occ = batch["points"] * (0.5 / self.hparams.data_bound), batch["occupancy"]
        else:  # the grid itself: cell centres and voxel labels
            vox = batch["voxels"]
            pts = cell_centres(vox.shape[-1], device=vox.device).expand(vox.shape[0], -1, -1)
            occ = vox.flatten(1).float()
        P = pts.shape[1]
        if P > self.hparams.points_per_step:  # [CF]: a random subset per shape per step
            idx = torch.rand(pts.shape[:2], device=pts.device).argsort(1)[:, :self.hparams.points_per_step]
            pts = torch.gather(pts, 1, idx[..., None].expand(-1, -1, 3))
            occ = torch.gather(occ, 1, idx)
        return pts, occ.float()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        pts, occ = self._points(batch)
        s = self.encoder(batch["voxels"])  # [B, d], + 0.1·N(0, I) in train mode
        loss = F.mse_loss(self.decoder(pts, s), occ)  # MSE against {0, 1}, mean over points and batch
        check_finite_loss(loss, self.global_step)
        self.log("train/loss", loss, prog_bar=True, batch_size=occ.shape[0])
        return loss

    @torch.no_grad()
    def reconstruct(self, voxels: Tensor) -> Tensor:
        """Occupancy logits ``[B, R, R, R]`` of the grids' cell centres."""
        R = voxels.shape[-1]
        s = self.encoder(voxels)
        pts = cell_centres(R, device=voxels.device).expand(voxels.shape[0], -1, -1)
        return self.decoder(pts, s).view(-1, R, R, R)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        pts, occ = self._points(batch)
        s = self.encoder(batch["voxels"])
        self.log("val/loss", F.mse_loss(self.decoder(pts, s), occ), batch_size=occ.shape[0], sync_dist=True)
        iou = compute_iou(self.reconstruct(batch["voxels"]) >= self.hparams.gamma, batch["voxels"] > 0.5)
        self.log("val/iou", iou.mean(), prog_bar=True, batch_size=iou.shape[0], sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
