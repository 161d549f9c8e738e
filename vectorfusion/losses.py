"""VectorFusion's non-diffusion losses: LIVE's UDF and Xing losses, the L1 pixelation loss.

* :func:`xing_loss`: the self-intersection regulariser of LIVE, thesis eq. (6.6), used during LIVE
  and during SDS for iconographic paths (spec §2.8, §2.6).
* :func:`udf_weight` / :func:`udf_loss`: LIVE's unsigned-distance-weighted reconstruction loss,
  thesis eq. (6.5), with the weight map ``d'`` built from the current stage's silhouettes.
* :func:`l1_pixelate_loss`: the "SD + L1" fit of pixel-art colours to a raster sample (spec §2.2).

The saturation penalty of pixel art lives in :mod:`vectorfusion.pixelart`.
"""

import numpy as np
import torch
from torch import Tensor

from vectorfusion.paths import cubic_segments

XING_WEIGHT = 1e-5
"""Effective weight of the Xing loss on the path mean: LIVE's 0.01 x inner 1e-3 (spec §2.8 [LIVE], AMB-19)."""

_EPS = 1e-8


def _sin(a: Tensor, b: Tensor) -> Tensor:
    """``sin`` of the angle from ``a`` to ``b``: ``(a_x b_y - a_y b_x) / (|a||b|)``."""
    cross = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return cross / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(_EPS)


def xing_loss_per_segment(points: Tensor) -> Tensor:
    """Per-segment Xing loss of closed cubic paths (thesis eq. (6.6)).

    For each cubic ``(p0, p1, p2, p3)`` with ``v1 = p1 - p0``, ``v2 = p2 - p1``, ``v3 = p3 - p2``:
    ``D1 = 1[sin(v1, v2) >= 0]`` (not differentiated), ``D2 = sin(v1, v3)`` and
    ``l = D1 ReLU(-D2) + (1 - D1) ReLU(D2)``: a segment whose end control turns against the
    direction of its first turn (a loop) is penalised. Degenerate (zero-length) control legs give
    ``sin = 0`` and a finite gradient.

    Args:
        points: ``[P, 3S, 2]`` closed cubic control points.

    Returns:
        ``[P, S]`` losses, each in [0, 1].
    """
    seg = cubic_segments(points, closed=True)  # [P, S, 4, 2]
    v1, v2, v3 = seg[..., 1, :] - seg[..., 0, :], seg[..., 2, :] - seg[..., 1, :], seg[..., 3, :] - seg[..., 2, :]
    d1 = (_sin(v1, v2) >= 0).to(points.dtype).detach()
    d2 = _sin(v1, v3)
    return d1 * torch.relu(-d2) + (1 - d1) * torch.relu(d2)


def xing_loss(points: Tensor) -> Tensor:
    """Xing loss, mean over segments then over paths (thesis eq. (6.6); spec §2.8).

    Args:
        points: ``[P, 3S, 2]`` closed cubic control points (P may be 0: returns 0).

    Returns:
        Scalar in [0, 1]; 0 for LIVE's circle init. Weight it with :data:`XING_WEIGHT`.

    Example:
        >>> pts = torch.tensor([[[0., 0], [1, 0], [1, 1], [2, -1], [3, -1], [3, -2]]])
        >>> round(float(xing_loss(pts)), 6)
        0.724564
    """
    if points.shape[0] == 0:
        return points.sum() * 0
    return xing_loss_per_segment(points).mean(-1).mean()


def udf_weight(silhouette: Tensor, previous: Tensor | None = None,
               truncate: float = 10.0) -> Tensor:
    """LIVE's UDF weight map ``d'`` of thesis eq. (6.5) from the new paths' silhouette (spec §2.8).

    1. ``d`` = unsigned distance of each pixel centre to the silhouette boundary (LIVE runs fast
       marching, ``skfmm.distance(2a - 1)``; we use the exact Euclidean distance transform of the
       binarised silhouette, boundary at the pixel edge, so pixels next to the boundary read 0.5);
    2. clip to ``truncate`` px, ``d' = max(d) - d``, normalised to max 1 (1 on the boundary, 0 at
       ``>= truncate`` px once the map reaches that far);
    3. add the map frozen at the end of the previous stage and clip to [0, 1];
    4. a silhouette that is all inside or all outside gives 0 (plus ``previous``).

    Args:
        silhouette: ``[H, W]`` alpha of the current stage's new paths drawn opaque, in [0, 1].
        previous: ``[H, W]`` weight map of the previous stages, or None.
        truncate: clipping distance in px (10 [LIVE]).

    Returns:
        ``[H, W]`` weights in [0, 1] (no gradient).
    """
    from scipy.ndimage import distance_transform_edt

    inside = silhouette.detach().cpu().numpy() > 0.5
    if inside.all() or not inside.any():
        d_prime = np.zeros(inside.shape, dtype=np.float32)
    else:
        dist = np.where(inside, distance_transform_edt(inside), distance_transform_edt(~inside)) - 0.5
        dist = np.clip(dist, 0.0, truncate)
        d_prime = dist.max() - dist
        d_prime = d_prime / max(float(d_prime.max()), _EPS)
    weight = torch.as_tensor(d_prime, dtype=silhouette.dtype, device=silhouette.device)
    if previous is not None:
        weight = (weight + previous.to(weight)).clamp(0, 1)
    return weight


def udf_loss(image: Tensor, target: Tensor,
             weight: Tensor) -> Tensor:
    """UDF-weighted reconstruction loss, thesis eq. (6.5) normalised per pixel.

    ``L = (1/3) mean_i d'_i sum_c (I_ic - Î_ic)^2``. Eq. (6.5) sums over pixels and LIVE's code
    averages without the 1/3; the constant factors do not change Adam's steps (spec §2.8).

    Args:
        image: ``[B, 3, H, W]`` render in [0, 1].
        target: ``[B, 3, H, W]`` target image in [0, 1].
        weight: ``[H, W]`` map from :func:`udf_weight`.

    Returns:
        Scalar loss.
    """
    return (weight * ((image - target) ** 2).sum(1)).mean() / 3


def l1_pixelate_loss(image: Tensor, target: Tensor) -> Tensor:
    """``mean |render - target|``: fits pixel-art colours to a raster sample ("SD + L1", spec §2.2)."""
    return (image - target).abs().mean()
