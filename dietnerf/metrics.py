"""DietNeRF's evaluation protocol (specs/dietnerf.md §5.1).

* PSNR: ``−10·log10(MSE)`` of float images in [0, 1] (``common.metrics.psnr``), per view, then averaged
  over a scene's test views, then over scenes.
* SSIM: scikit-image's ``structural_similarity(channel_axis=-1, data_range=1)`` — a 7×7 *uniform*
  window, as the release's ``compare_ssim(multichannel=True)``. (``common.metrics.ssim`` is the
  Gaussian-window SSIM of torchmetrics; the paper's numbers use this one.)
* LPIPS (VGG) through ``common.metrics.lpips_metric``; when its ImageNet backbone is not on disk it is
  reported as skipped with the reason, never computed from random weights. ``lpips_input_range``:
  ``[-1,1]`` (correct; images mapped from [0, 1]) or ``[0,1]`` (the release's Blender evaluation, which
  passed [0, 1] images to a network expecting [−1, 1]).
* FID / KID over sets of renders (torch-fidelity's Inception-v3 pool features): Fréchet distance
  ``‖μ1−μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^{1/2})``; KID the unbiased MMD² with kernel ``(xᵀy/d + 1)³``
  averaged over random subsets.
"""

import math
from typing import Callable, Literal, Optional

import numpy as np
import torch
from torch import Tensor

from common.metrics import lpips_metric
from common.metrics import psnr as _psnr
from common.priors.base import PriorWeightsNotFoundError


def psnr(pred: Tensor, target: Tensor) -> float:
    """PSNR in dB of ``[H, W, 3]`` images in [0, 1].

    Example:
        >>> round(psnr(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.1)), 4)
        20.0
    """
    return float(_psnr(pred.permute(2, 0, 1)[None].float(), target.permute(2, 0, 1)[None].float(), data_range=1.0))


def ssim(pred: Tensor, target: Tensor) -> float:
    """SSIM of ``[H, W, 3]`` images in [0, 1] with scikit-image's 7×7 uniform window (images ≥ 7 px)."""
    from skimage.metrics import structural_similarity

    a = pred.detach().double().cpu().numpy()
    b = target.detach().double().cpu().numpy()
    win = min(7, *[s if s % 2 else s - 1 for s in a.shape[:2]])
    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0, win_size=win))


class LPIPSScorer:
    """LPIPS of ``[H, W, 3]`` images in [0, 1], or a recorded reason why it was skipped.

    Args:
        net: backbone (``vgg`` in the paper).
        input_range: ``[-1,1]`` (correct) or ``[0,1]`` (release-compatible, see module docstring).
        enabled: False skips LPIPS on purpose.

    Attributes:
        status: ``"ok"``, or ``"skipped: <reason>"``.
    """

    def __init__(self, net: Literal["vgg", "alex", "squeeze"] = "vgg", input_range: Literal["[-1,1]", "[0,1]"] = "[-1,1]",
                 enabled: bool = True) -> None:
        if input_range not in ("[-1,1]", "[0,1]"):
            raise ValueError(f"lpips input_range must be '[-1,1]' or '[0,1]', got {input_range!r}")
        self.net, self.input_range, self._metric = net, input_range, None
        self.status = "ok" if enabled else "skipped: disabled in the config (compute_lpips: false)"
        if enabled:
            try:
                self._metric = lpips_metric(net, normalize=input_range == "[-1,1]")
            except (PriorWeightsNotFoundError, ModuleNotFoundError, ImportError, OSError) as err:
                self.status = "skipped: " + " ".join(str(err).split())

    @property
    def available(self) -> bool:
        return self._metric is not None

    @torch.no_grad()
    def __call__(self, pred: Tensor, target: Tensor) -> Optional[float]:
        if self._metric is None:
            return None
        m = self._metric.to(pred.device)
        a, b = (x.permute(2, 0, 1)[None].float().clamp(0, 1) for x in (pred, target))
        m.reset()
        return float(m(a, b))


def fid_from_features(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to ``[N, D]`` and ``[M, D]`` features."""
    from scipy import linalg

    a, b = real.double().cpu().numpy(), fake.double().cpu().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # singular product: regularise as pytorch-fid does
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid_from_features(real: Tensor, fake: Tensor, subset_size: int = 1000, n_subsets: int = 100,
                      seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD² with ``k(x, y) = (xᵀy/d + 1)³`` over random subsets.

    Returns:
        ``(mean, std)`` over the subsets (subset size is capped by the smaller set).
    """
    a, b = real.double(), fake.double()
    d = a.shape[1]
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(n_subsets):
        x = a[torch.randperm(a.shape[0], generator=g)[:m]]
        y = b[torch.randperm(b.shape[0], generator=g)[:m]]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        # unbiased: drop the diagonals of the within-set kernel sums
        mmd = ((kxx.sum() - kxx.diagonal().sum()) + (kyy.sum() - kyy.diagonal().sum())) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(float(mmd))
    return float(np.mean(vals)), float(np.std(vals))


def inception_extractor(weights_path: Optional[str] = None) -> Callable[[Tensor], Tensor]:
    """torch-fidelity's Inception-v3 (2048-d pool features) from a local weights file.

    Returns a function ``[B, 3, H, W]`` floats in [0, 1] → ``[B, 2048]``.

    Raises:
        PriorWeightsNotFoundError: the weights are not on disk (checked by ``common.metrics.fid_metric``).
    """
    from common.metrics import fid_metric

    fid = fid_metric(2048, weights_path=weights_path, normalize=True)  # raises when the weights are absent
    net = fid.inception.eval()

    @torch.no_grad()
    def extract(images: Tensor) -> Tensor:
        return net((images.clamp(0, 1) * 255).round().to(torch.uint8)).reshape(images.shape[0], -1).float()

    return extract


def camera_angle_to_nearest(test_c2w: Tensor, train_c2w: Tensor, center: Optional[Tensor] = None) -> Tensor:
    """``[T]`` angle in degrees between each test camera's centre and the nearest observed camera's
    centre, seen from ``center`` (default origin): how far a held-out view is from the observed ones."""
    c = torch.zeros(3) if center is None else center
    a = torch.nn.functional.normalize(test_c2w[:, :3, 3].float().cpu() - c, dim=-1)
    b = torch.nn.functional.normalize(train_c2w[:, :3, 3].float().cpu() - c, dim=-1)
    cos = (a @ b.T).clamp(-1, 1).amax(dim=1)
    return torch.rad2deg(torch.acos(cos))


def mean_or_none(values) -> Optional[float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


__all__ = ["LPIPSScorer", "camera_angle_to_nearest", "fid_from_features", "inception_extractor", "kid_from_features",
           "mean_or_none", "psnr", "ssim"]
