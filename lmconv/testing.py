"""Tiny seeded LMConv models and exact-check helpers for tests (spec §7 defaults: F=8, nr_resnet=1, k=3, d=2,
float64, eval mode). No data, no network access."""

from typing import Sequence

import torch

from lmconv.likelihoods import BinaryLikelihood, DiscretizedLogisticMixtureLikelihood, Likelihood
from lmconv.masks import MaskBank
from lmconv.model import LMConvModel
from lmconv.network import LMConvNetwork


def tiny_model(likelihood: Likelihood, sizes: Sequence[tuple[int, int]], family: str = "s_curve",
               variants: Sequence[int] = tuple(range(8)), filters: int = 8, nr_resnet: int = 1, seed: int = 0,
               dtype: torch.dtype = torch.float64, order_seed: int = 0) -> LMConvModel:
    torch.manual_seed(seed)
    net = LMConvNetwork(likelihood.channels, likelihood.out_channels, filters, nr_resnet)
    model = LMConvModel(net, likelihood, MaskBank(family, variants, sizes, seed=order_seed))
    return model.to(dtype).eval()


def all_binary_images(h: int, w: int) -> torch.Tensor:
    """Every binary ``h×w`` image: ``[2^(h·w), 1, h, w]`` long."""
    n = h * w
    idx = torch.arange(2**n)
    bits = (idx[:, None] >> torch.arange(n)[None]) & 1
    return bits.view(-1, 1, h, w)


def dependency_matrix(model: LMConvModel, x: torch.Tensor, order, n_proj: int = 1) -> torch.Tensor:
    """``J[p, q] = Σ |∂(r·out[:, p])/∂x[:, q]|`` over ``n_proj`` random channel projections ``r`` (and input
    channels): one backward for all ``p`` by giving each output location its own copy of ``x``.

    Args:
        x: ``[1, C, H, W]`` network input in [-1, 1].
    Returns:
        ``[N, N]`` (output location, input location), row-major flat indices.
    """
    _, c, h, w = x.shape
    n = h * w
    total = torch.zeros(n, n, dtype=x.dtype)
    for _ in range(n_proj):
        xs = x.expand(n, -1, -1, -1).clone().requires_grad_(True)
        out = model.forward_raw(xs, order)  # [N, n_out, H, W]
        proj = torch.randn(out.shape[1], dtype=x.dtype)
        sel = torch.zeros(n, n, dtype=x.dtype)
        sel[torch.arange(n), torch.arange(n)] = 1.0
        (out.flatten(2) * proj[None, :, None] * sel[:, None, :]).sum().backward()
        total += xs.grad.abs().sum(1).reshape(n, n)
    return total
