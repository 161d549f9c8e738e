"""PureCLIPNeRF ("Understanding Pure CLIP Guidance for Voxel Grid NeRF Models"; specs/pureclipnerf.md).

One training iteration t = 1 … N (spec §3.11; [C] semantics):

1. at a progressive-scaling checkpoint (5000/7000/9000/11000): upscale the grid, (Vox Exp) raw density −1,
   refresh the occupancy mask, rebuild the optimiser (fresh moments, lr back to base) (§3.2);
   every 1000 iterations (t ≡ 500): ``mask &= maxpool3(α) > 1e-7`` (§3.6);
2. one camera: azimuth U[−180°, 180°), elevation 30°, radius 4, Blender focal ×1.0 (§3.1);
3. render on white with fixed-step box-clipped marching (§3.6) → C, T_last;
4. DiffAug (n_d copies) → BackAug (n_b backgrounds, ``Y = X + B·T_last``) → PerspAug (§3.7);
5. ``L_CLIP = 1 − mean cos`` with a shared (res − 16)² crop resized to the CLIP input; an ensemble member
   adds ``0.5·L_CLIP2`` from t = 5000 (paper eqs. 2, 6; §3.8);
6. ``+ λ_Tr·(−min(τ, mean T_last))`` (eq. 3), ``+ λ_KL·KL_sphere`` for t ≤ 8000 (eqs. 4–5),
   ``+ λ_σ·entropy(T_last)``, (Vox Imp) ``+ λ_TV·TV(α) + λ_TV·TV(rgb)`` for 5000 < t < 13000 (eq. 7);
7. backward; (Vox Exp) inject the Huber TV gradient into the touched voxels for 5000 < t < 13000;
   masked-Adam step with ``lr = base·0.1^(k/20000)``, k = steps since the last reset (§3.10).

Evaluation (§5.1, the Dream Fields protocol): a held-out view at elevation 45°, azimuth 30°, radius 4,
white background, rendered at the retrieval CLIP's input size; R-precision@1 of the prompt among a
caption pool (default: the 153 OC-COCO captions) under each retrieval CLIP. The end of ``fit`` writes
``metrics.json``, the held-out render and a ring of final views; ``lightning test --ckpt_path last``
writes ``test_metrics.json``; video and mesh come from the callbacks of the config
(:class:`common.callbacks.TurntableVideo`, :class:`pureclipnerf.export.GridExport`).
"""

import logging
import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Literal, Optional, Tuple

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from common.cameras import SphericalCameraSampler, get_rays, pose_spherical
from common.checks import check_finite_loss
from common.guidance.base import check_prompt
from common.guidance.clip_guidance import CLIPGuidance
from common.losses import TransmittanceLoss, binary_entropy_loss, total_variation
from common.priors.clip import CLIPModel
from common.retrieval_eval import RetrievalEvalMixin, clip_name
from pureclipnerf.augment import PureCLIPAugment, SharedCropResize
from pureclipnerf.captions import caption_pool
from pureclipnerf.grids import VoxelGridField, VoxExpField, VoxImpField, scene_bbox
from pureclipnerf.losses import in_window, kl_sphere, sphere_mask, tv_huber_grad_, tv_weight
from pureclipnerf.optim import MaskedAdam, decayed_lr, steps_since_reset
from pureclipnerf.render import GridRenderOutput, VoxelGridRenderer

log = logging.getLogger(__name__)

__all__ = ["PureCLIPLosses", "PureCLIPNeRFSystem", "clip_name"]


