"""Seconds per prompt of ISS stage 2 on CPU, at the shapeworld config size with random weights.

The paper's selling point: ~85 s per prompt on an RTX 3090 Ti (20 iterations × 10 views, 90² renders, ViT-B/32)
against Dream Fields' 72 minutes. Here the sizes of ``experiments/shapeworld/iss.yaml`` are rebuilt with random
weights (the shapeworld guidance CLIP's architecture without its weights, decoder 128 × 5 blocks, mapper 128×8 → 128×4,
32² renders, 32 ray samples + 8 secant steps while optimising) and the decoder's occupancy bias is shifted so that a surface crosses
the object box (as a trained model's would: secant refinement and the implicit-gradient pass only run on hit rays).

    python benchmarks/iss_stage2_speed.py                    # 1 thread and all threads, 2 prompts each
    python benchmarks/iss_stage2_speed.py --threads 1 --prompts 1 --iters 20 --views 10 --res 32 --samples 32
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def build(args):
    from common.priors.clip import CLIPModel
    from iss.cameras import ViewSampler
    from iss.models import CLIP2ShapeMapper, DVRDecoder
    from iss.renderer import DVRRenderer
    from iss.stage2 import Stage2System

    torch.manual_seed(0)
    clip = CLIPModel(name="shapeworld_clip_guidance", pretrained=None,
                     model_config=str(ROOT / "shapeworld/configs/shapeworld_clip_guidance.json"))
    dec = DVRDecoder(128, args.hidden, 5)
    with torch.no_grad():  # put a surface in the box: logit 0 at the median of a ball of radius 0.7
        p = torch.nn.functional.normalize(torch.randn(1, 4000, 3), dim=-1) * torch.rand(1, 4000, 1) * 0.7
        dec.fc_out.bias[0] -= dec(p, torch.zeros(1, 128), only_occupancy=True).median()
    system = Stage2System(clip, dec, CLIP2ShapeMapper(128, 128, 128),
                          DVRRenderer(bound=1.0, padding=0.1, n_steps=args.samples, depth_range=(0.0, 8.0), miss_point_depth=4.0),
                          ViewSampler(elevation=(15.0, 50.0), radius=(4.0, 4.0), focal=(2.82, 3.39), up="z"),
                          allow_random_init=True, n_iters=args.iters, n_views=args.views, render_res=args.res, cam_scale=1.0)
    system.load_pretrained()
    return system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="*", default=None, help="torch threads to test (default: 1 and all)")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--views", type=int, default=10)
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--json", type=str, default=None, help="also write the rows to this file")
    args = ap.parse_args()
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    system = build(args)
    prompts = ["an image of a red cube", "an image of a blue sphere", "an image of a green cylinder"]
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        system.optimise(prompts[0], 0) if args.prompts > 1 else None  # warm-up
        secs, cpu, hits = [], [], []
        for k in range(args.prompts):
            start, start_cpu = time.perf_counter(), time.process_time()
            res = system.optimise(prompts[k % len(prompts)], k)
            secs.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            hits.append(sum(res["history"]["hit_fraction"]) / max(len(res["history"]["hit_fraction"]), 1))
        rows.append({"threads": t, "seconds_per_prompt": sum(secs) / len(secs), "cpu_seconds_per_prompt": sum(cpu) / len(cpu),
                     "seconds_per_iteration": sum(secs) / len(secs) / args.iters, "hit_fraction": sum(hits) / len(hits)})
    print(f"ISS stage 2, shapeworld config size, random weights: {args.iters} iterations × {args.views} views at {args.res}², "
          f"{args.samples} ray samples + 8 secant steps, decoder hidden {args.hidden} × 5, CPU ({os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}), torch {torch.__version__}")
    print("| threads | wall s / prompt | CPU s / prompt | wall s / iteration | hit fraction |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['seconds_per_prompt']:.1f} | {r['cpu_seconds_per_prompt']:.1f} | "
              f"{r['seconds_per_iteration']:.2f} | {r['hit_fraction']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
