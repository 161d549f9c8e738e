"""Novelty of generated shapes (specs/iss.md §10.1, the paper's Fig. 6).

ISS shows that its shapes are not copies of training shapes: for a prompt ``T`` it retrieves the top-``k`` (3)
training shapes by the cosine between ``f_T`` and the CLIP features of their renders [P], and the generated shape
should differ from them. As the spec suggests, "differs" is measured by the Chamfer distance from the generated
shape to each retrieved shape (a copy scores ≈ 0) [S].

* :func:`retrieve` — top-``k`` shapes of a :class:`ShapeBank` for a text feature;
* :func:`chamfer_distance` — symmetric mean nearest-neighbour distance (scipy's k-d tree);
* :func:`novelty` — both, for one generated shape;
* :func:`shapeworld_bank` — the bank of the shapeworld SVR training objects (renders + analytic surfaces);
  for ShapeNet build a :class:`ShapeBank` from your training renders and DVR's ``pointcloud.npz`` files;
* ``python -m iss.novelty --run <stage-2 run folder>`` — every prompt of a stage-2 run against the shapeworld
  bank, written to ``<run>/novelty.json``.
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ShapeBank", "chamfer_distance", "retrieve", "novelty", "bank_from_renders", "shapeworld_bank",
           "shape_surface_points"]


@dataclass
class ShapeBank:
    """Training shapes for retrieval.

    Attributes:
        features: ``[N, D]`` unit CLIP image features, one per shape (the mean over its renders, renormalised).
        points: shape index → ``[Q, 3]`` surface points (computed when a shape is retrieved).
        names: a label per shape (e.g. "red cube #12").
    """

    features: Tensor
    points: Callable[[int], np.ndarray]
    names: List[str]

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[0] != len(self.names):
            raise ValueError(f"need [N, D] features and N names, got {tuple(self.features.shape)} and {len(self.names)}")


def retrieve(text_feature: Tensor, features: Tensor, k: int = 3) -> tuple[Tensor, Tensor]:
    """``(indices [k], cosines [k])`` of the ``k`` bank features closest in cosine to ``text_feature`` ``[D]``."""
    if not 1 <= k <= features.shape[0]:
        raise ValueError(f"k must be in [1, {features.shape[0]}] (the bank size), got {k}")
    cos = F.normalize(features.float(), dim=-1) @ F.normalize(text_feature.float().reshape(-1), dim=0)
    top = cos.topk(k)
    return top.indices, top.values


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance ``½(mean_a min_b ‖a − b‖ + mean_b min_a ‖b − a‖)`` of ``[P, 3]`` and ``[Q, 3]``."""
    from scipy.spatial import cKDTree

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != 3 or b.shape[1] != 3 or not len(a) or not len(b):
        raise ValueError(f"need two non-empty [N, 3] point sets, got {a.shape} and {b.shape}")
    return 0.5 * float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def novelty(points: np.ndarray, text_feature: Tensor, bank: ShapeBank, k: int = 3) -> dict:
    """Retrieve the top-``k`` training shapes for ``text_feature`` and the Chamfer distance of ``points`` to each.

    Returns:
        ``{"retrieved": [names], "cosine": [k], "chamfer": [k], "min_chamfer": float, "retrieved_pairwise_chamfer":
        float}``: ``min_chamfer`` ≈ 0 means a copy; the mean Chamfer distance between the retrieved shapes themselves
        (None for ``k = 1``) is the scale at which training shapes of that description differ from one another.
    """
    idx, cos = retrieve(text_feature, bank.features, k)
    clouds = [bank.points(int(i)) for i in idx]
    chamfer = [chamfer_distance(points, c) for c in clouds]
    pairs = [chamfer_distance(clouds[i], clouds[j]) for i in range(k) for j in range(i + 1, k)]
    return {"retrieved": [bank.names[int(i)] for i in idx], "cosine": [round(float(c), 4) for c in cos],
            "chamfer": chamfer, "min_chamfer": min(chamfer),
            "retrieved_pairwise_chamfer": sum(pairs) / len(pairs) if pairs else None}


@torch.no_grad()
def bank_from_renders(embed: Callable[[Tensor], Tensor], images: Tensor, shape_ids: Tensor,
                      points: Callable[[int], np.ndarray], names: Sequence[str], batch_size: int = 256) -> ShapeBank:
    """A bank from renders ``[M, 3, H, W]`` in [0, 1] of ``len(names)`` shapes (``shape_ids`` ``[M]``: whose render).

    ``embed`` maps a batch of renders to CLIP image features, e.g. ``lambda x: embed_renders(clip, x)``.
    """
    n = len(names)
    if shape_ids.shape[0] != images.shape[0] or int(shape_ids.min()) < 0 or int(shape_ids.max()) >= n:
        raise ValueError(f"shape_ids must give one index in [0, {n}) per render; got {tuple(shape_ids.shape)} for "
                         f"{images.shape[0]} renders")
    feats = torch.cat([F.normalize(embed(images[i:i + batch_size]).float(), dim=-1)
                       for i in range(0, images.shape[0], batch_size)])
    mean = torch.zeros(n, feats.shape[1]).index_add_(0, shape_ids.long(), feats)
    counts = torch.bincount(shape_ids.long(), minlength=n)
    if (counts == 0).any():
        raise ValueError(f"shapes without a render: {torch.nonzero(counts == 0).flatten()[:10].tolist()}")
    return ShapeBank(F.normalize(mean, dim=-1), points, list(names))


