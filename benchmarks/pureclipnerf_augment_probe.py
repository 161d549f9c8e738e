"""What PureCLIPNeRF's augmentations do to the guidance signal of a *true* shapeworld object.

Renders held-out shapeworld objects (true geometry and colour, shaded and flat) at PureCLIPNeRF's shapeworld
camera (40², elevation 30°, radius 4, focal ×1.0) and passes each render through the guidance as
``experiments/shapeworld/pureclipnerf.yaml`` configures it (its ``PureCLIPAugment`` → its guidance crop → the
shapeworld guidance CLIP; the blocks are read from the config), with and without DiffAug's colour ops, in both
compositing modes, and through ``experiments/shapeworld/dreamfields.yaml``'s guidance augmentation for comparison. It prints the guidance cosine with the object's own caption: what a perfect
field would be rewarded with. A cosine near 0 means the guidance cannot tell that object from nothing.

    python benchmarks/pureclipnerf_augment_probe.py --objects 6
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch.cli import instantiate_class  # noqa: E402

from common.guidance import CLIPGuidance  # noqa: E402
from shapeworld.captions import RETRIEVAL_TEMPLATE, caption  # noqa: E402
from shapeworld.images import render_views  # noqa: E402
from shapeworld.priors import shapeworld_clip  # noqa: E402
from shapeworld.render import CameraRanges  # noqa: E402
from shapeworld.shapes import object_specs  # noqa: E402

DIFFAUG = ("color", "translation", "zoom", "cutout")
ROOT = Path(__file__).resolve().parents[1]


def model_args(config: str) -> dict:
    """``model.init_args`` of an experiment config."""
    return yaml.safe_load((ROOT / config).read_text())["model"]["init_args"]


def with_args(block: dict, **overrides) -> dict:
    """A ``class_path``/``init_args`` block with some init args replaced."""
    return {"class_path": block["class_path"], "init_args": {**block.get("init_args", {}), **overrides}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=6, help="first N held-out shapeworld objects")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clip = shapeworld_clip("guidance")
    specs = object_specs("heldout", args.objects)
    prompts = [caption(s.kind, s.colour, RETRIEVAL_TEMPLATE) for s in specs]  # "an orange cube", as the caption pool
    cam = CameraRanges(azimuth=(0.0, 360.0), elevation=(30.0, 30.0), radius=(4.0, 4.0), focal_mult=(1.0, 1.0))
    pcn_args, df_args = model_args("experiments/shapeworld/pureclipnerf.yaml"), model_args("experiments/shapeworld/dreamfields.yaml")
    # the configs' guidance blocks, with the CLIP loaded once
    pcn_g, df_g = pcn_args["guidance"]["init_args"], df_args["guidance"]["init_args"]
    pcn = CLIPGuidance(clip=[clip], augment=instantiate_class((), pcn_g["augment"]), loss_form=pcn_g["loss_form"],
                       check_range=pcn_g["check_range"])
    df = CLIPGuidance(clip=[clip], augment=instantiate_class((), df_g["augment"]))
    print("| render | augmentation | " + " | ".join(prompts) + " | mean |")
    print("|---|---|" + "---|" * (len(prompts) + 1))
    for shading in (True, False):
        r = render_views(specs, 1, 40, cam, seed=3, split="heldout", n_samples=96, shading=shading)
        rgb, alpha = r["rgb"].float() / 255, r["alpha"].float()[:, None] / 255  # premultiplied [N, 3, 40, 40]
        settings = [(f"PureCLIPNeRF, {mode}, DiffAug {'with' if colour else 'without'} colour ops",
                     instantiate_class((), with_args(pcn_args["augment"], composite_mode=mode,
                                                     diffaug_policy=list(DIFFAUG if colour else DIFFAUG[1:]))))
                    for mode in ("official", "clean") for colour in (True, False)]
        for name, aug in [*settings, ("Dream Fields (shapeworld config)", None)]:
            cos = []
            with torch.no_grad():
                for i, prompt in enumerate(prompts):
                    gen = torch.Generator().manual_seed(i)
                    if aug is None:
                        df(rgb[i:i + 1], prompt, alpha=alpha[i:i + 1], generator=gen)
                        cos.append(float(df.last_info["clip_cos"]))
                    else:
                        on_white = rgb[i:i + 1] + (1.0 - alpha[i:i + 1])
                        pcn(aug(on_white, 1.0 - alpha[i:i + 1], generator=gen), prompt, generator=gen)
                        cos.append(float(pcn.last_info["clip_cos"]))
            print(f"| {'shaded' if shading else 'flat'} | {name} | " + " | ".join(f"{c:.2f}" for c in cos)
                  + f" | {sum(cos) / len(cos):.2f} |")


if __name__ == "__main__":
    main()
