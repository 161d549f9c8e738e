"""Score Jacobian Chaining (Wang et al., CVPR 2023) as a LightningModule, with SDS on the same field.

One iteration (``shared/specs/sjc.md`` §1.7):

1. sample one camera π and its view-dependent prompt prefix (§2.5);
2. render the voxel field at 64×64 *directly in the diffusion model's space* (SD latents, or
   [−1, 1] pixels upsampled for pixel-space models, §2.3) with the fixed-step renderer (§2.2);
3. guidance: SJC's denoiser score with PAAS at a random σ (eq. 13–16, :class:`common.guidance.SJCGuidance`,
   surrogate ``−Σ stopgrad(g)·x``, g = σ·PAAS), or DreamFusion's SDS
   (:class:`common.guidance.SDSGuidance`, ``Σ stopgrad(w(ε̂ − ε))·x``); the UNet is never differentiated,
   so ``loss.backward()`` computes the vector–Jacobian product ``J_πᵀ g`` of eq. 11 through the renderer;
4. regularisers: emptiness (eq. 26) with the two-stage weight λ₁ = 1e4 → λ₂ = 2e5 at K = N/2, and
   the centre-depth loss (eq. 27, weight 0 by default);
5. weighted sum, Adamax step (lr 0.05; background 1e-4).

Frozen priors stay out of checkpoints (they live in :class:`~common.priors.base.FrozenPrior`); the
checkpoint holds the density and feature grids, ``d_scale`` and the background texture.
"""

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from common.callbacks import save_and_log_image
from common.checks import check_finite_loss
from common.export import image_grid
from common.guidance.base import Guidance, check_prompt
from common.guidance.sds import SDSGuidance
from common.guidance.sjc import SJCGuidance
from common.priors.checks import check_pipeline_dir, check_timestep_range
from common.priors.diffusion import DiffusionModel, TextContext
from sjc.background import SphericalBackground
from sjc.cameras import SJCCamera, SJCCameraSampler
from sjc.field import SJCVoxelField
from sjc.losses import center_depth_loss, emptiness_loss, emptiness_weight
from sjc.renderer import SJCRenderer, SJCRenderOutput

__all__ = ["SJCSystem", "SJCLossWeights"]


@dataclass
class SJCLossWeights:
    """Loss weights λ (spec §2.6, §3.1); each term ``loss_<name>`` is logged as ``train/loss_<name>``.

    Args:
        guidance: λ of the guidance term (``loss_sjc`` or ``loss_sds``).
        emptiness: λ₁, the emptiness weight for steps ``i < K`` (1e4, [P]).
        emptiness_late: λ₂, for ``i ≥ K`` (2e5, [P]; the code's λ₁ × 20).
        emptiness_switch: K as a fraction of the run length N (0.5, [C]).
        center_depth: λ of the centre-depth loss (0 by default; 10/50/100 for a few prompts, §3.2).
    """

    guidance: float = 1.0
    emptiness: float = 1e4
    emptiness_late: float = 2e5
    emptiness_switch: float = 0.5
    center_depth: float = 0.0


