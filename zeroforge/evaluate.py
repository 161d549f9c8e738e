"""Evaluation table of a ZeroForge run against its CLIP-Forge initialisation (specs/zeroforge.md §6.2).

    python -m zeroforge.evaluate --run runs/shapeworld-zeroforge/version_0 --heldout-clip shapeworld:heldout
    python -m zeroforge.evaluate --run runs/zeroforge/version_0 --heldout-clip ViT-B-16:openai --distractors shapenet13

For each query, ``--samples`` shapes (z = 0 plus random z) are generated at ``--resolution`` by both
models (CLIP-Forge = the run's config with its ``autoencoder_ckpt``/``flow_ckpt``; ZeroForge = the
run's checkpoint), rendered from the 4 evaluation views and scored with the training CLIP and the
held-out CLIP: R@1 (all / novel / seen queries), automatic 2AFC (held-out judge), the mode-collapse
index (mean pairwise IoU and CLIP cosine of the z = 0 shapes of different queries) and the retention
IoU of the seen queries. The table is printed and written to ``<run>/eval.md`` (+ ``eval.json``).

``--heldout-clip``: ``shapeworld:heldout`` (the shipped shapeworld retrieval CLIP), ``ARCH:TAG`` (an
open_clip model such as ``ViT-B-16:openai``; weights must be local), or ``tiny`` (random, tests only).
"""

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

import torch

from common.io import atomic_write_text
from common.priors.clip import CLIPModel
from zeroforge.data import SHAPENET13
from zeroforge.evaluation import evaluate_samples

__all__ = ["heldout_clip", "generate_samples", "evaluate_run", "format_table", "main"]

COLUMNS = [
    ("r_precision_novel/heldout", "R@1 novel (held-out CLIP)"), ("r_precision_seen/heldout", "R@1 seen (held-out CLIP)"),
    ("r_precision/heldout", "R@1 all (held-out CLIP)"), ("r_precision_novel/train", "R@1 novel (train CLIP)"),
    ("r_precision/train", "R@1 all (train CLIP)"), ("2afc/heldout", "2AFC % (held-out)"),
    ("collapse_iou", "collapse IoU ↓"), ("collapse_cos/heldout", "collapse cos ↓ (held-out)"), ("retention_iou", "retention IoU (seen)"),
]


def heldout_clip(spec: str) -> CLIPModel:
    """The held-out CLIP named by ``spec`` (see the module docstring)."""
    if spec == "tiny":
        from common.testing import tiny_clip

        return tiny_clip(seed=1)
    if spec.startswith("shapeworld:"):
        from shapeworld.priors import shapeworld_clip

        return shapeworld_clip(spec.split(":", 1)[1])
    arch, _, tag = spec.partition(":")
    return CLIPModel(name=arch, pretrained=tag or "openai").load()


@torch.no_grad()
def generate_samples(system, queries: List[str], samples: int, resolution: int, template: str, seed: int = 0):
    """``(voxels [k·S, N, N, N], query_of [k·S], zero_index [k])``: row ``j·k + q`` is sample j of query q; j = 0 is z = 0."""
    k = len(queries)
    gen = torch.Generator().manual_seed(seed)
    prompts = [template.format(q) for q in queries]
    vox = [system.generate(prompts, "zero", resolution)[1]]
    for _ in range(samples - 1):
        vox.append(system.generate(prompts, "random", resolution, generator=gen)[1])
    return torch.cat(vox).cpu(), torch.arange(k).repeat(samples), torch.arange(k)


