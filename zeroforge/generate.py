"""Text -> voxels -> meshes for a list of prompts in one feed-forward batch (specs/zeroforge.md §3.12).

    python -m zeroforge.generate --run runs/shapeworld-zeroforge/version_0 --prompts "a torus" "a chair" --out meshes/
    python -m zeroforge.generate --run runs/clipforge_flow/version_0 --prompt-file prompts.txt --resolution 64

``--run`` is a run folder (its ``config.yaml`` and ``checkpoints/last.ckpt``) or a config file; works
for ZeroForge runs and for CLIP-Forge flow runs (the stage-1 weights come from the config's
``autoencoder_ckpt``). ``--ckpt none`` with a ZeroForge config generates with its CLIP-Forge
initialisation. Writes ``<out>/<i>_<prompt>.ply`` (the ``o = γ`` iso-surface by marching cubes) and a
PNG of the 4 evaluation views per shape.
"""

import argparse
import re
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
import yaml
from lightning.pytorch import LightningModule

__all__ = ["load_system", "text_to_meshes", "main"]


def _resolve(run: str, ckpt: Optional[str]) -> Tuple[Path, Optional[str]]:
    path = Path(run)
    if path.is_dir():
        config = path / "config.yaml"
        if ckpt is None and (path / "checkpoints" / "last.ckpt").is_file():
            ckpt = str(path / "checkpoints" / "last.ckpt")
    else:
        config = path
    if not config.is_file():
        raise FileNotFoundError(f"no config at {config}: give a run folder (with config.yaml) or a config file")
    return config, (None if ckpt in (None, "none") else ckpt)


def _merge(base: dict, over: dict) -> dict:
    """Deep-merge ``over`` into ``base`` (a changed ``class_path`` replaces the whole entry, as jsonargparse does)."""
    if "class_path" in over and over.get("class_path") != base.get("class_path"):
        return over
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_system(run: str, ckpt: Optional[str] = None, device: str = "cpu", overrides: Sequence[str] = ()) -> LightningModule:
    """Build the model of a run from its config and load it for generation.

    Args:
        run: a run folder or a config YAML (with a ``model:`` section).
        ckpt: checkpoint to load (default: the run's ``checkpoints/last.ckpt``; ``"none"``: the
            initialisation, i.e. CLIP-Forge for a ZeroForge config).
        device: where to put the model.
        overrides: further YAML files whose ``model:`` sections are merged on top (e.g. a tiny override).
    """
    from common.model_config import model_from_section

    config, ckpt = _resolve(run, ckpt)
    model_cfg = (yaml.safe_load(config.read_text()) or {}).get("model")
    if not model_cfg:
        raise ValueError(f"{config} has no model: section")
    for path in overrides:
        model_cfg = _merge(model_cfg, (yaml.safe_load(Path(path).read_text()) or {}).get("model") or {})
    system = model_from_section(model_cfg)
    if not hasattr(system, "prepare_inference"):
        raise ValueError(f"{type(system).__name__} does not generate shapes: use a ZeroForge or CLIP-Forge flow run")
    return system.prepare_inference(ckpt).to(device)


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "_", text).strip("_")[:60] or "prompt"


@torch.no_grad()
def text_to_meshes(system, prompts: Sequence[str], resolution: int = 64, noise: str = "zero", seed: int = 0,
                   coarse_resolution: Optional[int] = None) -> tuple:
    """``(meshes, logits [B, N, N, N], voxels [B, N, N, N])`` for ``B`` prompts in one batched pass
    (coarse-to-fine decoding from ``coarse_resolution`` when given)."""
    from zeroforge.visualize import logits_to_mesh

    gen = torch.Generator().manual_seed(seed)
    logits, voxels = system.generate(list(prompts), noise, resolution, generator=gen, coarse_resolution=coarse_resolution)
    return [logits_to_mesh(g, system.hparams.gamma) for g in logits], logits, voxels


def main(argv: Optional[List[str]] = None) -> None:
    from zeroforge.visualize import save_images_and_meshes

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder or config YAML")
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: <run>/checkpoints/last.ckpt; 'none': initialisation)")
    ap.add_argument("--prompts", nargs="*", default=[], help="text prompts")
    ap.add_argument("--prompt-file", default=None, help="file with one prompt per line")
    ap.add_argument("--resolution", type=int, default=64, help="voxel grid size N")
    ap.add_argument("--coarse-resolution", type=int, default=None,
                    help="decode coarse-to-fine from this grid size (e.g. 17 for 64³): exact near the surface, "
                         "several times fewer decoder calls; default: every grid point")
    ap.add_argument("--noise", choices=["zero", "random"], default="zero", help="z = 0 ('mean shape') or z ~ N(0, I)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", default="ply", choices=["ply", "obj", "glb"])
    ap.add_argument("--out", default="generated", help="output folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", action="append", default=[], help="YAML merged over the run's model config (repeatable)")
    args = ap.parse_args(argv)
    prompts = list(args.prompts)
    if args.prompt_file:
        prompts += [l.strip() for l in Path(args.prompt_file).read_text(encoding="utf-8").splitlines() if l.strip()]
    if not prompts:
        raise SystemExit("error: the prompt list is empty; give --prompts \"a chair\" ... or --prompt-file FILE")
    system = load_system(args.run, args.ckpt, args.device, args.config)
    start = time.perf_counter()
    _, logits, _ = text_to_meshes(system, prompts, args.resolution, args.noise, args.seed, args.coarse_resolution)
    elapsed = time.perf_counter() - start
    names = [f"{i:03d}_{_slug(p)}" for i, p in enumerate(prompts)]
    paths = save_images_and_meshes(Path(args.out), names, logits, system.renderer, system.hparams.gamma, args.format)
    print(f"{len(prompts)} shapes at {args.resolution}³ in {elapsed:.2f} s ({len(prompts) / elapsed:.2f} shapes/s), "
          f"written to {Path(args.out)}/")
    for p in paths:
        print(f"  {p}")


if __name__ == "__main__":
    main()
