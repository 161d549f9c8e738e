"""Run-time checks whose errors name the step and the fix."""

import torch
from torch import Tensor


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


def check_finite_loss(loss: Tensor, step: int, terms: dict | None = None, hint: str = "") -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` is not finite, naming the step and the terms.

    Raised before the optimiser step, so parameters and the last checkpoint stay as they were.
    """
    if torch.isfinite(loss).all():
        return
    detail = ""
    if terms:
        detail = " Terms: " + ", ".join(f"{k}={float(v.detach().float().mean()):.4g}" for k, v in terms.items()) + "."
    raise NonFiniteLossError(
        f"non-finite loss ({float(loss.detach().float().mean())}) at step {step}.{detail} "
        f"{hint or 'Lower the learning rate, check the inputs for NaNs, or resume from the last checkpoint with --ckpt_path last.'} "
        "The last checkpoint written before this step is intact."
    )
