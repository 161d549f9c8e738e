"""CLIP guidance: negative cosine similarity between augmented renders and the prompt.

Dream Fields (thesis eq. 4.7): ``L_CLIP = −g(I)ᵀh(y)`` with unit-norm embeddings, averaged over
augmented views (``shared/specs/dreamfields.md`` §5.1). PureCLIPNeRF writes it ``1 − cos``
(``shared/specs/pureclipnerf.md`` §3.8), which has the same gradient, and adds an ensemble member
``L_CLIP2`` (own encoders, own crops) with weight 0.5 from step 5000 on.
"""

from typing import Dict, List, Literal, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from common.augment import Augment
from common.guidance.base import Guidance, check_prompt
from common.priors.clip import CLIPEnsemble, CLIPModel, check_images

__all__ = ["CLIPGuidance"]


class CLIPGuidance(Guidance):
    """CLIP guidance over one model or an ensemble.

    Args:
        clip: one :class:`CLIPModel` or a list (ensemble). Member 0 returns ``loss_clip``; member
            i ≥ 1 returns ``loss_clip{i+1}`` (``loss_clip2``, ...), so each gets its own
            ``lambda_*`` in the system.
        augment: augmentation pipeline applied independently for each member (own crops and
            backgrounds); ``None`` encodes the images as given.
        weights: per-member multipliers applied inside the guidance (default 1).
        start_steps: per-member first active step (PureCLIPNeRF: ``[0, 5000]``); an inactive
            member returns a zero loss and is not evaluated.
        loss_form: ``"neg_cos"`` (−cos, Dream Fields eq. 4.7) or ``"one_minus_cos"`` (PureCLIPNeRF).
        check_range: reject augmented images outside [0, 1] (disable for unclamped DiffAugment).

    Shape:
        - images: ``[B, 3, H, W]`` in [0, 1] (premultiplied colour when ``alpha`` is given).
        - alpha: ``[B, 1, H, W]`` opacity, composited over random backgrounds by ``augment``.
    """

    def __init__(
        self,
        clip: Union[CLIPModel, List[CLIPModel]],
        augment: Optional[Augment] = None,
        weights: Optional[List[float]] = None,
        start_steps: Optional[List[int]] = None,
        loss_form: Literal["neg_cos", "one_minus_cos"] = "neg_cos",
        check_range: bool = True,
    ) -> None:
        super().__init__()
        models = list(clip) if isinstance(clip, (list, tuple, nn.ModuleList, CLIPEnsemble)) else [clip]
        if not models:
            raise ValueError("CLIPGuidance needs at least one CLIPModel")
        self.clips = nn.ModuleList(models)
        self.augment = augment
        self.weights = list(weights) if weights is not None else [1.0] * len(models)
        self.start_steps = list(start_steps) if start_steps is not None else [0] * len(models)
        if len(self.weights) != len(models) or len(self.start_steps) != len(models):
            raise ValueError("weights and start_steps need one entry per CLIP model")
        if loss_form not in ("neg_cos", "one_minus_cos"):
            raise ValueError(f"loss_form must be 'neg_cos' or 'one_minus_cos', got {loss_form!r}")
        self.loss_form = loss_form
        self.check_range = check_range

    @staticmethod
    def key(i: int) -> str:
        """Loss name of ensemble member i."""
        return "loss_clip" if i == 0 else f"loss_clip{i + 1}"

    def forward(self, images: Tensor, prompt: Union[str, Sequence[str], Tensor], step: int = 0,
                alpha: Optional[Tensor] = None, generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """Compute ``loss_clip`` (and ``loss_clip2``, ... for ensembles).

        Args:
            images: ``[B, 3, H, W]`` in [0, 1].
            prompt: a prompt, B prompts, or (single model) a precomputed ``[1 or B, D]`` text embedding.
            step: global step (for ``start_steps``).
            alpha: optional ``[B, 1, H, W]`` opacity for background compositing.
            generator: RNG for the augmentations.

        Returns:
            ``{"loss_clip": scalar, ...}``, differentiable w.r.t. ``images`` (and ``alpha``).
        """
        check_images(images, check_range=self.check_range)
        B = images.shape[0]
        if isinstance(prompt, Tensor):
            if len(self.clips) != 1:
                raise ValueError("a precomputed text embedding only works with a single CLIP model; pass the prompt")
            if prompt.ndim != 2 or prompt.shape[0] not in (1, B):
                raise ValueError(f"text embedding must be [1 or B, D], got {tuple(prompt.shape)}")
        else:
            prompts = check_prompt(prompt, B)
        out: Dict[str, Tensor] = {}
        for i, (clip, w, start) in enumerate(zip(self.clips, self.weights, self.start_steps)):
            if step < start:
                out[self.key(i)] = images.new_zeros(())
                continue
            views = images if self.augment is None else self.augment(images, alpha, clip.image_size, generator)
            n = views.shape[0] // B  # views per image, image-major
            emb = clip.encode_image(views, check_range=self.check_range)  # [B·n, D]
            txt = prompt if isinstance(prompt, Tensor) else clip.encode_text(prompts)  # [1 or B, D]
            txt = txt.to(emb).repeat_interleave(n, dim=0) if txt.shape[0] == B else txt.to(emb)
            cos = (emb * txt).sum(dim=-1)  # [B·n]
            loss = -cos.mean() if self.loss_form == "neg_cos" else 1 - cos.mean()
            out[self.key(i)] = w * loss
            self.last_info[f"clip_cos{'' if i == 0 else i + 1}"] = cos.detach().mean()
        return out
