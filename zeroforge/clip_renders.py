"""CLIP image embeddings of voxel renders, differentiable to the render (specs/zeroforge.md §3.1, A7).

Renders ``[B, 3, R, R]`` in [0, 1] are resized bilinearly to the CLIP input size (224² for ViT-B/32)
and, with ``normalize=True`` (the default, A7), normalised with CLIP's mean/std; the released code
skips that normalisation (``normalize=False`` for code parity). Use the same setting in training and
evaluation.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from common.priors.clip import CLIPModel

__all__ = ["clip_input", "encode_renders"]


def clip_input(clip: CLIPModel, images: Tensor, normalize: bool = True) -> Tensor:
    """``[B, 3, S, S]`` CLIP input: bilinear resize to the model's size, then optionally ``(x − mean)/std``."""
    clip.load()
    size = tuple(clip.image_size)
    if tuple(images.shape[-2:]) != size:
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                               antialias=images.shape[-1] > size[-1])
    if normalize:
        mean = images.new_tensor(clip.mean).view(1, -1, 1, 1)
        std = images.new_tensor(clip.std).view(1, -1, 1, 1)
        images = (images - mean) / std
    return images


def encode_renders(clip: CLIPModel, images: Tensor, normalize: bool = True, views_per_sample: int = 1) -> Tensor:
    """Unit-norm embeddings ``[B, D]`` of renders ``[B·V, 3, R, R]`` (``V = views_per_sample``, averaged, A4).

    Gradients flow through the frozen image encoder to ``images``.
    """
    x = clip_input(clip, images, normalize).to(clip.dtype)
    emb = F.normalize(clip.model.encode_image(x).float(), dim=-1)  # [B·V, D]
    if views_per_sample > 1:
        emb = F.normalize(emb.view(-1, views_per_sample, emb.shape[-1]).mean(1), dim=-1)
    return emb
