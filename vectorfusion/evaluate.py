"""Caption consistency of VectorFusion outputs: CLIP R-precision and CLIP similarity (spec §4.2).

Each run of :class:`~vectorfusion.system.VectorFusionSystem` (one caption per run) writes
``result.json`` listing one image per method row (the best raster sample, the LIVE / L1 vectorisation,
the final SVG rendered at 512 on its background). This module gathers them and scores every method
with each evaluation CLIP:

* **R-Prec**: image i is a hit when its own caption has the highest cosine similarity among all
  captions of the pool (the 128 benchmark captions); 100 x hit rate (± its standard error);
* **Sim**: ``100 · mean_i cos(f_img(image_i), f_txt(caption_i))``.

Captions are used without the style suffix or any template ([S] / [NS], spec §4.2); images go
through each CLIP's standard preprocessing (resize 224, centre crop, normalise). The models are
OpenAI CLIP ViT-L/14 and OpenCLIP ViT-H/14 (``laion2b_s32b_b79k``, AMB-20).

    python -m vectorfusion.evaluate runs/vectorfusion --clip ViT-L-14:openai --clip ViT-H-14:laion2b_s32b_b79k
"""

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from common.metrics import r_precision
from common.priors.clip import CLIPModel
from vectorfusion.captions import BENCHMARK_FILE, load_captions

log = logging.getLogger(__name__)

PAPER_CLIPS = ("ViT-L-14:openai", "ViT-H-14:laion2b_s32b_b79k")
"""The evaluation models of thesis Table 6.1 (spec §4.2)."""


def make_clip(spec: str) -> CLIPModel:
    """A CLIP from a spec string (weights load lazily, from local files only).

    * ``ARCH:TAG``: open_clip architecture and pretrained tag (``ViT-L-14:openai``);
    * ``shapeworld:guidance`` / ``shapeworld:heldout``: the shipped shapeworld CLIPs;
    * ``config:ARCH_JSON[:WEIGHTS]``: a custom open_clip architecture (random weights without a file:
      tests only).
    """
    kind, _, rest = spec.partition(":")
    if kind == "shapeworld":
        from shapeworld.priors import shapeworld_clip

        return shapeworld_clip(rest or "heldout", load=False)
    if kind == "config":
        config, _, weights = rest.partition(":")
        return CLIPModel(name=Path(config).stem, pretrained=None, model_config=config, checkpoint=weights or None)
    if not rest:
        raise ValueError(f"CLIP spec {spec!r}: use ARCH:TAG (e.g. ViT-L-14:openai), shapeworld:heldout or "
                         "config:ARCH_JSON[:WEIGHTS]")
    return CLIPModel(name=kind, pretrained=rest)


def clip_label(spec: str) -> str:
    """Column label: ``ViT-L-14:openai`` -> ``L/14`` (as in the thesis tables), ``config:x/tiny.json`` ->
    ``tiny``, ``shapeworld:heldout`` -> ``shapeworld-heldout``, else the spec."""
    arch, _, rest = spec.partition(":")
    if arch == "config":
        return Path(rest.split(":")[0]).stem
    if arch == "shapeworld":
        return f"shapeworld-{rest or 'heldout'}"
    if arch.startswith("ViT-") and arch.count("-") >= 2:
        size, patch = arch.split("-")[1:3]
        return f"{size}/{patch}"
    return spec


def find_results(roots: Sequence[str | Path]) -> list[Path]:
    """Every ``result.json`` under the given run folders (or the files themselves), sorted."""
    found = []
    for root in map(Path, roots):
        found += [root] if root.is_file() else sorted(root.rglob("result.json"))
    return found


def load_image(path: str | Path) -> Tensor:
    """``[3, H, W]`` float image in [0, 1] (RGB; alpha dropped)."""
    import imageio.v3 as iio

    data = torch.as_tensor(iio.imread(path))
    if data.ndim == 2:
        data = data[..., None].expand(-1, -1, 3)
    return data[..., :3].permute(2, 0, 1).float() / 255.0


