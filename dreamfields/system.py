"""Dream Fields (Jain thesis ch. 4; specs/dreamfields.md) as a LightningModule.

One training iteration (spec §1; every step cites its source):

1. sample a camera: azimuth U[0°, 360°), elevation 30°, radius 4, focal ×1.2 (§4.4.4, §10.3);
2. a 168² ray bundle whose origins are shifted by the tracked origin ``o`` (§4.4.6);
3. render with 192 jittered segments inside the ray–cube interval, IPE of frustum Gaussians over random
   Fourier features, the residual MLP, σ masked outside ``[-1,1]³`` (eqs. 4.1–4.6);
4. ``n_aug`` random crops of colour and alpha with one window, resized to the CLIP input, composited
   over random backgrounds (noise / checkerboard / Fourier, blurred) (§4.4.5);
5. ``L_CLIP = −mean_k ⟨g(I_k), h(y)⟩`` (eq. 4.7), ``L_T = −min(τ_i, mean T)`` (eq. 4.8) with τ annealed
   0.4 → 0.88, ``L = L_CLIP + λ·L_T`` (eq. 4.9), or a Table 4.2 variant (:mod:`dreamfields.regularizers`);
6. one Adam step (ε = 1e-5) at the warmed-up learning rate, skipped when the loss or a gradient is not
   finite; then ``o ← 0.999·o + 0.001·c`` with the density-weighted centre ``c`` of the render.

Evaluation (§4.5.1, §9.2): a 45°-elevation held-out view (azimuth 30°, radius 4, focal ×1.0, 512 samples,
no jitter, white background) at the retrieval CLIP's input size; CLIP R-precision of the prompt among a
caption pool (default: the 153 OC-COCO captions) under each retrieval CLIP. ``lightning test
--ckpt_path last`` does this from the checkpoint (``o`` is a buffer in it) and writes
``test_metrics.json``; the end of ``fit`` writes ``metrics.json``, the final renders, and (through the
callbacks of the config) the turntable video and the marching-cubes mesh.

Baselines (§10.4–10.5) are selected by the ``field`` class: :class:`common.fields.VoxelGridField` (3D voxel
grid), :class:`dreamfields.baselines.PixelImage` (2D RGBα image, + TV) or
:class:`dreamfields.baselines.VolSDFField` (SDF, + Eikonal).
"""

import logging
from dataclasses import asdict, dataclass
from typing import Dict, List, Literal, Optional, Tuple, Union

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from common.augment import Augment
from common.cameras import SphericalCameraSampler, get_rays
from common.checks import NonFiniteLossError
from common.fields.base import Field
from common.fields.encodings import RandomFourierEncoding
from common.fields.nerf import MLPField
from common.guidance.base import check_prompt
from common.guidance.clip_guidance import CLIPGuidance
from common.losses import total_variation
from common.priors.base import PriorWeightsNotFoundError
from common.priors.clip import CLIPModel
from common.rendering.samplers import pixel_radii
from common.rendering.volume import RenderOutput
from common.retrieval_eval import RetrievalEvalMixin, clip_name
from dreamfields.baselines import PixelImage, VolSDFField, eikonal_loss
from dreamfields.captions import caption_pool
from dreamfields.origin import OriginTracker
from dreamfields.regularizers import SPARSITY_KINDS, Sparsity, sparsity_objective
from dreamfields.renderer import DreamFieldsRenderer
from dreamfields.schedules import ipe_cov_scale, transmittance_target, warmup_lr

log = logging.getLogger(__name__)

__all__ = ["DreamFieldsSystem", "LossWeights", "TrainingView", "dream_field", "clip_name"]


@dataclass
class LossWeights:
    """Loss weights (conventions #7).

    Args:
        lambda_transmittance: λ of ``L_CLIP + λ·L_T`` (0.5, ref impl ``acc_lam``; A5).
        lambda_beta: λ_β of the beta prior (1e-3, ref impl ``beta_lam``; A17).
        lambda_tv: squared-TV weight of the 2D pixel baseline (1e-2, suggested; §10.1).
        lambda_eikonal: Eikonal weight of the SDF variant (0.1, suggested; §10.3).
    """

    lambda_transmittance: float = 0.5
    lambda_beta: float = 1e-3
    lambda_tv: float = 1e-2
    lambda_eikonal: float = 0.1


