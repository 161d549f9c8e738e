"""ZeroForge's losses (paper eqs. 3–4; specs/zeroforge.md §3.8, A2, A3).

With ``Î = I/‖I‖`` (render embeddings, row i) and ``T̂`` (text embeddings, column j), ``S_ij = Î_i·T̂_j``:

* ``L_sim = −(1/B) Σ_i S_ii`` (eq. 3 with cosine similarity, A3);
* ``L_con = −(1/B) Σ_i log softmax(τ S')_ii`` (eq. 4 with its sign fixed and ``M := B``), τ an inverse
  temperature. ``contrast_axis="text"`` normalises over texts for each image (the released code, the
  default), ``"image"`` over images for each text (the paper's formula), ``"symmetric"`` averages both.
  Rows of the same query (the 3 copies of each prompt) are not negatives of each other:
  ``dup_mode="zero"`` sets their cosine to 0 (the code; ``exp(0) = 1`` stays in the denominator),
  ``"exclude"`` masks them to −∞.
* ``L = λ_sim·L_sim + λ_C·L_con`` (λ_sim = 1 in the paper; no other regulariser).
"""

from typing import Dict, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

ContrastAxis = Literal["text", "image", "symmetric"]
DupMode = Literal["zero", "exclude"]

__all__ = ["ContrastAxis", "DupMode", "cosine_matrix", "sim_loss", "duplicate_mask", "contrastive_loss", "zeroforge_loss"]


def cosine_matrix(image_emb: Tensor, text_emb: Tensor) -> Tensor:
    """``[B, B]`` ``S_ij = cos(I_i, T_j)`` (computed in fp32)."""
    if image_emb.shape != text_emb.shape or image_emb.ndim != 2:
        raise ValueError(f"need matching [B, D] image and text embeddings, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    return F.normalize(image_emb.float(), dim=-1) @ F.normalize(text_emb.float(), dim=-1).T


def sim_loss(image_emb: Tensor, text_emb: Tensor) -> Tensor:
    """``L_sim = −mean_i cos(I_i, T_i)`` (eq. 3, A3), in [−1, 1].

    Example:
        >>> float(sim_loss(torch.eye(2), 3 * torch.eye(2)))
        -1.0
    """
    return -torch.diagonal(cosine_matrix(image_emb, text_emb)).mean()


def duplicate_mask(query_id: Tensor) -> Tensor:
    """``[B, B]`` bool, True where ``i ≠ j`` carry the same query (offsets ±k, ±2k for the ``[q_0..q_{k−1}]×3`` layout)."""
    same = query_id[:, None] == query_id[None, :]
    return same & ~torch.eye(len(query_id), dtype=torch.bool, device=query_id.device)


def contrastive_loss(image_emb: Tensor, text_emb: Tensor, query_id: Tensor, tau: float = 50.0,
                     axis: ContrastAxis = "text", dup_mode: DupMode = "zero") -> Tensor:
    """InfoNCE across the batch of prompts (eq. 4; A2). See the module docstring for ``axis`` and ``dup_mode``.

    Args:
        image_emb: ``[B, D]`` render embeddings ``I``.
        text_emb: ``[B, D]`` prompt embeddings ``T``.
        query_id: ``[B]`` query index of each row (rows with equal ids are copies of one query).
        tau: inverse temperature multiplying the cosines (50, [P]).
        axis: ``text`` (code), ``image`` (paper) or ``symmetric``.
        dup_mode: ``zero`` (code) or ``exclude``.
    """
    if axis not in ("text", "image", "symmetric"):
        raise ValueError(f"contrast_axis must be 'text', 'image' or 'symmetric', got {axis!r}")
    if dup_mode not in ("zero", "exclude"):
        raise ValueError(f"dup_mode must be 'zero' or 'exclude', got {dup_mode!r}")
    S = cosine_matrix(image_emb, text_emb)  # [B, B], image i in row i, text j in column j
    dup = duplicate_mask(query_id.to(S.device))
    logits = tau * (S.masked_fill(dup, 0.0) if dup_mode == "zero" else S)
    if dup_mode == "exclude":
        logits = logits.masked_fill(dup, float("-inf"))
    per_image = -torch.diagonal(torch.log_softmax(logits, dim=1)).mean()  # each image over texts
    if axis == "text":
        return per_image
    per_text = -torch.diagonal(torch.log_softmax(logits, dim=0)).mean()  # each text over images
    return per_text if axis == "image" else 0.5 * (per_image + per_text)


def zeroforge_loss(image_emb: Tensor, text_emb: Tensor, query_id: Tensor, lambda_sim: float = 1.0,
                   lambda_contrast: float = 0.01, tau: float = 50.0, axis: ContrastAxis = "text",
                   dup_mode: DupMode = "zero") -> Dict[str, Tensor]:
    """``{"loss", "loss_sim", "loss_contrast"}`` with ``loss = λ_sim·L_sim + λ_C·L_con`` (§3.8, in fp32)."""
    terms = {"loss_sim": sim_loss(image_emb, text_emb)}
    terms["loss_contrast"] = (contrastive_loss(image_emb, text_emb, query_id, tau, axis, dup_mode) if lambda_contrast != 0
                              else terms["loss_sim"].new_zeros(()))
    terms["loss"] = lambda_sim * terms["loss_sim"] + lambda_contrast * terms["loss_contrast"]
    return terms