def evaluate_run(zeroforge, clipforge, heldout: Optional[CLIPModel], samples: int = 8, resolution: Optional[int] = None,
                 distractors: List[str] = (), generate_template: str = "a {}", seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Metrics of both models: ``{"CLIP-Forge": {...}, "ZeroForge": {...}}``."""
    h = zeroforge.hparams
    queries, novel = zeroforge.queries, list(h.novel_queries or [])
    N = resolution or h.eval_resolution or h.grid_resolution
    results, zero = {}, {}
    for name, system in (("CLIP-Forge", clipforge), ("ZeroForge", zeroforge)):
        vox, query_of, zero_index = generate_samples(system, queries, samples, N, generate_template, seed)
        clips = {"train": system.clip}
        if heldout is not None:
            clips["heldout"] = heldout
        results[name] = evaluate_samples(clips, system.renderer.cpu(), vox, query_of, queries, novel, list(h.templates),
                                         distractors, h.clip_normalize_renders, zero_index, seed)
        zero[name] = vox[zero_index]
    seen = torch.tensor([i for i, q in enumerate(queries) if q not in novel], dtype=torch.long)
    if len(seen):
        from zeroforge.autoencoder import compute_iou

        iou = float(compute_iou(zero["ZeroForge"][seen] > 0.5, zero["CLIP-Forge"][seen] > 0.5).mean())
        results["ZeroForge"]["retention_iou"] = iou
        results["CLIP-Forge"]["retention_iou"] = 1.0
    return results


def _cell(key: str, r: Dict[str, float]) -> str:
    v = r.get(key, float("nan"))
    if key.startswith("r_precision"):
        return f"{100 * v:.1f}"
    if key.startswith("2afc"):
        return f"{v:.1f} ± {r.get(key.replace('2afc', '2afc_std'), float('nan')):.1f}"
    return f"{v:.3f}"


def format_table(results: Dict[str, Dict[str, float]]) -> str:
    """A markdown table of the main columns (R@1 and 2AFC in %, IoU and cosine as fractions)."""
    cols = [(k, title) for k, title in COLUMNS if any(k in r for r in results.values())]
    lines = ["| model | " + " | ".join(t for _, t in cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {model} | " + " | ".join(_cell(k, r) for k, _ in cols) + " |" for model, r in results.items()]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    from zeroforge.generate import load_system

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="ZeroForge run folder (config.yaml + checkpoints/) or config YAML")
    ap.add_argument("--ckpt", default=None, help="ZeroForge checkpoint (default: <run>/checkpoints/last.ckpt)")
    ap.add_argument("--heldout-clip", default=None, help="shapeworld:heldout, ARCH:TAG, or tiny (tests); none: skip")
    ap.add_argument("--samples", type=int, default=8, help="samples per query (z = 0 plus random)")
    ap.add_argument("--resolution", type=int, default=None, help="grid size (default: the run's eval resolution)")
    ap.add_argument("--distractors", default="none", choices=["none", "shapenet13"], help="extra R@1 pool words")
    ap.add_argument("--generate-template", default="a {}", help="prompt template used for generation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="markdown output (default: <run>/eval.md)")
    ap.add_argument("--config", action="append", default=[], help="YAML merged over the run's model config (repeatable)")
    args = ap.parse_args(argv)
    zeroforge = load_system(args.run, args.ckpt, overrides=args.config)
    clipforge = load_system(args.run, "none", overrides=args.config)
    heldout = heldout_clip(args.heldout_clip) if args.heldout_clip else None
    distractors = list(SHAPENET13.values()) if args.distractors == "shapenet13" else []
    results = evaluate_run(zeroforge, clipforge, heldout, args.samples, args.resolution, distractors,
                           args.generate_template, args.seed)
    table = format_table(results)
    out = Path(args.out) if args.out else (Path(args.run) if Path(args.run).is_dir() else Path(".")) / "eval.md"
    header = (f"ZeroForge evaluation of {args.run} (checkpoint {args.ckpt or 'last'}), {args.samples} samples/query, "
              f"held-out CLIP {args.heldout_clip}, queries {zeroforge.queries}, novel {zeroforge.hparams.novel_queries}\n\n")
    atomic_write_text(out, header + table + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps(results, indent=2))
    print(header + table)
    print(f"\nwritten to {out} and {out.with_suffix('.json')}")
    return results


if __name__ == "__main__":
    main()
