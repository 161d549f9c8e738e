"""Learning-rate multipliers shared by the training systems (for ``torch.optim.lr_scheduler.LambdaLR``).

Written by hand: Lightning and torch provide the schedulers, not this exact warm-up/cosine convention
(``transformers.get_cosine_schedule_with_warmup`` starts the warm-up at 0 and has no floor).
VectorFusion's SDS schedule (``vectorfusion.schedules.warmup_cosine``) is not this one: it follows the
thesis' formula, which warms up from ``lr_init`` at step 0.
"""

import math


def warmup_cosine_factor(step: int, warmup: int, total: int, decay: str = "cosine", final_ratio: float = 0.0) -> float:
    """Multiplier at optimiser step ``step`` (0-based): linear warm-up ``(step + 1) / warmup`` over ``warmup``
    steps, then constant (``decay="constant"``) or a cosine from 1 at step ``warmup`` to ``final_ratio`` at
    step ``total`` (and after).

    Example:
        >>> [round(warmup_cosine_factor(s, 2, 6), 3) for s in (0, 1, 2, 4, 6, 9)]
        [0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if decay == "constant":
        return warm
    if decay != "cosine":
        raise ValueError(f"lr decay must be 'constant' or 'cosine', got {decay!r}")
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    return warm * (final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
