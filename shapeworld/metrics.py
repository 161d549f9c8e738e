"""Quality measures of the shapeworld priors (the issue's quality bars).

* CLIP: top-1 retrieval of the correct caption among all kind × colour captions
  (:func:`caption_retrieval`), on held-out renders; bar ≥ 90 % on 500 renders.
* Diffusion prior: fraction of samples of a prompt that the held-out CLIP retrieves as that prompt
  (:func:`prompt_retrieval`); bar ≥ 80 % of 16 samples for each of 10 held-out prompts.
"""

from typing import Sequence

import torch
from torch import Tensor

from common.priors.clip import CLIPModel
from shapeworld.captions import RETRIEVAL_TEMPLATE, all_captions


@torch.no_grad()
def caption_retrieval(clip: CLIPModel, images: Tensor, pairs: Tensor, template: str = RETRIEVAL_TEMPLATE,
                      batch: int = 256) -> float:
    """Top-1 accuracy of retrieving caption ``pairs[i]`` for ``images[i]`` among :func:`all_captions`.

    Args:
        clip: a loaded CLIP.
        images: ``[N, 3, H, W]`` in ``[0, 1]``.
        pairs: ``[N]`` indices into ``all_captions(template)``.
        template: caption template.
    """
    txt = clip.encode_text(all_captions(template))  # [P, D]
    hits = []
    for i in range(0, images.shape[0], batch):
        img = clip.encode_image(images[i:i + batch].to(clip.device))
        hits.append((img @ txt.t()).argmax(1).cpu() == pairs[i:i + batch].cpu())
    return torch.cat(hits).float().mean().item()


@torch.no_grad()
def prompt_retrieval(clip: CLIPModel, images: Tensor, prompt_pairs: Sequence[int], template: str = RETRIEVAL_TEMPLATE) -> Tensor:
    """Per-sample hit (``[N]`` bool): the sample's own (kind, colour) caption ranks first."""
    return torch.tensor([]) if len(images) == 0 else (
        (clip.encode_image(images.to(clip.device)) @ clip.encode_text(all_captions(template)).t()).argmax(1).cpu()
        == torch.as_tensor(list(prompt_pairs)))