def collect(result_files: Sequence[Path]) -> dict[tuple[str, int | None], list[tuple[str, Path]]]:
    """Group the images of all runs by method row: ``(method, K) -> [(caption, image path)]``."""
    rows: dict = defaultdict(list)
    for file in result_files:
        res = json.loads(Path(file).read_text())
        for out in res.get("outputs", []):
            image = Path(file).parent / out["image"]
            if not image.is_file():
                log.warning("%s: missing %s, skipped", file, image)
                continue
            rows[(out["method"], out.get("K"))].append((res["caption"], image))
    return dict(rows)


@torch.no_grad()
def caption_consistency(clip: CLIPModel, images: Tensor, captions: Sequence[str], pool: Sequence[str],
                        batch: int = 16) -> dict[str, float]:
    """R-precision over ``pool`` and CLIP similarity of ``images`` with their ``captions``.

    Args:
        clip: the evaluation model.
        images: ``[N, 3, H, W]`` in [0, 1].
        captions: the N true captions (each must be in ``pool``).
        pool: the retrieval captions.
        batch: images per CLIP forward.

    Returns:
        ``{"r_precision", "r_precision_sem", "sim", "n"}`` (percent / x100).
    """
    missing = [c for c in captions if c not in pool]
    if missing:
        raise ValueError(f"{len(missing)} captions are not in the R-precision pool, e.g. {missing[0]!r}; "
                         "pass the caption file the runs were made from (--captions)")
    clip.load()
    img = torch.cat([clip.encode_image(images[i:i + batch].to(clip.device)) for i in range(0, len(images), batch)])
    txt = torch.cat([clip.encode_text(list(pool[i:i + 256])) for i in range(0, len(pool), 256)])
    true_idx = torch.tensor([list(pool).index(c) for c in captions])
    rp = r_precision(img, txt, true_idx)
    sim = 100.0 * (img * txt[true_idx.to(txt.device)]).sum(-1).mean()
    return {"r_precision": rp.percent, "r_precision_sem": rp.sem, "sim": float(sim), "n": rp.n}


def evaluate(result_files: Sequence[Path], clips: dict[str, CLIPModel], pool: Sequence[str]) -> list[dict]:
    """Score every method row with every CLIP; one dict per row (``method``, ``K``, ``n``, ``<label> ...``)."""
    table = []
    for (method, k), items in sorted(collect(result_files).items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        images = torch.stack([load_image(p) for _, p in items])
        row = {"method": method, "K": k, "n": len(items)}
        for label, clip in clips.items():
            row[label] = caption_consistency(clip, images, [c for c, _ in items], pool)
        table.append(row)
    return table


def format_table(rows: Sequence[dict], labels: Sequence[str]) -> str:
    """Markdown table of the thesis' form: ``Method | K | <L/14> R-Prec | <L/14> Sim | ...``."""
    head = ["Method", "K", "n"] + [f"{lab} {m}" for lab in labels for m in ("R-Prec", "Sim")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], "–" if r["K"] is None else str(r["K"]), str(r["n"])]
        for lab in labels:
            m = r[lab]
            cells += [f"{m['r_precision']:.1f} ± {m['r_precision_sem']:.1f}", f"{m['sim']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Command line: score the runs under the given folders and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (searched for result.json) or result.json files")
    parser.add_argument("--captions", default=str(BENCHMARK_FILE), help="R-precision pool, one caption per line; "
                        "'shapeworld' = the 66 shapeworld captions")
    parser.add_argument("--clip", action="append", default=None, help=f"evaluation CLIP (repeatable; default "
                        f"{' and '.join(PAPER_CLIPS)})")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.captions == "shapeworld":
        from shapeworld.captions import all_captions

        pool = all_captions()
    else:
        pool = load_captions(args.captions)
    specs = args.clip or list(PAPER_CLIPS)
    clips = {clip_label(s): make_clip(s) for s in specs}
    files = find_results(args.runs)
    if not files:
        raise SystemExit(f"no result.json under {args.runs}: run `python -m vectorfusion.sweep --config ...` first")
    rows = evaluate(files, clips, pool)
    print(format_table(rows, list(clips)))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
