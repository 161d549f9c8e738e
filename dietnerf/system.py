"""DietNeRF (Jain, Tancik, Abbeel 2021; Jain thesis ch. 3, Algorithm 3): few-shot NeRF with the
semantic consistency loss. With ``encoder=None`` it is the NeRF (or Simplified NeRF) baseline.

Per step ``it = global_step + 1`` (specs/dietnerf.md §1.3, §2):

1. one random observed image, ``batch_rays`` of its pixels (central crop for the first
   ``precrop_iters`` steps) → coarse + fine render → ``L_MSE = mse(rgb_f) + mse(rgb_c)`` (eq. 3.3,
   mean over rays and channels [C]);
2. if ``it % K == 0``: a target embedding ``φ(I)`` of a random observed image (pre-computed once,
   Algorithm 3 line 4), a pose ``p̂ ~ π``, a strided low-resolution render from ``p̂`` with gradients →
   ``L_SC = λ(1 − cos(φ(I), φ(Î)))`` on the fine and on the coarse render (eqs. 3.4–3.5);
3. Adam on the NeRF parameters only; ``lr = lr0·0.1^{step/lr_decay_steps}`` per step.

MSE-only fine-tuning (Table 3.5): resume the checkpoint with ``semantic_stop_step`` set to the step
reached (e.g. 200k) and ``max_steps`` 50k further; optimizer state and lr schedule continue.
"""

import json
import math
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from common.callbacks import run_dir, save_and_log_image
from common.checks import check_finite_loss
from common.fields.base import Field
from common.io import atomic_write_text
from dietnerf.data import PosedImages
from dietnerf.field import NeRFMLPField
from dietnerf.hierarchical import HierarchicalOutput, HierarchicalRenderer
from dietnerf.metrics import LPIPSScorer, camera_angle_to_nearest, mean_or_none, psnr, ssim
from dietnerf.poses import PoseSampler
from dietnerf.rays import grid_rays, image_rays, pixel_rays, sample_pixels, strided_grid
from dietnerf.semantic import SemanticEncoder, semantic_consistency_loss


@dataclass
class DietNeRFLossWeights:
    """Weights of the loss terms [C] (the release's ``consistency_loss_lam``/``lam0`` = 0.1).

    Attributes:
        lambda_mse: photometric loss of the fine render.
        lambda_mse_coarse: photometric loss of the coarse render.
        lambda_sc: semantic consistency loss of the fine render.
        lambda_sc_coarse: semantic consistency loss of the coarse render.
    """

    lambda_mse: float = 1.0
    lambda_mse_coarse: float = 1.0
    lambda_sc: float = 0.1
    lambda_sc_coarse: float = 0.1


def mse_to_psnr(mse: Tensor) -> Tensor:
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


