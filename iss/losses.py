"""ISS's loss terms, unweighted (systems multiply by their ``lambda_*``): specs/iss.md §2.2, §4–§6.

* :func:`bg_loss` — ``L_bg`` (eq. 2): rays that miss the predicted foreground must be white.
* :func:`mapper_loss` — ``L_M`` (eq. 1): regression of ``M(f_I)`` onto ``E_S(I)``.
* :func:`clip_loss` — ``L_C`` (eq. 3), minimised as ``Σ_v (1 − cos)``.
* :func:`prior_loss` — ``L_P`` (eq. 5), stylisation's 3D prior.
* :func:`dvr_losses` — DVR's ``L_D`` (photo, depth, freespace, occupancy, normal smoothness).
* :func:`random_backgrounds` / :func:`augment_background` — stylisation's background augmentation.
"""

from dataclasses import dataclass
from typing import Dict, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from iss.cameras import DVRCameras
from iss.renderer import DVRRenderer, Field

__all__ = ["bg_loss", "mapper_loss", "clip_loss", "prior_loss", "dvr_losses", "field_normals", "DVRLossWeights",
           "random_backgrounds", "augment_background", "BgForm", "MapperForm", "default_mapper_weight"]

BgForm = Literal["l1_mean", "l2_sum"]
MapperForm = Literal["l1", "mse"]


@dataclass
class DVRLossWeights:
    """Weights of DVR's ``L_D`` terms (config ``ours_combined``, [C][D]); depth 0 gives DVR's RGB-only setting."""

    rgb: float = 1.0
    depth: float = 10.0
    freespace: float = 1.0
    occupancy: float = 1.0
    normal: float = 0.05


def bg_loss(rgb: Tensor, hit: Tensor, form: BgForm = "l1_mean") -> Tensor:
    """Background loss ``L_bg`` on rays that miss the predicted foreground (``hit`` is not differentiated).

    Args:
        rgb: ``[..., R, 3]`` colour at each ray's point (misses: the fallback point ``x_pix``).
        hit: ``[..., R]`` bool hit mask from the model's own ray marching.
        form: ``l1_mean`` — the code's ``mean_{rays, ch} |1 − rgb|·(1 − h)`` (hits count as 0 in the mean) [C];
            ``l2_sum`` — the paper's ``Σ_p ‖D_c(p) − 1‖²₂ · 1[miss]`` (eq. 2) [P].

    Example:
        >>> rgb = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.2, 0.2, 0.2]])
        >>> round(bg_loss(rgb, torch.tensor([False, False, True, True])).item(), 6)
        0.208333
    """
    miss = (~hit.bool()).to(rgb.dtype).detach()[..., None]
    if form == "l1_mean":
        return ((1.0 - rgb).abs() * miss).mean()
    if form == "l2_sum":
        return (((rgb - 1.0) ** 2) * miss).sum()
    raise ValueError(f"bg_loss form must be 'l1_mean' or 'l2_sum', got {form!r}")


def default_mapper_weight(form: MapperForm) -> float:
    """``λ_M``: 2000 for the code's L1 [C], 1 for the paper's squared L2 [P]."""
    return 2000.0 if form == "l1" else 1.0


def mapper_loss(pred: Tensor, target: Tensor, form: MapperForm = "l1") -> Tensor:
    """``L_M`` between ``M(x)`` and ``f_S`` (both ``[B, c_dim]``), unweighted.

    ``l1``: ``mean_{b,k} |a − b|`` (the code; weight 2000) [C]. ``mse``: ``mean_b Σ_k (a − b)²`` (eq. 1, the
    paper's sum over the training set taken per batch) [P].
    """
    if pred.shape != target.shape:
        raise ValueError(f"mapper output {tuple(pred.shape)} and SVR code {tuple(target.shape)} differ in shape")
    if form == "l1":
        return (pred - target).abs().mean()
    if form == "mse":
        return ((pred - target) ** 2).sum(-1).mean()
    raise ValueError(f"mapper_loss form must be 'l1' or 'mse', got {form!r}")


def clip_loss(image_emb: Tensor, target: Tensor) -> Tensor:
    """``Σ_v (1 − cos(E_I(R_v), f_T))``; eq. 3 is the similarity to maximise, the code minimises this [C].

    Args:
        image_emb: ``[V, D]`` image embeddings of the renders.
        target: ``[D]``, ``[1, D]`` or ``[V, D]`` CLIP target (scale is irrelevant).

    Returns:
        scalar in ``[0, 2V]``.
    """
    cos = F.cosine_similarity(image_emb, target.expand_as(image_emb), dim=-1)
    return (1.0 - cos).sum()