def shape_surface_points(spec, n: int = 2048, resolution: int = 64, seed: int = 0) -> np.ndarray:
    """``[n, 3]`` surface points of a shapeworld shape (marching cubes of its SDF on a ``resolution³`` grid)."""
    from iss.mesh import extract_mesh, sample_surface

    mesh = extract_mesh(lambda p: -spec.sdf(p), None, resolution_0=resolution, upsampling_steps=0, bound=1.0)
    return sample_surface(mesh, n, torch.Generator().manual_seed(seed))[0].numpy()


def shapeworld_bank(embed: Callable[[Tensor], Tensor], n_objects: int = 1980, views: int = 4, image_size: int = 64,
                    seed: int = 0, n_points: int = 2048, cache_dir: Optional[str] = None) -> ShapeBank:
    """The shapeworld SVR training objects (``iss.data.ShapeWorldSVRDataModule``'s train split, same defaults) with
    their cached white-background renders and analytic surfaces."""
    from shapeworld.images import cached_views
    from shapeworld.render import CameraRanges

    specs, data = cached_views("train", n_objects, views, image_size, CameraRanges(), seed, cache_dir=cache_dir)
    rgb, alpha = data["rgb"].float() / 255.0, data["alpha"].float()[:, None] / 255.0
    images = (rgb + (1.0 - alpha)).clamp(0, 1)  # premultiplied colour over white, as the SVR data
    names = [f"{s.colour} {s.kind} #{i}" for i, s in enumerate(specs)]
    cache: Dict[int, np.ndarray] = {}

    def points(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = shape_surface_points(specs[i], n_points, seed=i)
        return cache[i]

    return bank_from_renders(embed, images, data["object"], points, names)


def main(argv: Optional[List[str]] = None) -> None:
    import yaml
    import trimesh

    from common.io import atomic_write_text
    from common.model_config import model_from_section
    from iss.clip_features import embed_renders
    from iss.mesh import sample_surface

    ap = argparse.ArgumentParser(description="ISS novelty (Fig. 6): Chamfer distance from each generated shape of a "
                                             "stage-2 run to its top-k CLIP-retrieved shapeworld training shapes")
    ap.add_argument("--run", required=True, help="a stage-2 run folder (config.yaml, prompts/*/result.pt and mesh.ply)")
    ap.add_argument("--k", type=int, default=3, help="training shapes retrieved per prompt (3, [P])")
    ap.add_argument("--points", type=int, default=2048, help="surface points per shape")
    ap.add_argument("--n-objects", type=int, default=1980, help="shapeworld training objects in the bank")
    args = ap.parse_args(argv)
    run = Path(args.run)
    config = run / "config.yaml"
    if not config.is_file():
        raise SystemExit(f"{config} not found: --run takes the folder of a stage-2 run (lightning fit --config "
                         f"experiments/shapeworld/iss.yaml writes runs/shapeworld-iss/version_<k>/)")
    model = (yaml.safe_load(config.read_text()) or {}).get("model") or {}
    system = model_from_section(model)
    if not hasattr(system, "text_features"):
        raise SystemExit(f"{config} is not a stage-2 run ({type(system).__name__})")
    clip, h = system.clip.load(), system.hparams
    embed = lambda x: embed_renders(clip, x, h.clip_resize_mode, h.clip_norm, h.transpose_clip_input)  # noqa: E731
    bank = shapeworld_bank(embed, n_objects=args.n_objects, n_points=args.points)
    rows = []
    for folder in sorted(p for p in (run / "prompts").glob("*") if (p / "result.pt").is_file()):
        prompt = torch.load(folder / "result.pt", weights_only=True)["prompt"]
        if not (folder / "mesh.ply").is_file():  # stage 2 writes no mesh when the shape has vanished
            rows.append({"prompt": prompt, "folder": folder.name, "empty_mesh": True})
            print(f"{prompt:40s} no mesh (the shape vanished)", flush=True)
            continue
        mesh = trimesh.load(folder / "mesh.ply", process=False)
        pts = sample_surface(mesh, args.points, torch.Generator().manual_seed(0))[0].numpy()
        f_t = F.normalize(clip.encode_text([prompt]).float(), dim=-1)[0]
        rows.append({"prompt": prompt, "folder": folder.name, **novelty(pts, f_t, bank, args.k)})
        r = rows[-1]
        spread = "" if r["retrieved_pairwise_chamfer"] is None else f" (retrieved shapes among themselves {r['retrieved_pairwise_chamfer']:.3f})"
        print(f"{prompt:40s} top retrieved {r['retrieved'][0]:24s} min Chamfer {r['min_chamfer']:.3f}{spread}", flush=True)
    atomic_write_text(run / "novelty.json", json.dumps(rows, indent=2))
    print(f"wrote {run / 'novelty.json'} ({len(rows)} prompts)")


if __name__ == "__main__":
    main()
