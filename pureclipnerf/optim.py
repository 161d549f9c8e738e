"""DVGO's masked Adam and the learning-rate schedule (specs/pureclipnerf.md §3.10, [C]).

Masked Adam (pure PyTorch port of the update rule, not of the code): per tensor step counter t,

    m ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²,
    p ← p − lr·sqrt(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(sqrt(v) + ε)

(ε outside the bias correction). With ``skip_zero_grad`` (Vox Exp grids) only entries whose gradient
is non-zero this step update their moments and value; the MLPs of Vox Imp use the plain update.

Learning rate: ``lr = base·decay^(k/decay_steps)`` with k the steps since the last reset (×0.1 per
20k steps); the optimiser is rebuilt with fresh moments at every progressive-scaling checkpoint.
"""

import math
from typing import Iterable, Sequence

import torch
from torch.optim import Optimizer

__all__ = ["MaskedAdam", "decayed_lr", "steps_since_reset"]


class MaskedAdam(Optimizer):
    """Adam with ε outside the bias correction and an optional zero-gradient mask (DVGO).

    Args:
        params: parameters or groups; a group may set ``skip_zero_grad`` (default False) and ``name``.
        lr: default learning rate.
        betas: (β₁, β₂) = (0.9, 0.99) [C].
        eps: ε = 1e-8.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.99), eps: float = 1e-8) -> None:
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid MaskedAdam settings lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, skip_zero_grad=False))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                step_size = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                if group.get("skip_zero_grad", False):
                    mask = g != 0
                    m.copy_(torch.where(mask, b1 * m + (1 - b1) * g, m))
                    v.copy_(torch.where(mask, b2 * v + (1 - b2) * g * g, v))
                    p.sub_(step_size * m / (v.sqrt() + group["eps"]) * mask)
                else:
                    m.mul_(b1).add_(g, alpha=1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    p.sub_(step_size * m / (v.sqrt() + group["eps"]))
        return loss


def steps_since_reset(step: int, resets: Sequence[int], reset_on_scale: bool = True, first_step: int = 1) -> int:
    """Steps since the optimiser was last (re)built: at ``first_step`` and at every ``resets`` checkpoint ≤ step."""
    last = first_step
    if reset_on_scale:
        last = max([first_step] + [r for r in resets if r <= step])
    return max(step - last, 0)


def decayed_lr(base: float, k: int, decay: float = 0.1, decay_steps: int = 20000) -> float:
    """``base·decay^(k/decay_steps)`` (×0.1 per 20k steps, §3.10).

    Example:
        >>> round(decayed_lr(0.1, 20000), 6)
        0.01
    """
    return base * decay ** (k / decay_steps) if decay_steps > 0 else base
