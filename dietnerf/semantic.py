"""DietNeRF's semantic consistency loss (thesis §3.4, eqs. 3.4–3.5; specs/dietnerf.md §1.3, §2).

``L_SC(I, Î) = λ·(1 − cos(φ(I), φ(Î)))``: the thesis' eq. 3.4 ``(λ/2)‖φ(I) − φ(Î)‖²`` for unit
features, up to a constant; the release minimises ``−λ·cos`` (eq. 3.5 is printed without its minus
sign, spec §7 item 1). ``1 − cos`` has the same gradient and is non-negative, so it is what we log.

φ is a frozen CLIP image encoder (ViT-B/32 at 224² in the paper) behind :class:`SemanticEncoder`.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.priors.clip import CLIPModel

Feature = Literal["cls_prenorm", "image_embed"]


class SemanticEncoder(nn.Module):
    """φ: frozen CLIP image features of renders, with the release's preprocessing [C].

    Preprocessing: clamp to [0, 1], resize to the model's input (224² for ViT-B/32) with
    ``F.interpolate(mode='bilinear', align_corners=False)`` and **no** antialiasing or centre crop,
    then normalise with CLIP's mean/std. The same path embeds targets and renders.

    Features (spec §7 item 3):

    * ``cls_prenorm`` (default; what produced the paper's numbers): the CLS token after the last
      transformer block, before ``ln_post`` and the projection (768-d for ViT-B/32);
    * ``image_embed``: the projected, normalised CLIP image embedding (the thesis' wording, 512-d).

    The CLIP weights live in :class:`~common.priors.clip.CLIPModel`, outside the module tree, so they
    are never trained, never in ``parameters()`` and never in a checkpoint; a ``train()`` call leaves
    them in eval mode. ``precision='fp16'`` on the CLIPModel runs φ in half precision on CUDA (the
    thesis' setting); renders are cast to that dtype and the features back to fp32.

    Args:
        clip: the CLIP model (real ViT-B/32, the shapeworld CLIP, or a tiny test model).
        feature: which feature is compared (above).
        interpolation: resize filter (``bilinear`` as the release).
        grad_checkpointing: recompute the ViT blocks in backward (saves memory on big semantic renders).

    Shape:
        ``[B, 3, H, W]`` in [0, 1] → ``[B, D]`` float32, unit norm.
    """

    def __init__(self, clip: CLIPModel, feature: Feature = "cls_prenorm",
                 interpolation: Literal["bilinear", "bicubic"] = "bilinear", grad_checkpointing: bool = False) -> None:
        super().__init__()
        if feature not in ("cls_prenorm", "image_embed"):
            raise ValueError(f"feature must be 'cls_prenorm' or 'image_embed', got {feature!r}")
        self.clip, self.feature, self.interpolation, self.grad_checkpointing = clip, feature, interpolation, grad_checkpointing
        self.calls = 0  #: number of forward calls (tests count them)

    def load(self) -> "SemanticEncoder":
        """Load the CLIP weights (once)."""
        self.clip.load()
        visual = self.clip.model.visual
        if self.grad_checkpointing and hasattr(visual, "set_grad_checkpointing"):
            visual.set_grad_checkpointing(True)
        if self.feature == "cls_prenorm" and not (hasattr(visual, "_embeds") and hasattr(visual, "transformer")):
            raise ValueError(f"feature='cls_prenorm' needs an open_clip VisionTransformer, got {type(visual).__name__}; "
                             "use feature='image_embed'")
        return self

    @property
    def input_size(self) -> tuple[int, int]:
        self.clip.load()
        return tuple(self.clip.image_size)

    def preprocess(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` → clamped, resized, normalised ``[B, 3, S, S]`` model input (differentiable)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        x = images.clamp(0.0, 1.0)
        size = self.input_size
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False)
        mean = x.new_tensor(self.clip.mean).view(1, 3, 1, 1)
        std = x.new_tensor(self.clip.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward(self, images: Tensor) -> Tensor:
        self.load()
        self.calls += 1
        x = self.preprocess(images).to(self.clip.dtype)
        visual = self.clip.model.visual
        if self.feature == "cls_prenorm":
            tokens = visual.transformer(visual._embeds(x))  # [B, 1 + P, width], batch first
            feats = tokens[:, 0]
        else:
            feats = self.clip.model.encode_image(x)
        return F.normalize(feats.float(), dim=-1)


def semantic_consistency_loss(target: Tensor, rendered: Tensor) -> tuple[Tensor, Tensor]:
    """``(1 − cos, cos)`` between target features ``[B, D]`` and render features ``[B, D]``, batch means.

    The loss is in ``[0, 2]``; weight it by λ. Its gradient equals that of the release's ``−cos``.

    Example:
        >>> f = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
        >>> [round(float(v), 5) for v in semantic_consistency_loss(f, f)]
        [0.0, 1.0]
    """
    cos = F.cosine_similarity(target.detach().float(), rendered.float(), dim=-1).mean()
    return 1.0 - cos, cos


__all__ = ["SemanticEncoder", "semantic_consistency_loss", "Feature"]
