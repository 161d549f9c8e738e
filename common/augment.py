"""Differentiable image augmentations for CLIP/diffusion guidance: crops, perspective, backgrounds.

Backgrounds follow Dream Fields (thesis §4.4.5, Fig. 4.4; ``shared/specs/dreamfields.md`` §4.2):
checkerboard (8×8 squares, two U[0,1]³ colours), i.i.d. noise (U[0,1], or N(0.5, 0.25²) clipped),
and a random Fourier ("brown noise") texture (Lucid image prior: spectrum N(0, 0.2²), decay 1.5,
decorrelated colour, sigmoid), each blurred with a Gaussian of std U[0, 10] px and a 15×15 kernel.
Compositing (§4.3): ``I = C + (1 − A)·B`` with premultiplied colour C (default), or the reference
code's ``A·C + (1 − A)·B``; either way ``I₁ − I₂ = (1 − A)(B₁ − B₂)``.

Crops and perspective use kornia (``crop_and_resize``, ``warp_perspective``, ``gaussian_blur2d``);
every op is differentiable w.r.t. the render (colour and alpha). Randomness comes from an optional
``torch.Generator``.
"""

from typing import Literal, Optional, Sequence, Tuple, Union

import torch
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import crop_and_resize, get_perspective_transform, warp_perspective
from torch import Tensor, nn

__all__ = [
    "checkerboard_background",
    "noise_background",
    "fourier_background",
    "blur",
    "random_backgrounds",
    "composite",
    "random_crop_resize",
    "random_perspective",
    "Augment",
]

BackgroundKind = Literal["checkerboard", "noise", "fourier", "white", "black"]
CompositeMode = Literal["premultiplied", "official"]

# Lucid's ImageNet colour-correlation square root (rows: output channel).
_COLOR_CORRELATION_SQRT = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]


def _rand(shape, generator, device, dtype=torch.float32) -> Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)


def checkerboard_background(batch: int, height: int, width: int, n_squares: int = 8,
                            generator: Optional[torch.Generator] = None, device=None) -> Tensor:
    """Checkerboard of ``n_squares × n_squares`` squares in two random colours ~U[0,1]³.

    Returns:
        ``[B, 3, H, W]`` in [0, 1].
    """
    c1, c2 = _rand((batch, 3, 1, 1), generator, device), _rand((batch, 3, 1, 1), generator, device)
    iy = torch.arange(height, device=device) * n_squares // height
    ix = torch.arange(width, device=device) * n_squares // width
    mask = ((iy[:, None] + ix[None, :]) % 2).to(c1.dtype)  # [H, W]
    return c1 * mask + c2 * (1 - mask)


def noise_background(batch: int, height: int, width: int, kind: Literal["uniform", "gaussian"] = "uniform",
                     generator: Optional[torch.Generator] = None, device=None) -> Tensor:
    """I.i.d. per-pixel noise: U[0,1] (reference code) or N(0.5, 0.25²) clipped to [0,1] (thesis)."""
    if kind == "uniform":
        return _rand((batch, 3, height, width), generator, device)
    if kind == "gaussian":
        g = torch.randn((batch, 3, height, width), generator=generator, device=device)
        return (0.5 + 0.25 * g).clamp(0, 1)
    raise ValueError(f"noise kind must be 'uniform' or 'gaussian', got {kind!r}")


