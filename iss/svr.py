"""Stage 0: DVR single-view reconstruction (``E_S`` + ``D``) trained on multi-view renders (specs/iss.md §3).

ISS starts from DVR's released ``ours_combined`` checkpoint, which cannot be downloaded here; this module
trains the same model: per object one input view (to ``E_S``) and one supervision view (RGB, mask,
depth, camera), 768 random pixels, DVR's ``L_D`` (:func:`iss.losses.dvr_losses`), Adam 1e-4, batch 16,
and the ray-sample schedule 16 → 32 → 64 → 128 at 50k / 100k / 250k iterations [D].
"""

from typing import Dict, List, Optional, Sequence, Union

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from common.checks import check_finite_loss
from iss.cameras import DVRCameras, pixel_index_to_uv
from iss.checkpoints import decoder_meta
from iss.data import check_svr_batch
from iss.losses import DVRLossWeights, dvr_losses, weighted_dvr_loss
from iss.models import CLIPImageEncoder, DVRDecoder, ResNetEncoder
from iss.renderer import DVRRenderer

__all__ = ["SVRSystem", "sample_pixels", "samples_at_step", "render_comparison", "points_iou"]


def samples_at_step(step: int, milestones: Sequence[int], counts: Sequence[int]) -> int:
    """Ray samples at a global step: ``counts[k]`` after ``k`` milestones (DVR: 16/32/64/128 at 50k/100k/250k).

    Example:
        >>> samples_at_step(60000, [50000, 100000, 250000], [16, 32, 64, 128])
        32
    """
    if len(counts) != len(milestones) + 1:
        raise ValueError(f"need one more sample count than milestones, got {len(counts)} counts for {len(milestones)} milestones")
    return int(counts[sum(step >= m for m in milestones)])


def sample_pixels(batch: dict, n_pixels: int, generator: Optional[torch.Generator] = None):
    """``n_pixels`` random pixels per supervision view (discrete, without replacement).

    Returns:
        ``(uv [B, R, 2], rgb [B, R, 3], mask [B, R] bool, depth [B, R] or None)``.
    """
    image = batch["image"]
    B, _, H, W = image.shape
    n = min(n_pixels, H * W)
    idx = torch.rand(B, H * W, generator=generator).argsort(-1)[:, :n].to(image.device)  # [B, R]
    uv = pixel_index_to_uv(idx, H, W).to(image)
    rgb = torch.gather(image.flatten(2), 2, idx[:, None].expand(B, 3, n)).transpose(1, 2)
    mask = torch.gather(batch["mask"].reshape(B, -1), 1, idx) > 0.5
    depth = torch.gather(batch["depth"].reshape(B, -1), 1, idx) if batch.get("depth") is not None else None
    return uv, rgb, mask, depth


@torch.no_grad()
def points_iou(decoder, c: Tensor, points: Tensor, occupancy: Tensor, threshold_logit: float = 0.0) -> Tensor:
    """``[B]`` IoU between predicted (logit > threshold) and GT occupancy at query points ``[B, P, 3]``."""
    pred = decoder(points, c, only_occupancy=True) > threshold_logit
    gt = occupancy > 0.5
    union = (pred | gt).sum(-1).float()
    return torch.where(union > 0, (pred & gt).sum(-1).float() / union.clamp_min(1), torch.ones_like(union))


@torch.no_grad()
def render_comparison(renderer: DVRRenderer, decoder, c: Tensor, batch: dict, n: int, n_steps: Optional[int] = None) -> Tensor:
    """``[3n, H, W, 3]``: input views, GT supervision views, and the model's renders from the supervision cameras."""
    n = min(n, batch["image"].shape[0])
    H, W = batch["image"].shape[-2:]
    cams = DVRCameras(batch["c2w"][:n], batch["focal"][:n])
    out = renderer.render_image(decoder, c[:n], cams, H, W, n_steps=n_steps, ray_chunk=4096)
    pred = torch.where(out.hit[..., None], out.rgb, torch.ones_like(out.rgb))
    inp = torch.nn.functional.interpolate(batch["input"][:n], size=(H, W), mode="bilinear", align_corners=False)
    return torch.cat([inp.permute(0, 2, 3, 1), batch["image"][:n].permute(0, 2, 3, 1), pred]).clamp(0, 1).cpu()


