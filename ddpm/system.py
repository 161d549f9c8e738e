"""DDPM (Ho, Jain & Abbeel 2020; Jain thesis ch. 5): an ε-prediction diffusion model as a LightningModule.

Training (thesis eq. 6.1 with w(t) = 1, i.e. DDPM's L_simple, eq. 14 of the DDPM paper):
``L = E_{x, t, ε} ‖ε − ε_φ(sqrt(ᾱ_t)·x + sqrt(1 − ᾱ_t)·ε, y, t)‖²``, t uniform over the T steps,
x in [−1, 1]. With ``prediction_type="v_prediction"`` the network predicts
``v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x`` instead (Salimans & Ho 2022, §4) and the loss is the v-MSE, which
weights the ε-MSE by 1/ᾱ_t = 1 + 1/SNR(t); its x̂_0 stays well conditioned at t → T, where ε-prediction divides
by sqrt(ᾱ_t) ≈ 0.006. With a text encoder the condition y is dropped (replaced by the encoding of ``""``)
with probability ``p_uncond`` so that one network also learns ``ε_φ(x)`` for classifier-free
guidance (thesis eq. 6.3). Sampling: ancestral or DDIM through diffusers schedulers
(:mod:`ddpm.sampling`), from an EMA copy of the weights (DDPM paper §4, decay 0.9999).
With ``autoencoder`` (a diffusers ``AutoencoderKL`` folder, e.g. from :mod:`ddpm.autoencoder`) the model is a
*latent* diffusion model (Rombach et al. 2022, eq. 2): the same loss on ``z = scaling_factor·E(x)``, a posterior
sample of the frozen encoder, no x̂_0 clipping (latents are not bounded), and samples decoded by D.
With ``snr_gamma`` = γ the training loss is min-SNR-γ weighted (Hang et al., ICCV 2023, eq. 5–6): each sample's
ε-MSE times ``min(SNR(t), γ) / SNR(t)`` (v-MSE times ``min(SNR(t), γ) / (SNR(t) + 1)``, the same weight on the
ε-MSE), SNR(t) = ᾱ_t / (1 − ᾱ_t); it lowers the weight of the low-noise steps. The validation loss stays unweighted.
Validation logs the held-out ε-MSE, a grid of samples (PNG in ``<run>/samples/``, W&B image when the
logger is W&B) and FID when Inception weights are present (:mod:`ddpm.fid`).
"""

import copy
import functools
import logging
from pathlib import Path
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from common.callbacks import log_media, run_dir
from common.checks import check_finite_loss
from common.export import image_grid, save_image
from common.lr_schedules import warmup_cosine_factor
from ddpm.conditioning import CLIPTextConditioner, drop_condition
from ddpm.fid import make_fid
from ddpm.sampling import PredictionType, Sampler, make_scheduler, sample

log = logging.getLogger(__name__)


def load_unet_weights(unet: nn.Module, folder: str) -> list:
    """Load ``diffusion_pytorch_model.safetensors`` of a diffusers UNet folder (or of ``<pipeline>/unet``) into ``unet``.

    Every tensor of the file must match a parameter of ``unet`` in name and shape (else ``ValueError``: the
    architecture differs). Parameters the file lacks keep their initialisation and are returned; when they are a
    whole pooled-text embedding (``add_embedding``, diffusers' ``addition_embed_type="text"``) added to a model
    trained without one, its output LayerNorm is zeroed so that the loaded network computes exactly what the
    file's network did and the new embedding grows from zero.
    """
    from safetensors.torch import load_file

    root = Path(folder)
    path = next((p / "diffusion_pytorch_model.safetensors" for p in (root, root / "unet")
                 if (p / "diffusion_pytorch_model.safetensors").is_file()), None)
    if path is None:
        raise FileNotFoundError(f"init_weights: no diffusion_pytorch_model.safetensors in {root} or {root / 'unet'}; "
                                "pass a diffusers UNet folder or a pipeline folder written by ddpm.export")
    own = unet.state_dict()
    state = load_file(str(path))
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise ValueError(f"init_weights: {len(bad)} tensors of {path} do not fit this UNet (e.g. {bad[:3]}); "
                         "its block_out_channels / attention / embedding settings must match the folder's config.json")
    missing = [k for k in own if k not in state]
    unet.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
    if missing:
        log.info("init_weights: %d UNet tensors not in %s keep their initialisation: %s", len(missing), path,
                 sorted({k.split(".")[0] for k in missing}))
    add = getattr(unet, "add_embedding", None)
    if add is not None and hasattr(add, "norm2") and all(k in missing for k in own if k.startswith("add_embedding.")):
        with torch.no_grad():
            add.norm2.weight.zero_()
            add.norm2.bias.zero_()
    return missing


