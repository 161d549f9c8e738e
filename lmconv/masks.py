"""Per-location input masks from a generation order (thesis Algorithm 2; specs/lmconv.md §2.3).

``M[j, ℓ(p)] = 1`` iff tap ``j`` of the ``k×k`` (dilation ``d``) window centred at ``p`` reads a
location ``q`` inside the image with ``rank(q) < rank(p)``; the centre tap is 0 for type A and 1
for type B. Masks are built once per order and resolution (thesis §2.5: "masks ... are computed
and cached at the beginning of training") and held by :class:`MaskBank` as non-persistent buffers,
so they follow the module's device and never enter a checkpoint.
"""

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmconv.orders import Order, make_orders, rank_grid


def build_mask(ranks: torch.Tensor, kernel_size: int, dilation: int, kind: str) -> torch.Tensor:
    """Vectorized Algorithm 2: pad the rank grid with +inf, unfold it, compare taps with the centre.

    Args:
        ranks: ``[H, W]`` rank grid (``rank_grid``).
        kernel_size: odd ``k``.
        dilation: ``d`` ≥ 1.
        kind: ``"A"`` (centre hidden; first layer) or ``"B"`` (centre visible; later layers).

    Returns:
        ``[1, k·k, H·W]`` float32 0/1 mask; row ``(Δr+⌊k/2⌋)·k + (Δc+⌊k/2⌋)`` (spec §6 item 6).
    """
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
    if kind not in ("A", "B"):
        raise ValueError(f"Mask kind must be 'A' or 'B', got {kind!r}.")
    pad = dilation * (kernel_size // 2)
    r = ranks.to(torch.float64)[None, None]  # [1, 1, H, W]
    r = F.pad(r, (pad, pad, pad, pad), value=float("inf"))  # out-of-image taps never count as earlier
    taps = F.unfold(r, kernel_size, dilation=dilation)[0]  # [k·k, N]
    centre = ranks.reshape(1, -1).to(torch.float64)  # [1, N]
    mask = (taps < centre).to(torch.float32)
    mask[(kernel_size * kernel_size) // 2] = 1.0 if kind == "B" else 0.0
    return mask[None]  # [1, k·k, N]


def build_mask_loop(order: Order, height: int, width: int, kernel_size: int, dilation: int, kind: str) -> torch.Tensor:
    """Literal Algorithm 2 (loop over the order with a growing "generated" set); reference for tests."""
    half = kernel_size // 2
    mask = torch.zeros(1, kernel_size * kernel_size, height * width)
    generated: set[tuple[int, int]] = set()
    for r, c in order:
        for i in range(kernel_size):
            for jj in range(kernel_size):
                dr, dc = i - half, jj - half
                q = (r + dilation * dr, c + dilation * dc)
                if dr == 0 and dc == 0:
                    mask[0, i * kernel_size + jj, r * width + c] = float(kind == "B")
                elif 0 <= q[0] < height and 0 <= q[1] < width and q in generated:
                    mask[0, i * kernel_size + jj, r * width + c] = 1.0
        generated.add((r, c))
    return mask


class OrderMasks(NamedTuple):
    """The three masks one forward pass needs (spec §2.3 "which mask goes where").

    Attributes:
        first: ``[1, k·k, N]`` type A, d=1 (the LMConv that reads the image).
        inner: ``[1, k·k, N]`` type B, d=1 (LMConvs inside gated residual blocks).
        dilated: ``[1, k·k, N]`` type B, d=``dilation`` (the 4 resampling-replacement LMConvs).
    """

    first: torch.Tensor
    inner: torch.Tensor
    dilated: torch.Tensor


def masks_for_order(order: Order, height: int, width: int, kernel_size: int = 3, dilation: int = 2) -> OrderMasks:
    """Build the :class:`OrderMasks` of one order on an ``H×W`` grid."""
    ranks = rank_grid(order, height, width)
    return OrderMasks(build_mask(ranks, kernel_size, 1, "A"), build_mask(ranks, kernel_size, 1, "B"),
                      build_mask(ranks, kernel_size, dilation, "B"))


class MaskBank(nn.Module):
    """The K training orders and their masks, per resolution, built once at construction.

    Args:
        family: ``raster``, ``s_curve``, ``hilbert`` (gilbert) or ``random``.
        variants: which of the 8 symmetric variants form the order set (spec §2.2).
        image_sizes: every ``(H, W)`` the model will see (e.g. 32×32 and 64×64 for progressive training).
        kernel_size: LMConv kernel ``k``.
        dilation: dilation of the 4 dilated LMConvs.
        seed: seed of the ``random`` family.
    """

    def __init__(self, family: str, variants: Sequence[int], image_sizes: Sequence[tuple[int, int]],
                 kernel_size: int = 3, dilation: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.family, self.variants = family, list(variants)
        self.kernel_size, self.dilation, self.seed = kernel_size, dilation, seed
        self.image_sizes = [tuple(int(v) for v in s) for s in image_sizes]
        if not self.image_sizes:
            raise ValueError("MaskBank needs at least one image size.")
        self._orders: dict[tuple[int, int], list[Order]] = {}
        for h, w in self.image_sizes:
            orders = make_orders(family, h, w, self.variants, seed)
            self._orders[(h, w)] = orders
            stacked = torch.stack([torch.cat(masks_for_order(o, h, w, kernel_size, dilation)) for o in orders])
            self.register_buffer(f"masks_{h}x{w}", stacked, persistent=False)  # [K, 3, k·k, N]
        self._extra: dict[tuple, OrderMasks] = {}

    @property
    def num_orders(self) -> int:
        """K, the number of orders per resolution."""
        return len(self.variants)

    def _check_size(self, height: int, width: int) -> None:
        if (height, width) not in self._orders:
            raise ValueError(
                f"Images of size {height}x{width} do not match the sizes the order masks were built for "
                f"({', '.join(f'{h}x{w}' for h, w in self.image_sizes)}). Resize the data or add "
                f"[{height}, {width}] to the model's extra_image_sizes (LMConvSystem) or MaskBank image_sizes.")

    def order(self, index: int, height: int, width: int) -> Order:
        """Order ``index`` (position in ``variants``) at resolution ``H×W``."""
        self._check_size(height, width)
        if not 0 <= index < self.num_orders:
            raise IndexError(f"Order index {index} out of range for {self.num_orders} orders.")
        return self._orders[(height, width)][index]

    def masks(self, index: int, height: int, width: int) -> OrderMasks:
        """Cached masks of training order ``index`` at ``H×W``."""
        self.order(index, height, width)
        stacked = getattr(self, f"masks_{height}x{width}")[index]  # [3, k·k, N]
        return OrderMasks(stacked[0:1], stacked[1:2], stacked[2:3])

    def masks_for(self, order: Order, height: int, width: int) -> OrderMasks:
        """Masks of an arbitrary order (e.g. a completion order); cached by the order itself."""
        key = (height, width, tuple(order))
        if key not in self._extra:
            device = getattr(self, f"masks_{self.image_sizes[0][0]}x{self.image_sizes[0][1]}").device
            masks = masks_for_order(list(order), height, width, self.kernel_size, self.dilation)
            self._extra[key] = OrderMasks(*(m.to(device) for m in masks))
        return self._extra[key]

    def _apply(self, fn, recurse=True):  # keep the on-the-fly cache on the buffers' device
        self._extra = {}
        return super()._apply(fn, recurse)
