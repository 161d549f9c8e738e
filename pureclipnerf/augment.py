"""The paper's augmentation study: DiffAug → BackAug → PerspAug, then a shared crop for CLIP (spec §3.7).

From one ``res × res`` render per iteration:

1. **DiffAug** (Zhao et al. 2020, "same settings as the original DiffAugment" [P]) on ``n_d`` copies:
   brightness, saturation, contrast, integer translation (±round(0.125·res), zero fill), a random zoom
   (0.8–1.2, one factor per batch; released code only [C]) and cutout (a square of round(0.25·res),
   clipped at the borders); each image draws its own values except the zoom; nothing is clamped.
2. **BackAug** (Dream Fields' backgrounds [P]): ``n_b`` backgrounds (checkerboard, uniform noise,
   Fourier texture; :mod:`common.augment`) blurred with *one* σ ~ U(0, 10) per iteration (15×15 kernel),
   each composited with every DiffAug copy → ``n_d·n_b`` images. ``composite_mode="official"`` is the
   released formula ``Y[d, b] = X[d] + B[b]·T_last`` (white-background render, un-augmented T; §3.7);
   ``"clean"`` augments ``[premultiplied rgb, α]`` with shared geometry and composites ``rgb' + B·(1 − α')``
   (§7.4, an extra ablation).
3. **PerspAug** (Text2Mesh): one torchvision-style random perspective warp (distortion 0.6, p = 1) shared
   by the whole batch [P].
4. CLIP preprocessing (:class:`SharedCropResize`, used as the guidance's ``augment``): one random
   ``(res − 16)²`` crop per iteration and model, shared by the batch, bilinear resize to the model's input
   size [C]; the CLIP normalisation happens in :class:`common.priors.clip.CLIPModel`.
"""

from typing import List, Literal, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.augment import Augment, BackgroundKind, blur, random_backgrounds, random_perspective

__all__ = ["DIFFAUG_OPS", "diff_augment", "blurred_backgrounds", "shared_perspective", "PureCLIPAugment",
           "SharedCropResize"]

#: DiffAug ops in the order they are applied; ``color`` = brightness + saturation + contrast
DIFFAUG_OPS: Tuple[str, ...] = ("brightness", "saturation", "contrast", "translation", "zoom", "cutout")
CompositeMode = Literal["official", "clean"]


def _rand(shape, generator: Optional[torch.Generator], device) -> Tensor:
    dev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=dev).to(device)


def _randint(low: int, high: int, shape, generator: Optional[torch.Generator], device) -> Tensor:
    dev = generator.device if generator is not None else device
    return torch.randint(low, high, shape, generator=generator, device=dev).to(device)


def expand_policy(policy: Sequence[str]) -> List[str]:
    """Validate a DiffAug policy (``color`` expands to the three colour ops) and return it in apply order."""
    ops = set()
    for p in policy:
        if p == "color":
            ops |= {"brightness", "saturation", "contrast"}
        elif p in DIFFAUG_OPS:
            ops.add(p)
        else:
            raise ValueError(f"unknown DiffAug op {p!r}; choose from {('color',) + DIFFAUG_OPS}")
    return [op for op in DIFFAUG_OPS if op in ops]


