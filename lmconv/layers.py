"""The locally masked convolution (thesis Algorithm 1 and 4; specs/lmconv.md §2.4–2.5).

``y = W_mat · (M ⊙ unfold(x)) [+ W_M · M] + b``: im2col with ``F.unfold``, a per-location 0/1 mask on
the patch columns (broadcast over batch and input channels, never materialized ``C_in`` times), one
batched matrix multiply, and a reshape that plays ``col2im`` (stride 1, "same" padding).

Two backward paths, chosen by ``memory_efficient``:

* autodiff (default): autograd saves the masked patch matrix ``[B, C_in·k·k, N]``;
* :class:`_LMConvFunction`: saves only ``x``, ``M`` and the weights and recomputes ``unfold`` in
  backward (thesis §2.5, "2.7× less memory, 1.3× slower").
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def lmconv2d(x: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
             dilation: int = 1, mask_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Locally masked 2-D convolution by autodiff (Algorithm 1, the "under 20 lines" version).

    Args:
        x: ``[B, C_in, H, W]`` input.
        mask: ``[1, k·k, H·W]`` 0/1 mask (Algorithm 2), shared by batch and input channels.
        weight: ``[C_out, C_in, k, k]``.
        bias: ``[C_out]`` or None.
        dilation: ``d``; padding is ``d·(k−1)/2`` zeros.
        mask_weight: ``[C_out, k·k]`` learned ``W_M`` of Algorithm 4 (mask conditioning) or None.

    Returns:
        ``[B, C_out, H, W]``.
    """
    b, c_in, h, w = x.shape
    c_out, _, k, _ = weight.shape
    _check_mask(mask, k, h, w)
    cols = F.unfold(x, k, dilation=dilation, padding=dilation * (k - 1) // 2)  # [B, C_in·k·k, N]
    # X ← M ⊙ X, in place (unfold's output is fresh; the product's backward needs only M). The mask
    # [1, k·k, N] broadcasts over batch and input channels instead of being repeated C_in times.
    cols.view(b, c_in, k * k, h * w).mul_(mask.unsqueeze(1).to(cols.dtype))
    y = torch.bmm(weight.reshape(1, c_out, -1).expand(b, -1, -1), cols)  # Y = W X  [B, C_out, N]
    if mask_weight is not None:
        y = y + mask_weight @ mask[0]  # Algorithm 4: + W_M M (un-repeated mask, spec §6 item 5)
    if bias is not None:
        y = y + bias[:, None]
    return y.view(b, c_out, h, w)  # col2im for stride 1 / same padding


def _check_mask(mask: torch.Tensor, k: int, h: int, w: int) -> None:
    if mask.shape != (1, k * k, h * w):
        raise ValueError(f"LMConv mask has shape {tuple(mask.shape)} but a {k}x{k} kernel on {h}x{w} images "
                         f"needs (1, {k * k}, {h * w}); build the masks for this image size.")


class _LMConvFunction(torch.autograd.Function):
    """Memory-efficient LMConv: saves ``x``, ``M``, ``W`` (not the patch matrix); spec §2.4 formulas."""

    @staticmethod
    def forward(ctx, x, mask, weight, bias, mask_weight, dilation):
        ctx.dilation = dilation
        ctx.has_bias, ctx.has_mask_weight = bias is not None, mask_weight is not None
        ctx.save_for_backward(x, mask, weight)
        with torch.no_grad():
            return lmconv2d(x, mask, weight, bias, dilation, mask_weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, mask, weight = ctx.saved_tensors
        d = ctx.dilation
        b, c_in, h, w = x.shape
        c_out, _, k, _ = weight.shape
        pad = d * (k - 1) // 2
        g = grad_out.reshape(b, c_out, h * w)  # G = ∂L/∂Y  [B, C_out, N]
        m = mask.unsqueeze(1)  # [1, 1, k·k, N]
        grad_x = grad_w = grad_b = grad_wm = None
        if ctx.needs_input_grad[0]:
            gcols = torch.matmul(weight.reshape(c_out, -1).t(), g)  # Wᵀ G  [B, C_in·k·k, N]
            gcols = (gcols.view(b, c_in, k * k, h * w) * m).view(b, c_in * k * k, h * w)
            grad_x = F.fold(gcols, (h, w), k, dilation=d, padding=pad)  # col2im with overlap-add
        if ctx.needs_input_grad[2]:
            cols = F.unfold(x, k, dilation=d, padding=pad)  # recomputed im2col
            cols = (cols.view(b, c_in, k * k, h * w) * m).view(b, c_in * k * k, h * w)
            grad_w = torch.matmul(g, cols.transpose(1, 2)).sum(0).view_as(weight)  # Σ_b G_b (M⊙X_b)ᵀ
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_b = g.sum((0, 2))
        if ctx.has_mask_weight and ctx.needs_input_grad[4]:
            grad_wm = g.sum(0) @ mask[0].t()  # Σ_b G_b Mᵀ
        return grad_x, None, grad_w, grad_b, grad_wm, None


def lmconv2d_memory_efficient(x, mask, weight, bias=None, dilation=1, mask_weight=None) -> torch.Tensor:
    """:func:`lmconv2d` with the recomputing backward of :class:`_LMConvFunction` (no gradient for ``mask``)."""
    return _LMConvFunction.apply(x, mask, weight, bias, mask_weight, dilation)


class LocallyMaskedConv2d(nn.Module):
    """A ``k×k`` convolution whose input patch is masked differently at every location.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: odd ``k``.
        dilation: ``d``.
        bias: learn a bias.
        mask_conditioning: add Algorithm 4's learned ``W_M [C_out, k·k]`` (thesis: off).
        memory_efficient: use the recomputing backward.

    Shape:
        - Input: ``x [B, C_in, H, W]``, ``mask [1, k·k, H·W]``.
        - Output: ``[B, C_out, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 bias: bool = True, mask_conditioning: bool = False, memory_efficient: bool = False) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
        self.dilation, self.memory_efficient = dilation, memory_efficient
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.mask_weight = (nn.Parameter(torch.empty(out_channels, kernel_size * kernel_size))
                            if mask_conditioning else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch conv defaults [C]: kaiming_uniform(a=√5) weights, U(±1/√fan_in) bias; ``W_M`` like weights."""
        if self.weight.is_meta:
            return
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        fan_in = self.weight[0].numel()
        if self.bias is not None:
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        if self.mask_weight is not None:
            nn.init.uniform_(self.mask_weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        fn = lmconv2d_memory_efficient if self.memory_efficient else lmconv2d
        return fn(x, mask, self.weight, self.bias, self.dilation, self.mask_weight)


def pono(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Positional normalization over channels at each location (unbiased var, no affine) [T/C §2.6]."""
    mean = z.mean(1, keepdim=True)
    var = z.var(1, keepdim=True, unbiased=True)
    return (z - mean) / torch.sqrt(var + eps)


def concat_elu(z: torch.Tensor) -> torch.Tensor:
    """``elu(cat([z, −z]))`` along channels; doubles the channel count (PixelCNN++)."""
    return F.elu(torch.cat([z, -z], dim=1))


class WeightNormNIN(nn.Module):
    """Weight-normalized 1×1 convolution ("network in network"): ``W = g · v / ‖v‖`` per output unit.

    Shape:
        - Input: ``[B, C_in, H, W]``; Output: ``[B, C_out, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.empty(out_channels, in_channels))
        self.g = nn.Parameter(torch.empty(out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        if not self.v.is_meta:
            nn.init.kaiming_uniform_(self.v, a=math.sqrt(5))
            with torch.no_grad():
                self.g.copy_(self.v.norm(dim=1))
            nn.init.uniform_(self.bias, -1 / math.sqrt(in_channels), 1 / math.sqrt(in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.g[:, None] * self.v / self.v.norm(dim=1, keepdim=True)  # [C_out, C_in]
        return torch.einsum("oc,bchw->bohw", w, x) + self.bias[None, :, None, None]


class GatedResidualBlock(nn.Module):
    """PixelCNN++ gated residual block with LMConvs and PONO (spec §2.6 ``gated_res``).

    ``t = pono(lmconv1(concat_elu(u)))``; ``t += nin_skip(concat_elu(skip))``; ``t = lmconv2(dropout(concat_elu(t)))``;
    ``u + pono(a) · σ(g)`` with ``a, g = t.chunk(2)``.

    Args:
        filters: ``F``.
        kernel_size: ``k``.
        skip: takes a U-Net skip input (the "down" half).
        dropout: Dropout2d probability (0 for LMConv models [T]).
        mask_conditioning / memory_efficient: forwarded to the LMConvs.
    """

    def __init__(self, filters: int, kernel_size: int = 3, skip: bool = False, dropout: float = 0.0,
                 mask_conditioning: bool = False, memory_efficient: bool = False) -> None:
        super().__init__()
        kw = dict(kernel_size=kernel_size, mask_conditioning=mask_conditioning, memory_efficient=memory_efficient)
        self.conv1 = LocallyMaskedConv2d(2 * filters, filters, **kw)
        self.conv2 = LocallyMaskedConv2d(2 * filters, 2 * filters, **kw)
        self.nin_skip = WeightNormNIN(2 * filters, filters) if skip else None
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, u: torch.Tensor, mask: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        t = pono(self.conv1(concat_elu(u), mask))  # [B, F, H, W]
        if self.nin_skip is not None:
            t = t + self.nin_skip(concat_elu(skip))
        t = self.conv2(self.dropout(concat_elu(t)), mask)  # [B, 2F, H, W]
        a, g = t.chunk(2, dim=1)
        return u + pono(a) * torch.sigmoid(g)