@dataclass
class TrainingView:
    """One training render.

    Attributes:
        rgb: ``[1, 3, H, W]`` premultiplied colour in [0, 1].
        alpha: ``[1, 1, H, W]`` opacity A = 1 − T.
        com: ``[3]`` density-weighted centre of the samples (None for the pixel baseline).
        focal_mult, radius: the camera's focal multiplier and distance (for τ's camera scale).
        rays_o, rays_d: ``[H·W, 3]`` the rays (field coordinates), or None.
    """

    rgb: Tensor
    alpha: Tensor
    com: Optional[Tensor]
    focal_mult: float
    radius: float
    rays_o: Optional[Tensor] = None
    rays_d: Optional[Tensor] = None

    @property
    def transmittance(self) -> Tensor:
        """``[1, 1, H, W]`` per-pixel T of the full, uncropped render (A6)."""
        return 1.0 - self.alpha


def dream_field(max_log2: float = 8.0, seed: int = 0) -> MLPField:
    """The paper's field: IPE over 128 random Fourier features + 3 axes (L = 8), the residual MLP
    (128 wide, 4 bottleneck blocks of 256, Swish, LayerNorm first), no view input, softplus density,
    sigmoid colour; 315,396 parameters (spec §2.4–2.5, A11)."""
    return MLPField(encoding=RandomFourierEncoding(128, max_log2, True, "thesis", seed), backbone="residual",
                    res_width=128, res_hidden=256, res_blocks=4, init="lecun_normal", view_dependent=False,
                    density_activation="softplus")


