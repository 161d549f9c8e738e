"""Learning-rate schedules of VectorFusion and LIVE as pure functions of the step (spec §3.1, §2.8).

* SDS, icons and sketches [S]: control points warm up linearly 0.02 -> 0.2 over 500 steps, then
  decay with a cosine to 0.05 at the last step N; fill colours use 1/20 of it, the background 1/200.
* SDS, pixel art [S]: colours warm up 1e-5 -> 1e-4 over 1000 steps, then cosine to 2.5e-5 [NS, AMB-11].
* LIVE [LIVE]: per stage, points lr 1.0 and colours 0.01 scaled by a factor that decays linearly
  1 -> 0.4 over each window of 500 iterations (geometric in 0.4 per window).
"""

import math
from dataclasses import dataclass


def warmup_cosine(step: int, total: int, warmup: int, lr_init: float, lr_max: float, lr_final: float) -> float:
    """Linear warm-up ``lr_init -> lr_max`` over ``warmup`` steps, then cosine to ``lr_final`` at ``total``.

    ``lr = lr_final + (lr_max - lr_final)(1 + cos(pi (i - warmup) / (total - warmup))) / 2`` after
    the warm-up (thesis §11.9.3). Steps past ``total`` keep ``lr_final``; if ``total <= warmup`` the
    schedule is the warm-up alone.

    Args:
        step: 0-based SDS step i.
        total: number of SDS steps N.
        warmup: warm-up length.
        lr_init: lr at step 0.
        lr_max: lr at the end of the warm-up.
        lr_final: lr at step N.

    Example:
        >>> [round(warmup_cosine(i, 1000, 500, 0.02, 0.2, 0.05), 4) for i in (0, 250, 500, 1000)]
        [0.02, 0.11, 0.2, 0.05]
    """
    if step < warmup:
        return lr_init + (lr_max - lr_init) * step / warmup
    if total <= warmup:
        return lr_max
    progress = min(max((step - warmup) / (total - warmup), 0.0), 1.0)
    return lr_final + 0.5 * (lr_max - lr_final) * (1 + math.cos(math.pi * progress))


@dataclass
class SDSSchedule:
    """Optimiser settings of the SDS phase (thesis §11.9.3 [S]; pixel-art decay [NS, AMB-11]).

    Args:
        point_lr_init: control-point lr at step 0 (0.02).
        point_lr_max: after the warm-up (0.2).
        point_lr_final: at the last step (0.05).
        point_warmup: warm-up steps (500).
        color_ratio: fill-colour lr = point lr x this (1/20).
        background_ratio: background lr = point lr x this (1/200).
        pixel_lr_init: pixel-art colour lr at step 0 (1e-5).
        pixel_lr_max: after the warm-up (1e-4).
        pixel_lr_final: at the last step (2.5e-5, [NS]).
        pixel_warmup: warm-up steps (1000).
        betas: Adam betas ((0.9, 0.9) [S]).
        eps: Adam epsilon (1e-6 [S]).
    """

    point_lr_init: float = 0.02
    point_lr_max: float = 0.2
    point_lr_final: float = 0.05
    point_warmup: int = 500
    color_ratio: float = 1 / 20
    background_ratio: float = 1 / 200
    pixel_lr_init: float = 1e-5
    pixel_lr_max: float = 1e-4
    pixel_lr_final: float = 2.5e-5
    pixel_warmup: int = 1000
    betas: tuple[float, float] = (0.9, 0.9)
    eps: float = 1e-6

    def lrs(self, step: int, total: int) -> dict[str, float]:
        """Per-group learning rates at SDS step ``step`` of ``total``.

        Returns:
            ``{"points", "colors", "background", "pixels"}`` -> lr.
        """
        pts = warmup_cosine(step, total, self.point_warmup, self.point_lr_init, self.point_lr_max,
                            self.point_lr_final)
        pix = warmup_cosine(step, total, self.pixel_warmup, self.pixel_lr_init, self.pixel_lr_max,
                            self.pixel_lr_final)
        return {"points": pts, "colors": pts * self.color_ratio, "background": pts * self.background_ratio,
                "pixels": pix}


def live_lr_factor(step: int, decay_every: int = 500, decay_ratio: float = 0.4) -> float:
    """LIVE's ``linear_decay_lrlambda_f``: linear ``r^k -> r^(k+1)`` within window k of ``decay_every``.

    Example:
        >>> [round(live_lr_factor(i), 3) for i in (0, 250, 500, 1000)]
        [1.0, 0.7, 0.4, 0.16]
    """
    k, r = divmod(step, decay_every)
    start, end = decay_ratio**k, decay_ratio ** (k + 1)
    return start + (end - start) * r / decay_every


@dataclass
class LIVESchedule:
    """LIVE's per-stage optimiser [LIVE] (spec §2.8).

    Args:
        point_lr: control-point lr (1.0).
        color_lr: fill-colour lr (0.01).
        decay_every: window of the linear decay (500).
        decay_ratio: factor per window (0.4).
        betas: Adam betas (torch defaults (0.9, 0.999)).
        eps: Adam epsilon (1e-8).
        pixel_lr: colour lr of the pixel-art L1 fit ([NS] 0.01, constant).
    """

    point_lr: float = 1.0
    color_lr: float = 0.01
    decay_every: int = 500
    decay_ratio: float = 0.4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    pixel_lr: float = 0.01

    def lrs(self, step_in_stage: int) -> dict[str, float]:
        """Per-group learning rates at iteration ``step_in_stage`` of a LIVE stage (background fixed)."""
        f = live_lr_factor(step_in_stage, self.decay_every, self.decay_ratio)
        return {"points": self.point_lr * f, "colors": self.color_lr * f, "background": 0.0,
                "pixels": self.pixel_lr}