class DDPMSystem(LightningModule):
    """Trains ``ε_φ`` and samples from it.

    Args:
        unet: the denoiser: diffusers ``UNet2DModel`` (unconditional) or ``UNet2DConditionModel``
            (with ``text_encoder``; its ``cross_attention_dim`` must equal the encoder width).
        text_encoder: frozen text conditioner, or None for an unconditional model.
        num_train_timesteps: T (1000, DDPM paper).
        beta_start: β_1 (1e-4, DDPM paper).
        beta_end: β_T (0.02, DDPM paper).
        beta_schedule: diffusers schedule name (``linear`` for DDPM).
        variance_type: ancestral sampling variance: ``fixed_small`` = β̃_t (spec default), ``fixed_large`` = β_t.
        prediction_type: what the UNet predicts: ``epsilon`` (DDPM paper) or ``v_prediction``.
        p_uncond: probability of dropping the condition in training (CFG).
        lr: Adam learning rate (2e-4 for CIFAR-10, DDPM paper App. B).
        warmup_steps: linear learning-rate warm-up (5000, DDPM paper App. B).
        lr_decay: after the warm-up, ``constant`` (DDPM paper App. B) or ``cosine`` decay to
            ``lr_final_ratio · lr`` at the trainer's last step (short runs: the final weights are those of a
            small learning rate instead of an EMA over a noisy constant one).
        lr_final_ratio: the learning rate at the last step over ``lr`` for ``cosine``.
        ema_decay: decay of the EMA weights used for sampling (0.9999, DDPM paper); None disables EMA.
        sampler: ``ddpm`` (ancestral) or ``ddim`` for validation samples.
        sample_steps: denoising steps of validation samples.
        sample_eta: DDIM η.
        guidance_scale: CFG scale s of validation samples (conditional models).
        val_samples: samples in the validation grid.
        sample_prompts: prompts of the grid (conditional models; default: captions of the first
            validation batch).
        fid_samples: generated and real images for FID at each validation (0: no FID).
        image_key: batch key of the images ``[B, C, H, W]`` in ``[0, 1]``.
        caption_key: batch key of the captions (conditional models).
        optimizer: optimiser factory (default Adam(lr)).
        export_pipeline: at the end of training, write the (EMA) model as a diffusers pipeline folder
            at ``<run>/pipeline`` (loadable by ``common.priors.diffusion.DiffusionModel``).
        export_dtype: dtype of the exported weights (``float16`` halves the files).
        autoencoder: latent diffusion: a frozen diffusers ``AutoencoderKL`` folder (or a folder holding ``vae/``); the
            UNet's ``in_channels``/``out_channels`` must equal its ``latent_channels`` and its ``sample_size`` the image
            size over the downsampling factor. None: pixel space.
        snr_gamma: min-SNR-γ loss weighting (Hang et al. 2023; γ = 5 in that paper); None: DDPM's unweighted
            L_simple (w = 1).
        init_weights: fine-tune: start the UNet (and its EMA) from a diffusers UNet folder or a pipeline folder
            holding ``unet/`` (e.g. ``shapeworld/weights/shapeworld_diffusion``) instead of from scratch. Layers the
            folder lacks keep their initialisation (:func:`load_unet_weights`); a checkpoint resumed with
            ``--ckpt_path`` overrides these weights.
    """

    def __init__(
        self,
        unet: nn.Module,
        text_encoder: Optional[CLIPTextConditioner] = None,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        variance_type: str = "fixed_small",
        prediction_type: PredictionType = "epsilon",
        p_uncond: float = 0.1,
        lr: float = 2e-4,
        warmup_steps: int = 5000,
        lr_decay: Literal["constant", "cosine"] = "constant",
        lr_final_ratio: float = 0.1,
        ema_decay: Optional[float] = 0.9999,
        sampler: Sampler = "ddpm",
        sample_steps: int = 1000,
        sample_eta: float = 0.0,
        guidance_scale: float = 3.0,
        val_samples: int = 16,
        sample_prompts: Optional[Sequence[str]] = None,
        fid_samples: int = 0,
        image_key: str = "image",
        caption_key: str = "caption",
        optimizer: Optional[OptimizerCallable] = None,
        export_pipeline: bool = False,
        export_dtype: Literal["float32", "float16", "bfloat16"] = "float32",
        init_weights: Optional[str] = None,
        autoencoder: Optional[str] = None,
        snr_gamma: Optional[float] = None,
    ) -> None:
        super().__init__()
        if snr_gamma is not None and not snr_gamma > 0:
            raise ValueError(f"snr_gamma must be > 0 (Hang et al. 2023 use 5) or null for no weighting, got {snr_gamma}")
        if lr_decay not in ("constant", "cosine") or not 0.0 <= lr_final_ratio <= 1.0:
            raise ValueError(f"lr_decay must be 'constant' or 'cosine' and lr_final_ratio in [0, 1], "
                             f"got {lr_decay!r} and {lr_final_ratio}")
        self.save_hyperparameters(ignore=["unet", "text_encoder", "optimizer"])
        self.unet, self.text_encoder, self.optimizer_factory = unet, text_encoder, optimizer
        if init_weights is not None:
            load_unet_weights(self.unet, init_weights)
        self.ema = copy.deepcopy(unet).requires_grad_(False) if ema_decay is not None else None
        self.__dict__["_vae"] = None  # frozen, kept outside the module tree: not in checkpoints or the optimiser
        if autoencoder is not None:
            from ddpm.autoencoder import load_autoencoder

            self.__dict__["_vae"] = load_autoencoder(autoencoder)
            c = self._vae.config.latent_channels
            if unet.config.in_channels != c or unet.config.out_channels != c:
                raise ValueError(f"latent diffusion: the UNet has in/out channels {unet.config.in_channels}/"
                                 f"{unet.config.out_channels} but the autoencoder's latents have {c}; set "
                                 f"unet.init_args.in_channels and out_channels to {c}")
        self.scheduler = make_scheduler("ddpm", num_train_timesteps, beta_start, beta_end, beta_schedule, variance_type,
                                        prediction_type=prediction_type, clip_sample=autoencoder is None)
        self.strict_loading = False  # frozen text encoder weights are not in checkpoints
        self._null: Optional[Tensor] = None
        self._val_prompts: list[str] = []
        self._fid, self._fid_reason = None, None

    # ------------------------------------------------------------------ parts
    def setup(self, stage: str) -> None:
        if self.text_encoder is not None:
            self.text_encoder.load()
        if self.hparams.fid_samples > 0:
            self._fid, self._fid_reason = make_fid()
            if self._fid is None:
                log.warning(self._fid_reason)
            else:
                self._fid = self._fid.to(self.device)

    @property
    def _loss_name(self) -> str:
        return "loss_v" if self.hparams.prediction_type == "v_prediction" else "loss_eps"

    @property
    def conditional(self) -> bool:
        return self.text_encoder is not None

    @property
    def vae(self) -> Optional[nn.Module]:
        """The frozen autoencoder of a latent model (None in pixel space)."""
        if self._vae is not None and next(self._vae.parameters()).device != self.device:
            self._vae.to(self.device)
        return self._vae

    def to_model_space(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Images ``[B, C, H, W]`` in [−1, 1] → what the UNet models: the images, or ``scaling_factor·z`` with
        ``z ~ q(z|x)`` for a latent model (LDM eq. 2)."""
        if self.vae is None:
            return x
        with torch.no_grad():
            return self.vae.encode(x.float()).latent_dist.sample(generator) * self.vae.config.scaling_factor

    def from_model_space(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`to_model_space` for samples: latents are decoded by D; images in [−1, 1]."""
        if self.vae is None:
            return z
        with torch.no_grad():
            return self.vae.decode(z.float() / self.vae.config.scaling_factor).sample

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """``[B, L, D]`` condition of ``prompts`` on this module's device."""
        return self.text_encoder(list(prompts)).to(self.device)

    def null_condition(self, batch: int) -> Tensor:
        """``[B, L, D]`` unconditional input: the text encoder of ``""`` (sds_ddpm.md §3.5)."""
        if self._null is None or self._null.device != self.device:
            self._null = self.encode([""])
        return self._null.expand(batch, -1, -1)

    # ------------------------------------------------------------------ training
    def diffusion_loss(self, x0: Tensor, context: Optional[Tensor], generator: Optional[torch.Generator] = None,
                       weighted: bool = True) -> Tensor:
        """ε-MSE of thesis eq. 6.1 on a batch ``x0`` ``[B, C, H, W]`` in [−1, 1] (v-MSE for v-prediction): w = 1, or
        min-SNR-γ (:meth:`loss_weight`) when ``snr_gamma`` is set and ``weighted``."""
        B = x0.shape[0]
        T = self.scheduler.config.num_train_timesteps
        # t uniform in {1..T} (diffusers indexes it 0..T−1); ε ~ N(0, I)
        t = torch.randint(0, T, (B,), generator=generator).to(self.device)
        eps = torch.randn(x0.shape, generator=generator).to(x0)
        x_t = self.scheduler.add_noise(x0, eps, t)  # sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε (DDPM eq. 4)
        out = self.unet(x_t, t, encoder_hidden_states=context).sample if context is not None else self.unet(x_t, t).sample
        if self.hparams.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(x0, eps, t)  # v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x0
        else:
            target = eps
        if not weighted or self.hparams.snr_gamma is None:
            return F.mse_loss(out, target)  # mean over pixels and batch
        per_sample = F.mse_loss(out, target, reduction="none").flatten(1).mean(1)  # [B]
        return (self.loss_weight(t).to(per_sample) * per_sample).mean()

    def loss_weight(self, t: Tensor) -> Tensor:
        """Min-SNR-γ weight of timesteps ``t`` ``[B]`` (Hang et al. 2023, eq. 5–6): ``min(SNR, γ)/SNR`` on the ε-MSE,
        ``min(SNR, γ)/(SNR + 1)`` on the v-MSE (the same weight on the ε-MSE, since v-MSE = ε-MSE·(SNR + 1)/SNR)."""
        abar = self.scheduler.alphas_cumprod.to(t.device)[t].double()
        snr = abar / (1.0 - abar)
        clipped = snr.clamp(max=self.hparams.snr_gamma)
        return (clipped / (snr + 1.0) if self.hparams.prediction_type == "v_prediction" else clipped / snr).float()

    def _images(self, batch) -> Tensor:
        x = batch[self.hparams.image_key] if isinstance(batch, dict) else batch[0]
        return x * 2.0 - 1.0  # [0, 1] -> [−1, 1]

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x0 = self.to_model_space(self._images(batch))
        context = None
        if self.conditional:
            context, dropped = drop_condition(self.encode(batch[self.hparams.caption_key]), self.null_condition(1),
                                              self.hparams.p_uncond)
            self.log("train/uncond_fraction", dropped.float().mean(), on_step=True, batch_size=x0.shape[0])
        loss = self.diffusion_loss(x0, context)
        check_finite_loss(loss, self.global_step, hint="lower the learning rate or enable gradient clipping")
        self.log(f"train/{self._loss_name}", loss, prog_bar=True, on_step=True, batch_size=x0.shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            with torch.no_grad():
                ema_p, p = list(self.ema.parameters()), list(self.unet.parameters())
                torch._foreach_lerp_(ema_p, p, 1.0 - self.hparams.ema_decay)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch, batch_idx: int) -> None:
        x0 = self._images(batch)
        context = self.encode(batch[self.hparams.caption_key]) if self.conditional else None
        g = torch.Generator().manual_seed(batch_idx)  # same z, t and ε every validation
        loss = self.diffusion_loss(self.to_model_space(x0, g), context, g, weighted=False)  # comparable across weightings
        self.log(f"val/{self._loss_name}", loss, prog_bar=True, sync_dist=True, batch_size=x0.shape[0])
        if self.conditional and len(self._val_prompts) < self.hparams.val_samples:
            self._val_prompts += list(batch[self.hparams.caption_key])
        if self._fid is not None and self._fid_real < self.hparams.fid_samples:
            self._fid.update(self._to_rgb01(x0), real=True)
            self._fid_real += x0.shape[0]

    def on_validation_epoch_start(self) -> None:
        self._fid_real = 0
        self._val_prompts = []

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        n = self.hparams.val_samples
        prompts = list(self.hparams.sample_prompts or self._val_prompts)[:n] if self.conditional else None
        if self.trainer.is_global_zero and n > 0:
            images = self.generate(len(prompts) if prompts else n, prompts, generator=torch.Generator().manual_seed(0))
            path = run_dir(self.trainer) / "samples" / f"step_{self.global_step:07d}.png"
            save_image(image_grid(images.permute(0, 2, 3, 1).cpu(), nrow=int(max(1, len(images) ** 0.5))), path)
            log_media(self.trainer, "val/samples", path, "image")
        if self._fid is not None:
            self._log_fid()

    def _log_fid(self) -> None:
        made, bs = 0, 64
        while made < self.hparams.fid_samples:
            k = min(bs, self.hparams.fid_samples - made)
            prompts = (self._val_prompts * k)[:k] if self.conditional else None
            self._fid.update(self.generate(k, prompts), real=False)
            made += k
        self.log("val/fid", self._fid.compute(), sync_dist=True)
        self._fid.reset()

    @staticmethod
    def _to_rgb01(x: Tensor) -> Tensor:
        x = (x.clamp(-1, 1) + 1) / 2
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, n: int, prompts: Optional[Sequence[str]] = None, sampler: Optional[Sampler] = None,
                 steps: Optional[int] = None, guidance_scale: Optional[float] = None, eta: Optional[float] = None,
                 generator: Optional[torch.Generator] = None, use_ema: bool = True) -> Tensor:
        """``n`` samples ``[n, C, H, W]`` in ``[0, 1]`` (prompts: one per sample, conditional models)."""
        h = self.hparams
        net = self.ema if (use_ema and self.ema is not None) else self.unet
        cfg = net.config
        size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
        context = null = None
        if self.conditional:
            if prompts is None or len(prompts) != n:
                raise ValueError(f"a conditional DDPM needs one prompt per sample ({n}), got {prompts!r}")
            context, null = self.encode(prompts), self.null_condition(n)
        scheduler = make_scheduler(sampler or h.sampler, h.num_train_timesteps, h.beta_start, h.beta_end,
                                   h.beta_schedule, h.variance_type, prediction_type=h.prediction_type,
                                   clip_sample=self.scheduler.config.clip_sample)  # no x̂₀ clipping for latents
        was_training = net.training
        net.eval()  # no dropout while sampling
        x = sample(net, scheduler, (n, cfg.in_channels, size, size), steps or h.sample_steps, context, null,
                   h.guidance_scale if guidance_scale is None else guidance_scale, h.sample_eta if eta is None else eta,
                   generator=generator, device=self.device)
        net.train(was_training)
        return self._to_rgb01(self.from_model_space(x))

    def on_train_end(self) -> None:
        if self.hparams.export_pipeline and self.trainer.is_global_zero:
            from ddpm.export import export_pipeline

            export_pipeline(self, run_dir(self.trainer) / "pipeline", dtype=self.hparams.export_dtype)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        params = [p for p in self.unet.parameters() if p.requires_grad]
        opt = self.optimizer_factory(params) if self.optimizer_factory else torch.optim.Adam(params, lr=self.hparams.lr)
        h = self.hparams
        if h.warmup_steps <= 0 and h.lr_decay == "constant":
            return opt
        total = int(self.trainer.estimated_stepping_batches) if h.lr_decay == "cosine" else 0
        factor = functools.partial(warmup_cosine_factor, warmup=h.warmup_steps, total=total, decay=h.lr_decay,
                                   final_ratio=h.lr_final_ratio)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
                                                   "interval": "step"}}

