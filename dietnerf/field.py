"""NeRF's MLP as DietNeRF trains it: positional encoding in the code's interleaved layout and the
release's Xavier initialisation (specs/dietnerf.md §1.1 "Positional encoding", "MLP architecture").

The architecture is :class:`common.fields.MLPField` (8×256 trunk, skip at the 5th layer, density
head, 256-d feature, ``[feature, γ(d)] → 128 → RGB``); this module only swaps in

* :class:`NeRFPositionalEncoding`: ``γ_L(p) = [p, sin(2⁰p), cos(2⁰p), …, sin(2^{L−1}p), cos(2^{L−1}p)]``
  with no π factor [C] (``3 + 6L`` dims; the same features as ``common``'s encoding, ordered as the
  release orders them, so released weights line up);
* Xavier-uniform weights with gain ``calculate_gain('relu')`` on hidden layers and gain 1 on the output
  and feature layers, zero biases [C]. Few-shot NeRF is sensitive to initialisation [T, §3.3].
"""

from typing import Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from common.fields.encodings import Encoding
from common.fields.nerf import MLPField


class NeRFPositionalEncoding(Encoding):
    """``γ_L`` of NeRF's code: ``[p, sin(2⁰p), cos(2⁰p), sin(2¹p), cos(2¹p), …]`` (each on the 3-vector).

    Args:
        num_freqs: ``L`` (position 10, direction 4; max frequency ``2^{L−1}``).
        include_input: prepend ``p`` (the release does).

    Shape:
        ``[..., 3] → [..., 3·include_input + 6L]``.

    Example:
        >>> NeRFPositionalEncoding(10).out_dim
        63
    """

    def __init__(self, num_freqs: int = 10, include_input: bool = True) -> None:
        super().__init__()
        if num_freqs < 0:
            raise ValueError(f"num_freqs must be >= 0, got {num_freqs}")
        self.num_freqs, self.include_input = num_freqs, include_input
        self.register_buffer("freqs", 2.0 ** torch.arange(num_freqs, dtype=torch.float32), persistent=False)
        self.out_dim = (3 if include_input else 0) + 6 * num_freqs

    def forward(self, x: Tensor, cov: Optional[Tensor] = None) -> Tensor:
        scaled = x[..., None, :] * self.freqs[:, None]  # [..., L, 3]
        feats = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2).flatten(-3)  # [..., L·2·3]
        return torch.cat([x, feats], dim=-1) if self.include_input else feats


def xavier_init_(field: MLPField) -> MLPField:
    """Release initialisation [C]: Xavier-uniform, gain ``√2`` (ReLU) on hidden layers, gain 1 on the
    density/colour outputs and the feature layer, zero biases. Returns ``field``."""
    relu, linear = nn.init.calculate_gain("relu"), 1.0
    outputs = {id(field.trunk.out)}
    if field.view_dependent:
        outputs |= {id(field.feature), id(field.view[-1])}
    for m in field.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight, gain=linear if id(m) in outputs else relu)
            nn.init.zeros_(m.bias)
    return field


class NeRFMLPField(MLPField):
    """NeRF's radiance field with the release's encoding layout and initialisation.

    Args:
        pos_freqs: PE levels of positions ``L`` (10; Simplified NeRF 6, i.e. max frequency 2⁵).
        dir_freqs: PE levels of view directions (4).
        width, depth, skips: trunk (256, 8, (4,)).
        view_dependent: colour depends on the view direction (off for most Simplified-NeRF scenes).
        view_width: width of the colour branch (128).
        density_noise_std: Gaussian noise on the raw density in training (0 for Blender scenes).
        init: ``xavier`` (release) or ``torch`` (PyTorch defaults).
    """

    def __init__(
        self,
        pos_freqs: int = 10,
        dir_freqs: int = 4,
        width: int = 256,
        depth: int = 8,
        skips: Sequence[int] = (4,),
        view_dependent: bool = True,
        view_width: int = 128,
        density_noise_std: float = 0.0,
        init: Literal["xavier", "torch"] = "xavier",
    ) -> None:
        super().__init__(encoding=NeRFPositionalEncoding(pos_freqs), backbone="plain", width=width, depth=depth,
                         skips=skips, view_dependent=view_dependent, dir_freqs=dir_freqs, view_width=view_width,
                         density_activation="relu", density_noise_std=density_noise_std)
        if view_dependent:
            self.dir_encoding = NeRFPositionalEncoding(dir_freqs)  # same size as common's, code layout
        if init == "xavier":
            xavier_init_(self)
