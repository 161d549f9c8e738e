"""ISS's networks: the SVR image encoder ``E_S``, DVR's decoder ``D`` and the CLIP2Shape mapper ``M``.

specs/iss.md §2.2–2.3 [C][D]:

* :class:`ResNetEncoder` — ResNet-18 with its classifier replaced by ``Linear(512 → c_dim)``; input RGB in
  [0, 1], resized to ``image_size`` and ImageNet-normalised inside. Widths and depths are arguments so
  that tests and shapeworld can use slimmer versions; the default is torchvision's ResNet-18 layout
  (same parameter names, so an ImageNet ``resnet18`` state dict loads with ``imagenet_weights``).
* :class:`DVRDecoder` — ``fc_p`` (3 → h), 5 blocks of ``net += fc_c[n](c)`` then a pre-activation
  ``ResnetBlockFC``, ``fc_out`` (h → 4): occupancy logit + RGB logits. 3,288,580 parameters at
  ``c_dim = 256, hidden = 512``.
* :class:`CLIP2ShapeMapper` — 12 linear layers (8 at the CLIP width, 4 at ``c_dim``), LeakyReLU(0.02)
  after the first 11, none after the last, weights N(0, 0.02²), zero biases. 2,429,952 parameters.
* :class:`SplitDecoder` — texture stylisation's ``D_o`` / ``D_c`` copies (§6.1).
* :class:`CLIPImageEncoder` — the frozen CLIP image encoder ``E_I`` in place of ``E_S``: the ``E_I + D`` baseline
  (§3, §10.3).
"""

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from common.priors.clip import CLIPModel