class SVRSystem(LightningModule):
    """DVR single-view reconstruction: ``E_S`` (image → code) and ``D`` trained with ``L_D``.

    Args:
        encoder: ``E_S`` (default: ResNet-18 → 256), or a frozen :class:`~iss.models.CLIPImageEncoder` ``E_I`` for the
            ``E_I + D`` baseline (only ``D`` is trained then; stage 1 refuses such a checkpoint).
        decoder: ``D`` (default: DVR's, hidden 512, 5 blocks).
        renderer: the DVR renderer (box, secant steps, fallback depth).
        weights: ``L_D`` weights (``ours_combined``: rgb 1, depth 10, freespace 1, occupancy 1, normal 0.05).
        n_pixels: pixels per supervision view (768, [C]).
        lr: Adam learning rate (1e-4, [D]).
        sample_milestones, sample_counts: ray-sample schedule (50k/100k/250k; 16/32/64/128, [D]).
        val_n_steps: ray samples in validation renders (None: the schedule's current value).
        n_val_images: objects rendered into ``media/`` at each validation.
    """

    def __init__(self, encoder: Optional[Union[ResNetEncoder, CLIPImageEncoder]] = None, decoder: Optional[DVRDecoder] = None,
                 renderer: Optional[DVRRenderer] = None, weights: Optional[DVRLossWeights] = None, n_pixels: int = 768,
                 lr: float = 1e-4, sample_milestones: List[int] = [50000, 100000, 250000],
                 sample_counts: List[int] = [16, 32, 64, 128], val_n_steps: Optional[int] = None, n_val_images: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "decoder", "renderer"])
        self.encoder = encoder if encoder is not None else ResNetEncoder()
        self.decoder = decoder if decoder is not None else DVRDecoder()
        self.renderer = renderer if renderer is not None else DVRRenderer()
        self.weights = weights if weights is not None else DVRLossWeights()
        if self.encoder.c_dim != self.decoder.c_dim:
            raise ValueError(f"encoder c_dim {self.encoder.c_dim} != decoder c_dim {self.decoder.c_dim}")
        samples_at_step(0, sample_milestones, sample_counts)  # validate the schedule now

    def n_steps(self) -> int:
        return samples_at_step(self.global_step, self.hparams.sample_milestones, self.hparams.sample_counts)

    def losses(self, batch: dict, generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """``{"loss", "loss_<term>"...}`` of one batch."""
        check_svr_batch(batch, need_depth=self.weights.depth > 0)
        c = self.encoder(batch["input"])  # [B, C]
        uv, rgb, mask, depth = sample_pixels(batch, self.hparams.n_pixels, generator)
        cams = DVRCameras(batch["c2w"], batch["focal"])
        terms, _ = dvr_losses(self.decoder, c, cams, uv, rgb, mask, depth, self.renderer, self.n_steps(),
                              with_normal=self.weights.normal > 0, generator=generator)
        out = {f"loss_{k}": v for k, v in terms.items()}
        out["loss"] = weighted_dvr_loss(terms, self.weights)
        return out

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        terms = self.losses(batch)
        check_finite_loss(terms["loss"], self.global_step, terms)
        B = batch["image"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=B)
        self.log("train/n_steps", float(self.n_steps()), batch_size=B)
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        B = batch["image"].shape[0]
        terms = self.losses(batch, torch.Generator().manual_seed(batch_idx))  # no grad: d̂ = d₀, same values
        self.log_dict({f"val/{k}": v.detach() for k, v in terms.items()}, batch_size=B, sync_dist=True)
        c = self.encoder(batch["input"])
        if "points" in batch:
            self.log("val/iou", points_iou(self.decoder, c, batch["points"], batch["occupancy"]).mean(), batch_size=B,
                     sync_dist=True, prog_bar=True)
        if batch_idx == 0 and self.hparams.n_val_images > 0 and not self.trainer.sanity_checking:
            self._log_renders(c, batch)

    def _log_renders(self, c: Tensor, batch: dict) -> None:
        from common.callbacks import save_and_log_image
        from common.export import image_grid

        imgs = render_comparison(self.renderer, self.decoder, c, batch, self.hparams.n_val_images,
                                 self.hparams.val_n_steps or self.n_steps())
        n = imgs.shape[0] // 3
        save_and_log_image(self.trainer, "val/renders", image_grid(imgs, nrow=n), f"val_renders_{self.global_step:07d}.png")

    def setup(self, stage: str) -> None:
        if isinstance(self.encoder, CLIPImageEncoder):
            self.encoder.load()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["iss"] = {"stage": "svr", "c_dim": int(self.decoder.c_dim), "decoder": decoder_meta(self.decoder),
                             "encoder": "clip" if isinstance(self.encoder, CLIPImageEncoder) else "resnet"}

    def configure_optimizers(self):
        return torch.optim.Adam(list(self.encoder.parameters()) + list(self.decoder.parameters()), lr=self.hparams.lr)