class DreamFieldsSystem(RetrievalEvalMixin, LightningModule):
    """Dream Fields: a NeRF optimised so that its renders match a caption under CLIP.

    Args:
        prompt: the caption y (raw; no template, §8).
        field: the scene: the Dream Field MLP (default :func:`dream_field`), a
            :class:`~common.fields.VoxelGridField`, a :class:`~dreamfields.baselines.VolSDFField`, a plain
            :class:`~common.fields.MLPField` (Table 4.1 "Simplified NeRF"), or a
            :class:`~dreamfields.baselines.PixelImage` (2D baseline, no rendering).
        renderer: the volume renderer (default :class:`~dreamfields.renderer.DreamFieldsRenderer`).
        guidance: CLIP guidance with its augmentations (default: CLIP ViT-B/16 ``openai``, 8 views, 154/168
            crops, the three backgrounds).
        camera: training camera distribution and render size (default: 168², spec §3).
        retrieval: CLIPs for R-precision (default: ViT-B/32 ``openai``; use a model other than the
            guidance one, §9.2). ``[]`` skips R-precision. Loaded in ``setup``: missing weights fail
            before any work.
        caption_file: R-precision caption pool, one caption per line (default: the shipped 153 OC-COCO
            captions). A prompt not in the pool is appended to it (ref impl).
        normalize_captions: apply the OC-COCO normalisation to the pool and the prompt (§9.1).
        sparsity: Table 4.2 variant (``clipped_additive`` = the method; see :mod:`dreamfields.regularizers`).
        weights: loss weights.
        sigma_noise_std: std s of ε for ``sparsity='perturb_sigma'`` (1.0, A17); set on the field.
        tau_anneal_steps, opacity_start, opacity_end: τ schedule (500; opacity 0.5 → 0.1 before the camera
            scale 1.2, i.e. τ 0.40 → 0.88; §5.2).
        lr_init, lr_final, lr_warmup_steps: exponential warm-up 1e-5 → 1e-4 over 1500 steps (§10.3).
        adam_eps, adam_betas: Adam ε = 1e-5 (§10.3), β = (0.9, 0.999) (A20).
        track_origin, origin_decay: origin EMA (0.999, §10.3).
        ipe_anneal_iters: coarse-to-fine covariance scale (0 = off, the thesis; 1000 = ref impl option).
        n_eikonal: Eikonal points per step for :class:`VolSDFField` (half uniform in the cube, half along
            the training rays).
        eval_elevation, eval_azimuth, eval_radius, eval_focal_mult: held-out view (45°, 30°, 4, ×1.0; A13).
            With several evaluation views, view k is at azimuth ``eval_azimuth + k·360°/n``.
        eval_size: held-out render size (default: the first retrieval CLIP's input size, 224 for CLIP).
        n_final_views, final_size: final renders written at the end of fit (30° elevation orbit).
        long_prompt: a prompt longer than a CLIP's text context is an ``error`` (default) or is
            ``truncate``d with a warning.
        max_nonfinite_steps: consecutive skipped (non-finite) steps before the run stops.
        seed: seed of the camera / crop / background draws (default: derived from ``seed_everything``);
            DDP rank r uses ``seed + r`` so that every rank sees its own views.
    """

    def __init__(
        self,
        prompt: str,
        field: Optional[Union[Field, PixelImage]] = None,
        renderer: Optional[DreamFieldsRenderer] = None,
        guidance: Optional[CLIPGuidance] = None,
        camera: Optional[SphericalCameraSampler] = None,
        retrieval: Optional[List[CLIPModel]] = None,
        caption_file: Optional[str] = None,
        normalize_captions: bool = True,
        sparsity: Sparsity = "clipped_additive",
        weights: Optional[LossWeights] = None,
        sigma_noise_std: float = 1.0,
        tau_anneal_steps: int = 500,
        opacity_start: float = 0.5,
        opacity_end: float = 0.1,
        lr_init: float = 1e-5,
        lr_final: float = 1e-4,
        lr_warmup_steps: int = 1500,
        adam_eps: float = 1e-5,
        adam_betas: Tuple[float, float] = (0.9, 0.999),
        track_origin: bool = True,
        origin_decay: float = 0.999,
        ipe_anneal_iters: int = 0,
        n_eikonal: int = 1024,
        eval_elevation: float = 45.0,
        eval_azimuth: float = 30.0,
        eval_radius: float = 4.0,
        eval_focal_mult: float = 1.0,
        eval_size: Optional[int] = None,
        n_final_views: int = 4,
        final_size: int = 400,
        long_prompt: Literal["error", "truncate"] = "error",
        max_nonfinite_steps: int = 20,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        check_prompt(prompt)  # empty / blank prompt -> ValueError naming the config key
        if sparsity not in SPARSITY_KINDS:
            raise ValueError(f"unknown sparsity {sparsity!r}; choose one of {SPARSITY_KINDS}")
        loss_weights = LossWeights(**weights) if isinstance(weights, dict) else (weights or LossWeights())
        weights = asdict(loss_weights)  # hyper-parameters hold plain values (weights_only checkpoints)
        self.save_hyperparameters(ignore=["field", "renderer", "guidance", "camera", "retrieval"])
        self.automatic_optimization = False  # skip non-finite steps and set the warm-up lr by hand
        self.prompt = prompt
        self.field = field if field is not None else dream_field()
        self.renderer = renderer if renderer is not None else DreamFieldsRenderer()
        if guidance is None:
            guidance = CLIPGuidance(CLIPModel("ViT-B-16", "openai"), Augment(n_views=8, crop_scale=(154 / 168, 154 / 168)))
        self.guidance = guidance
        self.camera = camera if camera is not None else SphericalCameraSampler()
        self._init_retrieval_eval(retrieval)  # R-precision CLIPs (default ViT-B/32 openai) and evaluation state
        self.weights = loss_weights
        self.origin_tracker = OriginTracker(origin_decay, enabled=track_origin and not self.is_pixel_baseline)
        if sparsity == "perturb_sigma":
            if not hasattr(self.field, "density_noise_std"):
                raise ValueError(f"sparsity='perturb_sigma' needs a field with `density_noise_std` (MLPField), "
                                 f"got {type(self.field).__name__}")
            self.field.density_noise_std = sigma_noise_std  # σ = softplus(f(x) + ε), training only
        self._gens: Dict[str, torch.Generator] = {}
        self._nonfinite = 0
        self._last_terms: Dict[str, float] = {}

    # ------------------------------------------------------------------ parts
    @property
    def is_pixel_baseline(self) -> bool:
        return isinstance(self.field, PixelImage)

    @property
    def origin(self) -> Tensor:
        """``[3]`` the tracked scene origin (field coordinates)."""
        return self.origin_tracker.origin

    def setup(self, stage: str) -> None:
        """Load the frozen CLIPs and the caption pool; check the prompt against every text context."""
        for clip in self.guidance.clips:
            self._load_clip(clip, "guidance")
        for clip in self.retrieval:
            self._load_clip(clip, "retrieval (R-precision)")
        for clip in list(self.guidance.clips) + list(self.retrieval):
            self._check_prompt_length(clip)
        self._setup_retrieval(*caption_pool(self.hparams.caption_file, self.hparams.normalize_captions, self.prompt))

    @staticmethod
    def _load_clip(clip: CLIPModel, role: str) -> None:
        try:
            clip.load()
        except PriorWeightsNotFoundError as err:
            hint = ""
            if "shapeworld" in f"{clip.checkpoint} {clip.model_config}":
                hint = ("\nThe shapeworld CLIPs are trained by `lightning fit --config experiments/shapeworld/train_clip.yaml` "
                        "(guidance) and `.../train_clip_heldout.yaml` (held-out); see shapeworld/README.md.")
            raise PriorWeightsNotFoundError(f"Dream Fields {role} CLIP {clip.name!r}: {err}{hint}\n"
                                            "Nothing was trained.") from err

    def _generator(self, kind: Literal["camera", "augment"]) -> torch.Generator:
        device = torch.device("cpu") if kind == "camera" else self.device
        gen = self._gens.get(kind)
        if gen is None or gen.device != device:
            base = self.hparams.seed if self.hparams.seed is not None else torch.initial_seed() % (2**31)
            rank = self.global_rank if self._trainer is not None else 0
            gen = torch.Generator(device=device).manual_seed(int(base) + 1_000_003 * rank + (kind == "augment"))
            self._gens[kind] = gen
        return gen

    def text_embedding(self) -> Tensor:
        """``[1, D]`` unit ``h(y)`` of the guidance CLIP (computed once, cached by the CLIP)."""
        return self.guidance.clips[0].encode_text([self.prompt])

    def export_field(self) -> Optional[Field]:
        """The field meshed at the end of training (None for the pixel baseline)."""
        return None if self.is_pixel_baseline else self.field

    def configure_optimizers(self):
        h = self.hparams
        return torch.optim.Adam(self.field.parameters(), lr=warmup_lr(0, h.lr_init, h.lr_final, h.lr_warmup_steps),
                                betas=tuple(h.adam_betas), eps=h.adam_eps)

    # ------------------------------------------------------------------ rendering
    def render_rays(self, rays_o: Tensor, rays_d: Tensor, focal: Tensor, background=None, return_com: bool = False):
        """Render rays ``[..., 3]`` (world = camera frame around the origin) shifted by ``o`` (§2.2)."""
        radii = pixel_radii(focal, 1, device=rays_o.device).expand(rays_o.shape[:-1])
        return self.renderer(self.field, rays_o + self.origin.to(rays_o), rays_d, background=background,
                             radii=radii, return_com=return_com)

    def render_training_view(self) -> TrainingView:
        """Steps 1–5 of the algorithm box: camera, shifted rays, render (premultiplied)."""
        if self.is_pixel_baseline:
            rgb, alpha = self.field()
            return TrainingView(rgb, alpha, None, 1.2, 4.0)
        cams = self.camera.sample(1, generator=self._generator("camera")).to(self.device)
        rays_o, rays_d = cams.rays()  # [1, H, W, 3]
        out = self.render_rays(rays_o[0], rays_d[0], cams.focal[0], return_com=True)
        rgb = out.rgb.permute(2, 0, 1)[None]  # [1, 3, H, W]
        alpha = out.opacity[None, None]  # [1, 1, H, W]
        return TrainingView(rgb, alpha, out.density_com, float(cams.focal[0]) / self.camera.base_focal,
                            float(cams.radius[0]), rays_o[0].reshape(-1, 3) + self.origin, rays_d[0].reshape(-1, 3))

    @torch.no_grad()
    def render_view(self, c2w: Tensor, height: int, width: int, focal: float, background="white") -> RenderOutput:
        """A full image from camera ``c2w`` (orbiting the tracked origin), composited on ``background``
        (hook of :class:`common.callbacks.TurntableVideo`)."""
        if self.is_pixel_baseline:  # one image, whatever the camera
            rgb, alpha = self.field()
            img = torch.nn.functional.interpolate(rgb + (1 - alpha), size=(height, width), mode="bilinear",
                                                  antialias=True, align_corners=False)[0].permute(1, 2, 0)
            return RenderOutput(img.clamp(0, 1), alpha.new_ones(height, width), alpha.new_zeros(height, width))
        rays_o, rays_d = get_rays(c2w.to(self.device), height, width, focal)
        return self.render_rays(rays_o, rays_d, torch.tensor(float(focal)), background=background)

    @torch.no_grad()
    def render_heldout(self, index: int = 0, n_views: int = 1, size: Optional[int] = None) -> Tensor:
        """``[H, W, 3]`` held-out render on white (512 samples, no jitter)."""
        was_training = self.training
        self.eval()
        c2w, size, focal = self.heldout_camera(index, n_views, size)
        img = self.render_view(c2w, size, size, focal).rgb.clamp(0, 1)
        self.train(was_training)
        return img

    # ------------------------------------------------------------------ training
    def compute_losses(self, view: TrainingView, step: int) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Steps 7–8: CLIP loss over augmentations, the sparsity term, baseline regularisers."""
        w, h = self.weights, self.hparams
        rgb = view.rgb.clamp(0.0, 1.0)
        clip_terms = self.guidance(rgb, self.text_embedding(), step, alpha=view.alpha,
                                   generator=self._generator("augment"))
        tau = transmittance_target(step, view.focal_mult, view.radius, h.tau_anneal_steps, h.opacity_start, h.opacity_end)
        total, terms = sparsity_objective(h.sparsity, clip_terms["loss_clip"], view.transmittance, tau,
                                          w.lambda_transmittance, w.lambda_beta)
        for key, value in clip_terms.items():  # ensemble members, if any
            if key != "loss_clip":
                terms[key] = value
                total = total + value
        if self.is_pixel_baseline:
            terms["loss_tv"] = total_variation(torch.cat([rgb, view.alpha], 1), dims=2, power=2)
            total = total + w.lambda_tv * terms["loss_tv"]
        if isinstance(self.field, VolSDFField) and h.n_eikonal > 0:
            terms["loss_eikonal"] = eikonal_loss(self.field.sdf, self._eikonal_points(view))
            total = total + w.lambda_eikonal * terms["loss_eikonal"]
        terms["tau"] = torch.tensor(tau)
        return total, terms

    def _eikonal_points(self, view: TrainingView) -> Tensor:
        n = self.hparams.n_eikonal
        b = self.renderer.bound
        cube = (torch.rand(n - n // 2, 3, device=self.device) * 2 - 1) * b
        idx = torch.randint(0, view.rays_o.shape[0], (n // 2,), device=self.device)
        o, d = view.rays_o[idx], view.rays_d[idx]
        near, far, _ = self.renderer.ray_intervals(o, d)
        t = near + (far - near) * torch.rand_like(near)
        return torch.cat([cube, o + t[:, None] * d])

    def _all_ranks_finite(self, value: Tensor) -> bool:
        flag = torch.isfinite(value.detach()).all().float().reshape(1)
        if self._trainer is not None and self.trainer.world_size > 1:
            flag = self.all_gather(flag).min()
        return bool(flag.item() > 0)

    def _skip(self, step: int, why: str, terms: Dict[str, Tensor]) -> None:
        self._nonfinite += 1
        self.log("train/skipped_steps", float(self._nonfinite))
        log.warning("step %d skipped: %s (%s)", step, why,
                    ", ".join(f"{k}={float(v.detach().float().mean()):.4g}" for k, v in terms.items()))
        if self._nonfinite >= self.hparams.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{self._nonfinite} consecutive non-finite steps at step {step} ({why}). Lower the learning rate, "
                "check the field's initialisation, or resume from the last checkpoint with --ckpt_path last; "
                "the last checkpoint is intact.")

    def training_step(self, batch: dict, batch_idx: int) -> Optional[Tensor]:
        h, step = self.hparams, self.global_step
        opt = self.optimizers()
        lr = warmup_lr(step, h.lr_init, h.lr_final, h.lr_warmup_steps)  # §10.3
        for group in opt.optimizer.param_groups:
            group["lr"] = lr
        self.renderer.cov_scale = ipe_cov_scale(step, h.ipe_anneal_iters)
        if getattr(self.renderer, "occupancy_grid", False):
            self.renderer.update_occupancy(self.field, step)
        view = self.render_training_view()  # steps 1–6
        total, terms = self.compute_losses(view, step)  # steps 7–8
        if not self._all_ranks_finite(total):  # step 9: skip non-finite updates (ref impl)
            self._skip(step, "non-finite loss", terms)
            return None
        self.manual_backward(total)
        grads = [p.grad for p in self.field.parameters() if p.grad is not None]
        if grads and not self._all_ranks_finite(torch.stack([g.detach().float().abs().sum() for g in grads]).sum()):
            opt.zero_grad(set_to_none=True)
            self._skip(step, "non-finite gradient", terms)
            return None
        opt.step()
        opt.zero_grad(set_to_none=True)
        self._nonfinite = 0
        self._update_origin(view.com)  # step 10
        mean_t = view.transmittance.mean().detach()
        logs = {f"train/{k}": v.detach().float() for k, v in terms.items()}
        logs.update({"train/loss": total.detach(), "train/mean_transmittance": mean_t, "train/lr": torch.tensor(lr),
                     "train/origin_norm": self.origin.norm()})
        if "clip_cos" in self.guidance.last_info:
            logs["train/clip_cos"] = self.guidance.last_info["clip_cos"]
        self.log_dict(logs, prog_bar=False)
        self.log("L_clip", terms["loss_clip"].detach(), prog_bar=True, logger=False)
        self._last_terms = {k: float(v) for k, v in logs.items()}
        return total.detach()

    @torch.no_grad()
    def _update_origin(self, com: Optional[Tensor]) -> None:
        if com is None or not self.origin_tracker.enabled:
            return
        com = com.detach().float().to(self.device)
        if self._trainer is not None and self.trainer.world_size > 1:  # ref impl: pmean over devices
            com = self.trainer.strategy.reduce(com, reduce_op="mean")
        self.origin_tracker.update(com)

    # ------------------------------------------------------------------ evaluation (common.retrieval_eval)
    def _summary_header(self) -> dict:
        """The metric files also record the tracked origin ``o`` (§4.4.6)."""
        return dict(super()._summary_header(), origin=[float(v) for v in self.origin])

    def _final_summary_header(self) -> dict:
        """``metrics.json`` at the end of fit: the step reached and the skipped (non-finite) steps."""
        return dict(self._summary_header(), step=self.global_step, skipped_steps=self._nonfinite)

    @torch.no_grad()
    def _final_views(self) -> Tensor:
        """``[N, S, S, 3]`` renders on white around the scene at 30° elevation (visualisation, §8: 400²)."""
        h, size = self.hparams, self.hparams.final_size
        sampler = SphericalCameraSampler(size, size, base_focal=self.camera.base_focal * size / self.camera.width)
        cams = sampler.ring(h.n_final_views, 30.0, h.eval_radius, 1.0)
        was_training = self.training
        self.eval()
        frames = [self.render_view(cams.c2w[k], size, size, float(cams.focal[k])).rgb.clamp(0, 1).cpu()
                  for k in range(h.n_final_views)]
        self.train(was_training)
        return torch.stack(frames)
