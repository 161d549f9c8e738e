"""VectorFusion's augmentation for SDS from scratch: random perspective, then a random crop (spec §2.5).

Thesis §11.9.2: "with 0.7 probability, we apply a perspective transform with distortion scale 0.5.
Then, we apply a random 512x512 crop. All other hyperparameters are default for Kornia." This is
``kornia.augmentation.RandomPerspective(0.5, p=0.7)`` followed by ``RandomCrop((512, 512))``; we
draw their parameters with an explicit ``torch.Generator`` (so each step and each DDP rank is
reproducible) and apply them with the same Kornia kernels and defaults: corners ``(0, 0)``,
``(W-1, 0)``, ``(W-1, H-1)``, ``(0, H-1)`` each moved inwards by ``U(0, d W/2)`` x ``U(0, d H/2)``,
:func:`kornia.geometry.transform.warp_perspective` (bilinear, ``align_corners=False``, zero fill),
then an integer window placed uniformly (Kornia's slice crop). The warp is differentiable, so the
gradient reaches the render.
"""

import torch
from kornia.geometry.transform import get_perspective_transform, warp_perspective
from torch import Tensor, nn


class PerspectiveCropAugment(nn.Module):
    """Random perspective warp (probability ``p``) then a random ``crop_size`` window.

    Args:
        distortion_scale: Kornia's distortion scale d in [0, 1] (0.5 [S]).
        p: probability of the perspective warp per image (0.7 [S]).
        crop_size: side of the square crop (512 [S]); None keeps the full image.
        fill: value outside the warped image (0 = Kornia's black [S], AMB-4; CLIPDraw used white).

    Shape:
        - images: ``[B, C, H, W]``.
        - output: ``[B, C, crop, crop]``.
    """

    def __init__(self, distortion_scale: float = 0.5, p: float = 0.7, crop_size: int | None = 512,
                 fill: float = 0.0) -> None:
        super().__init__()
        if not 0 <= distortion_scale <= 1 or not 0 <= p <= 1:
            raise ValueError(f"distortion_scale and p must be in [0, 1], got {distortion_scale}, {p}")
        self.distortion_scale, self.p, self.crop_size, self.fill = distortion_scale, p, crop_size, fill

    def perspective_params(self, batch: int, height: int, width: int,
                           generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Kornia's ``basic`` sampling: ``(start [B, 4, 2], end [B, 4, 2], applied [B] bool)`` in (x, y)."""
        start = torch.tensor([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
                             dtype=torch.float32).expand(batch, 4, 2)
        factor = torch.tensor([self.distortion_scale * width / 2, self.distortion_scale * height / 2])
        inward = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float32)
        rand = torch.rand(batch, 4, 2, generator=generator)
        applied = torch.rand(batch, generator=generator) < self.p
        return start, start + factor * rand * inward, applied

    def warp(self, images: Tensor, start: Tensor, end: Tensor) -> Tensor:
        """Warp so that the ``start`` corners land on ``end`` (Kornia defaults, fill value :attr:`fill`)."""
        M = get_perspective_transform(start.to(images), end.to(images))  # [B, 3, 3]
        h, w = images.shape[-2:]
        out = warp_perspective(images, M, (h, w), mode="bilinear", align_corners=False, padding_mode="zeros")
        if self.fill != 0:
            mask = warp_perspective(torch.ones_like(images[:, :1]), M, (h, w), mode="bilinear",
                                    align_corners=False, padding_mode="zeros")
            out = out + self.fill * (1 - mask)
        return out

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``images`` ``[B, C, H, W]`` (see class docstring); differentiable."""
        if images.ndim != 4:
            raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}")
        B, _, H, W = images.shape
        start, end, applied = self.perspective_params(B, H, W, generator)
        if self.p > 0 and self.distortion_scale > 0 and bool(applied.any()):
            warped = self.warp(images, start, end)
            images = torch.where(applied.to(images.device).view(B, 1, 1, 1), warped, images)
        if self.crop_size is None:
            return images
        c = self.crop_size
        if c > H or c > W:
            raise ValueError(f"crop_size {c} is larger than the render {H}x{W}: render at >= {c} px "
                             "(render_size) or lower augmentation.crop_size")
        ys = torch.randint(0, H - c + 1, (B,), generator=generator).tolist()
        xs = torch.randint(0, W - c + 1, (B,), generator=generator).tolist()
        return torch.stack([images[b, :, y:y + c, x:x + c] for b, (y, x) in enumerate(zip(ys, xs))])
