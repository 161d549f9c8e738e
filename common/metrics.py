"""Evaluation metrics: CLIP R-precision, CLIP score, PSNR/SSIM, LPIPS and FID (torchmetrics).

CLIP R-precision (Dream Fields, thesis §4.5.1; ``shared/specs/dreamfields.md`` §9.2): an object
counts as correct when its true caption has the highest cosine similarity among all captions under a
*retrieval* CLIP (R = 1, ties to the lowest index); the reported ± is the standard error of the 0/1
outcomes, ``100·sqrt(p(1−p)/(n−1))``.

Metrics that need pretrained weights (LPIPS's backbone, FID's Inception) check for the files
locally and raise :class:`~common.priors.base.PriorWeightsNotFoundError` naming the file, where it
was looked for and how to supply it. They never report a number from random weights.
"""

import math
import os
import statistics
from dataclasses import dataclass
from typing import List, Literal, Optional, Sequence

import torch
from torch import Tensor

from common.priors.base import PriorWeightsNotFoundError
from common.priors.clip import CLIPModel, check_images

__all__ = [
    "RPrecision",
    "r_precision",
    "r_precision_sem",
    "mean_sem",
    "normalize_caption",
    "CLIPRPrecision",
    "clip_score",
    "psnr",
    "ssim",
    "lpips_metric",
    "fid_metric",
]


@dataclass
class RPrecision:
    """Result of :func:`r_precision`.

    Attributes:
        value: fraction of correct retrievals p in [0, 1].
        sem: standard error in percent, ``100·sqrt(p(1−p)/(n−1))``.
        n: number of images.
        correct: ``[n]`` bool, per-image outcome.
        retrieved: ``[n]`` index of the caption each image retrieved (what a miss was read as).
    """

    value: float
    sem: float
    n: int
    correct: Tensor
    retrieved: Tensor

    @property
    def percent(self) -> float:
        """R-precision in percent."""
        return 100.0 * self.value


def r_precision_sem(p: float, n: int) -> float:
    """Standard error in percent, ``100·sqrt(p(1−p)/(n−1))`` (dreamfields.md §9.2).

    Example:
        >>> round(r_precision_sem(0.598, 306), 2)
        2.81
    """
    return 100.0 * math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else float("nan")


def mean_sem(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, standard error of the mean)`` of independent values (``nan`` s.e. for fewer than two), e.g. per-prompt
    R-precision or per-seed margins.

    Example:
        >>> mean_sem([1.0, 2.0, 3.0])
        (2.0, 0.5773502691896258)
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_sem needs at least one value")
    sem = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return statistics.mean(values), sem


def r_precision(image_emb: Tensor, caption_emb: Tensor, true_idx: Tensor) -> RPrecision:
    """CLIP R-precision@1 from embeddings.

    Args:
        image_emb: ``[N, D]`` image embeddings (normalised here).
        caption_emb: ``[M, D]`` caption-pool embeddings (normalised here).
        true_idx: ``[N]`` index of each image's true caption in the pool.

    Returns:
        :class:`RPrecision`; ties in similarity go to the lowest caption index (argmax).
    """
    if image_emb.ndim != 2 or caption_emb.ndim != 2 or image_emb.shape[1] != caption_emb.shape[1]:
        raise ValueError(f"need [N, D] and [M, D] embeddings, got {tuple(image_emb.shape)} and {tuple(caption_emb.shape)}")
    true_idx = torch.as_tensor(true_idx, device=image_emb.device).long().reshape(-1)
    if true_idx.shape[0] != image_emb.shape[0]:
        raise ValueError(f"{true_idx.shape[0]} true indices for {image_emb.shape[0]} images")
    if len(true_idx) and (true_idx.min() < 0 or true_idx.max() >= caption_emb.shape[0]):
        raise ValueError("true caption index out of range of the caption pool")
    sim = torch.nn.functional.normalize(image_emb.float(), dim=-1) @ torch.nn.functional.normalize(
        caption_emb.float(), dim=-1).T  # [N, M]
    retrieved = sim.argmax(dim=-1)
    correct = retrieved == true_idx
    p = correct.float().mean().item() if len(correct) else float("nan")
    return RPrecision(value=p, sem=r_precision_sem(p, len(correct)), n=len(correct), correct=correct.cpu(),
                      retrieved=retrieved.cpu())


def normalize_caption(caption: str) -> str:
    """OC-COCO caption normalisation: lower case, strip spaces, dots and commas, append "." (§9.1).

    Example:
        >>> normalize_caption("A red stop sign. ")
        'a red stop sign.'
    """
    return caption.lower().strip(" .,") + "."


