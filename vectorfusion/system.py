"""VectorFusion (Jain, Xie & Abbeel, CVPR 2023; thesis ch. 6) as a LightningModule.

The whole pipeline is one run of optimisation steps (``trainer.max_steps`` of them), in phases:

A. (``init: raster``) before the first step: K raster samples of ``caption. <style suffix>`` from the
   diffusion model, the best under the reranking CLIP is the target (:mod:`vectorfusion.sampling`);
B. (``init: raster``) LIVE vectorisation of the target, ``len(schedule) x iters_per_stage`` steps
   for icons (:mod:`vectorfusion.live`; thesis eq. (6.5), (6.6)), or the L1 colour fit of the pixel
   grid (``l1_steps``); no SDS, no reinit;
C. latent SDS for the remaining ``N = max_steps - live_steps`` steps (thesis eq. (6.7), with its typo
   fixed: ``z_t = α_t z + σ_t ε``): render -> (from scratch: perspective + crop) -> VAE encoder (fp32)
   -> ``Σ stopgrad(w(t)(ε̂ − ε))·z`` -> Adam (β = (0.9, 0.9), ε = 1e-6, warm-up + cosine lrs),
   clamp colours, and for icons the Xing loss and path reinitialisation every 50 steps.

``init: scratch`` skips A and B ("VectorFusion (scratch)"); ``max_steps = live_steps`` stops after B
(the "SD init + LIVE" baseline). One Adam over the groups ``points / colors / background / pixels``
is reset at every LIVE stage and at the switch to SDS (a fresh optimiser per stage, as LIVE does);
its learning rates are set every step from the pure schedules of :mod:`vectorfusion.schedules`.
Manual optimisation is needed for the per-group schedules, clamping, the reinitialisation surgery
on Adam's moments and the non-finite guard. Frozen priors never enter checkpoints; the checkpoint
holds the SVG parameters, the draw order, the target image and LIVE's weight maps.
"""

import logging
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from common.callbacks import save_and_log_image
from common.export import image_grid
from common.guidance.base import check_prompt
from common.guidance.sds import SDSGuidance, make_context
from vectorfusion.augment import PerspectiveCropAugment
from vectorfusion.guard import NonFiniteGuard, NonFiniteParametersError
from vectorfusion.live import LIVESettings, place_paths, silhouette_weight
from vectorfusion.losses import XING_WEIGHT, l1_pixelate_loss, udf_loss, xing_loss
from vectorfusion.pixelart import SATURATION_WEIGHT, saturation_penalty
from vectorfusion.primitives import IconPaths, PixelGrid, VectorPrimitives
from vectorfusion.rasterizer import make_rasterizer
from vectorfusion.reinit import reinit_paths, reset_adam_rows, select_for_reinit
from vectorfusion.sampling import RasterSampler
from vectorfusion.schedules import LIVESchedule, SDSSchedule
from vectorfusion.styles import STYLE_SUFFIX

log = logging.getLogger(__name__)

__all__ = ["VectorFusionSystem", "VectorFusionLossWeights", "ReinitSettings", "NonFiniteParametersError",
           "join_prompt"]


@dataclass
class VectorFusionLossWeights:
    """λ of each SDS-phase term ``loss_<name>`` (logged as ``train/loss_<name>``).

    Args:
        sds: latent SDS (1).
        xing: Xing loss on all icon paths (1e-5 effective [LIVE], AMB-19).
        saturation: pixel-art saturation penalty (0.05 [S]; 0 = off, the "Sat 0" ablation).
    """

    sds: float = 1.0
    xing: float = XING_WEIGHT
    saturation: float = SATURATION_WEIGHT


@dataclass
class ReinitSettings:
    """Path reinitialisation during SDS, icons only (spec §2.9, Table 11.1).

    After SDS step i (1-indexed), reinit iff ``i % every == 0 and i < stop`` [NS]; a path is replaced
    iff ``alpha < alpha_threshold`` or ``area < area_threshold`` (strict).

    Args:
        enabled: reinitialise at all.
        every: period (50 [S]).
        stop: first SDS step without reinit (800 of 1000 after LIVE; 1500 of 2000 from scratch [S]).
        alpha_threshold: fill-opacity threshold (0.05 [S]).
        area_threshold: area threshold in canvas px² (64 after LIVE; 0 = off from scratch [S]).
    """

    enabled: bool = True
    every: int = 50
    stop: int = 800
    alpha_threshold: float = 0.05
    area_threshold: float = 64.0


