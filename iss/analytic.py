"""Analytic occupancy fields with the decoder's interface, for tests and renderer checks (specs/iss.md §15.0).

Both return ``[B, N, 4]`` raw outputs (occupancy logit, RGB logits) like :class:`iss.models.DVRDecoder` and accept
``only_occupancy`` / ``only_texture``.
"""

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = ["SphereField", "BoxField", "CodeSphereField"]


def _rgb_logits(rgb: Sequence[float]) -> Tensor:
    x = torch.tensor(rgb, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
    return torch.log(x / (1 - x))


class _Analytic(nn.Module):
    def __init__(self, k: float, rgb: Sequence[float]) -> None:
        super().__init__()
        self.k = k
        self.rgb_logits = nn.Parameter(_rgb_logits(rgb))

    def _sdf_inside(self, p: Tensor, c: Optional[Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, p: Tensor, c: Optional[Tensor] = None, only_occupancy: bool = False, only_texture: bool = False) -> Tensor:
        logit = self.k * self._sdf_inside(p, c)  # [B, N], positive inside
        rgb = self.rgb_logits.expand(*p.shape[:-1], 3)
        if only_occupancy:
            return logit
        if only_texture:
            return torch.sigmoid(rgb)
        return torch.cat([logit[..., None], rgb], -1)


class SphereField(_Analytic):
    """Occupancy logit ``k·(r − ‖p − centre‖)``; with a code ``c [B, ≥1]`` the radius is ``r + c[:, 0]``.

    Args:
        r: radius (a learnable parameter, for gradient tests).
        k: logit slope.
        rgb: constant colour (a learnable parameter).
        centre: sphere centre.
    """

    def __init__(self, r: float = 0.3, k: float = 10.0, rgb: Sequence[float] = (0.8, 0.2, 0.2),
                 centre: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
        super().__init__(k, rgb)
        self.r = nn.Parameter(torch.tensor(float(r)))
        self.register_buffer("centre", torch.tensor(centre, dtype=torch.float32))

    def _sdf_inside(self, p: Tensor, c: Optional[Tensor]) -> Tensor:
        r = self.r if c is None else self.r + c[:, :1]  # [B, 1] with a code
        return r - (p - self.centre).norm(dim=-1)


class BoxField(_Analytic):
    """Occupancy logit ``k·(h − max_i |p_i − centre_i|)`` (an axis-aligned cube of half side ``h``)."""

    def __init__(self, half: float = 0.25, k: float = 10.0, rgb: Sequence[float] = (0.2, 0.2, 0.8),
                 centre: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
        super().__init__(k, rgb)
        self.half_size = nn.Parameter(torch.tensor(float(half)))
        self.register_buffer("centre", torch.tensor(centre, dtype=torch.float32))

    def _sdf_inside(self, p: Tensor, c: Optional[Tensor]) -> Tensor:
        return self.half_size - (p - self.centre).abs().amax(dim=-1)


class CodeSphereField(nn.Module):
    """A decoder stand-in whose shape code means something: a sphere of radius ``r + 0.1·c[:, 0]`` and colour
    ``sigmoid(c[:, 1:4])`` (for stage-2 tests with a toy CLIP). Has the decoder's interface and ``c_dim``."""

    def __init__(self, c_dim: int = 8, r: float = 0.3, k: float = 10.0) -> None:
        super().__init__()
        if c_dim < 4:
            raise ValueError("CodeSphereField needs c_dim >= 4")
        self.c_dim, self.r, self.k = c_dim, r, k
        self.register_buffer("_anchor", torch.zeros(0))

    def forward(self, p: Tensor, c: Tensor, only_occupancy: bool = False, only_texture: bool = False) -> Tensor:
        if c.ndim == 1:
            c = c[None]
        logit = self.k * (self.r + 0.1 * c[:, :1] - p.norm(dim=-1))  # [B, N]
        rgb = c[:, None, 1:4].expand(*p.shape[:-1], 3)
        if only_occupancy:
            return logit
        if only_texture:
            return torch.sigmoid(rgb)
        return torch.cat([logit[..., None], rgb], -1)
