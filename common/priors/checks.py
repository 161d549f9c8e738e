"""Checks of a diffusion pipeline before (and right after) loading it; each error names the fix.

Shared by every system that guides with :class:`common.priors.diffusion.DiffusionModel` (SJC and
DreamFusion-style SDS first):

* :func:`check_pipeline_dir`: a diffusers folder has ``model_index.json``, every component it lists
  has its folder and config, the components the run needs are present (UNet + scheduler always; a
  VAE for latent fields; text encoder + tokenizer for a prompt with CFG), and the scheduler is one
  we can read ᾱ_t from (a diffusers scheduler class with a known β schedule). ``tiny:`` names
  (:data:`~common.priors.diffusion.TINY_PIPELINES`) are resolved to their cached folder first
  (written on first use) and checked like any other folder.
* :func:`check_sigma_range`: explicit noise levels lie inside the model's ``[σ_0, σ_{T−1}]``; outside
  it the denoiser would silently snap to the end tick (nearest-tick snapping, SJC spec §1.2).
* :func:`check_timestep_range`: a guidance's timestep bounds lie inside ``0..T−1``.

Hub ids are resolved (and their errors raised) by :class:`~common.priors.diffusion.DiffusionModel`.
"""

import json
import math
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from common.priors.base import PriorWeightsNotFoundError
from common.priors.diffusion import TINY_PREFIX, tiny_pipeline_dir

__all__ = ["check_pipeline_dir", "check_sigma_range", "check_timestep_range", "KNOWN_BETA_SCHEDULES"]

#: β schedules diffusers' DDPMScheduler implements (the schedule only has to give ᾱ_t)
KNOWN_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
_CONFIG_FILE = {"scheduler": "scheduler_config.json", "tokenizer": "tokenizer_config.json"}


def _fix(component: str, tiny: Optional[Path] = None) -> str:
    if tiny is not None:  # a cached tiny pipeline went bad (interrupted by hand, edited): rewrite it
        return f"Fix: delete {tiny} so that it is rewritten on next use (tiny: pipelines are cached there)."
    return (f"Fix: point the config's `model:` at a complete diffusers pipeline folder (save one with "
            f"pipeline.save_pretrained(dir), or `huggingface-cli download <repo>` on a networked machine), or "
            f"copy the missing `{component}/` folder from the original pipeline.")


def check_pipeline_dir(model: str, need_vae: bool = False, need_text: bool = False) -> Optional[Path]:
    """Validate a local diffusers pipeline folder (or a ``tiny:`` name); hub ids are skipped.

    Args:
        model: the ``DiffusionModel(model=...)`` value: a folder, a ``tiny:`` name (resolved with
            :func:`~common.priors.diffusion.tiny_pipeline_dir`, which writes it on first use) or a hub id.
        need_vae: the field renders SD latents (4 channels): a ``vae`` is required to view them.
        need_text: a prompt is given with classifier-free guidance: ``text_encoder`` and ``tokenizer``
            are required.

    Returns:
        The folder (the cached one for a ``tiny:`` name), or None for a hub id.

    Raises:
        PriorWeightsNotFoundError: missing ``model_index.json``, component folder or its config file.
        ValueError: an unknown ``tiny:`` name, scheduler class or β schedule; a prompt for an unconditional model.
    """
    tiny = None
    if model.startswith(TINY_PREFIX):
        root = tiny = tiny_pipeline_dir(model)
    elif os.path.isdir(model):
        root = Path(model)
    else:
        return None
    index_file = root / "model_index.json"
    if not index_file.is_file():
        raise PriorWeightsNotFoundError(f"{root} has no model_index.json: it is not a diffusers pipeline folder. "
                                        + _fix("model_index.json", tiny))
    try:
        index = json.loads(index_file.read_text())
    except json.JSONDecodeError as err:
        how = _fix("model_index.json", tiny) if tiny else "Fix: re-save the pipeline with pipeline.save_pretrained(dir)."
        raise ValueError(f"{index_file} is not valid JSON ({err}). {how}") from err
    listed = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v and v[0] is not None}
    required = ["unet", "scheduler"] + (["vae"] if need_vae else []) + (["text_encoder", "tokenizer"] if need_text else [])
    if need_text and "text_encoder" not in listed:
        raise ValueError(f"{index_file} lists no 'text_encoder': {root} is an unconditional model: set the guidance's "
                         "guidance_scale: 1.0 (classifier-free guidance needs a prompt), or use a text-conditional pipeline.")
    for comp in required:
        if comp not in listed:
            why = {"vae": "the field renders Stable Diffusion latents, which need the VAE to be viewed",
                   "text_encoder": "a text prompt needs the text encoder", "tokenizer": "a text prompt needs the tokenizer"
                   }.get(comp, "every diffusion guidance needs it")
            raise PriorWeightsNotFoundError(f"{index_file} lists no {comp!r} component, but {why}. " + _fix(comp, tiny))
    for comp in sorted(listed):
        folder = root / comp
        cfg = folder / _CONFIG_FILE.get(comp, "config.json")
        if not folder.is_dir():
            raise PriorWeightsNotFoundError(f"{root}: model_index.json lists the {comp!r} component but the folder "
                                            f"{folder} is missing. " + _fix(comp, tiny))
        if comp != "tokenizer" and not cfg.is_file():
            raise PriorWeightsNotFoundError(f"{root}: the {comp!r} component has no {cfg.name} in {folder}. "
                                            + _fix(comp, tiny))
    _check_scheduler(root / "scheduler" / "scheduler_config.json")
    return root


