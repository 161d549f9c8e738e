"""CLIP features as ISS uses them: raw image features (stage 1), render embeddings (stages 2–3), noise.

The CLIP is a :class:`common.priors.clip.CLIPModel` (real ViT-B/32, the shapeworld CLIPs, the tiny test
CLIP: one class). Any object with ``encode_image(images [B, 3, H, W] in [0, 1]) -> [B, D]`` and
``encode_text(list[str]) -> [N, D]`` also works (a ``CLIPBackend``); ISS's own preprocessing flags then
do not apply.

Preprocessing (specs/iss.md §2.1):

* stage 1 (dataset images): CLIP's own preprocessing (resize, per-channel CLIP mean/std) [C]; the mapper
  input mixes the **unnormalised** feature with noise (:func:`stage1_mapper_input`) [C];
* stages 2–3 (renders): resize to CLIP's input size with ``resize_mode`` (the code: ``nearest``), then
  ``clip`` normalisation (default [S]) or the code's ``(x − 0.45)/0.27`` (``approx``), optionally transposed
  (the code feeds H and W swapped, ``transpose``) [C].
"""

from typing import Literal, Optional, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CLIPBackend", "encode_image_raw", "embed_renders", "stage1_mapper_input", "unit_noise", "perturb",
           "ClipNorm", "ResizeMode"]

ClipNorm = Literal["clip", "approx"]
ResizeMode = Literal["nearest", "bilinear"]


class CLIPBackend(Protocol):
    """What ISS needs from a CLIP: unit-norm image and text embeddings."""

    def encode_image(self, images: Tensor) -> Tensor: ...

    def encode_text(self, prompts: Sequence[str]) -> Tensor: ...


def _is_open_clip_model(clip) -> bool:
    from common.priors.clip import CLIPModel

    return isinstance(clip, CLIPModel)


def embed_dim(clip) -> int:
    """Embedding size of a backend."""
    if _is_open_clip_model(clip):
        return int(clip.embed_dim)
    return int(clip.encode_text(["a"]).shape[-1])


def encode_image_raw(clip, images: Tensor) -> Tensor:
    """``[B, D]`` **unnormalised** CLIP image features of dataset images ``[B, 3, H, W]`` in [0, 1] (no grad).

    ISS's stage-1 code mixes the raw ``encode_image`` output with unit noise, so its norm matters [C].
    Backends other than :class:`CLIPModel` return their (normalised) ``encode_image``.
    """
    with torch.no_grad():
        if _is_open_clip_model(clip):
            x = clip.preprocess(images).to(clip.dtype)  # CLIP's resize + per-channel mean/std [C]
            return clip.model.encode_image(x).float()
        return clip.encode_image(images).float()


def embed_renders(clip, images: Tensor, resize_mode: ResizeMode = "nearest", norm: ClipNorm = "clip",
                  transpose: bool = False) -> Tensor:
    """``[B, D]`` unit-norm CLIP embeddings of renders ``[B, 3, H, W]`` in [0, 1], differentiable.

    Args:
        clip: the CLIP.
        images: renders (white background = 1).
        resize_mode: ``nearest`` (the code) or ``bilinear`` resize to CLIP's input size.
        norm: ``clip`` (CLIP's mean/std, default [S]) or ``approx`` (``(x − 0.45)/0.27``, the code).
        transpose: swap H and W first (the code's ``.transpose(2, 3)``).
    """
    if transpose:
        images = images.transpose(2, 3)
    if not _is_open_clip_model(clip):
        return F.normalize(clip.encode_image(images).float(), dim=-1)
    clip._ensure_loaded()
    size = tuple(clip.image_size)
    x = images
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode=resize_mode) if resize_mode == "nearest" else \
            F.interpolate(x, size=size, mode=resize_mode, align_corners=False)
    if norm == "clip":
        mean, std = x.new_tensor(clip.mean).view(1, -1, 1, 1), x.new_tensor(clip.std).view(1, -1, 1, 1)
    elif norm == "approx":
        mean, std = x.new_tensor(0.45), x.new_tensor(0.27)
    else:
        raise ValueError(f"clip norm must be 'clip' or 'approx', got {norm!r}")
    x = ((x - mean) / std).to(clip.dtype)
    return F.normalize(clip.model.encode_image(x).float(), dim=-1)


def unit_noise(n: int, dim: int, generator: Optional[torch.Generator] = None, device=None) -> Tensor:
    """``[n, dim]`` normalised Gaussian noise ``z = h/‖h‖``, ``h ~ N(0, I)`` (§5.1)."""
    h = torch.randn(n, dim, generator=generator)
    return F.normalize(h, dim=-1).to(device)


def stage1_mapper_input(f_image: Tensor, noise: bool = True, weight: float = 0.25,
                        generator: Optional[torch.Generator] = None) -> Tensor:
    """Stage-1 mapper input.

    ``noise=True`` (code, default): ``normalize(0.25·f_I + 0.75·z/‖z‖)`` with the **raw** ``f_I`` and fresh
    ``z`` each call [C]. ``noise=False`` (paper): ``normalize(f_I)`` [P].
    """
    if not noise:
        return F.normalize(f_image, dim=-1)
    z = unit_noise(f_image.shape[0], f_image.shape[1], generator, f_image.device).to(f_image.dtype)
    return F.normalize(weight * f_image + (1.0 - weight) * z, dim=-1)


def perturb(f: Tensor, tau: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """Diversity perturbation ``τ·f + (1 − τ)·z`` with unit Gaussian noise ``z`` (§5.1); ``τ = 1`` returns ``f``."""
    if tau >= 1.0:
        return f.clone()
    z = unit_noise(f.shape[0], f.shape[-1], generator, f.device).to(f.dtype)
    return tau * f + (1.0 - tau) * z
