"""What can ZeroForge's renders of a perfect shape score on shapeworld? Kind R@1 of the true voxel grids.

ZeroForge and CLIP-Forge see shapes only through the voxel renderer (``zeroforge.renderer.VoxelEARenderer``:
headlight Lambert shading times an albedo, white background) and a CLIP. This voxelises the held-out shapeworld
objects, renders them from the 4 evaluation views with the shapeworld config's renderer under each albedo (grey,
the renderer's default, and each of shapeworld's 6 colours), and scores them as ``zeroforge.evaluate`` does:
R@1 of the object's kind among the 11 kinds, averaged over the templates "a photo of a {}" and "a {}", under the
guidance (training) and the held-out CLIP. It is the ceiling of the R@1 columns of zeroforge/README.md.

    python benchmarks/zeroforge_render_ceiling.py [--objects 250] [--resolution 24]

~2 minutes on one core.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import yaml  # noqa: E402

from shapeworld.images import object_specs  # noqa: E402
from shapeworld.priors import shapeworld_clip  # noqa: E402
from shapeworld.shapes import COLOURS  # noqa: E402
from shapeworld.voxels import voxelize  # noqa: E402
from zeroforge.evaluation import r_at_1, shape_embeddings, template_text_embeddings  # noqa: E402
from zeroforge.renderer import VoxelEARenderer  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "shapeworld" / "zeroforge.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=250, help="held-out shapeworld objects")
    ap.add_argument("--resolution", type=int, default=24, help="voxel grid (the shapeworld ZeroForge trains at 24³)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    init = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]
    render_args = {k: v for k, v in init["renderer"]["init_args"].items() if k != "albedo"}
    queries, novel = init["queries"], set(init["novel_queries"])
    templates = list(init.get("templates", ["a photo of a {}", "a {}"]))
    specs = object_specs("heldout", args.objects, 0)
    voxels = torch.stack([voxelize(s, args.resolution) for s in specs]).float()
    kind = torch.tensor([queries.index(s.kind) for s in specs])
    is_novel = torch.tensor([s.kind in novel for s in specs])
    clips = {role: shapeworld_clip(role) for role in ("guidance", "heldout")}
    texts = {role: template_text_embeddings(clip, queries, templates) for role, clip in clips.items()}
    print(f"{len(specs)} held-out objects at {args.resolution}³, 4 evaluation views, kind R@1 among {len(queries)} "
          f"kinds (novel: {', '.join(sorted(novel))})\n")
    print("| albedo | CLIP | R@1 all | R@1 novel | R@1 seen | " + " | ".join(queries) + " |")
    print("|---|---|---|---|---|" + "---|" * len(queries))
    for name, albedo in [("grey (default)", (1.0, 1.0, 1.0)), *COLOURS.items()]:
        renderer = VoxelEARenderer(**render_args, albedo=albedo)
        for role, clip in clips.items():
            hits = r_at_1(shape_embeddings(clip, renderer, voxels), texts[role], kind)
            per = [hits[kind == i].mean().item() if (kind == i).any() else float("nan") for i in range(len(queries))]
            print(f"| {name} | {role} | {hits.mean():.3f} | {hits[is_novel].mean():.3f} | {hits[~is_novel].mean():.3f} | "
                  + " | ".join(f"{p:.2f}" for p in per) + " |", flush=True)


if __name__ == "__main__":
    main()