def fourier_background(batch: int, height: int, width: int, sd: float = 0.2, decay: float = 1.5,
                       generator: Optional[torch.Generator] = None, device=None) -> Tensor:
    """Random Fourier texture (Lucid / Differentiable Image Parameterizations; dreamfields.md §4.2.4).

    Spectrum ~ N(0, sd²) (real and imaginary), scaled by ``sqrt(HW)/max(|f|, 1/max(H,W))^decay``,
    ``irfft2``, ÷4, decorrelated colour (normalised by the largest column norm), sigmoid.

    Returns:
        ``[B, 3, H, W]`` in (0, 1).
    """
    fy = torch.fft.fftfreq(height, device=device)[:, None]
    fx = torch.fft.rfftfreq(width, device=device)[None, :]
    freq = (fy**2 + fx**2).sqrt()  # [H, W//2+1]
    scale = freq.clamp_min(1.0 / max(height, width)).pow(-decay) * (height * width) ** 0.5
    shape = (batch, 3, height, width // 2 + 1)
    re = torch.randn(shape, generator=generator, device=device) * sd
    im = torch.randn(shape, generator=generator, device=device) * sd
    img = torch.fft.irfft2(torch.complex(re, im) * scale, s=(height, width)) / 4  # [B, 3, H, W]
    corr = torch.tensor(_COLOR_CORRELATION_SQRT, device=device)
    corr = corr / corr.norm(dim=0).max()
    img = torch.einsum("ij,bjhw->bihw", corr, img)
    return torch.sigmoid(img)


def blur(images: Tensor, sigma: Tensor, kernel_size: int = 15) -> Tensor:
    """Per-image Gaussian blur (kornia ``gaussian_blur2d``); images with σ < 1e-3 are returned unchanged.

    Args:
        images: ``[B, C, H, W]``.
        sigma: ``[B]`` standard deviations in pixels.
        kernel_size: odd kernel size, reduced to fit the image if needed.
    """
    h, w = images.shape[-2:]
    k = min(kernel_size, 2 * (min(h, w) // 2) - 1)
    k = k if k % 2 == 1 else k - 1
    if k < 3:
        return images
    s = sigma.to(images).clamp_min(1e-3)
    blurred = gaussian_blur2d(images, (k, k), torch.stack([s, s], dim=-1))
    keep = (sigma < 1e-3).to(images.device).view(-1, 1, 1, 1)
    return torch.where(keep, images, blurred)


def random_backgrounds(batch: int, height: int, width: int,
                       kinds: Sequence[BackgroundKind] = ("checkerboard", "noise", "fourier"),
                       probs: Optional[Sequence[float]] = None, blur_std_range: Tuple[float, float] = (0.0, 10.0),
                       blur_kernel: int = 15, noise_kind: Literal["uniform", "gaussian"] = "uniform",
                       generator: Optional[torch.Generator] = None, device=None) -> Tensor:
    """One independent random background per image: type drawn from ``kinds`` (equal odds by
    default, dreamfields.md §4.2), then blurred with σ ~ U(blur_std_range).

    Returns:
        ``[B, 3, H, W]`` in [0, 1].
    """
    if len(kinds) == 0:
        raise ValueError("random_backgrounds needs at least one background kind")
    p = torch.tensor(probs if probs is not None else [1.0] * len(kinds), dtype=torch.float32)
    if p.numel() != len(kinds) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"background probs {probs} do not match kinds {kinds}")
    choice = torch.multinomial(p / p.sum(), batch, replacement=True,
                               generator=generator if generator is None or generator.device.type == "cpu" else None)
    makers = {
        "checkerboard": lambda: checkerboard_background(batch, height, width, generator=generator, device=device),
        "noise": lambda: noise_background(batch, height, width, noise_kind, generator=generator, device=device),
        "fourier": lambda: fourier_background(batch, height, width, generator=generator, device=device),
        "white": lambda: torch.ones(batch, 3, height, width, device=device),
        "black": lambda: torch.zeros(batch, 3, height, width, device=device),
    }
    out = torch.zeros(batch, 3, height, width, device=device)
    for i, kind in enumerate(kinds):
        if kind not in makers:
            raise ValueError(f"unknown background kind {kind!r}; use one of {list(makers)}")
        sel = (choice == i).to(out.device).view(-1, 1, 1, 1)
        if sel.any():
            out = torch.where(sel, makers[kind](), out)
    lo, hi = blur_std_range
    if hi > 0:
        sigma = lo + (hi - lo) * _rand((batch,), generator, device)
        out = blur(out, sigma, blur_kernel)
    return out


def composite(rgb: Tensor, alpha: Tensor, background: Tensor, mode: CompositeMode = "premultiplied") -> Tensor:
    """Alpha-composite a render over a background (dreamfields.md §4.3).

    Args:
        rgb: ``[B, 3, H, W]`` colour, premultiplied by alpha (volume rendering's C = Σ wᵢcᵢ).
        alpha: ``[B, 1, H, W]`` opacity A = 1 − T in [0, 1].
        background: ``[B, 3, H, W]``.
        mode: ``"premultiplied"``: ``C + (1 − A)·B``; ``"official"``: ``A·C + (1 − A)·B`` (ref. code quirk).

    Example:
        >>> composite(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 3, 2, 2)).mean().item()
        1.0
    """
    if alpha.shape[1] != 1 or alpha.shape[-2:] != rgb.shape[-2:]:
        raise ValueError(f"alpha must be [B, 1, H, W] matching rgb {tuple(rgb.shape)}, got {tuple(alpha.shape)}")
    if mode not in ("premultiplied", "official"):
        raise ValueError(f"composite mode must be 'premultiplied' or 'official', got {mode!r}")
    fg = rgb if mode == "premultiplied" else alpha * rgb
    return fg + (1 - alpha) * background


def random_crop_resize(images: Tensor, size: Tuple[int, int], scale_range: Tuple[float, float] = (0.9167, 0.9167),
                       generator: Optional[torch.Generator] = None) -> Tensor:
    """Square-ish random crops placed uniformly, resized bilinearly to ``size`` (kornia ``crop_and_resize``).

    Args:
        images: ``[B, C, H, W]`` (stack colour and alpha on C to crop them with the same window).
        size: output ``(h, w)``.
        scale_range: crop side as a fraction of the image side, drawn uniformly per image
            (Dream Fields: 154/168 = 0.9167, dreamfields.md §4.1).
    """
    B, _, H, W = images.shape
    dev = images.device
    lo, hi = scale_range
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop scale_range must satisfy 0 < lo <= hi <= 1, got {scale_range}")
    s = lo + (hi - lo) * _rand((B,), generator, dev)
    ch, cw = (s * H).round().clamp(1, H), (s * W).round().clamp(1, W)
    y0 = ((H - ch + 1) * _rand((B,), generator, dev)).floor().clamp(max=H - ch)
    x0 = ((W - cw + 1) * _rand((B,), generator, dev)).floor().clamp(max=W - cw)
    x1, y1 = x0 + cw - 1, y0 + ch - 1
    boxes = torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
                         torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)], dim=1)  # [B, 4, 2] (x, y)
    return crop_and_resize(images, boxes.to(images.dtype), size, mode="bilinear", align_corners=True)


