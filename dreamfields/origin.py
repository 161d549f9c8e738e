"""Origin tracking (thesis §4.4.6, §10.3; specs/dreamfields.md §6, A7, A22).

The scene cube stays fixed at ``[-1,1]³`` in field coordinates; the camera orbits a tracked origin
``o``, an exponential moving average of the centre of mass of the rendered density,
``o ← 0.999·o + 0.001·c`` with ``c = Σ_k σ_k x_k / Σ_k σ_k`` over every sample of the training render
(raw σ after masking, no gradient). The update runs after each optimiser step and skips a non-finite
``c``. ``o`` is a buffer, so it is saved in checkpoints and used by evaluation renders.
"""

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["OriginTracker", "center_of_mass"]


def center_of_mass(points: Tensor, density: Tensor) -> Tensor:
    """``[3]`` density-weighted centre ``Σ σ_k x_k / Σ σ_k`` of points ``[..., 3]`` with densities ``[...]``."""
    s = density.detach().reshape(-1)
    return (s[:, None] * points.detach().reshape(-1, 3)).sum(0) / s.sum().clamp_min(1e-12)


class OriginTracker(nn.Module):
    """EMA of the scene's centre of mass.

    Args:
        decay: EMA decay (0.999, thesis §10.3).
        enabled: False keeps ``o = 0`` (Table 4.1 rows before "+ track origin").
    """

    def __init__(self, decay: float = 0.999, enabled: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"origin decay must be in [0, 1], got {decay}")
        self.decay, self.enabled = decay, enabled
        self.register_buffer("origin", torch.zeros(3))

    @torch.no_grad()
    def update(self, com: Optional[Tensor]) -> bool:
        """``o ← decay·o + (1 − decay)·c``; returns False (and leaves ``o``) when disabled or ``c`` is not finite."""
        if not self.enabled or com is None:
            return False
        com = com.detach().to(self.origin)
        if com.shape != (3,) or not torch.isfinite(com).all():
            return False
        self.origin.mul_(self.decay).add_((1.0 - self.decay) * com)
        return True

    def forward(self) -> Tensor:
        """The current origin ``[3]``."""
        return self.origin