def prior_loss(logits_new: Tensor, logits_ref: Tensor) -> Tensor:
    """``L_P = mean_p |D'_o(p) − D_o(p)|`` on occupancy logits (the code's form of eq. 5) [C]."""
    return (logits_new - logits_ref.detach()).abs().mean()


def field_normals(field: Field, p: Tensor, c: Optional[Tensor], h: float = 1e-3) -> Tensor:
    """``[B, N, 3]`` unit normals ``normalize(∇f)`` by central differences with step ``h`` (differentiable in θ)."""
    eye = torch.eye(3, device=p.device, dtype=p.dtype) * h
    shifted = torch.cat([p[:, :, None] + eye, p[:, :, None] - eye], 2)  # [B, N, 6, 3]
    f = field(shifted.reshape(p.shape[0], -1, 3), c)[..., 0].reshape(p.shape[0], p.shape[1], 6)
    grad = (f[..., :3] - f[..., 3:]) / (2 * h)
    return F.normalize(grad, dim=-1)


def _uniform_in_interval(lo: Tensor, hi: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    u = torch.rand(lo.shape, generator=generator, device="cpu").to(lo)
    return lo + u * (hi - lo)


def dvr_losses(field: Field, c: Tensor, cams: DVRCameras, uv: Tensor, rgb_gt: Tensor, mask_gt: Tensor,
               depth_gt: Optional[Tensor], renderer: DVRRenderer, n_steps: Optional[int] = None,
               with_normal: bool = True, generator: Optional[torch.Generator] = None):
    """DVR's ``L_D`` terms on sampled pixels (sum over pixels ÷ batch size, [C][D]), unweighted.

    Args:
        field: decoder callable; c: ``[B, C]`` codes; cams: ``B`` cameras.
        uv: ``[B, R, 2]`` sampled pixels; rgb_gt: ``[B, R, 3]``; mask_gt: ``[B, R]`` bool object mask.
        depth_gt: ``[B, R]`` GT camera depth (non-finite = no depth), or None (RGB-only).
        renderer: the DVR renderer; n_steps: ray samples (schedule).
        with_normal: compute the normal-smoothness term.

    Returns:
        ``(terms, out)``: ``terms`` has ``rgb``, ``depth``, ``freespace``, ``occupancy``, ``normal`` (scalars) and
        ``out`` is the :class:`~iss.renderer.RayOutput` (for ``L_bg`` on the same rays).

    Term by term (``h`` = predicted hit, ``m`` = GT mask):
        * photo ``Σ_{h∧m} ‖rgb(p̂) − I(u)‖₁``;
        * depth ``Σ_{h∧m∧valid} |d̂ − d_gt|``;
        * freespace ``Σ_{¬m} BCE(logit(q), 0)``, ``q`` = ``p̂`` (detached) on hits, else uniform along the ray in the cube;
        * occupancy ``Σ_{m∧¬h} BCE(logit(q'), 1)``, ``q'`` = the GT-depth point, else uniform in the cube;
        * normal ``Σ_h ‖n(p̂) − n(p̂ + ε)‖₂``, ``ε ~ U(−5e-4, 5e-4)³``.
    """
    B = uv.shape[0]
    mask_gt = mask_gt.bool()
    out = renderer.render_rays(field, c, cams, uv, n_steps)
    hit = out.hit
    zero = out.rgb.sum() * 0.0
    # photo-consistency on h ∧ m
    sel = hit & mask_gt
    photo = ((out.rgb - rgb_gt).abs().sum(-1) * sel).sum() / B
    # depth on h ∧ m ∧ valid GT depth (where() keeps inf out of the graph)
    if depth_gt is not None:
        valid = sel & torch.isfinite(depth_gt) & (depth_gt > 0)
        pred = torch.where(valid, out.depth, torch.zeros_like(out.depth))
        gt = torch.where(valid, depth_gt, torch.zeros_like(depth_gt))
        depth_term = (pred - gt).abs().sum() / B
    else:
        depth_term = zero
    # freespace / occupancy points (one field call for both)
    lo = torch.where(out.box_hit, out.near, torch.full_like(out.near, renderer.depth_range[0]))
    hi = torch.where(out.box_hit, out.far, torch.full_like(out.far, renderer.depth_range[1]))
    d_uniform = _uniform_in_interval(lo, hi, generator)
    d_free = torch.where(hit, torch.nan_to_num(out.depth.detach(), posinf=0.0), d_uniform)
    q_free = out.origins + d_free[..., None] * out.vectors
    if depth_gt is not None:
        has_depth = torch.isfinite(depth_gt) & (depth_gt > 0)
        d_occ = torch.where(has_depth, torch.nan_to_num(depth_gt, nan=0.0, posinf=0.0, neginf=0.0), d_uniform)
    else:
        d_occ = d_uniform
    q_occ = out.origins + d_occ[..., None] * out.vectors
    R = uv.shape[1]
    logits = field(torch.cat([q_free, q_occ], 1).detach(), c)[..., 0]
    lf, lo_ = logits[:, :R], logits[:, R:]
    free_sel, occ_sel = ~mask_gt, mask_gt & ~hit
    freespace = (F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf), reduction="none") * free_sel).sum() / B
    occupancy = (F.binary_cross_entropy_with_logits(lo_, torch.ones_like(lo_), reduction="none") * occ_sel).sum() / B
    # normal smoothness on hits
    normal = zero
    if with_normal and hit.any():
        p_hat = out.points.detach()
        eps = (torch.rand(p_hat.shape, generator=generator, device="cpu").to(p_hat) - 0.5) * 1e-3
        n1, n2 = field_normals(field, p_hat, c), field_normals(field, p_hat + eps, c)
        normal = ((n1 - n2).norm(dim=-1) * hit).sum() / B
    terms = {"rgb": photo, "depth": depth_term, "freespace": freespace, "occupancy": occupancy, "normal": normal}
    return terms, out


