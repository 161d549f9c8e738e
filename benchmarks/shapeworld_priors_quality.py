"""The full quality bars of the shapeworld priors (issue 4; recorded in shapeworld/README.md).

* each CLIP: top-1 retrieval of the correct kind × colour caption among the 66 captions on 500
  held-out renders (250 held-out objects × 2 views, white background; bar ≥ 90 %), also with the
  held-out caption template, on random backgrounds, and at the diffusion prior's 32 px (the renders
  downsampled: the ceiling of the diffusion bar, per kind);
* diffusion prior: for each of the 10 held-out prompts, the fraction of 16 DDIM samples (30 steps,
  η = 1, the guidance scale the prior's folder names in ``sampler.json``, else 3) that the held-out CLIP
  retrieves as their own prompt (bar ≥ 80 % for every prompt).
  ``--colour-shift K`` samples validation prompts instead (the same kinds, other colours): the sampler
  settings are chosen on those, not on the bar's prompts.

By default it measures the shipped weights (``shapeworld/weights/``); ``--guidance``, ``--heldout``
(``.safetensors``) and ``--diffusion`` (a pipeline folder) measure others, e.g. a run's exports.

    python benchmarks/shapeworld_priors_quality.py [--only clip|diffusion] [--samples-grid out.png]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common.priors.clip import CLIPModel  # noqa: E402
from common.priors.diffusion import DiffusionModel  # noqa: E402
from shapeworld.captions import COLOUR_NAMES, HELDOUT_TEMPLATES, KINDS, colour_shifted_pairs  # noqa: E402
from shapeworld.metrics import (BAR_DDIM_STEPS, DEFAULT_BAR_GUIDANCE_SCALE, caption_retrieval,  # noqa: E402
                                diffusion_prompt_retrieval, heldout_retrieval_set, prompt_retrieval)
from shapeworld.priors import DIFFUSION_DIR, clip_paths, shapeworld_clip  # noqa: E402


def clip_bars(clips: dict, n_objects: int, views: int) -> dict:
    out = {role: {} for role in clips}
    for bg, backgrounds in (("white", ("white",)), ("random", ("white", "noise", "checkerboard", "fourier"))):
        images, pairs = heldout_retrieval_set(n_objects, views, backgrounds)
        for role, clip in clips.items():
            out[role]["n"] = len(pairs)
            out[role][f"top1_{bg}"] = caption_retrieval(clip, images, pairs)
            if bg == "white":
                out[role]["top1_heldout_template"] = caption_retrieval(clip, images, pairs, template=HELDOUT_TEMPLATES[0])
                # the ceiling of the diffusion bar: real renders at the prior's 32 px, read by the same CLIP
                small = F.interpolate(images, size=32, mode="bilinear", antialias=True, align_corners=False)
                hits, kinds = prompt_retrieval(clip, small, pairs.tolist()).float(), pairs // len(COLOUR_NAMES)
                out[role]["top1_white_32px"] = hits.mean().item()
                out[role]["top1_white_32px_per_kind"] = {
                    kind: hits[kinds == k].mean().item() for k, kind in enumerate(KINDS) if (kinds == k).any()}
    return out


def diffusion_bar(prior: DiffusionModel, clip: CLIPModel, n: int, steps: int, scale: float | None, eta: float,
                  grid: str | None, seed: int = 0, colour_shift: int = 0) -> dict:
    per_prompt, samples = diffusion_prompt_retrieval(prior, clip, n, steps, scale, seed=seed, eta=eta,
                                                     pairs=colour_shifted_pairs(colour_shift))
    if grid:
        from torchvision.utils import save_image

        save_image(samples, grid, nrow=n)
    return {"per_prompt": per_prompt, "min": min(per_prompt.values()),
            "mean": sum(per_prompt.values()) / len(per_prompt)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--guidance", help="guidance CLIP .safetensors (default: shipped)")
    p.add_argument("--heldout", help="held-out CLIP .safetensors (default: shipped)")
    p.add_argument("--diffusion", help=f"diffusion pipeline folder (default: {DIFFUSION_DIR})")
    p.add_argument("--only", choices=["clip", "diffusion"])
    p.add_argument("--objects", type=int, default=250)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=BAR_DDIM_STEPS, help=f"DDIM steps (the bar's: {BAR_DDIM_STEPS})")
    p.add_argument("--scale", type=float, default=None,
                   help="guidance scale (default: the prior folder's sampler.json, else "
                        f"{DEFAULT_BAR_GUIDANCE_SCALE})")
    p.add_argument("--eta", type=float, default=1.0, help="DDIM eta (1: stochastic, the bar's sampler; 0: deterministic)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (the bar's: 0)")
    p.add_argument("--colour-shift", type=int, default=0,
                   help="validation prompts: the bar's ten kinds with each colour moved this many places (1-5); "
                        "0 = the bar's own prompts")
    p.add_argument("--timestep-spacing", choices=["leading", "trailing", "linspace"],
                   help="DDIM timestep placement (default: what the prior's scheduler config names, else leading)")
    p.add_argument("--samples-grid", help="write the diffusion samples (one row per prompt) to this PNG")
    args = p.parse_args()
    torch.manual_seed(0)
    t0, result = time.time(), {}
    if args.only != "diffusion":
        clips = {}
        for role in ("guidance", "heldout"):
            weights = getattr(args, role)
            if weights or clip_paths(role)[1].is_file():
                clips[role] = shapeworld_clip(role, weights=weights)
        result["clip"] = clip_bars(clips, args.objects, args.views)
        print("| CLIP | renders | top-1, white (bar ≥ 0.90) | top-1, held-out template | top-1, random backgrounds "
              "| top-1, white, 32 px (worst kind) |")
        print("|---|---|---|---|---|---|")
        for role, r in result["clip"].items():
            print(f"| {role} | {r['n']} | {r['top1_white']:.3f} ({'met' if r['top1_white'] >= 0.9 else 'NOT met'}) | "
                  f"{r['top1_heldout_template']:.3f} | {r['top1_random']:.3f} | {r['top1_white_32px']:.3f} "
                  "({} {:.2f}) |".format(*min(r["top1_white_32px_per_kind"].items(), key=lambda kv: kv[1])))
    if args.only != "clip":
        folder = Path(args.diffusion) if args.diffusion else DIFFUSION_DIR
        if not (folder / "model_index.json").is_file():
            raise SystemExit(f"no diffusion pipeline at {folder}; pass --diffusion or ship it (shapeworld/README.md)")
        prior = DiffusionModel(model=str(folder)).load()
        if args.timestep_spacing:
            prior.scheduler_config["timestep_spacing"] = args.timestep_spacing
        r = diffusion_bar(prior, shapeworld_clip("heldout", weights=args.heldout), args.samples, args.steps, args.scale,
                          args.eta, args.samples_grid, args.seed, args.colour_shift)
        result["diffusion"] = r
        print(f"\n| held-out prompt | fraction of {args.samples} samples retrieved (bar ≥ 0.80) |\n|---|---|")
        for prompt, f in r["per_prompt"].items():
            print(f"| {prompt} | {f:.3f} |")
        verdict = ("met" if r["min"] >= 0.8 else "NOT met") if args.colour_shift == 0 else "validation prompts, not the bar"
        print(f"| **min / mean** | **{r['min']:.3f} / {r['mean']:.3f}** ({verdict}) |")
    print(f"\n{time.time() - t0:.0f} s on {os.cpu_count()} CPUs")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
