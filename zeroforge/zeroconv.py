"""ZeroForge's ControlNet-style "zero-conv" decoder (paper §3.4, eq. 6; specs/zeroforge.md §3.9, A6).

Per residual block ``i`` of the pretrained decoder ``D``:
``h ← frozen_i(h) + Z_i(copy_i(h))`` where ``frozen_i`` is the pretrained block (``requires_grad=False``),
``copy_i`` a trainable copy, and ``Z_i`` a zero-initialised ``Linear(H, H)`` (≡ a 1×1 conv per point).
At initialisation the wrapper equals ``D`` exactly; on the first backward ``copy_i`` gets zero gradient
(because ``Z_i = 0``), so with Adam the copies start moving at step 2. ``fc_p``, ``fc_z`` and ``fc_out``
stay trainable ([C]) unless ``freeze_io`` (the stricter reading of the paper).
"""

import copy

import torch
from torch import Tensor, nn

from zeroforge.autoencoder import OccSimpleDecoder

__all__ = ["ZeroConvDecoder"]


class ZeroConvDecoder(nn.Module):
    """Wrap a pretrained :class:`OccSimpleDecoder` with trainable copies and zero maps (§3.9).

    Args:
        base: the pretrained decoder; its residual blocks are frozen in place.
        freeze_io: also freeze ``fc_p``, ``fc_z``, ``fc_out`` (A6 ``zeroconv_freeze_io``; [C] trains them).

    Shape:
        points ``[B, P, 3]``, ``s`` ``[B, d]`` -> logits ``[B, P]``.
    """

    def __init__(self, base: OccSimpleDecoder, freeze_io: bool = False) -> None:
        super().__init__()
        self.base, self.freeze_io = base, freeze_io
        self.latent_dim, self.hidden = base.latent_dim, base.hidden
        self.copies = nn.ModuleList(copy.deepcopy(b) for b in base.blocks)
        self.zero_maps = nn.ModuleList(nn.Linear(base.hidden, base.hidden) for _ in base.blocks)
        self.reset_branch()

    @torch.no_grad()
    def reset_branch(self) -> None:
        """Copy the (pretrained) frozen blocks into the trainable copies, zero ``Z_i``, set ``requires_grad``."""
        for frozen, cp, z in zip(self.base.blocks, self.copies, self.zero_maps):
            cp.load_state_dict(frozen.state_dict())
            nn.init.zeros_(z.weight)
            nn.init.zeros_(z.bias)
        self.base.blocks.requires_grad_(False)
        self.copies.requires_grad_(True)
        self.zero_maps.requires_grad_(True)
        for io in (self.base.fc_p, self.base.fc_z, self.base.fc_out):
            io.requires_grad_(not self.freeze_io)

    def forward(self, points: Tensor, s: Tensor) -> Tensor:
        h = self.base.embed(points, s)  # [B, P, H]
        for frozen, cp, z in zip(self.base.blocks, self.copies, self.zero_maps):
            h = frozen(h) + z(cp(h))  # eq. 6: y = F(x; θ_L) + Z(F(x; θ_C)); both read the same h
        return self.base.head(h)
