"""Fitting a NeRF to posed images (Mildenhall et al. 2020): the suite's first end-to-end job and
DietNeRF's baseline. Photometric MSE on random ray batches; PSNR on held-out views."""

import json
import math
from typing import Optional

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from common.callbacks import run_dir, save_and_log_image
from common.cameras import get_rays
from common.checks import check_finite_loss
from common.fields.base import Field
from common.fields.nerf import MLPField
from common.io import atomic_write_text
from common.rendering.volume import RenderOutput, VolumeRenderer


def mse_to_psnr(mse: Tensor) -> Tensor:
    """PSNR in dB of images in [0, 1]: ``−10·log10(MSE)``."""
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


class NeRFSystem(LightningModule):
    """A radiance field fitted to posed images with the photometric loss ``‖C(r) − C_gt(r)‖²``
    (NeRF eq. 6, coarse network only).

    Args:
        field: the radiance field (default: NeRF's MLP with PE(10), view dependence).
        renderer: the volume renderer (default: 64 samples in ``[2, 6]``, the Blender near/far).
        lr: Adam learning rate at step 0 (NeRF: 5e-4).
        lr_final: learning rate reached at ``lr_decay_steps`` by exponential decay (NeRF: 5e-5 at 500k).
        lr_decay_steps: steps over which the rate decays from ``lr`` to ``lr_final``.
        white_background: composite renders onto white (NeRF-synthetic convention).
        eval_chunk: rays per chunk when rendering full images.
    """

    def __init__(
        self,
        field: Optional[Field] = None,
        renderer: Optional[VolumeRenderer] = None,
        lr: float = 5e-4,
        lr_final: float = 5e-5,
        lr_decay_steps: int = 500_000,
        white_background: bool = True,
        eval_chunk: int = 4096,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["field", "renderer"])
        self.field = field if field is not None else MLPField()
        self.renderer = renderer if renderer is not None else VolumeRenderer(
            n_samples=64, intersect_box=False, near=2.0, far=6.0, mask_outside=False
        )
        self.background = 1.0 if white_background else 0.0
        self._eval_psnr: list[float] = []

    # -- hooks used by callbacks -------------------------------------------------------------------
    def export_field(self) -> Field:
        return self.field

    @torch.no_grad()
    def render_view(self, c2w: Tensor, height: int, width: int, focal: float) -> RenderOutput:
        rays_o, rays_d = get_rays(c2w, height, width, focal)
        return self.render_rays(rays_o, rays_d)

    def render_rays(self, rays_o: Tensor, rays_d: Tensor) -> RenderOutput:
        return self.renderer(self.field, rays_o, rays_d, background=self.background)

    # -- training ----------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        out = self.render_rays(batch["rays_o"], batch["rays_d"])  # [R, 3]
        loss = torch.mean((out.rgb - batch["rgb"]) ** 2)
        check_finite_loss(loss, self.global_step, {"loss_mse": loss})
        self.log("train/loss_mse", loss)
        self.log("train/psnr", mse_to_psnr(loss.detach()), prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        gamma = (self.hparams.lr_final / self.hparams.lr) ** (1.0 / max(1, self.hparams.lr_decay_steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: gamma ** min(step, self.hparams.lr_decay_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- evaluation --------------------------------------------------------------------------------
    def _eval_step(self, batch: dict, stage: str) -> Tensor:
        h, w = batch["rgb"].shape[:2]
        out = self.render_rays(batch["rays_o"].reshape(-1, 3), batch["rays_d"].reshape(-1, 3))
        pred = out.rgb.reshape(h, w, -1).clamp(0, 1)
        mse = torch.mean((pred - batch["rgb"]) ** 2)
        psnr = mse_to_psnr(mse)
        self.log(f"{stage}/psnr", psnr, prog_bar=True, batch_size=1)
        self._eval_psnr.append(float(psnr))
        if self.trainer is not None and not self.trainer.sanity_checking:
            idx = int(batch["index"])
            save_and_log_image(self.trainer, f"{stage}/render_{idx}", torch.cat([pred, batch["rgb"]], dim=1),
                               f"{stage}_{idx:03d}_step{self.global_step:07d}.png")
        return psnr

    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._eval_psnr = []

    on_test_epoch_start = on_validation_epoch_start

    def on_test_epoch_end(self) -> None:
        if self.trainer.is_global_zero and self._eval_psnr:
            mean = sum(self._eval_psnr) / len(self._eval_psnr)
            summary = {"psnr_mean": mean, "psnr_per_view": self._eval_psnr, "step": self.global_step}
            atomic_write_text(run_dir(self.trainer) / "test_metrics.json", json.dumps(summary, indent=2))
            if math.isfinite(mean):
                print(f"test PSNR {mean:.2f} dB over {len(self._eval_psnr)} views -> {run_dir(self.trainer)}")
