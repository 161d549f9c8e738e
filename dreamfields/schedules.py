"""Step schedules of Dream Fields, as pure functions of the iteration ``i`` (specs/dreamfields.md §5.2, §8, §2.4).

* :func:`warmup_lr`: exponential warm-up 1e-5 → 1e-4 over 1500 iterations, then constant (thesis §10.3;
  log-linear interpolation, ref impl): ``lr_i = exp((1−u)·ln lr₀ + u·ln lr₁)``, ``u = min(i/1500, 1)``.
* :func:`transmittance_target`: τ_i annealed 0.40 → 0.88 over 500 iterations (thesis §4.4.5), geometric in
  opacity with the camera scale ``m_focal²/((radius/4)²·1.2)`` (ref impl; A4). It is
  :func:`common.losses.transmittance_target` with the scale taken from the camera.
* :func:`ipe_cov_scale`: the reference code's coarse-to-fine covariance factor ``sc² = max(1, 2^{1−i/N})²``
  (off by default: ``N = 0`` gives 1, as the thesis; ``N = 1000`` is the ref impl's disabled option).
"""

import math

from common.losses import camera_scale
from common.losses import transmittance_target as _opacity_schedule

__all__ = ["warmup_lr", "transmittance_target", "camera_scale", "ipe_cov_scale"]


def warmup_lr(step: int, lr_init: float = 1e-5, lr_final: float = 1e-4, warmup_steps: int = 1500) -> float:
    """Learning rate at ``step``: log-linear from ``lr_init`` to ``lr_final`` over ``warmup_steps``, then constant.

    Example:
        >>> round(warmup_lr(750), 10)
        3.16228e-05
    """
    if lr_init <= 0 or lr_final <= 0:
        raise ValueError(f"learning rates must be positive, got {lr_init} and {lr_final}")
    u = min(max(step, 0) / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
    return math.exp((1 - u) * math.log(lr_init) + u * math.log(lr_final))


def transmittance_target(step: int, focal_mult: float = 1.2, radius: float = 4.0, anneal_steps: int = 500,
                         opacity_start: float = 0.5, opacity_end: float = 0.1) -> float:
    """τ_i for a camera with focal multiplier ``focal_mult`` at distance ``radius`` (§5.2).

    ``1 − τ_i = min(1, s_cam·exp((1−u)·ln o₀ + u·ln o₁))``, ``u = min(i/anneal_steps, 1)``,
    ``s_cam = m_focal²/((radius/4)²·1.2)``. Default camera: τ(0) = 0.400, τ(250) = 0.7317, τ(≥500) = 0.880.
    """
    return _opacity_schedule(step, anneal_steps, opacity_start, opacity_end, camera_scale(focal_mult, radius))


def ipe_cov_scale(step: int, anneal_iters: int = 0) -> float:
    """Multiplier ``sc²`` of the frustum covariance, ``sc = max(1, 2^{1 − i/anneal_iters})`` (0 disables)."""
    if anneal_iters <= 0:
        return 1.0
    sc = max(1.0, 2.0 ** (1.0 - step / anneal_iters))
    return sc * sc