__all__ = ["ResNetEncoder", "CLIPImageEncoder", "ResnetBlockFC", "DVRDecoder", "CLIP2ShapeMapper", "SplitDecoder", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetEncoder(nn.Module):
    """``E_S``: image → shape code ``f_S`` (ResNet-18 → ``Linear(512, c_dim)``, DVR's ``Resnet18``).

    Args:
        c_dim: shape-code size (256).
        widths: channels of the four stages (ResNet-18: 64, 128, 256, 512).
        blocks: basic blocks per stage (ResNet-18: 2, 2, 2, 2).
        image_size: inputs are resized (bilinear) to this size first; None keeps their size.
        normalize: apply ImageNet mean/std inside (inputs in [0, 1]).
        imagenet_weights: a local torchvision ``resnet18`` state-dict file (ImageNet-pretrained, as DVR);
            its ``fc`` is dropped. Offline default: none (trained from scratch, spec §3).

    Shape:
        - Input: ``[B, 3, H, W]`` in [0, 1].
        - Output: ``[B, c_dim]``.
    """

    def __init__(self, c_dim: int = 256, widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2),
                 image_size: Optional[int] = 224, normalize: bool = True, imagenet_weights: Optional[str] = None) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError(f"widths and blocks need 4 entries (ResNet stages), got {widths} and {blocks}")
        self.c_dim, self.image_size, self.normalize = c_dim, image_size, normalize
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layers = []
            for k in range(n):
                down = None
                if k == 0 and (stride != 1 or inplanes != w):
                    down = nn.Sequential(nn.Conv2d(inplanes, w, 1, stride, bias=False), nn.BatchNorm2d(w))
                layers.append(BasicBlock(inplanes, w, stride if k == 0 else 1, down))
                inplanes = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, c_dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if imagenet_weights is not None:
            self.load_imagenet(imagenet_weights)

    def load_imagenet(self, path: str) -> None:
        """Load a torchvision ``resnet18`` state dict (``fc`` excluded) from a local file."""
        from common.priors.base import PriorWeightsNotFoundError

        file = Path(path).expanduser()
        if not file.is_file():
            raise PriorWeightsNotFoundError(
                f"ImageNet ResNet-18 weights not found at {file}. Download torchvision's resnet18-f37072fd.pth on a "
                "networked machine and point encoder.init_args.imagenet_weights at it, or set it to null to train E_S from scratch.")
        state = {k: v for k, v in torch.load(file, map_location="cpu", weights_only=True).items() if not k.startswith("fc.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{file} is not a torchvision resnet18 state dict for this encoder "
                             f"(missing {missing[:4]}, unexpected {unexpected[:4]}); keep the default widths/blocks to use it")

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encoder input must be [B, 3, H, W] in [0, 1], got {tuple(images.shape)}")
        x = images
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if self.normalize:
            x = (x - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResnetBlockFC(nn.Module):
    """DVR's pre-activation residual block: ``h = fc_0(relu(x)); dx = fc_1(relu(h)); x + dx``.

    ``fc_1.weight`` is zero-initialised [D], so at init the block adds the input-independent ``fc_1.bias``.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.fc_0 = nn.Linear(size, size)
        self.fc_1 = nn.Linear(size, size)
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.fc_0(F.relu(x)), inplace=True)  # in place: fc_0's backward needs its input, not its output
        return x + self.fc_1(h)


class DVRDecoder(nn.Module):
    """``D``: point + shape code → occupancy logit and RGB logits (DVR's ``simple`` decoder).

    Args:
        c_dim: shape-code size (256).
        hidden: hidden width (512).
        n_blocks: residual blocks (5).

    Shape:
        - ``forward(p [B, N, 3], c [B, c_dim])`` → ``[B, N, 4]`` raw outputs (logit, RGB logits).
        - ``only_occupancy=True`` → ``[B, N]`` logits; ``only_texture=True`` → ``[B, N, 3]`` RGB in (0, 1).
    """

    def __init__(self, c_dim: int = 256, hidden: int = 512, n_blocks: int = 5) -> None:
        super().__init__()
        self.c_dim, self.hidden, self.n_blocks = c_dim, hidden, n_blocks
        self.fc_p = nn.Linear(3, hidden)
        self.fc_c = nn.ModuleList([nn.Linear(c_dim, hidden) for _ in range(n_blocks)])
        self.blocks = nn.ModuleList([ResnetBlockFC(hidden) for _ in range(n_blocks)])
        self.fc_out = nn.Linear(hidden, 4)

    def forward(self, p: Tensor, c: Tensor, only_occupancy: bool = False, only_texture: bool = False) -> Tensor:
        if c.ndim == 1:
            c = c[None]
        if c.shape[-1] != self.c_dim:
            raise ValueError(f"shape code has {c.shape[-1]} dims, the decoder expects c_dim={self.c_dim}")
        net = self.fc_p(p)  # [B, N, h]
        for fc_c, block in zip(self.fc_c, self.blocks):
            net = block(net + fc_c(c)[:, None])  # per-block conditioning, added
        out = self.fc_out(F.relu(net))  # [B, N, 4]
        if only_occupancy:
            return out[..., 0]
        if only_texture:
            return torch.sigmoid(out[..., 1:4])
        return out


class CLIP2ShapeMapper(nn.Module):
    """``M``: CLIP feature → SVR shape code; 12 linear layers (specs/iss.md §2.3).

    Args:
        in_dim: CLIP embedding size (512 for ViT-B/32).
        hidden: width of layers 1–8 (512).
        c_dim: output size = width of layers 9–12 (256).
        n_wide, n_narrow: layer counts (8, 4).
        negative_slope: LeakyReLU slope (0.02).
        init_std: weight init std (0.02); biases start at 0.

    Shape:
        ``[B, in_dim]`` → ``[B, c_dim]`` (no activation after the last layer, so codes can be negative).
    """

    def __init__(self, in_dim: int = 512, hidden: int = 512, c_dim: int = 256, n_wide: int = 8, n_narrow: int = 4,
                 negative_slope: float = 0.02, init_std: float = 0.02) -> None:
        super().__init__()
        self.in_dim, self.c_dim = in_dim, c_dim
        dims = [in_dim] + [hidden] * n_wide + [c_dim] * n_narrow
        layers = []
        for i in range(len(dims) - 1):
            lin = nn.Linear(dims[i], dims[i + 1])
            nn.init.normal_(lin.weight, 0.0, init_std)
            nn.init.zeros_(lin.bias)
            layers.append(lin)
            if i < len(dims) - 2:
                layers.append(nn.LeakyReLU(negative_slope))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"mapper input has {x.shape[-1]} dims, expected the CLIP width {self.in_dim}")
        return self.net(x)


class SplitDecoder(nn.Module):
    """Texture stylisation's split of ``D`` (§6.1): ``D_o`` (occupancy row) and ``D_c`` (RGB rows), both full
    copies of ``D``'s hidden layers. Right after the split its outputs equal ``D``'s exactly.

    Args:
        decoder: the decoder to split (copied; the argument is left untouched).
    """

    def __init__(self, decoder: DVRDecoder) -> None:
        super().__init__()
        self.occ = copy.deepcopy(decoder)
        self.tex = copy.deepcopy(decoder)
        self.c_dim = decoder.c_dim

    def load_decoder(self, state: dict) -> None:
        """Load the same decoder state into both copies."""
        self.occ.load_state_dict(state)
        self.tex.load_state_dict(state)

    def forward(self, p: Tensor, c: Tensor, only_occupancy: bool = False, only_texture: bool = False) -> Tensor:
        if only_occupancy:
            return self.occ(p, c, only_occupancy=True)
        if only_texture:
            return self.tex(p, c, only_texture=True)
        return torch.cat([self.occ(p, c)[..., :1], self.tex(p, c)[..., 1:4]], -1)


class CLIPImageEncoder(nn.Module):
    """``E_I``: the frozen CLIP image encoder as the SVR encoder, for the ``E_I + D`` baseline (specs/iss.md §3, §10.3).

    The paper trains ``D`` on frozen CLIP image features (3D mIoU 40.09 % against 47.86 % for ``E_S + D``) and,
    at inference, feeds ``normalize(f_T)`` in place of ``f_I``. The features are unit-normalised here in training
    as well, so that image and text codes have the same scale [S]. Nothing in it is trained and CLIP's weights
    are held outside the module tree (``FrozenPrior``), so SVR checkpoints carry no encoder tensors.

    Args:
        clip: the frozen CLIP (ViT-B/32 for the paper; the shapeworld guidance CLIP on the embedded default).
        c_dim: its embedding width (512 for ViT-B/32), which is the decoder's ``c_dim``.

    Shape:
        - Input: ``[B, 3, H, W]`` in [0, 1] (CLIP's own resize and mean/std are applied).
        - Output: ``[B, c_dim]``, unit norm.
    """

    def __init__(self, clip: "CLIPModel", c_dim: int = 512) -> None:
        super().__init__()
        self.clip, self.c_dim = clip, int(c_dim)

    def load(self) -> "CLIPImageEncoder":
        """Load CLIP (once) and check its width against ``c_dim``."""
        from iss.clip_features import embed_dim

        self.clip.load()
        if embed_dim(self.clip) != self.c_dim:
            raise ValueError(f"the CLIP embeds in {embed_dim(self.clip)} dims but the E_I encoder's c_dim is {self.c_dim}: "
                             "set encoder.init_args.c_dim and decoder.init_args.c_dim to the CLIP width")
        return self

    def forward(self, images: Tensor) -> Tensor:
        from iss.clip_features import encode_image_raw

        self.load()
        return F.normalize(encode_image_raw(self.clip, images), dim=-1)
