"""The sparsity regularisers compared in thesis Table 4.2 (specs/dreamfields.md §5.3).

Every variant combines the CLIP loss ``L_CLIP = −g(I)ᵀh(y)`` (eq. 4.7, averaged over augmentations)
with the per-pixel transmittance ``T`` of the full, uncropped training render:

================== ===================================================== ======================
``sparsity``        total loss                                            Table 4.2 row
================== ===================================================== ======================
``none``            ``L_CLIP``                                            No regularizer
``perturb_sigma``   ``L_CLIP`` with ``σ = softplus(f_θ(x) + ε)``          Perturb σ (NeRF)
``beta_prior``      ``L_CLIP + λ_β·mean(log T + log(1 − T))``             Beta prior, eq. 4.10
``gated``           ``mean(T)·L_CLIP``                                    Gated T (Lucid [103])
``gated_as_written````−mean(T)·L_CLIP`` (the table's literal sign)        –
``clipped_gated``   ``min(τ, mean T)·L_CLIP``                             Clipped gated T, eq. 4.11
``clipped_additive````L_CLIP + λ·L_T``, ``L_T = −min(τ, mean T)``         ours, eq. 4.8–4.9
================== ===================================================== ======================

``gated``: Table 4.2 writes "−mean(T)·L_CLIP" next to "−L_T·L_CLIP" for eq. 4.11. Since
``−L_T = min(τ, mean T)``, the unclipped counterpart of eq. 4.11 is ``mean(T)·L_CLIP`` (Lucid
multiplies the *maximised* objective by the transparency). Read literally, ``−mean(T)·L_CLIP =
mean(T)·cos`` is minimised by lowering the CLIP similarity, which cannot give the table's 34.6 %;
the literal form is kept as ``gated_as_written`` for completeness (see dreamfields/README.md).
The ε of ``perturb_sigma`` is added inside the field (``MLPField.density_noise_std``).
"""

from typing import Dict, Literal

from torch import Tensor

from common.losses import beta_prior_loss, transmittance_loss

__all__ = ["Sparsity", "SPARSITY_KINDS", "sparsity_objective"]

Sparsity = Literal["clipped_additive", "none", "perturb_sigma", "beta_prior", "gated", "gated_as_written",
                   "clipped_gated"]
SPARSITY_KINDS = ("clipped_additive", "none", "perturb_sigma", "beta_prior", "gated", "gated_as_written",
                  "clipped_gated")


def sparsity_objective(kind: Sparsity, loss_clip: Tensor, transmittance: Tensor, tau: float,
                       lambda_transmittance: float = 0.5, lambda_beta: float = 1e-3) -> tuple[Tensor, Dict[str, Tensor]]:
    """Total loss of one Table 4.2 variant and its named terms.

    Args:
        kind: the variant (see the module table).
        loss_clip: scalar ``L_CLIP`` (negative cosine).
        transmittance: per-pixel ``T`` of the full training render, any shape.
        tau: target transmittance τ_i.
        lambda_transmittance: λ of eq. 4.9 (0.5, ref impl; A5).
        lambda_beta: λ_β of eq. 4.10 (1e-3, ref impl; A17).

    Returns:
        ``(total, terms)``; ``terms`` holds ``loss_clip`` and the variant's own term
        (``loss_transmittance`` = L_T, ``loss_beta``), for logging.
    """
    terms: Dict[str, Tensor] = {"loss_clip": loss_clip}
    mean_t = transmittance.mean()
    if kind in ("none", "perturb_sigma"):
        return loss_clip, terms
    if kind == "clipped_additive":
        terms["loss_transmittance"] = transmittance_loss(transmittance, tau)  # eq. 4.8
        return loss_clip + lambda_transmittance * terms["loss_transmittance"], terms  # eq. 4.9
    if kind == "beta_prior":
        terms["loss_beta"] = beta_prior_loss(transmittance)  # eq. 4.10
        return loss_clip + lambda_beta * terms["loss_beta"], terms
    if kind == "gated":
        return mean_t * loss_clip, terms
    if kind == "gated_as_written":
        return -mean_t * loss_clip, terms
    if kind == "clipped_gated":
        terms["loss_transmittance"] = transmittance_loss(transmittance, tau)
        return -terms["loss_transmittance"] * loss_clip, terms  # eq. 4.11: min(τ, mean T)·L_CLIP
    raise ValueError(f"unknown sparsity regulariser {kind!r}; choose one of {SPARSITY_KINDS}")
