"""LMConv layer vs ``torch.nn.functional.conv2d`` of the same shape (CPU): speed, memory, equality.

For raster order the locally masked convolution must equal a PixelCNN masked convolution
(``conv2d`` with ``W ⊙ mask``) numerically; the table gives the max abs difference, forward and
forward+backward time (median of repeats) relative to conv2d, and the activation memory each
variant keeps for backward (bytes of the distinct tensors autograd saves, via saved_tensors_hooks).

    python benchmarks/lmconv_layer.py --threads 1
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lmconv.layers import lmconv2d, lmconv2d_memory_efficient
from lmconv.masks import build_mask
from lmconv.orders import rank_grid, raster


def saved_bytes(fn) -> int:
    """Bytes of the distinct tensors autograd saves while running ``fn()`` (parameters included)."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def timeit(fn, repeats: int) -> float:
    """Median CPU time (ms) of ``fn()``: process time, not wall time, so that other jobs on a shared
    machine do not inflate it (with one intra-op thread this is the op's own compute time)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [(32, 64, 64, 8, 8), (16, 64, 64, 28, 28), (8, 128, 128, 32, 32)]
    print(f"CPU, {args.threads} thread(s), float32, k=3, d=1, raster type-B masks; medians of CPU (process) time\n")
    print("| B, C_in→C_out, H×W | variant | fwd CPU ms | fwd+bwd CPU ms | fwd+bwd ÷ conv2d | saved for backward (MB) | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for b, ci, co, h, w in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(b, ci, h, w, generator=g, requires_grad=True)
        wt = torch.randn(co, ci, 3, 3, generator=g).mul_(0.05).requires_grad_(True)
        bias = torch.zeros(co, requires_grad=True)
        mask = build_mask(rank_grid(raster(h, w), h, w), 3, 1, "B")
        wmask = torch.ones(3, 3)
        wmask[1, 2:] = 0
        wmask[2] = 0
        variants = {
            "conv2d (PixelCNN weight mask)": lambda: F.conv2d(x, wt * wmask, bias, padding=1),
            "LMConv autodiff": lambda: lmconv2d(x, mask, wt, bias),
            "LMConv memory-efficient": lambda: lmconv2d_memory_efficient(x, mask, wt, bias),
        }
        ref = variants["conv2d (PixelCNN weight mask)"]().detach()
        base = None
        for name, fn in variants.items():
            fwd = timeit(lambda: fn().detach(), args.repeats)
            fb = timeit(lambda: fn().sum().backward(), args.repeats)
            base = base or fb
            mem = saved_bytes(fn) / 2**20
            diff = (fn().detach() - ref).abs().max().item()
            print(f"| {b}, {ci}→{co}, {h}×{w} | {name} | {fwd:.2f} | {fb:.2f} | {fb / base:.2f} | {mem:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