class DietNeRFSystem(LightningModule):
    """DietNeRF / NeRF / Simplified NeRF on a few posed views (module docstring).

    Args:
        field: coarse field (default :class:`~dietnerf.field.NeRFMLPField`: 8×256, PE 10/4, Xavier).
        fine_field: fine field (default: another NeRFMLPField); unused when ``renderer.n_importance == 0``.
        renderer: coarse+fine renderer (default: 64 + 128 samples in [2, 6], white background).
        encoder: frozen semantic encoder φ (CLIP ViT-B/32); None trains plain NeRF.
        pose_sampler: π (default: upper hemisphere, radius U[3.5, 4.5]).
        loss_weights: ``lambda_*`` of the terms.
        semantic_every: ``K``: the semantic loss runs when ``(global_step + 1) % K == 0`` (10).
        semantic_stop_step: no semantic loss from this step on (MSE-only fine-tuning); None = never stop.
        semantic_rows, semantic_cols: ray grid of the semantic render (168 × 168 on the 400² camera).
        semantic_grid: ``jittered_stride`` (release) or ``full_linspace``.
        semantic_render_autocast: ``bf16`` renders the semantic image under CUDA autocast (the thesis'
            mixed precision); ``none`` (the released configs) renders in fp32. CPU always fp32.
        batch_rays: photometric rays per step, all from one random observed image (1024).
        precrop_iters, precrop_frac: central-crop warm-up of the photometric rays (500, 0.5).
        lr: initial Adam learning rate (5e-4).
        lr_decay_steps: ``lr = lr0·0.1^{step/lr_decay_steps}`` (500k).
        pixel_offset: 0 (release: pixel index) or 0.5 (pixel centres).
        normalize_dirs: unit ray directions (DTU/pixelNeRF) instead of the release's ``z = −1`` ones.
        compute_lpips: evaluate LPIPS at test time (skipped with a reason when its weights are absent).
        lpips_net, lpips_input_range: see :class:`~dietnerf.metrics.LPIPSScorer`.
        save_test_renders: write every test render (8-bit PNG, for FID/KID) to ``media/test_renders``.
        seed: seed of the per-rank ray, target and pose generator.
    """

    def __init__(
        self,
        field: Optional[Field] = None,
        fine_field: Optional[Field] = None,
        renderer: Optional[HierarchicalRenderer] = None,
        encoder: Optional[SemanticEncoder] = None,
        pose_sampler: Optional[PoseSampler] = None,
        loss_weights: DietNeRFLossWeights = DietNeRFLossWeights(),
        semantic_every: int = 10,
        semantic_stop_step: Optional[int] = None,
        semantic_rows: int = 168,
        semantic_cols: int = 168,
        semantic_grid: Literal["jittered_stride", "full_linspace"] = "jittered_stride",
        semantic_render_autocast: Literal["none", "bf16"] = "none",
        batch_rays: int = 1024,
        precrop_iters: int = 500,
        precrop_frac: float = 0.5,
        lr: float = 5e-4,
        lr_decay_steps: int = 500_000,
        pixel_offset: float = 0.0,
        normalize_dirs: bool = False,
        compute_lpips: bool = True,
        lpips_net: Literal["vgg", "alex", "squeeze"] = "vgg",
        lpips_input_range: Literal["[-1,1]", "[0,1]"] = "[-1,1]",
        save_test_renders: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if semantic_every < 1:
            raise ValueError(f"semantic_every (K) must be >= 1, got {semantic_every}")
        self.save_hyperparameters(ignore=["field", "fine_field", "renderer", "encoder", "pose_sampler", "loss_weights"])
        self.hparams["loss_weights"] = asdict(loss_weights)  # plain dict: checkpoints load with weights_only=True
        self.renderer = renderer if renderer is not None else HierarchicalRenderer()
        self.field = field if field is not None else NeRFMLPField()
        has_fine = self.renderer.n_importance > 0
        self.fine_field = (fine_field if fine_field is not None else NeRFMLPField()) if has_fine else None
        self.encoder = encoder
        self.pose_sampler = pose_sampler if pose_sampler is not None else PoseSampler()
        self.loss_weights = loss_weights
        self.strict_loading = False  # frozen encoder weights are never in checkpoints
        self._targets: Optional[Tensor] = None
        self._gen: Optional[torch.Generator] = None
        self.semantic_calls = 0  #: semantic branch executions (logging/tests)
        self._eval_rows: list[dict] = []
        self._lpips: Optional[LPIPSScorer] = None

    # -- parts and data ----------------------------------------------------------------------------
    def semantic_enabled(self) -> bool:
        """Whether the semantic loss can run at all (an encoder and a non-zero weight)."""
        return self.encoder is not None and (self.loss_weights.lambda_sc > 0 or self.loss_weights.lambda_sc_coarse > 0)

    def semantic_active(self, step: int) -> bool:
        """The every-K schedule: on at 0-based ``step`` iff ``(step + 1) % K == 0`` and before the stop step."""
        stop = self.hparams.semantic_stop_step
        return (self.semantic_enabled() and (step + 1) % self.hparams.semantic_every == 0
                and (stop is None or step < stop))

    def _datamodule(self):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "train_views") or not hasattr(dm, "pose_pool"):
            raise TypeError("DietNeRFSystem needs a dietnerf datamodule (dietnerf.data.FewShotBlenderDataModule or "
                            f"dietnerf.dtu.DTUDataModule) that provides train_views() and pose_pool(); got {type(dm).__name__}")
        return dm

    def setup(self, stage: str) -> None:
        dm = self._datamodule()
        self.attach_views(dm.train_views(), dm.pose_pool() if stage == "fit" else None)
        self._describe = dm.describe() if hasattr(dm, "describe") else {}
        if stage == "fit" and self.semantic_enabled():
            self.encoder.load()  # fail before any training step when the CLIP weights are missing

    def attach_views(self, train: PosedImages, pose_pool: Optional[Tensor] = None) -> None:
        """Keep the observed views on the module's device (not in checkpoints) and set π's pose pool."""
        self.register_buffer("train_rgb", train.images.float().to(self.device), persistent=False)  # [N, H, W, 3]
        self.register_buffer("train_c2w", train.c2w.float().to(self.device), persistent=False)  # [N, 4, 4]
        self.register_buffer("train_intr", train.intrinsics.float().to(self.device), persistent=False)  # [N, 4]
        self._targets = None
        if pose_pool is not None:
            self.pose_sampler.set_pool(pose_pool)

    def generator(self) -> torch.Generator:
        """CPU generator of rays, targets and poses, seeded per DDP rank."""
        if self._gen is None:
            rank = self.global_rank if self._trainer is not None else 0
            self._gen = torch.Generator().manual_seed(self.hparams.seed + 7919 * rank + self.global_step)
        return self._gen

    def on_train_start(self) -> None:
        # After checkpoint restore (global_step is known) and with the model on its device.
        if self.semantic_enabled() and (self.hparams.semantic_stop_step is None
                                        or self.global_step < self.hparams.semantic_stop_step):
            self.compute_targets()

    @torch.no_grad()
    def compute_targets(self) -> Tensor:
        """``φ(I_k)`` of the observed images, once, without gradients (Algorithm 3 line 4)."""
        self.encoder.load()
        self._targets = torch.cat([self.encoder(self.train_rgb[i:i + 16].permute(0, 3, 1, 2))
                                   for i in range(0, self.train_rgb.shape[0], 16)]).detach()
        return self._targets

    # -- rendering ---------------------------------------------------------------------------------
    def render(self, rays_o: Tensor, rays_d: Tensor, perturb: Optional[bool] = None) -> HierarchicalOutput:
        gen = self.generator() if self.training else None
        return self.renderer(self.field, self.fine_field, rays_o, rays_d, perturb=perturb, generator=gen)

    @torch.no_grad()
    def render_image(self, c2w: Tensor, intrinsics: Tensor, height: int, width: int) -> HierarchicalOutput:
        """Full deterministic image ``[H, W, 3]`` (eval sampling: no jitter, pdf quantiles)."""
        o, d = image_rays(c2w, intrinsics, height, width, self.hparams.pixel_offset, self.hparams.normalize_dirs)
        was = self.renderer.training
        self.renderer.eval()
        out = self.render(o, d, perturb=False)
        self.renderer.train(was)
        return out

    def render_view(self, c2w: Tensor, height: int, width: int, focal: float) -> HierarchicalOutput:
        """Hook of :class:`common.callbacks.TurntableVideo`: a Blender-style camera (centred principal point)."""
        intr = torch.tensor([focal, focal, width / 2.0, height / 2.0], device=c2w.device)
        return self.render_image(c2w, intr, height, width)

    def export_field(self) -> Field:
        return self.fine_field if self.fine_field is not None else self.field

    # -- training ----------------------------------------------------------------------------------
    def sample_train_rays(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """``batch_rays`` rays of one random observed image [C]: ``(rays_o, rays_d, rgb)``, each ``[R, 3]``."""
        g = self.generator()
        k = int(torch.randint(self.train_rgb.shape[0], (1,), generator=g))
        h, w = self.train_rgb.shape[1:3]
        crop = self.hparams.precrop_frac if step < self.hparams.precrop_iters else None
        rows, cols = sample_pixels(h, w, self.hparams.batch_rays, crop, g)
        rows, cols = rows.to(self.device), cols.to(self.device)
        o, d = pixel_rays(self.train_c2w[k], self.train_intr[k], cols.float(), rows.float(),
                          self.hparams.pixel_offset, self.hparams.normalize_dirs)
        return o, d, self.train_rgb[k, rows, cols]

    def semantic_render(self) -> HierarchicalOutput:
        """Low-resolution render ``[nH, nW]`` from ``p̂ ~ π`` with gradients, on the observed camera's intrinsics."""
        g = self.generator()
        c2w = self.pose_sampler.sample(1, g)[0].to(self.device)
        h, w = self.train_rgb.shape[1:3]
        ys, xs = strided_grid(h, w, self.hparams.semantic_rows, self.hparams.semantic_cols, self.hparams.semantic_grid, g)
        o, d = grid_rays(c2w, self.train_intr[0], ys, xs, self.hparams.pixel_offset, self.hparams.normalize_dirs)
        amp = self.hparams.semantic_render_autocast == "bf16" and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            return self.render(o, d)

    def semantic_terms(self) -> dict[str, Tensor]:
        """``loss_sc`` (fine) and ``loss_sc_coarse``: ``1 − cos`` to a random target embedding."""
        if self._targets is None:
            self.compute_targets()
        g = self.generator()
        target = self._targets[int(torch.randint(self._targets.shape[0], (1,), generator=g))][None]  # [1, D]
        out = self.semantic_render()
        terms = {}
        for name, rp in (("loss_sc", out.fine), ("loss_sc_coarse", out.coarse)):
            if rp is None:
                continue
            image = rp.rgb.float().permute(2, 0, 1)[None]  # [1, 3, nH, nW]
            terms[name], terms[name.replace("loss_", "cos_")] = semantic_consistency_loss(target, self.encoder(image))
        self.semantic_calls += 1
        return terms

    def compute_losses(self, out: HierarchicalOutput, rgb: Tensor) -> dict[str, Tensor]:
        """Photometric terms (eq. 3.3 as the release: mean over rays and channels)."""
        terms = {"loss_mse": torch.mean((out.final.rgb - rgb) ** 2)}
        if out.fine is not None:
            terms["loss_mse_coarse"] = torch.mean((out.coarse.rgb - rgb) ** 2)
        return terms

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        step = self.global_step
        rays_o, rays_d, rgb = self.sample_train_rays(step)  # 1. rays of one observed image
        out = self.render(rays_o, rays_d)  # 2. coarse + fine render
        terms = self.compute_losses(out, rgb)  # 3. L_MSE
        if self.semantic_active(step):  # 4. L_SC every K steps
            terms.update(self.semantic_terms())
        w = asdict(self.loss_weights)
        loss = sum(w["lambda_" + k[len("loss_"):]] * v for k, v in terms.items() if k.startswith("loss_"))
        check_finite_loss(loss, step, {k: v for k, v in terms.items() if k.startswith("loss_")})
        self.log("train/loss", loss.detach(), prog_bar=True)  # 5. log
        self.log("train/psnr", mse_to_psnr(terms["loss_mse"].detach()), prog_bar=True)
        if out.fine is not None:
            self.log("train/psnr0", mse_to_psnr(terms["loss_mse_coarse"].detach()))
        for k in ("loss_mse", "loss_mse_coarse"):
            if k in terms:
                self.log(f"train/{k}", terms[k].detach())
        if "loss_sc" in terms or "loss_sc_coarse" in terms:
            names = {"loss_sc": "loss_sc", "loss_sc_coarse": "loss_sc_coarse", "cos_sc": "sc_cos_fine",
                     "cos_sc_coarse": "sc_cos_coarse"}
            self.log_sparse({f"train/{names[k]}": float(v.detach()) for k, v in terms.items() if k in names})
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"] if self._trainer is not None else self.hparams.lr)
        return loss

    def log_sparse(self, metrics: dict[str, float]) -> None:
        """Log values that exist only on some steps (the every-K semantic terms) straight to the loggers.

        ``self.log(on_step=True)`` would repeat the last value at every later step until the epoch
        ends; here each value appears once, at the step it was computed (rank 0 only).
        """
        if self._trainer is None:
            return
        for logger in self.trainer.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    def configure_optimizers(self):
        params = list(self.field.parameters()) + (list(self.fine_field.parameters()) if self.fine_field is not None else [])
        opt = torch.optim.Adam(params, lr=self.hparams.lr, betas=(0.9, 0.999), eps=1e-8)
        decay = max(1, self.hparams.lr_decay_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 ** (s / decay))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- evaluation --------------------------------------------------------------------------------
    def _eval_step(self, batch: dict, stage: str) -> None:
        target = batch["rgb"]
        h, w = target.shape[:2]
        pred = self.render_image(batch["c2w"], batch["intrinsics"], h, w).rgb.clamp(0, 1)
        row = {"view": int(batch["view"]), "psnr": psnr(pred, target)}
        idx = int(batch["index"])
        self.log(f"{stage}/psnr", row["psnr"], prog_bar=True, batch_size=1)
        if stage == "test":
            row["ssim"] = ssim(pred, target)
            row["lpips"] = self._lpips(pred, target) if self._lpips is not None else None
            row["angle_to_nearest_observed_deg"] = float(camera_angle_to_nearest(batch["c2w"][None], self.train_c2w)[0])
        self._eval_rows.append(row)
        if self._trainer is not None and not self.trainer.sanity_checking:
            name = f"{stage}_{row['view']:03d}_step{self.global_step:07d}.png"
            save_and_log_image(self.trainer, f"{stage}/render_{idx}", torch.cat([pred, target], dim=1), name)
            if stage == "test" and self.hparams.save_test_renders:
                from common.export import save_image

                save_image(pred, run_dir(self.trainer) / "media" / "test_renders" / f"r_{row['view']}.png")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._eval_rows = []

    def on_test_epoch_start(self) -> None:
        self._eval_rows = []
        if self._lpips is None:
            self._lpips = LPIPSScorer(self.hparams.lpips_net, self.hparams.lpips_input_range, self.hparams.compute_lpips)

    def test_summary(self) -> dict:
        """Per-view and mean PSNR / SSIM / LPIPS of the last test epoch, plus the far-view split."""
        rows = self._eval_rows
        angles = sorted(r["angle_to_nearest_observed_deg"] for r in rows)
        median = angles[len(angles) // 2] if angles else float("nan")
        far = [r for r in rows if r["angle_to_nearest_observed_deg"] >= median]
        lp = self._lpips.status if self._lpips is not None else "skipped: not evaluated"
        return {
            "method": "DietNeRF" if self.semantic_enabled() else "NeRF", **getattr(self, "_describe", {}),
            "step": self.global_step, "n_views": len(rows),
            "psnr": mean_or_none(r["psnr"] for r in rows), "ssim": mean_or_none(r["ssim"] for r in rows),
            "lpips": mean_or_none(r["lpips"] for r in rows), "lpips_status": lp,
            "lpips_net": self.hparams.lpips_net, "lpips_input_range": self.hparams.lpips_input_range,
            "far_views_min_angle_deg": median, "psnr_far": mean_or_none(r["psnr"] for r in far),
            "ssim_far": mean_or_none(r["ssim"] for r in far), "per_view": rows,
            "protocol": "PSNR: -10log10(MSE) [0,1]; SSIM: skimage 7x7 uniform window; LPIPS: torchmetrics "
                        f"{self.hparams.lpips_net}; far views: angle to the nearest observed camera >= the median",
        }

    def on_test_epoch_end(self) -> None:
        if self._trainer is None or not self.trainer.is_global_zero or not self._eval_rows:
            return
        summary = self.test_summary()
        out = run_dir(self.trainer)
        atomic_write_text(out / "test_metrics.json", json.dumps(summary, indent=2))
        from dietnerf.table import scene_table

        atomic_write_text(out / "test_table.md", scene_table(summary))
        fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
        print(f"test ({summary['n_views']} views): PSNR {fmt(summary['psnr'])}  SSIM {fmt(summary['ssim'])}  "
              f"LPIPS {fmt(summary['lpips'])} ({summary['lpips_status']}) -> {out / 'test_metrics.json'}")