@dataclass
class PureCLIPLosses:
    """Loss weights and their step windows (paper eq. 7; spec §3.9, §4). Defaults: Vox Imp [C].

    Args:
        lambda_transmittance: λ_Tr (0.5).
        tau_anneal_steps, opacity_start, opacity_end: τ = 1 − opacity, opacity annealed geometrically
            0.5 → 0.1 over 500 iterations (τ 0.5 → 0.9).
        lambda_kl: λ_KL of the sphere prior (0.2 Vox Imp, 0.05 Vox Exp).
        kl_window: KL is on for ``start ≤ t ≤ end`` ((0, 8000)).
        lambda_tv_density, lambda_tv_color: λ_TV (0.2/0.2 Vox Imp on activated grids; 0.1/0.1 Vox Exp,
            gradient injection on raw grids).
        tv_window: TV is on for ``start < t < end`` ((5000, 13000)).
        tv_mode: ``paper`` (injection for Vox Exp, mean-abs loss for Vox Imp) or ``loss`` (mean-abs loss on
            the activated grids for both; an experiment, §7.12).
        tv_dense: inject the Vox Exp TV gradient into every voxel rather than the touched ones.
        lambda_entropy: λ_σ of the background entropy (0.01, every step).
    """

    lambda_transmittance: float = 0.5
    tau_anneal_steps: int = 500
    opacity_start: float = 0.5
    opacity_end: float = 0.1
    lambda_kl: float = 0.2
    kl_window: Tuple[int, int] = (0, 8000)
    lambda_tv_density: float = 0.2
    lambda_tv_color: float = 0.2
    tv_window: Tuple[int, int] = (5000, 13000)
    tv_mode: Literal["paper", "loss"] = "paper"
    tv_dense: bool = False
    lambda_entropy: float = 0.01


def default_guidance() -> CLIPGuidance:
    """CLIP ViT-B/16 (OpenAI) with the released code's crop, ``1 − cos``, unclamped inputs (§3.8)."""
    return CLIPGuidance(CLIPModel("ViT-B-16", "openai"), augment=SharedCropResize(16), loss_form="one_minus_cos",
                        check_range=False)


def default_camera() -> SphericalCameraSampler:
    """224² views, azimuth U[−180°, 180°), elevation 30°, radius 4, Blender focal ×1.0 (§3.1, §7.7)."""
    return SphericalCameraSampler(224, 224, azimuth_range=(-180.0, 180.0), elevation_range=30.0, radius_range=4.0,
                                  focal_mult_range=1.0)