def _check_scheduler(path: Path) -> None:
    import diffusers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    cfg = json.loads(path.read_text())
    name = cfg.get("_class_name")
    cls = getattr(diffusers, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ValueError(f"{path}: unknown scheduler class {name!r}. The guidance reads the noise schedule (ᾱ_t) "
                         "of a diffusers scheduler (e.g. DDPMScheduler, PNDMScheduler, DDIMScheduler); set "
                         "`_class_name` to one of them.")
    if cfg.get("trained_betas") is None and cfg.get("beta_schedule", "linear") not in KNOWN_BETA_SCHEDULES:
        raise ValueError(f"{path}: unknown beta_schedule {cfg.get('beta_schedule')!r}; the guidance needs one of "
                         f"{list(KNOWN_BETA_SCHEDULES)} or explicit `trained_betas` to compute σ_t.")
    pred = cfg.get("prediction_type", "epsilon")
    if pred not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"{path}: unknown prediction_type {pred!r}; use 'epsilon', 'v_prediction' or 'sample'.")


def check_sigma_range(sigmas: Tensor, sigma: Union[float, Sequence[float], Tensor], rtol: float = 1e-6) -> None:
    """Raise if any σ lies outside the model's ``[σ_0, σ_{T−1}]`` (SJC spec §1.2: σ is snapped to the nearest tick).

    Args:
        sigmas: ``[T]`` ascending σ_t of the model.
        sigma: the requested noise level(s).
    """
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    lo, hi = float(sigmas[0]), float(sigmas[-1])
    bad = [float(v) for v in s if not (math.isfinite(float(v)) and lo * (1 - rtol) <= float(v) <= hi * (1 + rtol))]
    if bad:
        raise ValueError(f"σ = {bad[:4]} lies outside the model's noise range [{lo:.6g}, {hi:.6g}] "
                         f"(T = {sigmas.numel()} ticks); the denoiser would silently use the end tick. "
                         "Choose σ inside that range (SD v1.5: 0.0292..14.6; DDPM linear: 0.0100..157).")


def check_timestep_range(t_min: float, t_max: Optional[float], num_train_timesteps: int, fractions: bool = False,
                         kind: str = "SJC") -> None:
    """Raise if timestep bounds fall outside ``0..T−1``.

    Args:
        t_min, t_max: the guidance's bounds. SJC: integer indices, ``t_max=None`` meaning ``T − 31``.
            SDS (``fractions=True``): ``t_min < 1`` / ``t_max ≤ 1`` are fractions of T (DreamFusion's
            0.02..0.98), larger values indices (VectorFusion's 50..950).
        num_train_timesteps: T.
    """
    T = num_train_timesteps
    if fractions:
        lo = t_min * T if t_min < 1 else t_min
        hi = (t_max if t_max is not None else 0.98) * T if (t_max is None or t_max <= 1) else t_max
    else:
        lo, hi = t_min, (T - 31 if t_max is None else t_max)
    if not (0 <= lo <= hi <= T - 1):
        raise ValueError(f"{kind} timestep range [{t_min}, {t_max}] is outside the model's 0..{T - 1} (T = {T}) "
                         f"or empty. Set the guidance's t_min/t_max inside it (SJC default: 10..{T - 31}; "
                         "DreamFusion SDS: 0.02..0.98 as fractions of T).")
