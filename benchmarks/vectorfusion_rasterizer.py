"""Speed and memory of the VectorFusion soft rasterizer (vectorfusion/rasterizer.py).

Each configuration runs in a fresh subprocess so that its peak RSS is its own. Scenes are LIVE
circles on the 600-px canvas (radius 20 = the paper's init; radius 80 = paths grown during
optimisation), rendered at the output size; "fwd+bwd" backpropagates a random-weighted sum of the
composited image to points, colours and background.

    python benchmarks/vectorfusion_rasterizer.py            # the default table
    python benchmarks/vectorfusion_rasterizer.py --threads 2 --repeats 3

Prints a Markdown table: wall time per call (median), peak RSS increase over the process after
building the scene, and bytes saved for backward (autograd saved tensors).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

CONFIGS = [  # (paths, radius, out, mode)
    (128, 20.0, 224, "fwd+bwd"),
    (128, 80.0, 224, "fwd+bwd"),
    (256, 20.0, 224, "fwd+bwd"),
    (256, 80.0, 224, "fwd+bwd"),
    (64, 20.0, 512, "fwd+bwd"),
    (64, 80.0, 600, "fwd+bwd"),
    (256, 20.0, 512, "fwd (no grad)"),
    (256, 80.0, 512, "fwd (no grad)"),
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_one(paths: int, radius: float, out: int, mode: str, repeats: int, threads: int) -> dict:
    import torch

    from vectorfusion.rasterizer import render
    from vectorfusion.styles import icon_scene, random_circles

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    pts, rgba = random_circles(paths, radius=radius, generator=g)
    pts.requires_grad_(True)
    rgba.requires_grad_(True)
    bg = torch.ones(3, requires_grad=True)
    weights = torch.rand(1, 3, out, out, generator=g)
    scene = icon_scene(pts, rgba, background=bg)
    base = _rss_mb()
    times, saved = [], 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    for _ in range(repeats):
        saved = 0
        t0 = time.perf_counter()
        if mode == "fwd+bwd":
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                img = render(scene, out, out).over(bg)
            (img * weights).sum().backward()
        else:
            with torch.no_grad():
                img = render(scene, out, out).over(bg)
        times.append(time.perf_counter() - t0)
    return {"paths": paths, "radius": radius, "out": out, "mode": mode,
            "seconds": statistics.median(times), "peak_rss_mb": _rss_mb() - base,
            "saved_mb": saved / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        p, r, o, m = json.loads(args.one)
        print(json.dumps(run_one(p, r, o, m, args.repeats, args.threads)))
        return
    import torch

    print(f"torch {torch.__version__}, CPU, {args.threads} thread(s), median of {args.repeats}\n")
    print("| paths | radius (px, 600 canvas) | output | mode | time (s) | peak RSS + (MB) "
          "| autograd saved (MB) |")
    print("|---|---|---|---|---|---|---|")
    for cfg in CONFIGS:
        cmd = [sys.executable, __file__, "--one", json.dumps(cfg), "--repeats", str(args.repeats),
               "--threads", str(args.threads)]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        saved = f"{res['saved_mb']:.1f}" if res["mode"] == "fwd+bwd" else "-"
        print(f"| {res['paths']} | {res['radius']:.0f} | {res['out']}x{res['out']} | {res['mode']} "
              f"| {res['seconds']:.3f} | {res['peak_rss_mb']:.0f} | {saved} |", flush=True)


if __name__ == "__main__":
    main()