def join_prompt(caption: str, suffix: str) -> str:
    """``caption.rstrip('.') + '. ' + suffix`` (spec §1.4 [NS]); the caption alone if no suffix.

    Example:
        >>> join_prompt("A panda rowing a boat in a pond.", "pixel art. trending on artstation")
        'A panda rowing a boat in a pond. pixel art. trending on artstation'
    """
    caption = caption.strip()
    return f"{caption.rstrip('.')}. {suffix}" if suffix else caption


def _as(cls, value):
    return cls(**value) if isinstance(value, dict) else value


class VectorFusionSystem(LightningModule):
    """Text -> SVG with latent SDS through a differentiable rasterizer (see the module docstring).

    Args:
        guidance: latent SDS (:class:`~common.guidance.SDSGuidance`, ``input_space: rgb``, ``resolution``
            = the model's image size, s = 100, t ~ U{50..950}, w = 1 − ᾱ_t).
        primitives: the SVG being optimised (:class:`IconPaths`, :class:`PixelGrid` or
            :class:`SketchStrokes`); it fixes the style.
        prompt: the caption.
        prompt_suffix: style suffix appended for the diffusion model; None = the style's (spec §1.4),
            "" = none (e.g. the shapeworld prior, trained on plain captions).
        init: ``"raster"`` (best-of-K sample, then LIVE / L1: "SD + LIVE + SDS") or ``"scratch"``.
        sampler: stage A's sampler and reranking CLIP (required for ``init: raster``).
        live: LIVE settings (icons; ``render_size`` is also the L1 fit's render size).
        l1_steps: steps of the pixel-art L1 fit ([NS] 500).
        augment: perspective + crop before the encoder; None = only from scratch [S].
        augmentation: the augmentation (distortion 0.5, p 0.7, crop 512 [S]).
        render_size: SDS render side without augmentation (None: the guidance resolution, 512).
        augment_render_size: SDS render side before augmentation (None: the canvas, 600 [S]).
        reinit: path reinitialisation (icons).
        loss_weights: λ of the SDS-phase terms.
        schedule: SDS-phase optimiser schedule.
        rasterizer: ``"soft"`` (pure PyTorch), ``"diffvg"`` or ``"auto"``.
        seed: seed of stage A (all ranks) and of the per-step randomness (step ``i`` of rank ``r``).
        max_bad_steps: consecutive non-finite steps tolerated (each skipped or rolled back) before stopping.
    """

    def __init__(
        self,
        guidance: SDSGuidance,
        primitives: VectorPrimitives,
        prompt: str = "A panda rowing a boat in a pond.",
        prompt_suffix: str | None = None,
        init: Literal["raster", "scratch"] = "raster",
        sampler: RasterSampler | None = None,
        live: LIVESettings = LIVESettings(),
        l1_steps: int = 500,
        augment: bool | None = None,
        augmentation: PerspectiveCropAugment | None = None,
        render_size: int | None = None,
        augment_render_size: int | None = None,
        reinit: ReinitSettings = ReinitSettings(),
        loss_weights: VectorFusionLossWeights = VectorFusionLossWeights(),
        schedule: SDSSchedule = SDSSchedule(),
        rasterizer: Literal["soft", "diffvg", "auto"] = "soft",
        seed: int = 0,
        max_bad_steps: int = 5,
    ) -> None:
        super().__init__()
        live = _as(LIVESettings, live)
        if isinstance(live.optim, dict):
            live.optim = LIVESchedule(**live.optim)
        reinit, loss_weights = _as(ReinitSettings, reinit), _as(VectorFusionLossWeights, loss_weights)
        schedule = _as(SDSSchedule, schedule)
        self.save_hyperparameters(ignore=["guidance", "primitives", "sampler", "augmentation", "live", "reinit",
                                          "loss_weights", "schedule"])
        self.hparams.update(live=asdict(live), reinit=asdict(reinit), loss_weights=asdict(loss_weights),
                            schedule=asdict(schedule))
        if not isinstance(guidance, SDSGuidance) or guidance.input_space != "rgb":
            raise ValueError("VectorFusion needs an SDSGuidance with input_space: rgb (the render is encoded by "
                             "the VAE inside the guidance, spec §2.6)")
        if init == "raster" and sampler is None:
            raise ValueError("init: raster needs a sampler (stage A: raster samples + CLIP rejection); "
                             "set model.init_args.sampler or use init: scratch")
        if init == "raster" and not isinstance(primitives, (IconPaths, PixelGrid)):
            raise ValueError(f"init: raster is defined for iconography (LIVE) and pixel art (L1 fit); "
                             f"{type(primitives).__name__} ({primitives.style}) always starts from scratch (spec §2.3)")
        self.caption = check_prompt(prompt)[0].strip()
        suffix = STYLE_SUFFIX[primitives.style] if prompt_suffix is None else prompt_suffix
        self.prompt_full = join_prompt(self.caption, suffix)
        self.guidance, self.primitives, self.sampler = guidance, primitives, sampler
        self.init, self.live, self.l1_steps = init, live, l1_steps
        self.augment = (init == "scratch") if augment is None else augment
        self.augmentation = augmentation if augmentation is not None else PerspectiveCropAugment()
        self.render_size, self.augment_render_size = render_size, augment_render_size
        self.reinit, self.loss_weights, self.schedule = reinit, loss_weights, schedule
        self.rasterizer = make_rasterizer(rasterizer)
        self.seed, self.max_bad_steps = seed, max_bad_steps
        self.automatic_optimization = False
        self.strict_loading = False
        self.context = None
        self.rerank_scores: Tensor | None = None
        self.guard = NonFiniteGuard(primitives, max_bad_steps)
        self.is_icon = isinstance(primitives, IconPaths)
        self.is_pixel = isinstance(primitives, PixelGrid)
        size = self.live_size
        if init == "raster":  # persistent, so a resumed run keeps its target and LIVE weight maps
            self.register_buffer("target", torch.zeros(1, 3, size, size))
            self.register_buffer("target_ready", torch.zeros((), dtype=torch.bool))
            if self.is_icon:
                self.register_buffer("udf_keep", torch.zeros(size, size))
                self.register_buffer("udf_last", torch.zeros(size, size))

    # ------------------------------------------------------------------ plan
    @property
    def live_size(self) -> int:
        """Side of the LIVE / L1 render and of the target (default: the canvas)."""
        return int(self.live.render_size or round(self.primitives.canvas))

    @property
    def live_steps(self) -> int:
        """Steps of phase B (0 from scratch)."""
        if self.init == "scratch":
            return 0
        return self.live.total_steps if self.is_icon else self.l1_steps

    @property
    def sds_steps(self) -> int:
        """N, the SDS steps: ``trainer.max_steps − live_steps``."""
        return max(int(self.trainer.max_steps) - self.live_steps, 0)

    def phase(self, step: int) -> tuple[str, int]:
        """``("live", j)`` or ``("sds", j)`` for global step ``step`` (0-based j within the phase)."""
        return ("live", step) if step < self.live_steps else ("sds", step - self.live_steps)

    def _generator(self, step: int, per_rank: bool = True) -> torch.Generator:
        rank = self.global_rank if per_rank else 0
        state = np.random.SeedSequence([self.seed, rank, step]).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str | None = None) -> None:
        """Load the frozen priors (never in ``__init__``) and encode the prompt once."""
        self.guidance.load()
        if self.sampler is not None and self.init == "raster":
            self.sampler.load()
        diffusion = self.guidance.diffusion
        if self.guidance.resolution is None:
            raise ValueError("set the guidance's resolution (512 for SD v1.x; the prior's image size otherwise)")
        self.context = make_context(diffusion, self.prompt_full, 1, self.guidance.negative_prompt)

    def configure_optimizers(self):
        groups = [{"params": ps, "name": name, "lr": 0.0} for name, ps in self.primitives.param_groups().items()]
        return torch.optim.Adam(groups, betas=self.schedule.betas, eps=self.schedule.eps)

    def on_fit_start(self) -> None:
        if self.trainer.max_steps is None or self.trainer.max_steps < 0:
            raise ValueError("VectorFusion runs a fixed number of steps: set trainer.max_steps "
                             f"(= {self.live_steps} LIVE/L1 steps + the SDS steps)")
        if self.trainer.max_steps < self.live_steps:
            raise ValueError(f"trainer.max_steps ({self.trainer.max_steps}) is shorter than the LIVE/L1 stage "
                             f"({self.live_steps} steps): set max_steps = {self.live_steps} + the SDS steps")
        if self.init == "raster" and not bool(self.target_ready):
            self.sample_target()
        self.guard.snapshot()

    @torch.no_grad()
    def sample_target(self) -> None:
        """Stage A: K samples of the full prompt, keep the best under CLIP, resize to the LIVE render."""
        samples, best, scores = self.sampler(self.guidance.diffusion, self.caption, self.prompt_full,
                                             self.guidance.negative_prompt, torch.Generator().manual_seed(self.seed))
        target = F.interpolate(samples[best:best + 1].to(self.device), size=(self.live_size,) * 2,
                               mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        self.target.copy_(target)
        self.target_ready.fill_(True)
        self.rerank_scores = scores
        log.info("stage A: %d samples, CLIP scores %s, kept #%d", len(samples), scores.tolist(), best)
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            save_and_log_image(self.trainer, "media/raster_samples", image_grid(samples.permute(0, 2, 3, 1).cpu(), 4),
                               "raster_samples.png")
            save_and_log_image(self.trainer, "media/raster_best", samples[best].permute(1, 2, 0).cpu(),
                               "raster_best.png")

    # ------------------------------------------------------------------ one step
    def training_step(self, batch, batch_idx: int) -> None:
        step = self.global_step
        opt = self.optimizers()
        self.guard.restore_if_nonfinite(step, opt.optimizer)
        phase, j = self.phase(step)
        terms, weights = self.live_terms(j, opt.optimizer) if phase == "live" else self.sds_terms(j, opt.optimizer)
        loss = sum(weights[k] * v for k, v in terms.items())
        if not self._update(loss, opt, step):
            return
        replaced = self.maybe_reinit(j + 1, opt.optimizer) if phase == "sds" else 0
        logs = {f"train/{k}": v.detach() for k, v in terms.items()}
        logs.update({"train/loss": loss.detach(), "train/lr_points": opt.optimizer.param_groups[0]["lr"],
                     "train/phase_sds": float(phase == "sds"), "train/reinit_paths": float(replaced)})
        logs.update({f"train/{k}": v for k, v in self.guidance.last_info.items()} if phase == "sds" else {})
        self.log_dict(logs, prog_bar=False, on_step=True, on_epoch=False)

    def _set_optim(self, opt: torch.optim.Optimizer, lrs: dict[str, float], betas, eps: float) -> None:
        for g in opt.param_groups:
            g["lr"], g["betas"], g["eps"] = lrs[g["name"]], tuple(betas), eps

    def live_terms(self, j: int, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, float]]:
        """Phase B: LIVE (icons: UDF + Xing on the stage's paths) or the pixel-art L1 fit."""
        optim = self.live.optim
        if self.is_pixel:
            if j == 0:
                opt.state.clear()
            self._set_optim(opt, optim.lrs(j), optim.betas, optim.eps)
            image = self.primitives.render(self.rasterizer, self.live_size)
            return {"loss_l1": l1_pixelate_loss(image, self.target)}, {"loss_l1": 1.0}
        stage, k = divmod(j, self.live.iters_per_stage)
        start, end = self.live.stage_rows(stage)
        if k == 0:
            self.start_live_stage(stage, opt)
        self._set_optim(opt, optim.lrs(k), optim.betas, optim.eps)
        points = self.primitives.points
        weight = silhouette_weight(points[start:end].detach(), self.primitives.canvas, self.live_size,
                                   self.udf_keep if stage > 0 else None, self.live)
        self.udf_last.copy_(weight)
        image = self.primitives.render(self.rasterizer, self.live_size, n_active=end)
        terms = {"loss_udf": udf_loss(image, self.target, weight), "loss_xing": xing_loss(points[start:end])}
        return terms, {"loss_udf": 1.0, "loss_xing": self.live.xing_weight}

    @torch.no_grad()
    def start_live_stage(self, stage: int, opt: torch.optim.Optimizer) -> None:
        """Place the stage's new paths at the largest error regions, freeze the previous UDF map, reset Adam."""
        start, end = self.live.stage_rows(stage)
        image = self.primitives.render(self.rasterizer, self.live_size, n_active=start)
        pts, rgba = place_paths(image, self.target, end - start, self.primitives.canvas, self.live,
                                self.primitives.num_segments, self._generator(self.global_step, per_rank=False))
        self.primitives.points[start:end] = pts.to(self.primitives.points)
        self.primitives.rgba[start:end] = rgba.to(self.primitives.rgba)
        self.udf_keep.copy_(self.udf_last if stage > 0 else torch.zeros_like(self.udf_keep))
        opt.state.clear()  # LIVE builds a new Adam per stage

    def sds_terms(self, j: int, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, float]]:
        """Phase C: render -> (augment) -> latent SDS, plus Xing (icons) or saturation (pixel art)."""
        if j == 0 and self.live_steps > 0:
            opt.state.clear()  # a fresh optimiser for SDS
        self._set_optim(opt, self.schedule.lrs(j, self.sds_steps), self.schedule.betas, self.schedule.eps)
        g = self._generator(self.global_step)
        size = (self.augment_render_size or round(self.primitives.canvas)) if self.augment else \
            (self.render_size or self.guidance.resolution)
        x = self.primitives.render(self.rasterizer, size)  # [1, 3, size, size]
        terms, weights = {}, {"loss_sds": self.loss_weights.sds}
        if self.is_pixel and self.loss_weights.saturation > 0:
            terms["loss_saturation"] = saturation_penalty(x)
            weights["loss_saturation"] = self.loss_weights.saturation
        if self.augment:
            x = self.augmentation(x, generator=g)
        terms.update(self.guidance(x, self.context, step=j, generator=g))
        if self.is_icon and self.loss_weights.xing > 0:
            terms["loss_xing"] = xing_loss(self.primitives.points)
            weights["loss_xing"] = self.loss_weights.xing
        return terms, weights

    @torch.no_grad()
    def maybe_reinit(self, done: int, opt: torch.optim.Optimizer) -> int:
        """After SDS step ``done`` (1-indexed): replace faint/small icon paths on schedule (spec §2.9)."""
        r = self.reinit
        if not (self.is_icon and r.enabled and done % r.every == 0 and done < r.stop):
            return 0
        prim = self.primitives
        mask = select_for_reinit(prim.points, prim.rgba, r.alpha_threshold, r.area_threshold)
        if not bool(mask.any()):
            return 0
        points, rgba, order = reinit_paths(prim.points, prim.rgba, prim.order, mask, prim.canvas, prim.canvas,
                                           prim.radius, self._generator(self.global_step, per_rank=False))
        prim.points.copy_(points)
        prim.rgba.copy_(rgba)
        prim.order.copy_(order)
        reset_adam_rows(opt, prim.points, mask)
        reset_adam_rows(opt, prim.rgba, mask)
        self.guard.snapshot()
        return int(mask.sum())

    # ------------------------------------------------------------------ non-finite guard
    def _update(self, loss: Tensor, opt, step: int) -> bool:
        """Backward, step, clamp; skip or roll back a step that produces NaN/Inf (:mod:`vectorfusion.guard`)."""
        if self._any_rank(not bool(torch.isfinite(loss.detach()))):
            opt.zero_grad(set_to_none=True)
            return self.guard.bad(step, f"non-finite loss {float(loss.detach())}")
        if loss.requires_grad:  # else nothing is drawn (e.g. zero-width strokes): the step is a no-op
            self.manual_backward(loss)
        grads = [p.grad for p in self.primitives.parameters() if p.grad is not None]
        if self._any_rank(not all(bool(torch.isfinite(g).all()) for g in grads)):
            opt.zero_grad(set_to_none=True)
            return self.guard.bad(step, "non-finite gradients")
        opt.step()
        opt.zero_grad(set_to_none=True)
        self.primitives.clamp_()
        if self._any_rank(not self.guard.finite()):
            self.guard.restore()
            opt.optimizer.state.clear()
            return self.guard.bad(step, "non-finite parameters after the update (rolled back)")
        self.guard.good()
        return True

    def _any_rank(self, flag: bool) -> bool:
        """DDP: every rank skips when any rank saw a bad value (else the gradient all-reduce would hang)."""
        if self.trainer.world_size > 1:
            return bool(self.trainer.strategy.reduce_boolean_decision(flag, all=False))
        return flag

    # ------------------------------------------------------------------ export hooks
    @torch.no_grad()
    def render_preview(self, size: int) -> Tensor:
        """``[size, size, 3]`` render of the current SVG in [0, 1] (no grad)."""
        n_active = None
        if self.is_icon and self.init == "raster" and self.global_step <= self.live_steps:
            done = self.global_step - 1  # the last completed step: draw the paths placed so far
            n_active = 0 if done < 0 else self.live.stage_rows(done // self.live.iters_per_stage)[1]
        return self.primitives.render(self.rasterizer, size, n_active)[0].permute(1, 2, 0).clamp(0, 1).cpu()

    def method_name(self) -> str:
        """Row label of the results table (thesis Table 6.1 / 11.7 wording)."""
        if self.init == "scratch":
            return "VectorFusion (scratch)" if self.primitives.style == "iconography" else \
                f"SDS (scratch, {self.primitives.style})"
        return "VectorFusion + SD init + LIVE" if self.is_icon else "SD+L1+SDS"
