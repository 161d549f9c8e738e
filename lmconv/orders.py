"""Pixel generation orders (thesis §2.3, specs/lmconv.md §2.2).

An *order* is a list of all ``N = H·W`` locations ``(row, col)``; ``order[t]`` is the t-th pixel
generated. The families are raster scan, S-curve (zig-zag), the generalized Hilbert curve
("gilbert", J. Červený 2019, BSD-2; equal to the textbook Hilbert curve on power-of-two squares) and
seeded random permutations. Each base order has 8 *variants*: the 8 symmetries of the square
(specs/lmconv.md §2.2 table; thesis Fig. 8.1).

Example:
    >>> s_curve(3, 3)[:4]
    [(0, 0), (0, 1), (0, 2), (1, 2)]
"""

import random
from typing import Callable, Sequence

import torch

Order = list[tuple[int, int]]
ORDER_FAMILIES = ("raster", "s_curve", "hilbert", "random")


def raster(height: int, width: int) -> Order:
    """Row 0 left→right, then row 1 left→right, ... (PixelCNN's order)."""
    return [(r, c) for r in range(height) for c in range(width)]


def s_curve(height: int, width: int) -> Order:
    """Zig-zag: even rows left→right, odd rows right→left; consecutive pixels are 4-neighbours."""
    return [(r, c if r % 2 == 0 else width - 1 - c) for r in range(height) for c in range(width)]


def hilbert_textbook(n: int) -> Order:
    """The classical Hilbert curve on an ``n×n`` grid, ``n`` a power of two (test oracle for gilbert)."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"hilbert_textbook needs a power-of-two side, got {n}; use gilbert() for other sizes.")
    out = []
    for d in range(n * n):
        x = y = 0
        s, t = 1, d
        while s < n:
            rx = 1 & (t // 2)
            ry = 1 & (t ^ rx)
            if ry == 0:
                if rx == 1:
                    x, y = s - 1 - x, s - 1 - y
                x, y = y, x
            x += s * rx
            y += s * ry
            t //= 4
            s *= 2
        out.append((y, x))  # (row, col) = (y, x)
    return out


def _sign(v: int) -> int:
    return (v > 0) - (v < 0)


def _gilbert_rec(x: int, y: int, ax: int, ay: int, bx: int, by: int, pts: list) -> None:
    """Recursive generalized-Hilbert step; ``a`` is the major axis, ``b`` the minor (spec §2.2)."""
    w, h = abs(ax + ay), abs(bx + by)
    dax, day = _sign(ax), _sign(ay)
    dbx, dby = _sign(bx), _sign(by)
    if h == 1:
        for i in range(w):
            pts.append((x + i * dax, y + i * day))
        return
    if w == 1:
        for i in range(h):
            pts.append((x + i * dbx, y + i * dby))
        return
    ax2, ay2 = ax // 2, ay // 2  # Python floor division, also for negatives (spec §2.2)
    bx2, by2 = bx // 2, by // 2
    w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
    if 2 * w > 3 * h:  # wide block: two halves along a
        if w2 % 2 and w > 2:
            ax2, ay2 = ax2 + dax, ay2 + day
        _gilbert_rec(x, y, ax2, ay2, bx, by, pts)
        _gilbert_rec(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by, pts)
    else:  # three legs: first, long middle, return
        if h2 % 2 and h > 2:
            bx2, by2 = bx2 + dbx, by2 + dby
        _gilbert_rec(x, y, bx2, by2, ax2, ay2, pts)
        _gilbert_rec(x + bx2, y + by2, ax, ay, bx - bx2, by - by2, pts)
        _gilbert_rec(x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby),
                     -bx2, -by2, -(ax - ax2), -(ay - ay2), pts)


def gilbert(height: int, width: int) -> Order:
    """Generalized Hilbert curve on any ``H×W`` grid; starts at (0, 0)."""
    pts: list = []
    if width >= height:
        _gilbert_rec(0, 0, width, 0, 0, height, pts)
    else:
        _gilbert_rec(0, 0, 0, height, width, 0, pts)
    return [(y, x) for (x, y) in pts]


def random_order(height: int, width: int, seed: int = 0) -> Order:
    """A seeded uniformly random permutation of the locations (not in the thesis; used in tests)."""
    order = raster(height, width)
    random.Random(seed).shuffle(order)
    return order


BASE_ORDERS: dict[str, Callable[[int, int], Order]] = {"raster": raster, "s_curve": s_curve, "hilbert": gilbert}


def variant(family: str, index: int, height: int, width: int, seed: int = 0) -> Order:
    """Variant ``index`` ∈ 0..7 of a base order: the symmetries of the square (spec §2.2 table).

    0 identity, 1 flip rows, 2 flip cols, 3 flip both, 4 transpose, 5 transpose + flip rows,
    6 transpose + flip cols, 7 transpose + flip both. For ``H ≠ W`` variants 4–7 generate the base
    order on a ``W×H`` grid and transpose it. For ``random`` the variant index is added to the seed.

    Raises:
        ValueError: unknown family or index outside 0..7.
    """
    if family == "random":
        return random_order(height, width, seed + index)
    if family not in BASE_ORDERS:
        raise ValueError(f"Unknown order family {family!r}; choose one of {ORDER_FAMILIES}.")
    if not 0 <= index < 8:
        raise ValueError(f"Order variant index must be in 0..7, got {index}.")
    base = BASE_ORDERS[family]
    if index >= 4:
        pts = [(c, r) for (r, c) in base(width, height)]  # transpose a W×H base order
    else:
        pts = base(height, width)
    flip_rows, flip_cols = (index % 4) in (1, 3), (index % 4) in (2, 3)
    return [(height - 1 - r if flip_rows else r, width - 1 - c if flip_cols else c) for (r, c) in pts]


def make_orders(family: str, height: int, width: int, variants: Sequence[int] = tuple(range(8)),
                seed: int = 0) -> list[Order]:
    """The list of orders ``[variant(family, v, H, W) for v in variants]``."""
    if len(variants) == 0:
        raise ValueError("At least one order variant is needed.")
    return [variant(family, v, height, width, seed) for v in variants]


def check_order(order: Sequence[tuple[int, int]], height: int, width: int) -> None:
    """Raise ``ValueError`` unless ``order`` visits every location of an ``H×W`` grid exactly once."""
    if len(order) != height * width or set(order) != {(r, c) for r in range(height) for c in range(width)}:
        raise ValueError(f"An order must list each of the {height}x{width} locations exactly once "
                         f"(got {len(order)} entries, {len(set(order))} distinct).")


def rank_grid(order: Sequence[tuple[int, int]], height: int, width: int) -> torch.Tensor:
    """``R[r, c] = rank((r, c))`` as a ``[H, W]`` long tensor."""
    check_order(order, height, width)
    grid = torch.empty(height, width, dtype=torch.long)
    for t, (r, c) in enumerate(order):
        grid[r, c] = t
    return grid


def stable_partition(order: Sequence[tuple[int, int]], hidden: torch.Tensor, hidden_last: bool = True) -> Order:
    """Reorder so that the observed pixels come first (thesis §2.3; spec §2.2 "completion orders").

    Observed and hidden pixels each keep their relative order. ``hidden_last=False`` gives the
    adversarial order (hidden pixels first).

    Args:
        order: base order over an ``H×W`` grid.
        hidden: ``[H, W]`` bool, True where a pixel is missing.
    """
    observed = [p for p in order if not bool(hidden[p])]
    missing = [p for p in order if bool(hidden[p])]
    return observed + missing if hidden_last else missing + observed
