"""Re-score saved held-out renders of shapeworld text-to-3D runs with other retrieval CLIPs.

Dream Fields and PureCLIPNeRF runs write their final held-out render (``media/final_heldout.png``, elevation
45°, white background) and ``metrics.json`` (the prompt). This reads them back and ranks the prompt among the
66 shapeworld captions under the shipped held-out CLIP and under any other held-out-architecture weights, e.g.
one trained with ``--data.init_args.unlit_fraction 0.5`` (shapeworld/README.md): what a different evaluator
would say of the same fields, without re-optimising them. The PNG is 8-bit, so ranks can differ from the
in-run figure where two captions are nearly tied.

    python benchmarks/shapeworld_rescore_renders.py "runs/dreamfields_shapeworld_rprecision_s5/shapeworld/runs/*/version_0" \\
        --heldout runs/shapeworld-train_clip_heldout_unlit50/version_0/shapeworld_clip_heldout.safetensors
"""

import argparse
import glob
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision.io import ImageReadMode, read_image  # noqa: E402

from common.priors.clip import CLIPModel  # noqa: E402
from shapeworld.captions import all_captions  # noqa: E402
from shapeworld.priors import shapeworld_clip  # noqa: E402


@torch.no_grad()
def rank_of_prompt(clip: CLIPModel, image: torch.Tensor, text: torch.Tensor, true_idx: int) -> int:
    """0-based rank of caption ``true_idx`` (``text``: ``[M, D]`` unit caption embeddings) by cosine to ``image``
    ``[3, H, W]`` in [0, 1] (0 = retrieved)."""
    sims = (F.normalize(clip.encode_image(image[None]).float(), dim=-1) @ text.T)[0]
    return int((sims > sims[true_idx]).sum())


def label(weights: str) -> str:
    """A short column name: the run folder of an exported CLIP (``<run>/version_k/x.safetensors`` -> ``<run>``)."""
    p = Path(weights)
    return p.parent.parent.name if p.parent.name.startswith("version_") else p.stem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (globs) holding metrics.json and media/final_heldout.png")
    ap.add_argument("--heldout", action="append", default=[], help="other held-out CLIP .safetensors (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clips = {"shipped": shapeworld_clip("heldout"), **{w: shapeworld_clip("heldout", weights=w) for w in args.heldout}}
    pool = all_captions("a {colour} {shape}")
    with torch.no_grad():
        texts = {name: F.normalize(clip.encode_text(pool).float(), dim=-1) for name, clip in clips.items()}  # [66, D]
    runs = sorted(p for pattern in args.runs for p in glob.glob(pattern))
    if not runs:
        raise SystemExit(f"no run folders match {args.runs}")
    hits = {name: [] for name in clips}
    print("| run | prompt | " + " | ".join(f"rank ({label(n)})" for n in clips) + " |")
    print("|---|---|" + "---|" * len(clips))
    for run in runs:
        if not ((Path(run) / "metrics.json").is_file() and (Path(run) / "media" / "final_heldout.png").is_file()):
            print(f"| {run} | (unfinished: no metrics.json or media/final_heldout.png; skipped) |")
            continue
        prompt = json.loads((Path(run) / "metrics.json").read_text())["prompt"]
        if prompt not in pool:
            raise SystemExit(f"{run}: prompt {prompt!r} is not one of the 66 shapeworld captions")
        image = read_image(str(Path(run) / "media" / "final_heldout.png"), ImageReadMode.RGB).float() / 255  # [3, H, W]
        ranks = [rank_of_prompt(clip, image, texts[name], pool.index(prompt)) for name, clip in clips.items()]
        for name, r in zip(clips, ranks):
            hits[name].append(r == 0)
        print(f"| {run} | {prompt} | " + " | ".join(map(str, ranks)) + " |")
    for name, h in hits.items():
        print(f"R-precision ({label(name)}): {sum(h)}/{len(h)} = {sum(h) / len(h):.3f}")


if __name__ == "__main__":
    main()