class CLIPRPrecision:
    """R-precision with a retrieval :class:`CLIPModel` over a fixed caption pool.

    Args:
        clip: the retrieval model (use a different one than for guidance, §9.2).
        captions: the caption pool (e.g. the 153 OC-COCO captions), embedded once without templates.
        normalize: apply :func:`normalize_caption` to the pool and to queried captions.
    """

    def __init__(self, clip: CLIPModel, captions: Sequence[str], normalize: bool = True) -> None:
        if len(captions) == 0:
            raise ValueError("CLIPRPrecision needs a non-empty caption pool")
        self.clip = clip
        self.normalize = normalize
        self.captions: List[str] = [normalize_caption(c) if normalize else c for c in captions]
        self._index = {c: i for i, c in enumerate(self.captions)}
        self._caption_emb: Optional[Tensor] = None

    def caption_embeddings(self) -> Tensor:
        """``[M, D]`` pool embeddings (computed once)."""
        if self._caption_emb is None:
            self._caption_emb = torch.cat([self.clip.encode_text(self.captions[i:i + 256])
                                           for i in range(0, len(self.captions), 256)])
        return self._caption_emb

    def index_of(self, caption: str) -> int:
        """Pool index of a caption (normalised as the pool)."""
        key = normalize_caption(caption) if self.normalize else caption
        if key not in self._index:
            raise KeyError(f"caption {caption!r} is not in the R-precision caption pool")
        return self._index[key]

    @torch.no_grad()
    def __call__(self, images: Tensor, captions: Sequence[str]) -> RPrecision:
        """R-precision of ``images`` ``[N, 3, H, W]`` in [0, 1] (white background) whose true captions are ``captions``."""
        check_images(images)
        if len(captions) != images.shape[0]:
            raise ValueError(f"{len(captions)} captions for {images.shape[0]} images")
        true_idx = torch.tensor([self.index_of(c) for c in captions])
        return r_precision(self.clip.encode_image(images), self.caption_embeddings(), true_idx)


@torch.no_grad()
def clip_score(clip: CLIPModel, images: Tensor, prompts: Sequence[str]) -> Tensor:
    """Mean CLIP cosine similarity ×100 between images and their prompts (VectorFusion "Sim").

    Unlike torchmetrics' ``CLIPScore`` it does not clamp negatives to 0.

    Args:
        clip: retrieval model; images: ``[N, 3, H, W]`` in [0, 1]; prompts: 1 or N prompts.
    """
    img = clip.encode_image(images)
    txt = clip.encode_text(list(prompts))
    if txt.shape[0] not in (1, img.shape[0]):
        raise ValueError(f"{txt.shape[0]} prompts for {img.shape[0]} images")
    return 100.0 * (img * txt).sum(-1).mean()


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR in dB (torchmetrics), images ``[B, C, H, W]`` in [0, data_range]."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(pred, target, data_range=data_range)


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM (torchmetrics, Gaussian window 11, σ 1.5), images ``[B, C, H, W]`` in [0, data_range]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(pred, target, data_range=data_range)


_LPIPS_BACKBONES = {"alex": ("alexnet", "AlexNet_Weights"), "vgg": ("vgg16", "VGG16_Weights"),
                    "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights")}
_INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


def lpips_metric(net_type: Literal["alex", "vgg", "squeeze"] = "alex", normalize: bool = True):
    """torchmetrics LPIPS, after checking that its torchvision backbone weights are cached locally.

    LPIPS's linear heads ship with torchmetrics; the ImageNet backbone is loaded by torchvision from
    ``$TORCH_HOME/hub/checkpoints``. When that file is missing this raises instead of downloading
    (or silently using random features).

    Args:
        net_type: backbone; normalize: inputs in [0, 1] (True) or [−1, 1].

    Raises:
        PriorWeightsNotFoundError: the backbone file is not in the torch hub cache.
    """
    import torchvision
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    if net_type not in _LPIPS_BACKBONES:
        raise ValueError(f"net_type must be one of {list(_LPIPS_BACKBONES)}, got {net_type!r}")
    arch, weights_enum = _LPIPS_BACKBONES[net_type]
    url = getattr(torchvision.models, weights_enum).DEFAULT.url
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if not os.path.isfile(path):
        raise PriorWeightsNotFoundError(
            f"LPIPS({net_type}) needs the torchvision {arch} ImageNet weights, not found at {path}.\n"
            f"Fix: download {url} on a networked machine and place it at that path "
            "(or set TORCH_HOME so that $TORCH_HOME/hub/checkpoints holds it).")
    return LearnedPerceptualImagePatchSimilarity(net_type=net_type, normalize=normalize)


def fid_metric(feature: int = 2048, weights_path: Optional[str] = None, normalize: bool = True):
    """torchmetrics FID with torch-fidelity's Inception-v3, after checking its weights are local.

    Args:
        feature: Inception feature layer (64, 192, 768 or 2048).
        weights_path: local ``weights-inception-2015-12-05-6726825d.pth`` (default: the torch hub cache).
        normalize: inputs as floats in [0, 1] (True) or uint8.

    Raises:
        ModuleNotFoundError: torch-fidelity is not installed.
        PriorWeightsNotFoundError: the Inception weights are not found locally.
    """
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    path = weights_path or os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(_INCEPTION_URL))
    if not os.path.isfile(path):
        raise PriorWeightsNotFoundError(
            f"FID needs the Inception-v3 weights (torch-fidelity), not found at {path}.\n"
            f"Fix: download {_INCEPTION_URL} on a networked machine and pass weights_path=<file> "
            "(or place it in $TORCH_HOME/hub/checkpoints).")
    if not _TORCH_FIDELITY_AVAILABLE:
        raise ModuleNotFoundError("FID needs torch-fidelity for its Inception-v3: `pip install torch-fidelity`.")
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(feature=feature, normalize=normalize, feature_extractor_weights_path=path)
