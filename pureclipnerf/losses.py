"""PureCLIPNeRF's regularisers and their step windows (specs/pureclipnerf.md §3.9, paper eqs. 3–7).

* :func:`sphere_mask`, :func:`kl_sphere`: the spherical prior ``P(q) = 1[‖q‖² ≤ 1]`` (eq. 4) and its KL
  term (eq. 5) in the released code's form, ``mean_q P(q)·log(P(q)/(α(q) + ε) + ε)`` over *all*
  vertices with ε = 1e-4 (§7.10; the λ values are tuned for it).
* :func:`tv_huber_grad_`: DVGO's gradient-injection TV for Vox Exp: after ``backward``, add
  ``c·Σ_{6 neighbours} clamp(v_i − v_j, −1, 1)`` to the gradient of every vertex that got one, i.e. the
  gradient of ``c·Σ_edges Huber₁(v_i − v_j)`` restricted to the touched vertices (§3.9.3, §7.12).
* :func:`tv_weight`: ``c = λ·max(world_size)/(128·6·n_rays)`` ([C]).
* Vox Imp's TV is the mean-abs TV of :func:`common.losses.total_variation` on the activated grids;
  the transmittance loss (eq. 3) and the background entropy ``L_σ`` come from :mod:`common.losses`.
* :func:`in_window`: the on/off windows (KL on for ``0 ≤ t ≤ 8000``; TV on for ``5000 < t < 13000``).
"""

from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["sphere_mask", "kl_sphere", "tv_weight", "tv_huber_grad_", "in_window"]


def sphere_mask(coords: Tensor, radius: float = 1.0) -> Tensor:
    """``P(q) = 1[‖q‖₂² ≤ r²]`` at vertex coordinates ``[..., 3]`` (paper eq. 4) → bool ``[...]``."""
    return (coords**2).sum(-1) <= radius**2


def kl_sphere(alpha: Tensor, prior: Tensor, eps: float = 1e-4) -> Tensor:
    """KL of the density grid against the spherical prior (paper eq. 5, released-code form; §3.9.2).

    ``L = mean_q P(q)·log(P(q)/(α(q) + ε) + ε)``: vertices outside the sphere add 0 but count in the
    mean; inside it is ≈ ``−log α``, which makes density appear in the unit sphere.

    Args:
        alpha: ``[Nx, Ny, Nz]`` α of the vertex values (δ = one voxel).
        prior: ``[Nx, Ny, Nz]`` bool or {0, 1} sphere mask.
        eps: ε inside the log.

    Example:
        >>> round(kl_sphere(torch.full((2,), 2.5e-6), torch.tensor([True, False])).item(), 3)
        4.593
    """
    p = prior.to(alpha.dtype)
    return (p * torch.log(p / (alpha + eps) + eps)).mean()


def tv_weight(lam: float, world_size: Sequence[int], n_rays: int) -> float:
    """DVGO's TV coefficient ``c = λ·max(world_size)/128/6/n_rays`` ([C]; n_rays = res², 50176 at 224)."""
    return lam * max(world_size) / 128.0 / 6.0 / max(n_rays, 1)


@torch.no_grad()
def tv_huber_grad_(param: Tensor, weight: float, dense: bool = False, grad: Optional[Tensor] = None) -> Tensor:
    """Add DVGO's TV gradient to ``param.grad`` in place (Vox Exp, §3.9.3).

    For each channel and each of the three axes, every vertex gets ``weight·clamp(v_i − v_j, −1, 1)``
    from each neighbour j that exists; this equals ``∂/∂v_i`` of ``weight·Σ_edges Huber₁(v_i − v_j)``.
    Only vertices whose gradient is non-zero are changed unless ``dense``.

    Args:
        param: ``[C, Nx, Ny, Nz]`` raw grid (with ``.grad`` set, or pass ``grad``).
        weight: c of :func:`tv_weight`.
        dense: add to every vertex (DVGO's ``dense_mode``) rather than only the touched ones.
        grad: gradient tensor to update (default ``param.grad``).

    Returns:
        The updated gradient.
    """
    g = param.grad if grad is None else grad
    if g is None:
        raise ValueError("tv_huber_grad_ needs a gradient: call backward() first (or pass grad=)")
    v = param.detach()
    add = torch.zeros_like(v)
    for dim in (1, 2, 3):
        c = v.diff(dim=dim).clamp(-1.0, 1.0)  # v[i+1] − v[i]
        n = v.shape[dim]
        add.narrow(dim, 1, n - 1).add_(c)  # v_i − v_{i−1}
        add.narrow(dim, 0, n - 1).sub_(c)  # v_i − v_{i+1}
    add.mul_(weight)
    if not dense:
        add.mul_(g != 0)
    g.add_(add)
    return g


def in_window(step: int, window: Sequence[int], closed: bool = True) -> bool:
    """Whether ``step`` is inside ``window = (start, end)``: ``start ≤ step ≤ end`` when ``closed``,
    ``start < step < end`` otherwise (KL uses closed, TV open windows, [C]).

    Example:
        >>> in_window(8000, (0, 8000)), in_window(5000, (5000, 13000), closed=False)
        (True, False)
    """
    start, end = window
    return start <= step <= end if closed else start < step < end
