"""The PixelCNN++-style network with locally masked convolutions (thesis §2.5; specs/lmconv.md §2.6).

PixelCNN++ with three changes [T]: one stream of LMConvs instead of two shifted streams; LMConvs with
dilation 2 at full resolution instead of the 2 stride-2 down- and 2 up-sampling layers (downsampling
would mix unmasked 2×2 blocks); positional normalization, and dropout 0 by default. The U-Net layout
("up" half pushing 18 activations, "down" half popping 17 through weight-normed 1×1 skips) is
PixelCNN++'s. At F=160, nr_resnet=5, k=3 and RGB output this has 46,072,360 parameters (thesis ≈46M).
"""

import torch
import torch.nn.functional as F
from torch import nn

from lmconv.layers import GatedResidualBlock, LocallyMaskedConv2d, WeightNormNIN, pono
from lmconv.masks import OrderMasks


class LMConvNetwork(nn.Module):
    """Maps an image in [-1, 1] and an order's masks to per-location likelihood parameters.

    Args:
        in_channels: image channels ``C`` (1 or 3); a constant-ones channel is added [C, spec §6 item 15].
        out_channels: head channels (2 binary, 30 grayscale DLM, 100 RGB DLM: ``likelihood.out_channels``).
        filters: ``F`` (160 in the thesis, 320 for CelebA-HQ 64).
        nr_resnet: gated residual blocks per stage (5).
        kernel_size: ``k`` (3).
        dilation: dilation of the 4 LMConvs replacing down/up-sampling (2).
        dropout: Dropout2d inside the residual blocks (0 [T]; 0.5 is PixelCNN++'s, an ablation).
        mask_conditioning: Algorithm 4 (thesis: slightly worse, off).
        memory_efficient: recomputing LMConv backward.

    Shape:
        - Input: ``x [B, C, H, W]`` in [-1, 1]; ``masks`` for ``H×W``.
        - Output: ``[B, out_channels, H, W]``; the output at ``p`` depends only on pixels earlier than ``p``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, filters: int = 160, nr_resnet: int = 5,
                 kernel_size: int = 3, dilation: int = 2, dropout: float = 0.0, mask_conditioning: bool = False,
                 memory_efficient: bool = False) -> None:
        super().__init__()
        if filters < 2:
            raise ValueError("filters must be at least 2 (PONO normalizes over channels).")
        self.nr_resnet = nr_resnet
        conv = dict(mask_conditioning=mask_conditioning, memory_efficient=memory_efficient)
        block = dict(kernel_size=kernel_size, dropout=dropout, **conv)
        self.conv_in = LocallyMaskedConv2d(in_channels + 1, filters, kernel_size, 1, **conv)  # type A
        self.up_blocks = nn.ModuleList(
            nn.ModuleList(GatedResidualBlock(filters, **block) for _ in range(nr_resnet)) for _ in range(3))
        self.up_dilated = nn.ModuleList(LocallyMaskedConv2d(filters, filters, kernel_size, dilation, **conv)
                                        for _ in range(2))
        self.down_blocks = nn.ModuleList(
            nn.ModuleList(GatedResidualBlock(filters, skip=True, **block) for _ in range(n))
            for n in (nr_resnet, nr_resnet + 1, nr_resnet + 1))
        self.down_dilated = nn.ModuleList(LocallyMaskedConv2d(filters, filters, kernel_size, dilation, **conv)
                                          for _ in range(2))
        self.nin_out = WeightNormNIN(filters, out_channels)

    def forward(self, x: torch.Tensor, masks: OrderMasks) -> torch.Tensor:
        """Teacher-forced pass: all ``H·W`` conditionals of one order at once.

        Args:
            x: ``[B, C, H, W]`` in [-1, 1].
            masks: the order's ``OrderMasks``.

        Returns:
            ``[B, out_channels, H, W]``. ``self.skip_counts`` records ``(pushes, pops)`` of the U-Net stack.
        """
        b, _, h, w = x.shape
        h_in = torch.cat([x, x.new_ones(b, 1, h, w)], dim=1)  # [B, C+1, H, W] ones channel
        u = pono(self.conv_in(h_in, masks.first))  # [B, F, H, W]
        stack = [u]
        for s, blocks in enumerate(self.up_blocks):  # "up" half: 3·nr_resnet blocks + 2 dilated
            for blk in blocks:
                u = blk(u, masks.inner)
                stack.append(u)
            if s < 2:
                u = pono(self.up_dilated[s](u, masks.dilated))
                stack.append(u)
        pushes = len(stack)
        u = stack.pop()
        for s, blocks in enumerate(self.down_blocks):  # "down" half: nr_resnet, +1, +1 blocks
            for blk in blocks:
                u = blk(u, masks.inner, skip=stack.pop())
            if s < 2:
                u = pono(self.down_dilated[s](u, masks.dilated))
        self.skip_counts = (pushes, pushes - len(stack) - 1)  # the first pop feeds u, not a skip
        if stack:
            raise RuntimeError(f"U-Net skip stack not empty ({len(stack)} left)")
        return self.nin_out(F.elu(u))
