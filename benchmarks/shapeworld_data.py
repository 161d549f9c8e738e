"""shapeworld data generation speed: renders per second and voxel grids per second, per kind.

    python benchmarks/shapeworld_data.py [--size 64] [--views 4] [--threads 1]

Prints a table (seconds per 64² view through common's volume renderer, seconds per 32³ / 64³ grid).
"""

import argparse
import time

import torch

from shapeworld.render import CameraRanges, render_object, sample_cameras
from shapeworld.shapes import KINDS, object_spec
from shapeworld.voxels import voxelize


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"{'kind':10s} {'s/view':>8s} {'s/32^3':>8s} {'s/64^3':>8s}")
    totals = [0.0, 0.0, 0.0]
    for i, kind in enumerate(KINDS):
        spec = object_spec("train", i)
        cams = sample_cameras(CameraRanges(), args.size, args.views, g)
        t0 = time.perf_counter()
        render_object(spec, cams)
        t1 = time.perf_counter()
        voxelize(spec, 32)
        t2 = time.perf_counter()
        voxelize(spec, 64)
        t3 = time.perf_counter()
        row = [(t1 - t0) / args.views, t2 - t1, t3 - t2]
        totals = [a + b for a, b in zip(totals, row)]
        print(f"{kind:10s} {row[0]:8.3f} {row[1]:8.4f} {row[2]:8.4f}")
    print(f"{'mean':10s} {totals[0] / len(KINDS):8.3f} {totals[1] / len(KINDS):8.4f} {totals[2] / len(KINDS):8.4f}")


if __name__ == "__main__":
    main()
