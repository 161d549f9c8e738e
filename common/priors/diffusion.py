"""Frozen diffusion priors over diffusers: ε-prediction with CFG, the VE denoiser D(x; σ), the score.

One class, :class:`DiffusionModel`, loads any diffusers pipeline folder (a local directory, or a
hub id resolved in the local hub cache) by reading its ``model_index.json`` and calling each
component's real ``from_pretrained``:

* latent models (Stable Diffusion): ``unet`` + ``vae`` + ``text_encoder`` + ``tokenizer`` + ``scheduler``;
* pixel-space models (e.g. the shapeworld prior): a ``UNet2DConditionModel`` with a text encoder, or
  an unconditional ``UNet2DModel``, + a DDPM ``scheduler``.

"Model space" is what the UNet models: SD latents (``scaling_factor·E(2x − 1)``, sds_ddpm.md §3.6,
B9) or pixels in [−1, 1]. All methods take and return model-space tensors except :meth:`encode`
(images in [0, 1] -> model space) and :meth:`decode` (the reverse).

Noise conventions (see :mod:`common.priors.schedule`): ``z_t = sqrt(ᾱ_t)·x + sqrt(1 − ᾱ_t)·ε``
(VP, DDPM), ``σ_t = sqrt((1 − ᾱ_t)/ᾱ_t)`` (VE), and the denoiser of SJC eq. 2,
``D(x; σ) = x − σ·ε̂(x/sqrt(1 + σ²), t(σ))``, with score ``(D(x; σ) − x)/σ²`` (SJC eq. 3).
"""

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from common.priors.base import (FrozenPrior, Precision, PriorWeightsNotFoundError, hf_cache_dir, hf_offline,
                                 resolve_suite_path)
from common.priors.schedule import (
    classifier_free_guidance,
    nearest_timestep,
    sigma_from_alpha_bar,
    ve_to_vp_input,
    v_to_epsilon,
)

log = logging.getLogger(__name__)

__all__ = ["DiffusionModel", "TextContext", "TINY_PIPELINES", "tiny_pipeline_dir"]


@dataclass
class TextContext:
    """Precomputed text conditioning for classifier-free guidance.

    Attributes:
        cond: ``[N, L, D]`` encoder hidden states of the prompt(s), or ``None`` (unconditional model).
        uncond: ``[N, L, D]`` hidden states of the negative/empty prompt, or ``None``.
    """

    cond: Optional[Tensor]
    uncond: Optional[Tensor]

    def expand(self, batch: int) -> "TextContext":
        """Broadcast a single-prompt context to ``batch`` rows."""

        def _e(x: Optional[Tensor]) -> Optional[Tensor]:
            if x is None or x.shape[0] == batch:
                return x
            if x.shape[0] != 1:
                raise ValueError(f"text context has {x.shape[0]} prompts for a batch of {batch}")
            return x.expand(batch, *x.shape[1:])

        return TextContext(_e(self.cond), _e(self.uncond))


TINY_PREFIX = "tiny:"
TINY_PIPELINES = ("tiny:sd", "tiny:pixel", "tiny:pixel-uncond")


