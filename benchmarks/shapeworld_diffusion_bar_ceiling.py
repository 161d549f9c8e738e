"""The ceiling of the diffusion-prior bar: how a *perfect* pixel prior would score (issue 4; shapeworld/README.md).

A prior that samples exactly its training distribution draws renders like the ones it was trained on:
held-out objects of the prompt's kind and colour, from the Dream Fields camera distribution, rendered at
the prior's 32 px over white. This renders ``--objects`` × ``--views`` such images for each prompt of the bar
(``--shifts 0``) and of its colour-shifted validation sets (1-5), reads them with the held-out CLIP
exactly as the bar reads samples, and reports per prompt the fraction retrieved as its own caption, and
the chance that 16 independent draws of that distribution pass the bar
(:func:`shapeworld.metrics.bar_pass_probability`: every prompt ≥ 13 of 16).

    python benchmarks/shapeworld_diffusion_bar_ceiling.py [--objects 32 --views 2 --shifts 0 1 2 3 4 5]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from shapeworld.captions import colour_shifted_pairs, pair_index  # noqa: E402
from shapeworld.images import ImageCaptionDataset, render_views  # noqa: E402
from shapeworld.metrics import bar_pass_probability, prompt_retrieval  # noqa: E402
from shapeworld.priors import shapeworld_clip  # noqa: E402
from shapeworld.render import CameraRanges  # noqa: E402
from shapeworld.shapes import object_specs  # noqa: E402


def real_renders(kind: str, colour: str, objects: int, views: int, size: int, seed: int) -> torch.Tensor:
    """``[objects·views, 3, size, size]`` in [0, 1]: held-out objects of one kind and colour over white, rendered
    at ``size`` from the diffusion prior's training camera distribution (``CameraRanges()``)."""
    specs = object_specs("heldout", objects, seed, kinds=(kind,), colours=(colour,))
    ds = ImageCaptionDataset(specs, render_views(specs, views, size, CameraRanges(), seed, "heldout"), ("white",),
                             deterministic=True, seed=seed)
    return torch.stack([ds[i]["image"] for i in range(len(ds))])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heldout", help="held-out CLIP .safetensors (default: shipped)")
    p.add_argument("--objects", type=int, default=32, help="objects per prompt")
    p.add_argument("--views", type=int, default=2, help="views per object")
    p.add_argument("--size", type=int, default=32, help="render size (the pixel prior's: 32)")
    p.add_argument("--shifts", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5],
                   help="0: the bar's prompts; 1-5: the colour-shifted validation prompts")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    t0, clip, result = time.time(), shapeworld_clip("heldout", weights=args.heldout), {}
    print(f"| prompts | {' | '.join(k for k, _ in colour_shifted_pairs(0))} | mean | P(pass), 16 samples |")
    print("|---|" + "---|" * 12)
    for shift in args.shifts:
        pairs = colour_shifted_pairs(shift)
        fr = {f"{c} {k}": prompt_retrieval(clip, real_renders(k, c, args.objects, args.views, args.size, args.seed),
                                           [pair_index(k, c)] * args.objects * args.views).float().mean().item()
              for k, c in pairs}
        result[shift] = {"per_prompt": fr, "mean": sum(fr.values()) / len(fr), "p_pass": bar_pass_probability(fr)}
        name = "bar" if shift == 0 else f"shift {shift}"
        print(f"| {name} | {' | '.join(f'{v:.2f}' for v in fr.values())} | {result[shift]['mean']:.2f} | "
              f"{result[shift]['p_pass']:.2f} |", flush=True)
    print(f"\n{args.objects * args.views} renders per prompt; {time.time() - t0:.0f} s on {os.cpu_count()} CPUs")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