def diff_augment(x: Tensor, policy: Sequence[str] = ("color", "translation", "zoom", "cutout"),
                 n_color: Optional[int] = None, translation_ratio: float = 0.125, cutout_ratio: float = 0.25,
                 zoom_range: Tuple[float, float] = (0.8, 1.2), generator: Optional[torch.Generator] = None) -> Tensor:
    """DiffAugment (Zhao et al. 2020) plus the released code's batch zoom (spec §3.7 (1)).

    Args:
        x: ``[N, C, H, W]`` images (any range; nothing is clamped).
        policy: ops to apply (subset of :data:`DIFFAUG_OPS`, ``color`` = the three colour ops).
        n_color: leading channels the colour ops act on (default all; 3 for ``[rgb, α]`` stacks).
        translation_ratio: max shift as a fraction of the side (0.125 → 28 px at 224).
        cutout_ratio: cutout side as a fraction of the side (0.25 → 56 px at 224).
        zoom_range: zoom factor range, one factor per call.
        generator: RNG.

    Returns:
        ``[N, C, H, W]``, differentiable w.r.t. ``x``.
    """
    N, C, H, W = x.shape
    nc = C if n_color is None else n_color
    dev = x.device
    for op in expand_policy(policy):
        if op == "brightness":  # x + (u − 0.5), u ~ U(0, 1) per image
            u = _rand((N, 1, 1, 1), generator, dev)
            x = torch.cat([x[:, :nc] + (u - 0.5), x[:, nc:]], 1)
        elif op == "saturation":  # (x − mean_c)·2u + mean_c
            u = _rand((N, 1, 1, 1), generator, dev)
            m = x[:, :nc].mean(dim=1, keepdim=True)
            x = torch.cat([(x[:, :nc] - m) * (2 * u) + m, x[:, nc:]], 1)
        elif op == "contrast":  # (x − mean_chw)·(u + 0.5) + mean_chw
            u = _rand((N, 1, 1, 1), generator, dev)
            m = x[:, :nc].mean(dim=(1, 2, 3), keepdim=True)
            x = torch.cat([(x[:, :nc] - m) * (u + 0.5) + m, x[:, nc:]], 1)
        elif op == "translation":  # integer shift in [−s, s] per axis, zero fill (DiffAugment's gather)
            sh, sw = int(H * translation_ratio + 0.5), int(W * translation_ratio + 0.5)
            ty = _randint(-sh, sh + 1, (N, 1, 1), generator, dev)
            tx = _randint(-sw, sw + 1, (N, 1, 1), generator, dev)
            gy = (torch.arange(H, device=dev)[None, :, None] + ty + 1).clamp(0, H + 1)  # [N, H, 1]
            gx = (torch.arange(W, device=dev)[None, None, :] + tx + 1).clamp(0, W + 1)  # [N, 1, W]
            pad = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # [N, H+2, W+2, C], zero border
            x = pad[torch.arange(N, device=dev)[:, None, None], gy, gx].permute(0, 3, 1, 2)
        elif op == "zoom":  # one factor per batch: resize, then centre pad (extra pixel right/bottom) or crop
            lo, hi = zoom_range
            r = lo + (hi - lo) * float(_rand((1,), generator, dev))
            nh, nw = max(int(r * H), 1), max(int(r * W), 1)
            z = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
            if nh <= H:
                top, left = (H - nh) // 2, (W - nw) // 2
                x = F.pad(z, [left, W - nw - left, top, H - nh - top])
            else:
                top, left = int((nh - H) / 2), int((nw - W) / 2)
                x = z[..., top:top + H, left:left + W]
        elif op == "cutout":  # zero one square of side round(ratio·side), centre uniform, clipped at borders
            ch, cw = int(H * cutout_ratio + 0.5), int(W * cutout_ratio + 0.5)
            oy = _randint(0, H + (1 - ch % 2), (N, 1, 1), generator, dev)
            ox = _randint(0, W + (1 - cw % 2), (N, 1, 1), generator, dev)
            ys = torch.arange(H, device=dev)[None, :, None] - (oy - ch // 2)  # [N, H, 1]
            xs = torch.arange(W, device=dev)[None, None, :] - (ox - cw // 2)
            hole = (ys >= 0) & (ys < ch) & (xs >= 0) & (xs < cw)  # [N, H, W]
            x = x * (~hole)[:, None].to(x.dtype)
    return x


def blurred_backgrounds(n: int, height: int, width: int,
                        kinds: Sequence[BackgroundKind] = ("checkerboard", "noise", "fourier"),
                        blur_std_range: Tuple[float, float] = (0.0, 10.0), blur_kernel: int = 15,
                        generator: Optional[torch.Generator] = None, device=None) -> Tensor:
    """``[n, 3, H, W]`` Dream Fields backgrounds (type uniform over ``kinds``) blurred with one shared
    σ ~ U(blur_std_range) (spec §3.7 (2)); random draws come from :mod:`common.augment`."""
    bg = random_backgrounds(n, height, width, kinds=kinds, blur_std_range=(0.0, 0.0), generator=generator,
                            device=device)
    lo, hi = blur_std_range
    if hi > 0:
        sigma = lo + (hi - lo) * _rand((1,), generator, bg.device)
        bg = blur(bg, sigma.expand(n), blur_kernel)
    return bg


def shared_perspective(images: Tensor, distortion_scale: float = 0.6,
                       generator: Optional[torch.Generator] = None) -> Tensor:
    """One random perspective warp (p = 1) applied to every image of ``[N, C, H, W]`` ([P]: "only one")."""
    N, C, H, W = images.shape
    return random_perspective(images.reshape(1, N * C, H, W), distortion_scale, 1.0, generator).reshape(N, C, H, W)


class PureCLIPAugment(nn.Module):
    """DiffAug → BackAug → PerspAug, each switchable (spec §3.7; the Tab. 4 / Fig. 4 / Fig. 8 ablations).

    Args:
        diffaug: apply DiffAug.
        n_diff: DiffAug copies n_d (8 for Vox Exp; 4 for Vox Imp and ViT-L/14 runs [P]).
        diffaug_policy: DiffAug ops (``color``, ``translation``, ``zoom``, ``cutout`` by default; drop
            ``zoom`` for the original DiffAugment, §7.5).
        translation_ratio, cutout_ratio, zoom_range: DiffAug settings (0.125, 0.25, (0.8, 1.2)).
        backaug: apply BackAug.
        n_bkgd: backgrounds n_b (8 [P]).
        bg_kinds: background types drawn with equal odds (``checkerboard``, ``noise``, ``fourier``).
        bg_blur_std: blur σ range in pixels, one σ per iteration ((0, 10) [C] = Dream Fields).
        bg_blur_kernel: blur kernel size (15).
        perspaug: apply one shared random perspective warp (on for Vox Exp, off for Vox Imp [P]).
        persp_distortion: distortion scale (0.6 [P]).
        composite_mode: ``official`` (released formula) or ``clean`` (§7.4).

    Shape:
        rgb: ``[1, 3, H, W]`` render on **white**; t_last: ``[1, 1, H, W]`` → ``[n_d·n_b, 3, H, W]``
        (``n_d`` = 1 without DiffAug, ``n_b`` = 1 without BackAug), background-major.
    """

    def __init__(self, diffaug: bool = True, n_diff: int = 8,
                 diffaug_policy: Sequence[str] = ("color", "translation", "zoom", "cutout"),
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.25,
                 zoom_range: Tuple[float, float] = (0.8, 1.2), backaug: bool = True, n_bkgd: int = 8,
                 bg_kinds: Sequence[BackgroundKind] = ("checkerboard", "noise", "fourier"),
                 bg_blur_std: Tuple[float, float] = (0.0, 10.0), bg_blur_kernel: int = 15,
                 perspaug: bool = True, persp_distortion: float = 0.6,
                 composite_mode: CompositeMode = "official") -> None:
        super().__init__()
        if n_diff < 1 or n_bkgd < 1:
            raise ValueError(f"n_diff and n_bkgd must be >= 1, got {n_diff} and {n_bkgd}")
        if composite_mode not in ("official", "clean"):
            raise ValueError(f"composite_mode must be 'official' or 'clean', got {composite_mode!r}")
        if backaug and not bg_kinds:
            raise ValueError("backaug needs at least one background kind in bg_kinds")
        self.diffaug, self.n_diff, self.policy = diffaug, n_diff, tuple(expand_policy(diffaug_policy))
        self.translation_ratio, self.cutout_ratio, self.zoom_range = translation_ratio, cutout_ratio, tuple(zoom_range)
        self.backaug, self.n_bkgd, self.bg_kinds = backaug, n_bkgd, tuple(bg_kinds)
        self.bg_blur_std, self.bg_blur_kernel = tuple(bg_blur_std), bg_blur_kernel
        self.perspaug, self.persp_distortion = perspaug, persp_distortion
        self.composite_mode = composite_mode

    @property
    def batch_size(self) -> int:
        """Images per iteration ``n_d·n_b``."""
        return (self.n_diff if self.diffaug else 1) * (self.n_bkgd if self.backaug else 1)

    def _diff(self, x: Tensor, n_color: int, generator) -> Tensor:
        if not self.diffaug:
            return x
        x = x.expand(self.n_diff, *x.shape[1:])
        return diff_augment(x, self.policy, n_color, self.translation_ratio, self.cutout_ratio, self.zoom_range, generator)

    def forward(self, rgb: Tensor, t_last: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        if rgb.ndim != 4 or rgb.shape[:2] != (1, 3) or t_last.shape != (1, 1, *rgb.shape[-2:]):
            raise ValueError(f"need rgb [1, 3, H, W] and t_last [1, 1, H, W], got {tuple(rgb.shape)} and {tuple(t_last.shape)}")
        H, W = rgb.shape[-2:]
        bg = (blurred_backgrounds(self.n_bkgd, H, W, self.bg_kinds, self.bg_blur_std, self.bg_blur_kernel,
                                  generator, rgb.device).to(rgb.dtype)
              if self.backaug else None)  # [n_b, 3, H, W]
        if self.composite_mode == "official":
            x = self._diff(rgb, 3, generator)  # [n_d, 3, H, W], the white-background render
            y = x if bg is None else (x[None] + bg[:, None] * t_last).flatten(0, 1)  # Y[b, d] = X[d] + B[b]·T
        else:  # clean: shared geometry on [premultiplied rgb, α], colour ops on rgb only
            alpha = 1.0 - t_last
            x = self._diff(torch.cat([rgb - t_last, alpha], 1), 3, generator)  # [n_d, 4, H, W]
            fg, a = x[:, :3], x[:, 3:]
            back = torch.ones_like(fg)[None] if bg is None else bg[:, None]
            y = (fg[None] + back * (1.0 - a[None])).flatten(0, 1)
        if self.perspaug:
            y = shared_perspective(y, self.persp_distortion, generator)
        return y


class SharedCropResize(Augment):
    """CLIP preprocessing of the released code (spec §3.7 (4)): one random ``(H − margin)²`` crop shared by
    the batch, bilinear resize to the model's input size. Used as :class:`common.guidance.CLIPGuidance`'s
    ``augment``, so each ensemble member draws its own crop.

    Args:
        margin: pixels removed from each side length (16 [C]; 0 disables the crop).

    Shape:
        rgb: ``[N, 3, H, W]`` → ``[N, 3, h, w]`` with ``(h, w) = size``.
    """

    def __init__(self, margin: int = 16) -> None:
        super().__init__(n_views=1, crop_scale=(1.0, 1.0), backgrounds=())
        if margin < 0:
            raise ValueError(f"crop margin must be >= 0, got {margin}")
        self.margin = margin

    def forward(self, rgb: Tensor, alpha: Optional[Tensor] = None, size=None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        N, _, H, W = rgb.shape
        out_hw = (size, size) if isinstance(size, int) else tuple(size or (H, W))
        ch, cw = max(H - self.margin, 1), max(W - self.margin, 1)
        y0 = int(_randint(0, H - ch + 1, (1,), generator, rgb.device))
        x0 = int(_randint(0, W - cw + 1, (1,), generator, rgb.device))
        crop = rgb[..., y0:y0 + ch, x0:x0 + cw]
        if (ch, cw) == tuple(out_hw):
            return crop
        return F.interpolate(crop, size=out_hw, mode="bilinear", align_corners=False,
                             antialias=out_hw[0] < ch or out_hw[1] < cw)