class PureCLIPNeRFSystem(RetrievalEvalMixin, LightningModule):
    """A voxel-grid NeRF (Vox Exp or Vox Imp) optimised with pure CLIP guidance.

    Args:
        prompt: the text prompt (raw, no template).
        field: :class:`~pureclipnerf.grids.VoxImpField` (default, the recommended model) or
            :class:`~pureclipnerf.grids.VoxExpField`; its learning rates live on the field. Its
            ``num_scales`` is set from ``pg_scale``.
        renderer: fixed-step grid renderer (default: stepsize 0.5, near/far 4 ∓ √3).
        augment: the DiffAug/BackAug/PerspAug pipeline (default: Vox Imp's 4 × 8, no PerspAug).
        guidance: CLIP guidance (default: ViT-B/16 OpenAI, shared (res − 16)² crop, ``1 − cos``). For an
            ensemble give several CLIPs with ``weights: [1.0, 0.5]`` and ``start_steps: [0, 5000]``.
            Use ``check_range: false`` (DiffAug does not clamp).
        camera: training cameras and render size (default 224², §3.1).
        losses: loss weights and windows (default: Vox Imp).
        pg_scale: progressive-scaling checkpoints (iterations; [] disables scaling).
        occupancy_every, occupancy_offset: occupancy-mask refresh when ``t % every == offset`` (1000, 500).
        n_pose_pool: poses of the pool that defines the scene box and the near-camera mask-out (1000).
        adam_betas, adam_eps: masked Adam (β = (0.9, 0.99), ε = 1e-8).
        lr_decay, lr_decay_steps: lr × ``lr_decay`` per ``lr_decay_steps`` (0.1 per 20k).
        reset_on_scale: rebuild the optimiser at every scaling checkpoint ([C]).
        retrieval: CLIPs for R-precision (default: ViT-B/32 OpenAI; use models other than the guidance
            one); ``[]`` skips R-precision.
        captions: R-precision pool: ``oc_coco`` (153 captions), ``shapeworld`` or a caption file.
        normalize_captions: OC-COCO normalisation of the pool and the prompt.
        eval_elevation, eval_azimuth, eval_radius, eval_focal_mult: held-out view (45°, 30°, 4, ×1.0).
        eval_size: held-out render size (default: the first retrieval CLIP's input size).
        n_final_views, final_size: ring of renders at 30° elevation written at the end of fit.
        long_prompt: a prompt longer than a CLIP's text context is an ``error`` or ``truncate``d.
        seed: seed of camera and augmentation draws (default: from ``seed_everything``).
    """

    def __init__(
        self,
        prompt: str,
        field: Optional[VoxelGridField] = None,
        renderer: Optional[VoxelGridRenderer] = None,
        augment: Optional[PureCLIPAugment] = None,
        guidance: Optional[CLIPGuidance] = None,
        camera: Optional[SphericalCameraSampler] = None,
        losses: Optional[PureCLIPLosses] = None,
        pg_scale: Optional[List[int]] = None,
        occupancy_every: int = 1000,
        occupancy_offset: int = 500,
        n_pose_pool: int = 1000,
        adam_betas: Tuple[float, float] = (0.9, 0.99),
        adam_eps: float = 1e-8,
        lr_decay: float = 0.1,
        lr_decay_steps: int = 20000,
        reset_on_scale: bool = True,
        retrieval: Optional[List[CLIPModel]] = None,
        captions: str = "oc_coco",
        normalize_captions: bool = True,
        eval_elevation: float = 45.0,
        eval_azimuth: float = 30.0,
        eval_radius: float = 4.0,
        eval_focal_mult: float = 1.0,
        eval_size: Optional[int] = None,
        n_final_views: int = 4,
        final_size: int = 512,
        long_prompt: Literal["error", "truncate"] = "error",
        seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        check_prompt(prompt)  # empty / blank prompt -> ValueError naming the config key
        self.save_hyperparameters(ignore=["field", "renderer", "augment", "guidance", "camera", "retrieval", "losses"])
        self.automatic_optimization = False  # optimiser swaps at scaling, TV gradient injection
        self.prompt = prompt
        self.field = field if field is not None else VoxImpField()
        self.renderer = renderer if renderer is not None else VoxelGridRenderer()
        self.augment = augment if augment is not None else PureCLIPAugment(n_diff=4, perspaug=False)
        self.guidance = guidance if guidance is not None else default_guidance()
        self.camera = camera if camera is not None else default_camera()
        self.losses = losses if losses is not None else PureCLIPLosses()
        self.hparams["losses"] = asdict(self.losses)  # plain values: checkpoints load with weights_only=True
        self.pg_scale = sorted(int(s) for s in (pg_scale if pg_scale is not None else [5000, 7000, 9000, 11000]))
        if len(set(self.pg_scale)) != len(self.pg_scale) or any(s < 2 for s in self.pg_scale):
            raise ValueError(f"pg_scale must hold distinct iterations >= 2, got {pg_scale}")
        self._init_retrieval_eval(retrieval)  # R-precision CLIPs (default ViT-B/32 openai) and evaluation state
        self.transmittance = TransmittanceLoss(self.losses.tau_anneal_steps, self.losses.opacity_start,
                                               self.losses.opacity_end, scale=1.0)
        self._build_grid()
        self._sphere: Dict[Tuple[int, int, int], Tensor] = {}
        self._gens: Dict[str, torch.Generator] = {}
        self._last_terms: Dict[str, float] = {}

    # ------------------------------------------------------------------ set-up
    def _build_grid(self) -> None:
        """Size the grid: scene box from the camera frustums (§3.2) unless the field has a ``bbox``."""
        f, near, far = self.field, self.renderer.near, self.renderer.far
        f.num_scales = len(self.pg_scale)
        if f.bbox is None:
            lo, hi, origins = scene_bbox(self.camera, near, far, self.hparams.n_pose_pool)
        else:
            lo, hi = torch.tensor(f.bbox[0], dtype=torch.float32), torch.tensor(f.bbox[1], dtype=torch.float32)
            cams = self.camera.sample(self.hparams.n_pose_pool, generator=torch.Generator().manual_seed(0))
            origins = cams.c2w[:, :3, 3]
        f.build(lo, hi, origins, near)
        log.info("PureCLIPNeRF grid: box %s – %s, %s vertices at start", lo.tolist(), hi.tolist(), f.world_size)

    def setup(self, stage: str) -> None:
        """Load the frozen CLIPs and the caption pool; check the prompt against every text context."""
        if self._trainer is not None and self.trainer.world_size > 1:
            raise RuntimeError("PureCLIPNeRF optimises one scene with one view per iteration and resizes its grid: "
                               "run it on one device per prompt (sweeps: one process or job per prompt), not with DDP.")
        self.guidance.load()
        for clip in self.retrieval:
            clip.load()
        for clip in list(self.guidance.clips) + list(self.retrieval):
            self._check_prompt_length(clip)
        self._setup_retrieval(*caption_pool(self.hparams.captions, self.hparams.normalize_captions, self.prompt))

    def _generator(self, kind: Literal["camera", "augment"]) -> torch.Generator:
        device = torch.device("cpu") if kind == "camera" else self.device
        gen = self._gens.get(kind)
        if gen is None or gen.device != device:
            base = self.hparams.seed if self.hparams.seed is not None else torch.initial_seed() % (2**31)
            gen = torch.Generator(device=device).manual_seed(int(base) + (kind == "augment"))
            self._gens[kind] = gen
        return gen

    def export_field(self) -> VoxelGridField:
        return self.field

    # ------------------------------------------------------------------ optimiser and schedules
    def _make_optimizer(self) -> MaskedAdam:
        groups = self.field.param_groups()
        for g in groups:
            g["base_lr"] = g["lr"]
        return MaskedAdam(groups, betas=self.hparams.adam_betas, eps=self.hparams.adam_eps)

    def configure_optimizers(self):
        return self._make_optimizer()

    def lr_factor(self, t: int) -> float:
        """``lr/base`` at iteration t: ``decay^(k/decay_steps)``, k = steps since the last (re)build (§3.10)."""
        k = steps_since_reset(t, self.pg_scale, self.hparams.reset_on_scale)
        return decayed_lr(1.0, k, self.hparams.lr_decay, self.hparams.lr_decay_steps)

    @torch.no_grad()
    def scale_up(self, t: int) -> None:
        """Progressive scaling at checkpoint ``t`` (§3.2): resample, refresh the mask, rebuild the optimiser."""
        stage = self.pg_scale.index(t) + 1
        self.field.scale_to(self.field.voxels_at_stage(stage))
        # Vox Exp has new parameter tensors, so its optimiser is always rebuilt; Vox Imp keeps its MLPs
        # and keeps its optimiser when reset_on_scale is off.
        if self._trainer is not None and (self.hparams.reset_on_scale or isinstance(self.field, VoxExpField)):
            self.trainer.strategy.optimizers = [self._make_optimizer()]
        log.info("step %d: grid scaled to %s", t, self.field.world_size)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Done here, before Lightning wraps the optimiser for this step (swapping inside training_step
        # would lose the step-counter hooks of the manual-optimisation loop).
        t = self.global_step + 1
        if t in self.pg_scale:
            self.scale_up(t)
        elif self.hparams.occupancy_every > 0 and t % self.hparams.occupancy_every == self.hparams.occupancy_offset:
            self.field.update_occupancy()
        factor = self.lr_factor(t)
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    # ------------------------------------------------------------------ rendering
    def render_rays(self, rays_o: Tensor, rays_d: Tensor, background=1.0, grids=None) -> GridRenderOutput:
        return self.renderer(self.field, rays_o, rays_d, background=background, grids=grids)

    @torch.no_grad()
    def render_view(self, c2w: Tensor, height: int, width: int, focal: float, background=1.0) -> GridRenderOutput:
        """A full image ``rgb [H, W, 3]`` on ``background`` (hook of :class:`common.callbacks.TurntableVideo`)."""
        rays_o, rays_d = get_rays(c2w.to(self.device), height, width, focal)
        return self.render_rays(rays_o, rays_d, background=background)

    @torch.no_grad()
    def render_heldout(self, index: int = 0, n_views: int = 1, size: Optional[int] = None) -> Tensor:
        """``[H, W, 3]`` held-out render on white."""
        c2w, size, focal = self.heldout_camera(index, n_views, size)
        return self.render_view(c2w, size, size, focal).rgb.clamp(0, 1)

    # ------------------------------------------------------------------ training
    def sphere_prior(self) -> Tensor:
        """``[X, Y, Z]`` bool sphere mask of the current grid (eq. 4), cached per size."""
        key = self.field.world_size
        if key not in self._sphere:
            self._sphere = {key: sphere_mask(self.field.coords())}
        return self._sphere[key]

    def compute_losses(self, images: Tensor, out: GridRenderOutput, grids: Tuple[Tensor, Tensor],
                       t: int) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Named loss terms (eq. 7) and their weighted sum; windows decide which terms are on."""
        w = self.losses
        terms = dict(self.guidance(images, self.prompt, step=t, generator=self._generator("augment")))  # eqs. 2, 6
        total = sum(terms.values())  # L_CLIP (+ 0.5·L_CLIP2, weighted inside the guidance)
        t_last = out.transmittance
        terms["loss_transmittance"] = self.transmittance(t_last, t)  # eq. 3
        terms["loss_entropy"] = binary_entropy_loss(t_last)  # L_σ on the background transmittance
        total = total + w.lambda_transmittance * terms["loss_transmittance"] + w.lambda_entropy * terms["loss_entropy"]
        if w.lambda_kl > 0 and in_window(t, w.kl_window, closed=True):  # eqs. 4–5
            terms["loss_kl"] = kl_sphere(self.field.alpha_grid(grids[0]), self.sphere_prior())
            total = total + w.lambda_kl * terms["loss_kl"]
        if self._tv_as_loss() and in_window(t, w.tv_window, closed=False):
            terms["loss_tv_density"] = total_variation(self.field.alpha_grid(grids[0], delta=1.0)[None], dims=3)
            terms["loss_tv_color"] = total_variation(torch.sigmoid(grids[1]), dims=3)
            total = total + w.lambda_tv_density * terms["loss_tv_density"] + w.lambda_tv_color * terms["loss_tv_color"]
        return total, terms

    def _tv_as_loss(self) -> bool:
        return self.losses.tv_mode == "loss" or not isinstance(self.field, VoxExpField)

    @torch.no_grad()
    def inject_tv(self, t: int, n_rays: int) -> None:
        """Vox Exp: DVGO's Huber TV gradient on the touched voxels after ``backward`` (§3.9.3)."""
        w = self.losses
        if self._tv_as_loss() or not in_window(t, w.tv_window, closed=False):
            return
        f = self.field
        for param, lam in ((f.grid_density, w.lambda_tv_density), (f.grid_color, w.lambda_tv_color)):
            if lam > 0 and param.grad is not None:
                tv_huber_grad_(param, tv_weight(lam, f.world_size, n_rays), dense=w.tv_dense)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        t = self.global_step + 1  # the paper's 1-based iteration
        cams = self.camera.sample(1, generator=self._generator("camera")).to(self.device)  # step 2
        rays_o, rays_d = cams.rays()  # [1, H, W, 3]
        grids = self.field.raw_grids()  # Vox Imp: one MLP pass per iteration, shared by render, KL and TV
        out = self.render_rays(rays_o[0], rays_d[0], background=1.0, grids=grids)  # step 3, white
        rgb = out.rgb.permute(2, 0, 1)[None]  # [1, 3, H, W]
        images = self.augment(rgb, out.transmittance[None, None], generator=self._generator("augment"))  # step 4
        total, terms = self.compute_losses(images, out, grids, t)  # steps 5–6
        check_finite_loss(total, t, terms)
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(total)  # step 7
        self.inject_tv(t, rays_o[0].shape[0] * rays_o[0].shape[1])
        grads = self._grad_magnitudes(opt.optimizer)  # Fig. 3: mean |∇| of the grids (or MLPs)
        opt.step()
        logs = {f"train/{k}": v.detach().float() for k, v in terms.items()}
        logs.update(grads)
        logs.update({"train/loss": total.detach(), "train/mean_transmittance": out.transmittance.mean().detach(),
                     "train/tau": torch.tensor(self.transmittance.target(t)),
                     "train/lr_factor": torch.tensor(self.lr_factor(t)),
                     "train/n_voxels": torch.tensor(float(math.prod(self.field.world_size))),
                     "train/occupancy": self.field.occupancy.float().mean()})
        if "clip_cos" in self.guidance.last_info:
            logs["train/clip_cos"] = self.guidance.last_info["clip_cos"]
        self.log_dict(logs, prog_bar=False)
        self.log("train/loss_clip_pb", terms["loss_clip"].detach(), prog_bar=True, logger=False)
        self._last_terms = {k: float(v) for k, v in logs.items()}
        return total.detach()

    @staticmethod
    @torch.no_grad()
    def _grad_magnitudes(optimizer) -> Dict[str, Tensor]:
        """``train/grad_<group>``: mean |∇| over each optimiser group (the quantity plotted in Fig. 3)."""
        out = {}
        for group in optimizer.param_groups:
            grads = [p.grad.abs().mean() for p in group["params"] if p.grad is not None]
            if grads:
                out[f"train/grad_{group.get('name', 'params')}"] = torch.stack(grads).mean().float()
        return out

    # ------------------------------------------------------------------ checkpoints
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resize the grid to the budget the checkpoint was saved at (before its tensors are loaded)."""
        super().on_load_checkpoint(checkpoint)  # records the checkpoint's step (common.retrieval_eval)
        state = checkpoint.get("state_dict", {})
        if "field.num_voxels" not in state:
            return
        self.field.xyz_min.copy_(state["field.xyz_min"])
        self.field.xyz_max.copy_(state["field.xyz_max"])
        n = int(state["field.num_voxels"])
        if n != int(self.field.num_voxels) or tuple(state["field.occupancy"].shape) != self.field.world_size:
            self.field.resize_for_checkpoint(n)

    # ------------------------------------------------------------------ evaluation (common.retrieval_eval)
    def _summary_header(self) -> dict:
        """The metric files record the model and the grid size; the step is the checkpoint's under ``test``."""
        return {"prompt": self.prompt, "model": type(self.field).__name__, "caption_index": self._true_idx,
                "pool_size": len(self._pool), "step": max(self.global_step, self._ckpt_step or 0),
                "world_size": list(self.field.world_size)}

    @torch.no_grad()
    def _final_views(self) -> Tensor:
        """``[N, S, S, 3]`` renders on white at 30° elevation (§3.1 video/figure path)."""
        h, size = self.hparams, self.hparams.final_size
        base = self.camera.base_focal * size / self.camera.width
        az = torch.arange(h.n_final_views) * 360.0 / h.n_final_views
        frames = [self.render_view(pose_spherical(float(a), 30.0, h.eval_radius), size, size, base).rgb.clamp(0, 1).cpu()
                  for a in az]
        return torch.stack(frames)