def tiny_pipeline_dir(name: str, seed: int = 0) -> Path:
    """Directory of the tiny random pipeline ``name`` (one of :data:`TINY_PIPELINES`), written on first
    use under ``$PRIORLAB_CACHE`` (default ``~/.cache/priorlab``) with a write-then-rename."""
    import shutil
    import tempfile

    if name not in TINY_PIPELINES:
        raise ValueError(f"unknown tiny pipeline {name!r}; choose one of {TINY_PIPELINES}")
    root = Path(os.environ.get("PRIORLAB_CACHE", Path.home() / ".cache" / "priorlab")) / "tiny"
    target = root / f"{name.split(':', 1)[1]}-seed{seed}"
    if (target / "model_index.json").is_file():
        return target
    from common.testing.tiny_models import save_tiny_pixel_pipeline, save_tiny_sd_pipeline

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        if name == "tiny:sd":
            save_tiny_sd_pipeline(tmp, seed=seed)
        else:
            save_tiny_pixel_pipeline(tmp, seed=seed, conditional=name == "tiny:pixel")
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class DiffusionModel(FrozenPrior):
    """A frozen diffusers noise predictor with a VP and a VE (σ) interface.

    Args:
        model: local pipeline directory (with ``model_index.json``) or hub id (e.g.
            ``"runwayml/stable-diffusion-v1-5"``) that is present in the local hub cache. For tests and
            tiny smoke configs, ``"tiny:sd"``, ``"tiny:pixel"`` or ``"tiny:pixel-uncond"`` write a tiny
            random pipeline of the same classes (``common.testing``) into the suite's cache once and load
            it through the same ``from_pretrained`` path; their outputs are meaningless.
        revision: hub revision when ``model`` is a hub id.
        variant: weights variant (e.g. ``"fp16"``) passed to ``from_pretrained``.
        precision: UNet/text-encoder precision on CUDA (``"fp16"`` for SD); the VAE encoder always
            runs in fp32 so that gradients through it are stable (sds_ddpm.md §4.7).
        cache_dir: hub cache directory (default ``HF_HUB_CACHE``).
        allow_download: let huggingface_hub download a hub id (never when ``HF_HUB_OFFLINE=1``).
    """

    def __init__(
        self,
        model: str,
        revision: Optional[str] = None,
        variant: Optional[str] = None,
        precision: Precision = "fp32",
        cache_dir: Optional[str] = None,
        allow_download: bool = False,
    ) -> None:
        super().__init__(precision=precision)
        if not model:
            raise ValueError("DiffusionModel needs a pipeline directory or hub id")
        self.model = model
        self.revision = revision
        self.variant = variant
        self.cache_dir = cache_dir
        self.allow_download = allow_download
        self._text_cache: Dict[str, Tensor] = {}
        self.prediction_type = "epsilon"
        self.scheduler_config: dict = {}  # set on load
        self.sampler_config: dict = {}  # set on load: the folder's optional sampler.json
        self.scaling_factor = 1.0
        self.tokenizer = None

    # ------------------------------------------------------------------ loading
    def _resolve_dir(self) -> Path:
        if self.model.startswith(TINY_PREFIX):
            return tiny_pipeline_dir(self.model)
        local = resolve_suite_path(self.model)  # shipped folders named relative to the repo work from anywhere
        if os.path.isdir(local):
            return Path(local)
        if self.model.startswith((".", "/", "~")) or os.sep in self.model.strip("/").split("/", 1)[-1]:
            raise PriorWeightsNotFoundError(f"Diffusion pipeline directory not found: {self.model}")
        from huggingface_hub import snapshot_download

        local_only = hf_offline() or not self.allow_download
        cache = hf_cache_dir(self.cache_dir)
        try:
            # Only the components we load, safetensors weights only (SD repos also hold .bin/.ckpt copies).
            patterns = ["model_index.json"] + [f"{c}/*{ext}" for c in ("unet", "vae", "text_encoder", "tokenizer",
                                                                        "scheduler") for ext in (".json", ".txt",
                                                                                                 ".safetensors")]
            path = snapshot_download(self.model, revision=self.revision, cache_dir=self.cache_dir,
                                     local_files_only=local_only, allow_patterns=patterns)
        except Exception as e:  # LocalEntryNotFoundError, RepositoryNotFoundError, HFValidationError, ...
            raise PriorWeightsNotFoundError(
                f"Diffusion model {self.model!r} (revision {self.revision or 'main'}) is not available offline: "
                f"no snapshot in the hub cache {cache} ({type(e).__name__}).\n"
                f"Fix: pass model=/path/to/pipeline_dir (a folder with model_index.json, unet/, scheduler/, ...), "
                f"or populate the cache on a networked machine (`huggingface-cli download {self.model}`) and run "
                "with HF_HUB_OFFLINE=1, or set allow_download=true on a machine with internet."
            ) from e
        return Path(path)

    def _load_networks(self) -> Dict[str, nn.Module]:
        import diffusers
        import transformers

        root = self._resolve_dir()
        index_file = root / "model_index.json"
        if not index_file.is_file():
            raise PriorWeightsNotFoundError(f"{root} has no model_index.json; expected a diffusers pipeline folder "
                                            "(save one with pipeline.save_pretrained(dir)).")
        index = json.loads(index_file.read_text())
        for required in ("unet", "scheduler"):
            if not index.get(required) or index[required][0] is None:
                raise ValueError(f"{index_file} has no {required!r} component")

        def _cls(name: str):
            lib, cls = index[name]
            return getattr(diffusers if lib == "diffusers" else transformers, cls)

        kw = dict(variant=self.variant) if self.variant else {}
        nets: Dict[str, nn.Module] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nets["unet"] = _cls("unet").from_pretrained(root, subfolder="unet", **kw)
            sched_cfg = diffusers.DDPMScheduler.load_config(root, subfolder="scheduler")
            scheduler = diffusers.DDPMScheduler.from_config(sched_cfg)
            if index.get("vae") and index["vae"][0] is not None:
                nets["vae"] = _cls("vae").from_pretrained(root, subfolder="vae", **kw)
            if index.get("text_encoder") and index["text_encoder"][0] is not None:
                nets["text_encoder"] = _cls("text_encoder").from_pretrained(root, subfolder="text_encoder", **kw)
                self.tokenizer = _cls("tokenizer").from_pretrained(root, subfolder="tokenizer")
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        self.scheduler_config = dict(scheduler.config)  # the training schedule, for samplers built from it
        # Optional ``sampler.json`` beside model_index.json: the sampler settings a prior's figures were measured
        # with (e.g. {"guidance_scale": 2.0}); not part of the diffusers layout, so hub snapshots have none.
        sampler_file = root / "sampler.json"
        self.sampler_config = {}
        if sampler_file.is_file():
            try:
                self.sampler_config = json.loads(sampler_file.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{sampler_file} is not valid JSON ({e}); fix or delete it") from e
            if not isinstance(self.sampler_config, dict):
                raise ValueError(f"{sampler_file} must hold a JSON object such as {{\"guidance_scale\": 2.0}}")
        if "vae" in nets:
            self.scaling_factor = float(nets["vae"].config.get("scaling_factor", 0.18215))
        self._tensors["alpha_bar"] = self._alpha_bar(scheduler)
        self._text_cache.clear()
        return nets

    @staticmethod
    def _alpha_bar(scheduler) -> Tensor:
        """ᾱ_t in float64 (recomputed from the config for the linear schedules, for exact tests)."""
        cfg, T = scheduler.config, scheduler.config.num_train_timesteps
        if cfg.get("trained_betas") is None and cfg.beta_schedule == "linear":
            betas = torch.linspace(cfg.beta_start, cfg.beta_end, T, dtype=torch.float64)
        elif cfg.get("trained_betas") is None and cfg.beta_schedule == "scaled_linear":
            betas = torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, T, dtype=torch.float64) ** 2
        else:
            return scheduler.alphas_cumprod.double()
        return torch.cumprod(1 - betas, dim=0)

    # ------------------------------------------------------------------ properties
    @property
    def unet(self) -> nn.Module:
        """The frozen UNet."""
        self._ensure_loaded()
        return self._nets["unet"]

    @property
    def vae(self) -> Optional[nn.Module]:
        """The frozen VAE (latent models) or ``None``."""
        self._ensure_loaded()
        return self._nets.get("vae")

    @property
    def is_latent(self) -> bool:
        """Whether the UNet works on VAE latents."""
        return self.vae is not None

    @property
    def is_conditional(self) -> bool:
        """Whether the model takes text (has a text encoder)."""
        self._ensure_loaded()
        return "text_encoder" in self._nets

    @property
    def alpha_bar(self) -> Tensor:
        """``[T]`` float64 ᾱ_t, t = 0..T−1."""
        self._ensure_loaded()
        return self._tensors["alpha_bar"]

    @property
    def sigmas(self) -> Tensor:
        """``[T]`` float64 ascending VE noise levels σ_t = sqrt((1 − ᾱ_t)/ᾱ_t)."""
        return sigma_from_alpha_bar(self.alpha_bar)

    @property
    def num_train_timesteps(self) -> int:
        """T."""
        return int(self.alpha_bar.shape[0])

    @property
    def channels(self) -> int:
        """Channels of the model space (4 for SD latents, 3 for RGB pixel models)."""
        return int(self.unet.config.in_channels)

    # ------------------------------------------------------------------ text
    def encode_text(self, prompts: Union[str, Sequence[str]]) -> Tensor:
        """Text-encoder hidden states ``[N, L, D]``, cached per prompt, no gradient.

        The empty string ``""`` is valid: it is the unconditional prompt of CFG (sds_ddpm.md B10).
        Prompts longer than the tokenizer's ``model_max_length`` are truncated with a warning.
        """
        if not self.is_conditional:
            raise ValueError(f"{self.model} is an unconditional diffusion model; it takes no prompt")
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) == 0:
            raise ValueError("encode_text needs at least one prompt")
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            max_len = self.tokenizer.model_max_length
            for p in missing:
                if not isinstance(p, str):
                    raise ValueError(f"prompts must be strings, got {type(p).__name__}")
                n = len(self.tokenizer(p).input_ids)
                if n > max_len:
                    warnings.warn(f"Prompt has {n} tokens, more than the text encoder's context of {max_len}; "
                                  f"it is truncated: {p[:60]!r}...", UserWarning, stacklevel=2)
            ids = self.tokenizer(missing, padding="max_length", max_length=max_len, truncation=True,
                                 return_tensors="pt").input_ids.to(self.device)
            with torch.no_grad():
                hidden = self._nets["text_encoder"](ids)[0].float()
            for p, h in zip(missing, hidden):
                self._text_cache[p] = h
        return torch.stack([self._text_cache[p] for p in prompts])

    def text_context(self, prompt: Union[str, Sequence[str]], negative_prompt: str = "") -> TextContext:
        """Conditional and unconditional (``negative_prompt``, default ``""``) embeddings for CFG."""
        if not self.is_conditional:
            return TextContext(None, None)
        cond = self.encode_text(prompt)
        return TextContext(cond, self.encode_text([negative_prompt] * cond.shape[0]))

    # ------------------------------------------------------------------ noise prediction
    def predict_noise(self, z_t: Tensor, t: Tensor, context: Optional[TextContext] = None,
                      guidance_scale: float = 1.0) -> Tensor:
        """ε̂(z_t, t) with classifier-free guidance ``ε_u + s(ε_c − ε_u)`` (thesis eq. 6.3, ω = s − 1).

        The UNet runs in one batched call over ``[uncond; cond]``. Call under ``torch.no_grad()``
        for SDS/SJC (no UNet Jacobian).

        Args:
            z_t: ``[B, C, H, W]`` noisy model-space sample ``sqrt(ᾱ)x + sqrt(1−ᾱ)ε``.
            t: ``[B]`` or scalar integer timesteps.
            context: text conditioning (``None`` for unconditional models).
            guidance_scale: s; 1 disables the unconditional pass.

        Returns:
            ``[B, C, H, W]`` ε̂ in ``z_t``'s dtype (converted from v- or x0-prediction if needed).
        """
        B = z_t.shape[0]
        t = torch.as_tensor(t, device=z_t.device).long().reshape(-1).expand(B)
        unet, dtype = self.unet, self.dtype
        if self.is_conditional:
            if context is None or context.cond is None:
                raise ValueError("this diffusion model is text-conditional: pass a TextContext (text_context(prompt))")
            ctx = context.expand(B)
            if guidance_scale != 1.0:
                if ctx.uncond is None:
                    raise ValueError("classifier-free guidance needs context.uncond")
                out = unet(torch.cat([z_t, z_t]).to(dtype), torch.cat([t, t]),
                           encoder_hidden_states=torch.cat([ctx.uncond, ctx.cond]).to(dtype)).sample
                out_u, out_c = out.float().chunk(2)
                out = classifier_free_guidance(out_c, out_u, guidance_scale)
            else:
                out = unet(z_t.to(dtype), t, encoder_hidden_states=ctx.cond.to(dtype)).sample.float()
        else:
            if guidance_scale != 1.0:
                raise ValueError("guidance_scale != 1 needs a text-conditional model")
            out = unet(z_t.to(dtype), t).sample.float()
        out = out[:, : z_t.shape[1]]  # learn_sigma models output [ε, variance]
        ab = self.alpha_bar.to(z_t.device)[t].float().view(B, 1, 1, 1)
        if self.prediction_type == "v_prediction":
            out = v_to_epsilon(out, z_t.float(), ab)
        elif self.prediction_type == "sample":
            out = (z_t.float() - ab.sqrt() * out) / (1 - ab).sqrt()
        return out.to(z_t.dtype)

    def timestep_for_sigma(self, sigma: Tensor) -> Tensor:
        """Nearest-tick timestep t(σ) (SJC, [C])."""
        return nearest_timestep(torch.as_tensor(sigma, dtype=torch.float64), self.sigmas.to(torch.device("cpu"))
                                ).to(self.device)

    def denoise(self, x: Tensor, sigma: Union[float, Tensor], context: Optional[TextContext] = None,
                guidance_scale: float = 1.0) -> Tensor:
        """VE denoiser ``D(x; σ) = x − σ·ε̂(x/sqrt(1 + σ²), t(σ))`` (SJC eq. 2).

        Args:
            x: ``[B, C, H, W]`` VE sample ``y + σ n`` in model space.
            sigma: scalar or ``[B]`` noise levels; the UNet is queried at the nearest tick t(σ).
            context, guidance_scale: as in :meth:`predict_noise`.

        Returns:
            ``[B, C, H, W]`` estimate of the clean sample y.
        """
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sig = sig.expand(x.shape[0]) if sig.numel() == 1 else sig
        t = self.timestep_for_sigma(sig.detach().double().cpu()).to(x.device)
        s4 = sig.view(-1, 1, 1, 1)
        eps = self.predict_noise(ve_to_vp_input(x, s4), t, context, guidance_scale)
        return x - s4 * eps

    def score(self, x: Tensor, sigma: Union[float, Tensor], context: Optional[TextContext] = None,
              guidance_scale: float = 1.0) -> Tensor:
        """Score ``∇_x log p_σ(x) ≈ (D(x; σ) − x)/σ²`` (SJC eq. 3)."""
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        return (self.denoise(x, sigma, context, guidance_scale) - x) / sig**2

    # ------------------------------------------------------------------ encode / decode
    def encode(self, images: Tensor, sample: bool = False, generator: Optional[torch.Generator] = None) -> Tensor:
        """Images ``[B, 3, H, W]`` in [0, 1] -> model space, differentiably.

        Latent models: ``scaling_factor·E(2x − 1)`` (posterior mean unless ``sample``), VAE in fp32.
        Pixel models: ``2x − 1``.
        """
        x = images * 2 - 1
        if not self.is_latent:
            return x
        dist = self.vae.float().encode(x.float()).latent_dist
        z = dist.sample(generator) if sample else dist.mean
        return (z * self.scaling_factor).to(images.dtype)

    def decode(self, latents: Tensor) -> Tensor:
        """Model space -> images ``[B, 3, H, W]`` in [0, 1] (no gradient; for visualisation)."""
        with torch.no_grad():
            if self.is_latent:
                x = self.vae.decode(latents.float() / self.scaling_factor).sample.float()
            else:
                x = latents.float()
        return ((x + 1) / 2).clamp(0, 1)

    def _place(self) -> None:
        super()._place()
        if "vae" in self._nets:
            self._nets["vae"].float()  # VAE stays fp32 (encoder Jacobian in fp32, sds_ddpm.md §4.7)
        self._text_cache = {k: v.to(self.device) for k, v in self._text_cache.items()}
