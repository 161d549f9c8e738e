"""How well can an emission-only radiance field score on shapeworld? CLIP R@1 of true shapes rendered without shading.

Dream Fields and PureCLIPNeRF render a field's colour with no lighting (emission–absorption only, as in their
papers), while the shapeworld CLIPs were trained on Lambert-shaded renders. This renders the held-out shapeworld
objects at the methods' evaluation camera (elevation 45°, radius 4, focal ×1.0, 64², white background; azimuth
30° as the methods' held-out view, or random) twice: with the shading the CLIPs were trained on, and flat (the
object's true geometry and colour, unlit: what a perfect emission-only reconstruction would show). Each render is
scored like the methods' R-precision: top-1 among the 66 "a {colour} {kind}" captions, per CLIP and per kind.

    python benchmarks/shapeworld_unshaded_ceiling.py [--objects 250] [--json out.json] [--grid out.png]
        [--heldout run/shapeworld_clip_heldout.safetensors] [--guidance ...]   # other weights than the shipped

~1 minute on one core.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from shapeworld.captions import COLOUR_NAMES, KINDS, pair_index  # noqa: E402
from shapeworld.images import object_specs, render_views  # noqa: E402
from shapeworld.metrics import prompt_retrieval  # noqa: E402
from shapeworld.priors import shapeworld_clip  # noqa: E402
from shapeworld.render import CameraRanges  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=250, help="held-out shapeworld objects (one view each)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--grid", default=None, help="save the first 24 renders of each setting as an image grid")
    for role in ("heldout", "guidance"):
        ap.add_argument(f"--{role}", default=None, help=f"{role} CLIP .safetensors (default: the shipped one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clips = {role: shapeworld_clip(role, weights=getattr(args, role)) for role in ("heldout", "guidance")}
    specs = object_specs("heldout", args.objects, 0)
    pairs = torch.tensor([pair_index(s.kind, s.colour) for s in specs])
    kinds = pairs // len(COLOUR_NAMES)
    results = {}
    print(f"{len(specs)} held-out shapeworld objects, one 64² view each, white background; R@1 among the 66 captions\n")
    print("| view | shading | CLIP | R@1 | " + " | ".join(KINDS) + " |")
    print("|---|---|---|---|" + "---|" * len(KINDS))
    grids = []
    for view, azimuth in (("azimuth 30° (held-out view)", (30.0, 30.0)), ("random azimuth", (0.0, 360.0))):
        cam = CameraRanges(azimuth=azimuth, elevation=(45.0, 45.0), radius=(4.0, 4.0), focal_mult=(1.0, 1.0))
        for shading in (True, False):
            r = render_views(specs, 1, 64, cam, seed=5, split="heldout", n_samples=96, shading=shading)
            rgb, alpha = r["rgb"].float() / 255, r["alpha"].float()[:, None] / 255
            images = rgb + (1.0 - alpha)  # premultiplied colour over white
            grids.append(images[:24])
            for role, clip in clips.items():
                hits = prompt_retrieval(clip, images, pairs.tolist()).float()
                per_kind = {k: hits[kinds == i].mean().item() for i, k in enumerate(KINDS) if (kinds == i).any()}
                key = f"{view} | {'shaded' if shading else 'flat (unlit)'} | {role}"
                results[key] = {"r_at_1": hits.mean().item(), "n": len(hits), "per_kind": per_kind}
                print(f"| {key} | {hits.mean():.3f} | " + " | ".join(f"{per_kind.get(k, float('nan')):.2f}" for k in KINDS) + " |")
    if args.json:
        from common.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(results, indent=1))
    if args.grid:
        import torchvision

        torchvision.utils.save_image(torch.cat(grids), args.grid, nrow=24)
        print(f"\nrows: held-out view shaded, flat; random azimuth shaded, flat -> {args.grid}")


if __name__ == "__main__":
    main()
