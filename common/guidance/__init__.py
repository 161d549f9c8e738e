"""Guidance: (images [B, 3, H, W] in [0, 1], prompt, step) -> dict of named ``loss_*`` terms."""

from common.guidance.base import Guidance, check_prompt, surrogate_loss
from common.guidance.clip_guidance import CLIPGuidance
from common.guidance.sds import SDSGuidance
from common.guidance.sjc import SJCGuidance, paas

__all__ = ["Guidance", "CLIPGuidance", "SDSGuidance", "SJCGuidance", "paas", "check_prompt", "surrogate_loss"]
