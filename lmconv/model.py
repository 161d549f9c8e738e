"""The autoregressive image model: network + likelihood head + the order set's cached masks.

Likelihoods (thesis eq. 2.1/2.2): ``log p(x; π) = Σ_t log p(x_{π[t]} | x_{π[<t]})``, all terms from one
teacher-forced pass. Order ensemble (thesis §2.4; spec §2.9): ``log p_ens(x) = logsumexp_k log p(x; π_k) − log K``.
Completion likelihood (thesis §2.3; spec §2.9): the per-location log-probs of a teacher-forced pass on the
full ground-truth image, summed over the hidden region, under an order whose hidden pixels come last
(= ``log p(x_H | x_O)``) or first (adversarial: = ``log p(x_H)``).
"""

import math
from typing import Optional, Sequence, Union

import torch
from torch import nn

from lmconv.likelihoods import Likelihood
from lmconv.masks import MaskBank, OrderMasks
from lmconv.network import LMConvNetwork
from lmconv.orders import Order, stable_partition

OrderRef = Union[int, Sequence[tuple[int, int]]]  # index into the training orders, or an explicit order


class LMConvModel(nn.Module):
    """An order-agnostic autoregressive image model.

    Args:
        network: the :class:`LMConvNetwork` (its ``out_channels`` must equal ``likelihood.out_channels``).
        likelihood: binary or discretized-logistic-mixture head.
        masks: the training orders' :class:`MaskBank`.
    """

    def __init__(self, network: LMConvNetwork, likelihood: Likelihood, masks: MaskBank) -> None:
        super().__init__()
        self.network, self.likelihood, self.masks = network, likelihood, masks

    @property
    def num_orders(self) -> int:
        return self.masks.num_orders

    def check_levels(self, levels: torch.Tensor) -> None:
        """Raise a clear ``ValueError`` for images the model cannot score."""
        if levels.dim() != 4 or levels.shape[1] != self.likelihood.channels:
            raise ValueError(f"Expected images [B, {self.likelihood.channels}, H, W] of integer levels, "
                             f"got shape {tuple(levels.shape)}.")
        if levels.dtype.is_floating_point and not torch.equal(levels, levels.round()):
            raise ValueError("Images must hold integer levels 0..n_bins-1, not continuous values.")
        if levels.numel() and (int(levels.min()) < 0 or int(levels.max()) >= self.likelihood.n_bins):
            raise ValueError(f"Levels must lie in 0..{self.likelihood.n_bins - 1}, got "
                             f"{int(levels.min())}..{int(levels.max())}.")

    def resolve(self, order: OrderRef, height: int, width: int) -> tuple[Order, OrderMasks]:
        """An order index or explicit order → (order list, masks) at ``H×W``."""
        if isinstance(order, int):
            return self.masks.order(order, height, width), self.masks.masks(order, height, width)
        self.masks._check_size(height, width)
        order = [tuple(p) for p in order]
        return order, self.masks.masks_for(order, height, width)

    def forward_raw(self, x: torch.Tensor, order: OrderRef) -> torch.Tensor:
        """Network head ``[B, out_channels, H, W]`` for inputs ``x`` in [-1, 1] under ``order``."""
        _, masks = self.resolve(order, x.shape[-2], x.shape[-1])
        return self.network(x, masks)

    def log_prob_per_location(self, levels: torch.Tensor, order: OrderRef) -> torch.Tensor:
        """``[B, H, W]``: ``log p(x_p | x_{Pa(p)})`` (nats) for every location, one forward pass."""
        self.check_levels(levels)
        levels = levels.long()
        x = self.likelihood.to_input(levels, self._dtype())
        return self.likelihood.log_prob(self.forward_raw(x, order), levels)

    def log_prob(self, levels: torch.Tensor, order: OrderRef = 0) -> torch.Tensor:
        """``[B]`` joint log-likelihood in nats under one order (eq. 2.1)."""
        return self.log_prob_per_location(levels, order).flatten(1).sum(1)

    def log_prob_ensemble(self, levels: torch.Tensor, orders: Optional[Sequence[OrderRef]] = None) -> torch.Tensor:
        """``[B]`` log of the mixture ``(1/K) Σ_k p(x; π_k)``; default: all training orders."""
        orders = list(range(self.num_orders)) if orders is None else list(orders)
        return log_mean_exp(torch.stack([self.log_prob(levels, o) for o in orders]))  # [K, B] -> [B]

    def conditional_log_prob(self, levels: torch.Tensor, hidden: torch.Tensor, order: OrderRef) -> torch.Tensor:
        """``[B]`` sum over hidden locations of the teacher-forced log-probs under ``order`` (spec §2.9, §6 item 7)."""
        lp = self.log_prob_per_location(levels, order)
        return (lp * hidden.to(device=lp.device, dtype=lp.dtype)).flatten(1).sum(1)

    def completion_order(self, hidden: torch.Tensor, hidden_last: bool = True, base: int = 0) -> Order:
        """An order with every observed pixel before every hidden one (or after, ``hidden_last=False``).

        A training order that already has this property is preferred (it was trained); otherwise the
        stable partition of training order ``base`` (spec §2.2; generalization caveat §6 item 21).

        Args:
            hidden: ``[H, W]`` bool, True where missing. Must hide at least one and not every pixel.
        """
        hidden = _check_hidden(hidden)
        h, w = hidden.shape
        n_hidden = int(hidden.sum())
        hidden_set = {(int(r), int(c)) for r, c in hidden.nonzero().tolist()}
        for k in range(self.num_orders):
            order = self.masks.order(k, h, w)
            part = order[-n_hidden:] if hidden_last else order[:n_hidden]
            if set(part) == hidden_set:
                return order
        return stable_partition(self.masks.order(base, h, w), hidden, hidden_last)

    def _dtype(self) -> torch.dtype:
        return self.network.nin_out.v.dtype


def log_mean_exp(log_p: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``log((1/K) Σ_k exp(log_p_k))`` along ``dim``, stably: ``logsumexp − log K`` (order ensemble, spec §2.9)."""
    return torch.logsumexp(log_p, dim) - math.log(log_p.shape[dim])


def _check_hidden(hidden: torch.Tensor) -> torch.Tensor:
    """Validate a completion mask ``[H, W]`` bool (documented behaviour: all-hidden / none-hidden raise)."""
    if hidden.dim() != 2:
        raise ValueError(f"The hidden-region mask must be [H, W] (shared by the batch), got {tuple(hidden.shape)}.")
    hidden = hidden.bool().cpu()
    if not hidden.any():
        raise ValueError("The completion mask hides no pixel: there is nothing to complete.")
    if hidden.all():
        raise ValueError("The completion mask hides every pixel: nothing is observed. Use sample() for "
                         "unconditional generation.")
    return hidden
