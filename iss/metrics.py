"""ISS evaluation (specs/iss.md §10.1): FID / FPD where their weights exist, 3D IoU, Point Score, CLIP proxies.

* :func:`frechet_distance` — ``‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2})`` (scipy ``sqrtm``), the core of FID and FPD.
* :func:`fpd` — Fréchet Point Distance of two point-cloud sets through a PointNet classifier's features; the
  classifier's weights must be given (:class:`PointNetClassifier`, :func:`load_pointnet`), never random.
* :func:`fid_renders` — FID of rendered images through torchmetrics' Inception (``common.metrics.fid_metric``
  raises when its weights are not local).
* :func:`iou` — 3D IoU of occupancy grids or point labels; :func:`point_score` — the PS diversity score
  (an Inception-Score analogue with the point classifier, §10.1 [S]).
* :func:`clip_r_precision` / :func:`clip_similarity` — the CLIP-based stand-ins for the human study
  (§10.1 (a)(b) [S]); use a CLIP different from the one optimised.
"""

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.metrics import RPrecision, r_precision
from common.priors.base import PriorWeightsNotFoundError

__all__ = ["frechet_distance", "gaussian_stats", "fpd", "fid_renders", "iou", "point_score", "PointNetClassifier",
           "load_pointnet", "clip_r_precision", "clip_similarity"]


def gaussian_stats(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (float64) of ``[N, D]`` features."""
    x = features.detach().double().cpu().numpy()
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need [N >= 2, D] features, got {x.shape}")
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)``.

    Example:
        >>> round(frechet_distance([0.0], [[1.0]], [1.0], [[4.0]]), 6)
        2.0
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # singular product: regularise (pytorch-fid's fallback)
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


class PointNetClassifier(nn.Module):
    """A small PointNet classifier on coloured points (xyz + rgb); its pooled feature feeds FPD (§10.1 [S]).

    Args:
        in_dim: per-point channels (6 = xyz + rgb).
        n_classes: classes (13 ShapeNet categories, or shapeworld's 11 kinds).
        widths: shared-MLP widths; the last is the global feature size.

    Shape:
        ``[B, N, in_dim]`` → ``(logits [B, n_classes], feature [B, widths[-1]])``.
    """

    def __init__(self, in_dim: int = 6, n_classes: int = 13, widths: Sequence[int] = (64, 128, 256)) -> None:
        super().__init__()
        layers, d = [], in_dim
        for w in widths:
            layers += [nn.Conv1d(d, w, 1), nn.BatchNorm1d(w), nn.ReLU()]
            d = w
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, n_classes))

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.mlp(points.transpose(1, 2)).amax(-1)  # [B, D] symmetric max pool
        return self.head(feat), feat


def load_pointnet(path: Optional[str], **kwargs) -> PointNetClassifier:
    """A :class:`PointNetClassifier` with weights from a local state-dict file (FPD never uses random weights)."""
    if path is None or not Path(path).expanduser().is_file():
        raise PriorWeightsNotFoundError(
            f"FPD needs a trained PointNet classifier's weights, not found at {path}. Train a PointNetClassifier on "
            "coloured surface points of the training shapes and pass its state-dict file; without it FPD is not measurable.")
    net = PointNetClassifier(**kwargs)
    net.load_state_dict(torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True))
    return net.eval()


@torch.no_grad()
def fpd(classifier: PointNetClassifier, points_a: Tensor, points_b: Tensor) -> float:
    """Fréchet Point Distance between two sets ``[N, P, 6]`` of coloured point clouds."""
    fa, fb = classifier(points_a)[1], classifier(points_b)[1]
    return frechet_distance(*gaussian_stats(fa), *gaussian_stats(fb))


def fid_renders(generated: Tensor, reference: Tensor, weights_path: Optional[str] = None, feature: int = 2048) -> float:
    """FID between rendered images ``[N, 3, H, W]`` in [0, 1] (Inception-V3 pool3; raises without local weights)."""
    from common.metrics import fid_metric

    metric = fid_metric(feature=feature, weights_path=weights_path, normalize=True)
    metric.update(reference.float(), real=True)
    metric.update(generated.float(), real=False)
    return float(metric.compute())


def iou(occ_a: Tensor, occ_b: Tensor) -> float:
    """``|A ∩ B| / |A ∪ B|`` of boolean occupancies (grids or point labels); 1.0 when both are empty."""
    a, b = occ_a.bool(), occ_b.bool()
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def point_score(probs: Tensor, eps: float = 1e-12) -> float:
    """PS: ``exp(E_x KL(p(y|x) ‖ p(y)))`` over ``[N, K]`` class probabilities of samples from one prompt."""
    p = probs.double().clamp_min(eps)
    marginal = p.mean(0, keepdim=True)
    return float(torch.exp((p * (p.log() - marginal.log())).sum(-1).mean()))


@torch.no_grad()
def clip_r_precision(clip, images: Tensor, pool: Sequence[str], true_index: Sequence[int]) -> RPrecision:
    """R-precision@1: each image ``[N, 3, H, W]`` in [0, 1] retrieves among the caption ``pool``."""
    img = F.normalize(clip.encode_image(images).float(), dim=-1)
    txt = F.normalize(clip.encode_text(list(pool)).float(), dim=-1).to(img.device)
    return r_precision(img, txt, torch.as_tensor(list(true_index)))


@torch.no_grad()
def clip_similarity(clip, images: Tensor, prompt: str) -> float:
    """Mean cosine between one prompt and its renders ``[V, 3, H, W]``."""
    img = F.normalize(clip.encode_image(images).float(), dim=-1)
    txt = F.normalize(clip.encode_text([prompt]).float(), dim=-1).to(img.device)
    return float((img @ txt.T).mean())