def random_perspective(images: Tensor, distortion_scale: float = 0.5, p: float = 1.0,
                       generator: Optional[torch.Generator] = None) -> Tensor:
    """torchvision-style random perspective (each corner moves inward by up to ``distortion_scale``
    of the half size), bilinear, zero fill, applied to each image with probability ``p`` (kornia
    ``warp_perspective``)."""
    B, _, H, W = images.shape
    dev, dt = images.device, images.dtype
    if p <= 0 or distortion_scale <= 0:
        return images
    dx, dy = distortion_scale * (W - 1) / 2, distortion_scale * (H - 1) / 2
    start = torch.tensor([[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]], device=dev, dtype=dt).expand(B, 4, 2)
    sign = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], device=dev, dtype=dt)
    offset = _rand((B, 4, 2), generator, dev, dt) * torch.tensor([dx, dy], device=dev, dtype=dt)
    apply = (_rand((B,), generator, dev, dt) < p).view(B, 1, 1)
    end = start + torch.where(apply, sign * offset, torch.zeros_like(offset))
    M = get_perspective_transform(start, end)
    return warp_perspective(images, M, (H, W), mode="bilinear", padding_mode="zeros", align_corners=True)


class Augment(nn.Module):
    """Augmentation pipeline for guidance: n views of each render -> perspective -> crop + resize ->
    random background composite (Dream Fields order, dreamfields.md §4; backgrounds generated at the
    output resolution after the crop, one per view).

    Args:
        n_views: augmented views per input image (Dream Fields: 8 per device).
        crop_scale: crop side fraction range; ``(1, 1)`` disables cropping.
        perspective_prob: probability of a random perspective warp per view (VectorFusion: 0.7).
        distortion_scale: perspective distortion (VectorFusion: 0.5).
        backgrounds: background kinds to draw from; empty keeps the premultiplied render (black).
        background_probs: probabilities of ``backgrounds`` (default equal).
        blur_std_range: background blur σ range in output pixels (Dream Fields: (0, 10)).
        blur_kernel: blur kernel size (15).
        noise_kind: ``"uniform"`` (reference code) or ``"gaussian"`` (thesis text).
        composite_mode: ``"premultiplied"`` or ``"official"`` (see :func:`composite`).

    Shape:
        - rgb: ``[B, 3, H, W]``, premultiplied when ``alpha`` is given; alpha: ``[B, 1, H, W]`` or None.
        - output: ``[B·n_views, 3, h, w]``, views of image b at rows ``b·n_views … (b+1)·n_views − 1``.
    """

    def __init__(
        self,
        n_views: int = 8,
        crop_scale: Tuple[float, float] = (0.9167, 0.9167),
        perspective_prob: float = 0.0,
        distortion_scale: float = 0.5,
        backgrounds: Sequence[BackgroundKind] = ("checkerboard", "noise", "fourier"),
        background_probs: Optional[Sequence[float]] = None,
        blur_std_range: Tuple[float, float] = (0.0, 10.0),
        blur_kernel: int = 15,
        noise_kind: Literal["uniform", "gaussian"] = "uniform",
        composite_mode: CompositeMode = "premultiplied",
    ) -> None:
        super().__init__()
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.n_views = n_views
        self.crop_scale = tuple(crop_scale)
        self.perspective_prob = perspective_prob
        self.distortion_scale = distortion_scale
        self.backgrounds = tuple(backgrounds)
        self.background_probs = background_probs
        self.blur_std_range = tuple(blur_std_range)
        self.blur_kernel = blur_kernel
        self.noise_kind = noise_kind
        self.composite_mode = composite_mode

    def forward(self, rgb: Tensor, alpha: Optional[Tensor] = None, size: Union[int, Tuple[int, int], None] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Augment a batch of renders (see class docstring); ``size`` defaults to the input size."""
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be [B, 3, H, W], got {tuple(rgb.shape)}")
        B, _, H, W = rgb.shape
        out_hw = (size, size) if isinstance(size, int) else tuple(size or (H, W))
        x = rgb if alpha is None else torch.cat([rgb, alpha.to(rgb.dtype)], dim=1)  # [B, 3 or 4, H, W]
        x = x.repeat_interleave(self.n_views, dim=0)  # [B·n, C, H, W]
        if self.perspective_prob > 0:
            x = random_perspective(x, self.distortion_scale, self.perspective_prob, generator)
        if self.crop_scale != (1.0, 1.0) or out_hw != (H, W):
            x = random_crop_resize(x, out_hw, self.crop_scale, generator)
        if alpha is None or not self.backgrounds:
            return x[:, :3]
        bg = random_backgrounds(x.shape[0], *out_hw, kinds=self.backgrounds, probs=self.background_probs,
                                blur_std_range=self.blur_std_range, blur_kernel=self.blur_kernel,
                                noise_kind=self.noise_kind, generator=generator, device=x.device)
        return composite(x[:, :3], x[:, 3:], bg.to(x.dtype), self.composite_mode)
