"""MLP backbones: NeRF's plain MLP with skip connections, and Dream Fields' residual MLP."""

import math
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

Activation = Literal["relu", "silu", "softplus"]


def make_activation(name: Activation) -> nn.Module:
    return {"relu": nn.ReLU(), "silu": nn.SiLU(), "softplus": nn.Softplus()}[name]


def lecun_normal_(layer: nn.Linear) -> nn.Linear:
    """Flax's default init: truncated normal (±2 std) with variance 1/fan_in, zero bias
    (specs/dreamfields.md §2.5; 0.8796… corrects the std of the truncated normal)."""
    std = math.sqrt(1.0 / layer.in_features) / 0.87962566103423978
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(layer.bias)
    return layer


class PlainMLP(nn.Module):
    """NeRF's MLP (Mildenhall et al. 2020, Fig. 7): ``depth`` layers of ``width`` with the input
    concatenated again before the layers listed in ``skips``.

    Args:
        in_dim, out_dim: input and output sizes (the output layer is linear).
        width, depth: hidden width and number of hidden layers.
        skips: indices of hidden layers whose input is ``[h, x]`` (NeRF: 5th layer → ``(4,)``).
        activation: hidden activation.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 256, depth: int = 8,
                 skips: Sequence[int] = (4,), activation: Activation = "relu") -> None:
        super().__init__()
        self.skips = set(skips)
        layers, d = [], in_dim
        for i in range(depth):
            layers.append(nn.Linear(d + (in_dim if i in self.skips else 0), width))
            d = width
        self.hidden = nn.ModuleList(layers)
        self.out = nn.Linear(width, out_dim)
        self.act = make_activation(activation)
        self.out_features_hidden = width

    def features(self, x: Tensor) -> Tensor:
        """``[..., width]`` activations of the last hidden layer."""
        h = x
        for i, layer in enumerate(self.hidden):
            if i in self.skips:
                h = torch.cat([h, x], dim=-1)
            h = self.act(layer(h))
        return h

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))


class ResidualBlock(nn.Module):
    """Pre-LayerNorm bottleneck block: ``x + W2·swish(W1·LN(x))`` (Jain thesis §4.4.7)."""

    def __init__(self, width: int, hidden: int, activation: Activation = "silu") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.act = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class ResidualMLP(nn.Module):
    """Dream Fields' MLP (thesis §4.4.7; widths from specs/dreamfields.md §2.5): an early layer,
    ``n_blocks`` residual bottleneck blocks (LayerNorm first, Swish), a late layer, a linear head.

    With ``in_dim=262, width=128, hidden=256, n_blocks=4, out_dim=4`` it has 315,396 parameters.

    Args:
        in_dim, out_dim: input and output sizes.
        width: residual stream width.
        hidden: bottleneck inner width.
        n_blocks: residual blocks (each two dense layers).
        activation: hidden activation (Swish = SiLU).
        init: ``lecun_normal`` (Flax default, as the thesis, §10.3) or ``torch`` (PyTorch default).
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 128, hidden: int = 256, n_blocks: int = 4,
                 activation: Activation = "silu", init: Literal["lecun_normal", "torch"] = "lecun_normal") -> None:
        super().__init__()
        self.early = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, hidden, activation) for _ in range(n_blocks))
        self.late = nn.Linear(width, width)
        self.out = nn.Linear(width, out_dim)
        self.act = make_activation(activation)
        self.out_features_hidden = width
        if init == "lecun_normal":
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    lecun_normal_(m)

    def features(self, x: Tensor) -> Tensor:
        h = self.act(self.early(x))
        for block in self.blocks:
            h = block(h)
        return self.act(self.late(h))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))
