"""SJC's regularisers: the emptiness loss (Eq. 26, with its two-stage weight) and the centre-depth loss (Eq. 27).

The emptiness loss and its schedule are shared code (:func:`common.losses.emptiness_loss`,
:func:`common.losses.emptiness_weight`, tested in ``tests/common/test_losses.py``); this module adds
the centre-depth loss, which only SJC uses.

Centre depth (Eq. 27, spec §2.6 and A7): the paper writes
``L = −log(mean_{p∈B} D(p) − mean_{q∉B} D(q))`` for a central box B of the depth image D. With the
code's depth (expected distance, background = 10) the argument is *negative* for a centred object,
so the code's literal loss value is NaN while its gradient ``−1/Δ`` is finite. We use
``L = −log(|Δ| + 1e-12)``: the same gradient for every Δ ≠ 0 and a finite value.
"""

import torch
from torch import Tensor

from common.losses import emptiness_loss, emptiness_weight

__all__ = ["center_box", "center_depth_loss", "emptiness_loss", "emptiness_weight"]


def center_box(height: int, width: int, frac: float = 50 / 64) -> tuple[slice, slice]:
    """Rows and columns of the central box B: ``[7, 57)`` of a 64×64 image for the default ``frac`` (A8)."""
    if not 0 < frac < 1:
        raise ValueError(f"centre box fraction must be in (0, 1), got {frac}")
    bh, bw = round(height * frac), round(width * frac)
    if bh < 1 or bw < 1 or bh >= height or bw >= width:
        raise ValueError(f"a {height}x{width} depth map is too small for a centre box of fraction {frac}")
    top, left = (height - bh) // 2, (width - bw) // 2
    return slice(top, top + bh), slice(left, left + bw)


def center_depth_loss(depth: Tensor, frac: float = 50 / 64, eps: float = 1e-12) -> Tensor:
    """``−log(|mean_B D − mean_{B^c} D| + eps)`` (Eq. 27 with the A7 resolution).

    Args:
        depth: ``[..., H, W]`` depth maps (expected distance, background = 10); leading dims are averaged.
        frac: side of B as a fraction of the image (50/64).
        eps: 1e-12 as in the code.

    Returns:
        Scalar loss.

    Example:
        >>> d = torch.full((64, 64), 10.0); d[7:57, 7:57] = 1.0
        >>> round(center_depth_loss(d).item(), 7)
        -2.1972246
    """
    h, w = depth.shape[-2:]
    rows, cols = center_box(h, w, frac)
    mask = torch.zeros(h, w, dtype=torch.bool, device=depth.device)
    mask[rows, cols] = True
    flat = depth.reshape(-1, h * w)
    inside, outside = flat[:, mask.reshape(-1)].mean(dim=1), flat[:, ~mask.reshape(-1)].mean(dim=1)
    delta = inside - outside
    return -torch.log(delta.abs() + eps).mean()
