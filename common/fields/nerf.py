"""MLP radiance fields: NeRF's (plain MLP, optional view dependence) and Dream Fields' residual one."""

from typing import Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from common.fields.activations import DensityActivation, density_activation
from common.fields.base import Field, FieldOutput
from common.fields.encodings import Encoding, PositionalEncoding
from common.fields.mlp import PlainMLP, ResidualMLP


class MLPField(Field):
    """An encoding followed by an MLP that outputs density and colour.

    NeRF layout (Mildenhall et al. 2020, Fig. 7) with ``view_dependent=True``: the trunk gives σ and a
    feature; ``[feature, γ(d)]`` → ``view_width`` → RGB. Without view dependence (Dream Fields,
    thesis §4.4.1) one linear head gives ``(rgb, s)`` directly.

    Args:
        encoding: point encoding (default ``PositionalEncoding(10)``); an integrated encoding uses the
            renderer's covariances when ``with_covariance`` is on.
        backbone: ``plain`` (NeRF MLP with skips) or ``residual`` (Dream Fields' MLP).
        width, depth, skips: plain-MLP sizes (NeRF: 256, 8, (4,)).
        res_width, res_hidden, res_blocks, init: residual-MLP sizes and initialisation.
        view_dependent: condition colour on the view direction.
        dir_freqs: positional-encoding levels of the direction (NeRF: 4).
        view_width: width of the view branch (NeRF: 128).
        density_activation: σ from the raw output (NeRF: relu; Dream Fields: softplus).
        density_noise_std: std of Gaussian noise added to the raw density in training (NeRF's
            regulariser; "perturb σ" row of thesis Table 4.2). 0 disables.
        density_bias: constant added to the raw density before the activation.
        out_channels: colour channels (3 for RGB).
    """

    def __init__(
        self,
        encoding: Optional[Encoding] = None,
        backbone: Literal["plain", "residual"] = "plain",
        width: int = 256,
        depth: int = 8,
        skips: Sequence[int] = (4,),
        res_width: int = 128,
        res_hidden: int = 256,
        res_blocks: int = 4,
        init: Literal["lecun_normal", "torch"] = "lecun_normal",
        view_dependent: bool = True,
        dir_freqs: int = 4,
        view_width: int = 128,
        density_activation: DensityActivation = "relu",
        density_noise_std: float = 0.0,
        density_bias: float = 0.0,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.encoding = encoding if encoding is not None else PositionalEncoding(10)
        self.view_dependent, self.out_channels = view_dependent, out_channels
        self.density_kind, self.density_noise_std, self.density_bias = density_activation, density_noise_std, density_bias
        head_out = 1 if view_dependent else 1 + out_channels
        in_dim = self.encoding.out_dim
        if backbone == "plain":
            self.trunk = PlainMLP(in_dim, head_out, width, depth, skips)
        else:
            self.trunk = ResidualMLP(in_dim, head_out, res_width, res_hidden, res_blocks, init=init)
        if view_dependent:
            self.dir_encoding = PositionalEncoding(dir_freqs)
            feat = self.trunk.out_features_hidden
            self.feature = nn.Linear(feat, feat)
            self.view = nn.Sequential(
                nn.Linear(feat + self.dir_encoding.out_dim, view_width), nn.ReLU(), nn.Linear(view_width, out_channels)
            )

    def _sigma(self, raw: Tensor) -> Tensor:
        raw = raw + self.density_bias
        if self.training and self.density_noise_std > 0:
            raw = raw + self.density_noise_std * torch.randn_like(raw)
        return density_activation(raw, self.density_kind)

    def forward(self, x: Tensor, d: Optional[Tensor] = None, cov: Optional[Tensor] = None) -> FieldOutput:
        h = self.trunk.features(self.encoding(x, cov))
        out = self.trunk.out(h)  # [..., head_out]
        if not self.view_dependent:
            return FieldOutput(self._sigma(out[..., -1]), torch.sigmoid(out[..., : self.out_channels]))
        if d is None:
            raise ValueError("this field is view dependent: pass unit view directions `d` [..., 3]")
        rgb = self.view(torch.cat([self.feature(h), self.dir_encoding(d)], dim=-1))
        return FieldOutput(self._sigma(out[..., 0]), torch.sigmoid(rgb))

    def density(self, x: Tensor) -> Tensor:
        h = self.trunk.features(self.encoding(x))
        return self._sigma(self.trunk.out(h)[..., -1 if not self.view_dependent else 0])
