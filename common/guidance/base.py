"""The guidance contract: (images ``[B, 3, H, W]`` in [0, 1], prompt, step) -> named loss terms.

Every guidance returns a ``dict[str, Tensor]`` whose keys are ``loss_<name>`` scalars,
differentiable w.r.t. the images; a system weights each by ``lambda_<name>`` and logs it as
``train/loss_<name>`` (conventions.md #2, #7). Diagnostics that are not losses (gradient norms,
sampled timesteps) are kept in :attr:`Guidance.last_info` rather than in the returned dict, so
summing the dict is always safe.

Priors are loaded by :meth:`Guidance.load` (call it from ``LightningModule.setup``); they are
:class:`~common.priors.base.FrozenPrior`s, so they never enter checkpoints.
"""

from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from common.priors.base import FrozenPrior

__all__ = ["Guidance", "check_prompt", "surrogate_loss"]


def check_prompt(prompt: Union[str, Sequence[str]], batch: Optional[int] = None) -> List[str]:
    """Normalise a prompt argument to a list of non-empty strings of length 1 or ``batch``.

    Raises:
        ValueError: on an empty/blank prompt, a non-string, or a length mismatch.
    """
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if len(prompts) == 0:
        raise ValueError("guidance needs a prompt")
    for p in prompts:
        if not isinstance(p, str):
            raise ValueError(f"prompts must be strings (or a precomputed context), got {type(p).__name__}")
        if not p.strip():
            raise ValueError("Empty prompt: text guidance needs a non-empty prompt (set `prompt:` in the config)")
    if batch is not None and len(prompts) not in (1, batch):
        raise ValueError(f"got {len(prompts)} prompts for a batch of {batch} images; give 1 or {batch}")
    return prompts


def surrogate_loss(x: Tensor, grad: Tensor) -> Tensor:
    """Scalar whose gradient w.r.t. ``x`` is ``grad / B``: ``Σ(stopgrad(grad) ⊙ x)/B``.

    Used by SDS (sds_ddpm.md §4.2, B6: sum over pixels, mean over the batch) and SJC (sjc.md §1.5).
    Its *value* is not a meaningful loss.
    """
    return (grad.detach() * x).sum() / x.shape[0]


class Guidance(nn.Module):
    """Base class: holds frozen priors and maps rendered images + prompt to ``loss_*`` terms."""

    def __init__(self) -> None:
        super().__init__()
        self.last_info: Dict[str, Tensor] = {}

    def priors(self) -> List[FrozenPrior]:
        """The frozen priors this guidance uses."""
        return [m for m in self.modules() if isinstance(m, FrozenPrior)]

    def load(self) -> "Guidance":
        """Load every prior's weights (call from ``LightningModule.setup``)."""
        for p in self.priors():
            p.load()
        return self

    def setup(self, stage: Optional[str] = None) -> None:
        """Alias of :meth:`load`."""
        self.load()

    def forward(self, images: Tensor, prompt, step: int = 0, **kwargs) -> Dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _generator(seed: Optional[int], device: torch.device) -> Optional[torch.Generator]:
        if seed is None:
            return None
        return torch.Generator(device=device).manual_seed(seed)
