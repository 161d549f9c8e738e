"""Density and colour activations shared by the fields."""

from typing import Literal

import torch
from torch import Tensor

DensityActivation = Literal["relu", "softplus", "exp", "trunc_exp", "none"]


class _TruncExp(torch.autograd.Function):
    """``exp`` whose backward clamps its input at 15 (instant-NGP's trick against overflow)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15))


def density_activation(raw: Tensor, kind: DensityActivation) -> Tensor:
    """σ ≥ 0 from a raw value."""
    if kind == "relu":
        return torch.relu(raw)
    if kind == "softplus":
        return torch.nn.functional.softplus(raw)
    if kind == "exp":
        return torch.exp(raw)
    if kind == "trunc_exp":
        return _TruncExp.apply(raw)
    return raw