def weighted_dvr_loss(terms: Dict[str, Tensor], w: DVRLossWeights) -> Tensor:
    """``Σ λ·term`` over DVR's terms."""
    return (w.rgb * terms["rgb"] + w.depth * terms["depth"] + w.freespace * terms["freespace"]
            + w.occupancy * terms["occupancy"] + w.normal * terms["normal"])


BackgroundKind = Literal["uniform", "code_texture", "code_shape", "none"]


def random_backgrounds(n: int, kind: BackgroundKind = "uniform", generator: Optional[torch.Generator] = None) -> Tensor:
    """``[n, 3]`` background colours for stylisation (§6).

    * ``uniform`` — ``U[0, 1]³`` (the paper's "random RGB value") [P];
    * ``code_texture`` — with p = 0.8 one random channel = 1 and the other two = the same ``u ~ U(0, 1)``, else black [C];
    * ``code_shape`` — with p = 0.8 a pure primary colour (one channel 1, others 0), else black [C];
    * ``none`` — white (no augmentation).
    """
    if kind == "none":
        return torch.ones(n, 3)
    if kind == "uniform":
        return torch.rand(n, 3, generator=generator)
    if kind not in ("code_texture", "code_shape"):
        raise ValueError(f"unknown background kind {kind!r}")
    coloured = torch.rand(n, generator=generator) < 0.8
    channel = torch.randint(3, (n,), generator=generator)
    fill = torch.rand(n, 1, generator=generator).expand(n, 3) if kind == "code_texture" else torch.zeros(n, 3)
    bg = fill.clone()
    bg[torch.arange(n), channel] = 1.0
    return torch.where(coloured[:, None], bg, torch.zeros_like(bg))


def augment_background(rgb: Tensor, hit: Tensor, bg: Tensor, mode: Literal["composite", "multiply"] = "composite") -> Tensor:
    """Put renders on backgrounds; the mask carries no gradient.

    Args:
        rgb: ``[B, H, W, 3]``; hit: ``[B, H, W]``; bg: ``[B, 3]``.
        mode: ``composite`` — ``R̃ = h·R + (1 − h)·bg`` [P]; ``multiply`` — the code's ``R·A`` with ``A`` = 1 on hits
            and ``bg`` on misses [C].
    """
    h = hit.detach().to(rgb.dtype)[..., None]
    bg = bg.to(rgb)[:, None, None, :]
    if mode == "composite":
        return h * rgb + (1.0 - h) * bg
    if mode == "multiply":
        return rgb * (h + (1.0 - h) * bg)
    raise ValueError(f"background mode must be 'composite' or 'multiply', got {mode!r}")

