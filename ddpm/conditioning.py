"""Text conditioning of the denoiser ``ε_φ(x_t, y, t)`` and classifier-free-guidance condition dropout.

The condition ``y`` is given to a ``UNet2DConditionModel`` through cross-attention as encoder hidden
states ``[B, L, D]`` (sds_ddpm.md §3.3: "conditioned through cross-attention"). The text encoder is a
frozen :class:`common.priors.clip.CLIPModel` (the shapeworld CLIP offline, any open_clip model
otherwise); it stays out of checkpoints (conventions §6.5). The unconditional input ``ε_φ(x)`` of
classifier-free guidance is the encoder applied to the empty string ``""`` (sds_ddpm.md §3.5).
"""

from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from common.priors.clip import CLIPModel


class CLIPTextConditioner(nn.Module):
    """Encoder hidden states of a frozen open_clip text tower.

    Args:
        clip: the frozen CLIP (loaded lazily by :meth:`load`; never in ``state_dict``).
        mode: ``tokens``: the per-token states after the final layer norm, ``[B, L, width]`` (what
            Stable Diffusion's UNet attends to); ``pooled``: the unit-norm joint-space text
            embedding as a single token, ``[B, 1, D]``.

    Shape:
        list of B prompts → ``[B, L, D]``.
    """

    def __init__(self, clip: CLIPModel, mode: Literal["tokens", "pooled"] = "tokens") -> None:
        super().__init__()
        self.clip, self.mode = clip, mode

    def load(self) -> "CLIPTextConditioner":
        self.clip.load()
        return self

    @property
    def dim(self) -> int:
        """Width D of the hidden states (the UNet's ``cross_attention_dim``)."""
        m = self.clip.model
        return int(m.ln_final.normalized_shape[0]) if self.mode == "tokens" else int(m.text_projection.shape[1])

    @torch.no_grad()
    def forward(self, prompts: Sequence[str]) -> Tensor:
        """``[B, L, D]`` hidden states of ``prompts`` (``""`` is allowed: the null condition)."""
        self.clip.load()
        model = self.clip.model
        tokens = self.clip.tokenizer(list(prompts)).to(self.clip.device)  # [B, L]
        if self.mode == "pooled":
            return torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)[:, None, :]
        # open_clip CLIP.encode_text up to the pooling (open_clip/model.py), keeping every token.
        x = model.token_embedding(tokens) + model.positional_embedding  # [B, L, width]
        x = model.transformer(x, attn_mask=model.attn_mask)
        return model.ln_final(x).float()


def drop_condition(context: Tensor, null: Tensor, p_uncond: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Classifier-free-guidance training: replace each row's condition by the null one with probability ``p_uncond``.

    Args:
        context: ``[B, L, D]`` condition.
        null: ``[1, L, D]`` (or ``[B, L, D]``) unconditional embedding (the encoder of ``""``).
        p_uncond: drop probability (0.1–0.2 typical; Ho & Salimans 2022).
        generator: random generator.

    Returns:
        ``(context', dropped)``: the mixed condition ``[B, L, D]`` and the ``[B]`` bool drop mask.
    """
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    dropped = torch.rand(context.shape[0], generator=generator, device=context.device if generator is None else "cpu") < p_uncond
    dropped = dropped.to(context.device)
    return torch.where(dropped[:, None, None], null.to(context).expand_as(context), context), dropped