class SJCSystem(LightningModule):
    """SJC (or SDS) text-to-3D on a voxel radiance field.

    Args:
        guidance: :class:`~common.guidance.SJCGuidance` (PAAS, default for SJC) or
            :class:`~common.guidance.SDSGuidance` (DreamFusion baseline), with ``input_space="model"``.
        prompt: the text prompt (unconditional models ignore it).
        field: the voxel field (default: 100³, 4 latent channels, spec §2.1).
        background: the direction-indexed background texture (default: c×4×4, N(0, 1)).
        renderer: the fixed-step renderer (default: step 0.5 voxel, weight threshold 1e-4).
        cameras: the camera sampler (default: R = 1.5, FoV U[40, 70], 64×64, view prompts).
        loss_weights: λ of each term.
        emptiness_beta: β of the emptiness loss (10, [P]).
        center_box: side of the centre-depth box B as a fraction of the image (50/64, [C]).
        lr: learning rate of density, features and ``d_scale`` (0.05, [C]).
        background_lr: learning rate of the background texture (1e-4, [C]).
        optimizer: optimiser class/callable over parameter groups (Adamax, default betas, [C]).
        guidance_resolution: bilinearly resize the render to this size before guidance, with gradients
            (pixel-space models: 64 → 256, spec §2.3); None keeps the render size.
        total_steps: N for the emptiness switch (default: ``trainer.max_steps``).
        seed: seed of the per-step randomness (camera, σ/t, noise); step ``i`` of rank ``r`` uses a
            generator seeded from ``(seed, r, i)``, so runs are reproducible, resumable and every
            DDP rank draws its own views.
        val_views: evaluation views on a ring (test FoV) rendered at each validation.
        val_elevation: elevation of that ring in degrees.
    """

    def __init__(
        self,
        guidance: Guidance,
        prompt: str = "A high quality photo of a delicious burger",
        field: Optional[SJCVoxelField] = None,
        background: Optional[SphericalBackground] = None,
        renderer: Optional[SJCRenderer] = None,
        cameras: Optional[SJCCameraSampler] = None,
        loss_weights: SJCLossWeights = SJCLossWeights(),
        emptiness_beta: float = 10.0,
        center_box: float = 50 / 64,
        lr: float = 0.05,
        background_lr: float = 1e-4,
        optimizer: OptimizerCallable = torch.optim.Adamax,
        guidance_resolution: Optional[int] = None,
        total_steps: Optional[int] = None,
        seed: int = 0,
        val_views: int = 4,
        val_elevation: float = 30.0,
    ) -> None:
        super().__init__()
        if not isinstance(guidance, (SJCGuidance, SDSGuidance)):
            raise TypeError(f"guidance must be SJCGuidance or SDSGuidance, got {type(guidance).__name__}")
        if guidance.input_space != "model":
            raise ValueError("SJC renders straight into the diffusion model's space (SD latents / [-1, 1] pixels): "
                             "set the guidance's input_space: model")
        if isinstance(loss_weights, dict):  # checkpoints store the weights as a plain dict
            loss_weights = SJCLossWeights(**loss_weights)
        self.prompt = check_prompt(prompt)[0]
        self.save_hyperparameters(ignore=["guidance", "field", "background", "renderer", "cameras", "optimizer",
                                          "loss_weights"])
        self.hparams["loss_weights"] = asdict(loss_weights)
        self.guidance = guidance
        self.field = field if field is not None else SJCVoxelField()
        self.background = background if background is not None else SphericalBackground(self.field.out_channels)
        self.renderer = renderer if renderer is not None else SJCRenderer()
        self.cameras = cameras if cameras is not None else SJCCameraSampler()
        self.loss_weights = loss_weights
        self.emptiness_beta, self.center_box = emptiness_beta, center_box
        self.lr, self.background_lr, self.optimizer_fn = lr, background_lr, optimizer
        self.guidance_resolution, self.total_steps, self.seed = guidance_resolution, total_steps, seed
        self.val_views, self.val_elevation = val_views, val_elevation
        self.strict_loading = False
        self._val_frames: list = []
        if self.background.channels != self.field.out_channels:
            raise ValueError(f"background has {self.background.channels} channels but the field renders "
                             f"{self.field.out_channels}: set background.init_args.channels to match")

    # ------------------------------------------------------------------ setup and checks
    @property
    def diffusion(self) -> DiffusionModel:
        """The frozen diffusion prior inside the guidance."""
        return self.guidance.diffusion

    @property
    def is_latent(self) -> bool:
        """Whether the field renders SD latents (decoded by the VAE for viewing)."""
        return self.diffusion.is_latent

    def setup(self, stage: Optional[str] = None) -> None:
        """Load the prior (never in ``__init__``), then check that field, prior and guidance fit together.

        ``tiny:`` model names (tests, smoke configs) are resolved to their cached folder, written on first
        use, by :func:`~common.priors.checks.check_pipeline_dir` and checked like any other folder.
        """
        model = self.diffusion.model
        conditional_guidance = getattr(self.guidance, "guidance_scale", 1.0) != 1.0
        check_pipeline_dir(model, need_vae=self.field.out_channels == 4, need_text=conditional_guidance)
        self.guidance.load()
        d = self.diffusion
        if self.field.out_channels != d.channels:
            raise ValueError(
                f"the field renders {self.field.out_channels} channels but {model}'s UNet takes {d.channels} "
                f"({'SD latents' if d.is_latent else 'pixels'}): set field.init_args.channels and "
                f"background.init_args.channels to {d.channels}")
        if not d.is_conditional and conditional_guidance:
            raise ValueError(f"{model} is an unconditional model: set the guidance's guidance_scale: 1.0")
        if isinstance(self.guidance, SJCGuidance):
            check_timestep_range(self.guidance.t_min, self.guidance.t_max, d.num_train_timesteps, kind="SJC")
        else:
            check_timestep_range(self.guidance.t_min, self.guidance.t_max, d.num_train_timesteps, fractions=True,
                                 kind="SDS")

    def configure_optimizers(self):
        """Adamax over two groups: field (density, features, d_scale) at ``lr``, background at ``background_lr``."""
        field_params = [p for p in self.field.parameters() if p.requires_grad]
        groups = [{"params": field_params, "lr": self.lr, "name": "field"},
                  {"params": list(self.background.parameters()), "lr": self.background_lr, "name": "background"}]
        return self.optimizer_fn(groups)

    # ------------------------------------------------------------------ rendering
    def render_camera(self, cam: SJCCamera) -> SJCRenderOutput:
        """Render one camera: image ``[H, W, c]``, depth/opacity ``[H, W]``, weights ``[H·W, k]``."""
        cam = cam.to(self.device)
        rays_o, rays_d = cam.rays()  # [H, W, 3]
        return self.renderer(self.field, rays_o, rays_d, background=self.background)

    def to_model_input(self, image: Tensor) -> Tensor:
        """``[H, W, c]`` render -> ``[1, c, h, w]`` guidance input (resized for pixel models, with gradients)."""
        x = image.permute(2, 0, 1)[None]  # [1, c, H, W]
        if self.guidance_resolution and x.shape[-1] != self.guidance_resolution:
            x = F.interpolate(x, size=(self.guidance_resolution,) * 2, mode="bilinear", align_corners=False)
        return x

    @torch.no_grad()
    def decode(self, image: Tensor) -> Tensor:
        """``[H, W, c]`` model-space render -> ``[h, w, 3]`` RGB in [0, 1] (VAE for latents; never in training)."""
        return self.diffusion.decode(image.permute(2, 0, 1)[None].float())[0].permute(1, 2, 0)

    def export_field(self) -> SJCVoxelField:
        return self.field

    # ------------------------------------------------------------------ training
    def step_generator(self, step: int) -> torch.Generator:
        """CPU generator for step ``step`` of this rank (cameras, σ/t and noise)."""
        rank = self.trainer.global_rank if self._trainer is not None else 0
        return torch.Generator().manual_seed(hash((self.seed, rank, step)) % (2**63))

    def text_context(self, prefix: str) -> Union[TextContext, str]:
        """CFG context of ``prefix + " " + prompt`` and the negative prompt (cached by the prior)."""
        text = f"{prefix} {self.prompt}" if prefix else self.prompt
        if not self.diffusion.is_conditional:
            return text
        return self.diffusion.text_context(text, self.guidance.negative_prompt)

    def emptiness_lambda(self, step: int) -> float:
        """λ₁ before K = ⌊switch·N⌋, λ₂ from K on (spec §2.6, A5)."""
        w = self.loss_weights
        return emptiness_weight(step, self._total_steps(), (w.emptiness, w.emptiness_late), w.emptiness_switch)

    def _total_steps(self) -> int:
        if self.total_steps:
            return int(self.total_steps)
        if self._trainer is not None and self.trainer.max_steps and self.trainer.max_steps > 0:
            return int(self.trainer.max_steps)
        if self._trainer is not None:
            est = self.trainer.estimated_stepping_batches
            if math.isfinite(est):
                return int(est)
        raise ValueError("SJC needs the run length N for the emptiness switch: set trainer.max_steps or "
                         "model.init_args.total_steps")

    def compute_regularisers(self, out: SJCRenderOutput) -> Dict[str, Tensor]:
        """``loss_emptiness`` (eq. 26 on the padded [R, k] weights) and ``loss_center_depth`` (eq. 27)."""
        terms = {"loss_emptiness": emptiness_loss(out.weights, self.emptiness_beta)}
        if self.loss_weights.center_depth != 0:
            terms["loss_center_depth"] = center_depth_loss(out.depth, self.center_box)
        return terms

    def loss_lambdas(self, step: int) -> Dict[str, float]:
        w = self.loss_weights
        return {"loss_sjc": w.guidance, "loss_sds": w.guidance, "loss_emptiness": self.emptiness_lambda(step),
                "loss_center_depth": w.center_depth}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        step = self.global_step
        gen = self.step_generator(step)
        cam = self.cameras.sample(gen)  # 1. one random view + its prompt prefix
        out = self.render_camera(cam)  # 2. render in model space, [H, W, c]
        x = self.to_model_input(out.image)  # [1, c, h, w]
        terms = dict(self.guidance(x, self.text_context(cam.prefix), step=step, generator=gen))  # 3. loss_sjc / loss_sds
        terms.update(self.compute_regularisers(out))  # 4. emptiness, centre depth
        lambdas = self.loss_lambdas(step)
        loss = sum(lambdas[k] * v for k, v in terms.items())  # 5. weighted sum
        check_finite_loss(loss, step, terms)
        logs = {f"train/{k}": v.detach() for k, v in terms.items()}
        logs.update({f"train/{k}": v for k, v in self.guidance.last_info.items()})
        logs.update({"train/loss": loss.detach(), "train/lambda_emptiness": lambdas["loss_emptiness"],
                     "train/opacity": out.opacity.detach().mean(), "train/d_scale": self.field.d_scale.detach()})
        self.log_dict(logs, batch_size=1)
        return loss

    # ------------------------------------------------------------------ evaluation
    def eval_cameras(self) -> list:
        return self.cameras.ring(self.val_views, self.val_elevation)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        idx = int(batch["index"]) % max(self.val_views, 1)
        out = self.render_camera(self.eval_cameras()[idx])
        rgb = self.decode(out.image)
        self._val_frames.append((rgb.cpu(), out.depth.detach().cpu(), out.opacity.detach().cpu()))
        self.log("val/opacity", out.opacity.mean(), batch_size=1)

    test_step = validation_step

    def on_validation_epoch_start(self) -> None:
        self._val_frames = []

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        frames, self._val_frames = self._val_frames, []
        if not frames or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        save_and_log_image(self.trainer, "val/renders", render_sheet(frames),
                           f"val_step{self.global_step:07d}.png")

    on_test_epoch_end = on_validation_epoch_end


def depth_image(depth: Tensor, far: float = 10.0) -> Tensor:
    """``[H, W]`` depth -> ``[H, W, 3]`` grey image (near = bright), background (``far``) black."""
    d = depth.clamp(max=far)
    fg = d < far - 1e-3
    lo = float(d[fg].min()) if fg.any() else 0.0
    hi = float(d[fg].max()) if fg.any() else far
    g = torch.where(fg, 1 - (d - lo) / max(hi - lo, 1e-6) * 0.8, torch.zeros_like(d))
    return g[..., None].expand(*g.shape, 3)


def render_sheet(frames: list) -> Tensor:
    """Decoded renders over their depth maps, one column per view: ``[H', W', 3]`` in [0, 1]."""
    rgbs = [f[0] for f in frames]
    h, w = rgbs[0].shape[:2]
    depths = [F.interpolate(depth_image(f[1]).permute(2, 0, 1)[None], size=(h, w), mode="nearest")[0].permute(1, 2, 0)
              for f in frames]
    return image_grid(rgbs + depths, nrow=len(frames))
