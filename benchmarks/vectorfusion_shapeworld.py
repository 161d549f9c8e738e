"""VectorFusion on shapeworld: run time per SVG and CLIP R-precision with the held-out CLIP.

Runs the two shapeworld configs, one ``lightning fit`` process per caption (``vectorfusion.sweep``),
over the 66 shapeworld evaluation captions (``shapeworld.captions.all_captions()``, "a {colour}
{shape}"), with ``--threads`` (default 2) threads per run:

* ``experiments/shapeworld/vectorfusion_scratch.yaml``: VectorFusion from scratch;
* ``experiments/shapeworld/vectorfusion.yaml``: the full pipeline (samples + rejection, LIVE, SDS).

then scores every output with the held-out shapeworld CLIP (``python -m vectorfusion.evaluate
--captions shapeworld --clip shapeworld:heldout``): R-precision over the 66-caption pool and CLIP
similarity, for "Stable Diff (raster)" (here: the shapeworld prior's best-of-4 sample), "SD init +
LIVE", the full pipeline and from scratch. Target: each run under 5 minutes on 2 CPU cores.

Modes:
    python benchmarks/vectorfusion_shapeworld.py                  # the shipped priors (pending until trained)
    python benchmarks/vectorfusion_shapeworld.py --random-priors  # same architectures, random weights: timing only
    python benchmarks/vectorfusion_shapeworld.py --tiny           # the tests' tiny priors: a smoke run
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vectorfusion import evaluate, sweep  # noqa: E402

CONFIGS = {"scratch": "experiments/shapeworld/vectorfusion_scratch.yaml",
           "full": "experiments/shapeworld/vectorfusion.yaml"}
PRIORS = {"diffusion prior": ("shapeworld/weights/shapeworld_diffusion/model_index.json",
                              "lightning fit --config experiments/shapeworld/train_diffusion.yaml"),
          "guidance CLIP": ("shapeworld/weights/shapeworld_clip_guidance.safetensors",
                            "lightning fit --config experiments/shapeworld/train_clip.yaml"),
          "held-out CLIP": ("shapeworld/weights/shapeworld_clip_heldout.safetensors",
                            "lightning fit --config experiments/shapeworld/train_clip_heldout.yaml")}


def missing_priors() -> list[str]:
    return [f"{name}: {path} (train: `{cmd}`, then copy the export there)"
            for name, (path, cmd) in PRIORS.items() if not (ROOT / path).exists()]


def random_priors(folder: Path) -> Path:
    """A pipeline folder with the shapeworld prior's architectures and random weights (timing only)."""
    import torch
    import yaml
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from common.priors.clip import CLIPModel
    from ddpm.export import open_clip_text_to_transformers, save_open_clip_tokenizer

    path = folder / "shapeworld_diffusion_random"
    if (path / "model_index.json").is_file():
        return path
    torch.manual_seed(0)
    cfg = yaml.safe_load((ROOT / "experiments/shapeworld/train_diffusion.yaml").read_text())
    UNet2DConditionModel(**cfg["model"]["init_args"]["unet"]["init_args"]).save_pretrained(path / "unet")
    clip = CLIPModel(name="shapeworld_clip_guidance", pretrained=None,
                     model_config=str(ROOT / "shapeworld/configs/shapeworld_clip_guidance.json")).load()
    open_clip_text_to_transformers(clip.model).save_pretrained(path / "text_encoder")
    save_open_clip_tokenizer(path / "tokenizer", int(clip.model.positional_embedding.shape[0]))
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear").save_pretrained(
        path / "scheduler")
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "DiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"]}))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=66, help="captions per method (the first N of the 66, after --stride)")
    p.add_argument("--stride", type=int, default=1, help="every k-th caption (7: 10 captions over 10 kinds and 6 colours)")
    p.add_argument("--root", default="runs/bench_vectorfusion_shapeworld")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--random-priors", action="store_true", help="random weights, real architectures: timing only")
    mode.add_argument("--tiny", action="store_true", help="the tests' tiny priors and short runs: smoke only")
    args = p.parse_args()
    os.chdir(ROOT)
    root = Path(args.root)
    if not (args.random_priors or args.tiny) and missing_priors():
        print("PENDING: the shapeworld priors are not trained yet:\n  " + "\n  ".join(missing_priors()))
        print("Timing with random weights of the same architectures: --random-priors")
        return
    extra_common = ["--run.logger", "csv", "--run.checkpoint_every_n_steps", "0"]
    rows = []
    for method in args.methods:
        config = CONFIGS[method]
        configs, extra = [config], list(extra_common)
        if args.tiny:
            configs.append(f"tests/overrides/{config.removeprefix('experiments/')}")
        if args.random_priors:  # an override YAML: random diffusion weights, random (untrained) guidance CLIP
            init_args = {"guidance": {"init_args": {"diffusion": {"init_args": {"model": str(random_priors(root))}}}}}
            if method == "full":
                init_args["sampler"] = {"init_args": {"clip": {"init_args": {"checkpoint": None}}}}
            override = root / f"random_priors_{method}.yaml"
            override.write_text(json.dumps({"model": {"init_args": init_args}}))  # JSON is YAML
            configs.append(str(override))
        name = f"{method}{'-tiny' if args.tiny else '-random' if args.random_priors else ''}"
        config_args = [a for c in configs for a in ("--config", c)]
        records = sweep.main(["--captions", "shapeworld", "--end", str(args.limit * args.stride),
                              "--stride", str(args.stride), "--name", name, "--root",
                              str(root), "--threads", str(args.threads), *config_args, "--", *extra])
        done = [r for r in records if r["exit"] == 0]
        rows.append((method, len(records), done, len(records) - len(done)))
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times grow with other load)")
    print("| method | runs | mean wall s/run | max wall s/run | mean CPU s/run | max CPU s/run | failed | "
          "wall < 5 min | CPU < 5 min |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method, n, done, failed in rows:
        wall, cpu = [r["seconds"] for r in done], [r["cpu_seconds"] for r in done]
        fmt = (lambda xs, f: f"{f(xs):.1f}" if xs else "-")
        ok = (lambda xs: "yes" if xs and max(xs) < 300 else "no")
        print(f"| {method} | {n} | {fmt(wall, statistics.mean)} | {fmt(wall, max)} | {fmt(cpu, statistics.mean)} | "
              f"{fmt(cpu, max)} | {failed} | {ok(wall)} | {ok(cpu)} |")
    if args.random_priors or args.tiny:
        print("\nR-precision: pending (random/tiny priors give meaningless images).")
        return
    evaluate.main([str(root / m) for m in args.methods] + ["--captions", "shapeworld", "--clip", "shapeworld:heldout",
                                                             "--out", str(root / "rprecision.json")])


if __name__ == "__main__":
    main()
