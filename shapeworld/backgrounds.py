"""Random backgrounds for shapeworld image–caption pairs (specs/dreamfields.md §4.2).

Types: ``white``, ``black``, ``noise`` (i.i.d. U[0,1] per pixel and channel), ``checkerboard`` (8×8
squares of two U[0,1]^3 colours), ``fourier`` (the Lucid random Fourier texture: spectrum
``N(0, 0.2²)`` scaled by ``1/max(|f|, 1/max(h,w))^1.5·sqrt(hw)``, inverse FFT, ``/4``, decorrelated
colour transform, sigmoid). Random types are blurred with a Gaussian of std ``U[0, 10]`` px at 224²
(scaled to the image size), as in the reference implementation. Written here rather than imported
because ``common/augment.py`` did not exist yet; move it there on second use (conventions §6.1).
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

BACKGROUNDS = ("white", "black", "noise", "checkerboard", "fourier")
# ImageNet colour-correlation square root (Lucid), columns normalised by the largest column norm.
_COLOR_CORR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_CORR = _COLOR_CORR / _COLOR_CORR.norm(dim=0).max()


def checkerboard(h: int, w: int, g: torch.Generator, squares: int = 8) -> Tensor:
    """``[3, H, W]`` 8×8 checkerboard of two random colours."""
    c1, c2 = torch.rand(3, generator=g), torch.rand(3, generator=g)
    yy = torch.arange(h)[:, None] * squares // h
    xx = torch.arange(w)[None, :] * squares // w
    mask = ((yy + xx) % 2 == 0).float()  # [H, W]
    return c1[:, None, None] * mask + c2[:, None, None] * (1 - mask)


def fourier_texture(h: int, w: int, g: torch.Generator, sd: float = 0.2, decay: float = 1.5) -> Tensor:
    """``[3, H, W]`` Lucid random Fourier texture in (0, 1)."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freq = torch.sqrt(fx * fx + fy * fy)  # [H, W//2+1]
    scale = 1.0 / freq.clamp_min(1.0 / max(h, w)) ** decay * (h * w) ** 0.5
    spec = torch.complex(torch.randn(3, *freq.shape, generator=g) * sd, torch.randn(3, *freq.shape, generator=g) * sd)
    img = torch.fft.irfft2(spec * scale, s=(h, w))[:, :h, :w] / 4.0  # [3, H, W]
    img = torch.einsum("ij,jhw->ihw", _COLOR_CORR, img)
    return torch.sigmoid(img)


def gaussian_blur(img: Tensor, std: float, kernel: int = 15) -> Tensor:
    """Blur ``[3, H, W]`` with a ``kernel×kernel`` Gaussian of ``std`` px (skipped for std < 1e-3)."""
    if std < 1e-3:
        return img
    x = torch.arange(kernel, dtype=img.dtype) - (kernel - 1) / 2
    k1 = torch.exp(-0.5 * (x / std) ** 2)
    k1 = k1 / k1.sum()
    pad = kernel // 2
    out = F.pad(img[None], (pad, pad, pad, pad), mode="reflect" if min(img.shape[-2:]) > pad else "replicate")
    out = F.conv2d(out, k1.view(1, 1, 1, -1).expand(3, 1, 1, kernel), groups=3)
    out = F.conv2d(out, k1.view(1, 1, -1, 1).expand(3, 1, kernel, 1), groups=3)
    return out[0]


def random_background(kind: str, h: int, w: int, g: torch.Generator, max_blur_224: float = 10.0) -> Tensor:
    """One ``[3, H, W]`` background in ``[0, 1]`` of type ``kind`` (one of :data:`BACKGROUNDS`)."""
    if kind == "white":
        return torch.ones(3, h, w)
    if kind == "black":
        return torch.zeros(3, h, w)
    if kind == "noise":
        bg = torch.rand(3, h, w, generator=g)
    elif kind == "checkerboard":
        bg = checkerboard(h, w, g)
    elif kind == "fourier":
        bg = fourier_texture(h, w, g)
    else:
        raise ValueError(f"unknown background {kind!r}; choose from {BACKGROUNDS}")
    std = float(torch.rand((), generator=g)) * max_blur_224 * w / 224.0
    return gaussian_blur(bg, std).clamp(0.0, 1.0)


def composite_background(rgb: Tensor, alpha: Tensor, kinds: Sequence[str], g: Optional[torch.Generator] = None) -> Tensor:
    """``C + (1 − A)·B`` (specs/dreamfields.md §4.3) with ``B`` of a type drawn uniformly from ``kinds``.

    Args:
        rgb: ``[3, H, W]`` premultiplied colour in ``[0, 1]``.
        alpha: ``[H, W]`` opacity in ``[0, 1]``.
        kinds: background types to choose from.
        g: random generator.

    Returns:
        ``[3, H, W]`` image in ``[0, 1]``.
    """
    kind = kinds[int(torch.randint(len(kinds), (), generator=g))]
    bg = random_background(kind, rgb.shape[-2], rgb.shape[-1], g)
    return (rgb + (1.0 - alpha[None]) * bg).clamp(0.0, 1.0)
