"""Frozen pretrained priors behind small interfaces: CLIP (open_clip) and diffusion (diffusers)."""

from common.priors.base import FrozenPrior, PriorWeightsNotFoundError
from common.priors.clip import CLIPEnsemble, CLIPModel
from common.priors.diffusion import DiffusionModel, TextContext

__all__ = ["FrozenPrior", "PriorWeightsNotFoundError", "CLIPModel", "CLIPEnsemble", "DiffusionModel", "TextContext"]
