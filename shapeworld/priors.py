"""The priors shipped with shapeworld, loaded through the same classes as real weights (``common.priors``).

* ``guidance`` CLIP: ``configs/shapeworld_clip_guidance.json`` + ``weights/shapeworld_clip_guidance.safetensors``;
* ``heldout`` CLIP (R-precision only, never for guidance): ``configs/shapeworld_clip_heldout.json`` +
  ``weights/shapeworld_clip_heldout.safetensors``;
* the text-conditional 32² pixel diffusion prior: a diffusers pipeline folder
  ``weights/shapeworld_diffusion/`` (written by ``ddpm.export.export_pipeline``), loaded by
  :class:`common.priors.diffusion.DiffusionModel`;
* the text-conditional *latent* diffusion prior (4×16×16 latents of 64² images) with its autoencoder: a
  Stable-Diffusion-layout folder ``weights/shapeworld_latent_diffusion/`` (unet + vae + text encoder), loaded by the
  same class as a latent model, for latent-space code paths (SJC's latent field, latent SDS).

Weights are produced by ``lightning fit --config experiments/shapeworld/train_clip.yaml`` (resp.
``train_clip_heldout.yaml``), see ``shapeworld/README.md``; until they are shipped,
:func:`shapeworld_clip` raises :class:`~common.priors.base.PriorWeightsNotFoundError` naming that command.
"""

from pathlib import Path
from typing import Literal, Optional, Union

from common.priors.base import PriorWeightsNotFoundError
from common.priors.clip import CLIPModel
from common.priors.diffusion import DiffusionModel

PACKAGE = Path(__file__).parent
WEIGHTS_DIR = PACKAGE / "weights"
CONFIG_DIR = PACKAGE / "configs"
CLIP_NAMES = {"guidance": "shapeworld_clip_guidance", "heldout": "shapeworld_clip_heldout"}
TRAIN_CONFIGS = {"guidance": "experiments/shapeworld/train_clip.yaml", "heldout": "experiments/shapeworld/train_clip_heldout.yaml"}


def clip_paths(role: Literal["guidance", "heldout"] = "guidance") -> tuple[Path, Path]:
    """``(architecture JSON, weights file)`` of a shipped shapeworld CLIP."""
    if role not in CLIP_NAMES:
        raise ValueError(f"unknown shapeworld CLIP {role!r}; choose 'guidance' or 'heldout'")
    name = CLIP_NAMES[role]
    return CONFIG_DIR / f"{name}.json", WEIGHTS_DIR / f"{name}.safetensors"


def shapeworld_clip(role: Literal["guidance", "heldout"] = "guidance", load: bool = True,
                    weights: Optional[Union[str, Path]] = None) -> CLIPModel:
    """The shapeworld CLIP ``role`` as a :class:`CLIPModel` (the real-weights code path).

    Args:
        weights: another ``.safetensors`` of the same architecture (e.g. a training run's export) instead of
            the shipped file.
    """
    config, shipped = clip_paths(role)
    path = Path(weights) if weights is not None else shipped
    if not path.is_file():
        how = ("pass an existing file" if weights is not None else
               f"train them with `lightning fit --config {TRAIN_CONFIGS[role]}` and copy the exported "
               f"{shipped.name} there (see shapeworld/README.md)")
        raise PriorWeightsNotFoundError(f"shapeworld CLIP '{role}' weights not found at {path}; {how}.")
    clip = CLIPModel(name=CLIP_NAMES[role], pretrained=None, checkpoint=str(path), model_config=str(config))
    return clip.load() if load else clip


DIFFUSION_DIR = WEIGHTS_DIR / "shapeworld_diffusion"


LATENT_DIFFUSION_DIR = WEIGHTS_DIR / "shapeworld_latent_diffusion"


def shapeworld_diffusion(load: bool = True, latent: bool = False) -> DiffusionModel:
    """The shipped shapeworld pixel (or, with ``latent``, latent) diffusion prior as a :class:`DiffusionModel` (the
    real-weights code path)."""
    folder, config = ((LATENT_DIFFUSION_DIR, "train_autoencoder.yaml, then train_latent_diffusion.yaml") if latent else
                      (DIFFUSION_DIR, "train_diffusion.yaml"))
    if not (folder / "model_index.json").is_file():
        raise PriorWeightsNotFoundError(
            f"shapeworld {'latent ' if latent else ''}diffusion prior not found at {folder}. Train it with "
            f"`lightning fit --config experiments/shapeworld/{config}` and copy the run's pipeline/ folder there "
            "(see shapeworld/README.md).")
    prior = DiffusionModel(model=str(folder))
    return prior.load() if load else prior
