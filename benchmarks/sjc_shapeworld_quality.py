"""SJC vs SDS on shapeworld, side by side: R-precision with the held-out shapeworld CLIP and time per optimisation.

For every evaluation caption (default: shapeworld's ten held-out prompts, held-out phrasing, e.g. "an
image of a red cube") and seed, each config (default: ``experiments/shapeworld/sjc.yaml`` and
``experiments/shapeworld/sjc_sds.yaml``: same field, cameras, regularisers, run length; only the
guidance differs) is optimised through the real CLI with ``torch.set_num_threads(--threads)``. The
result is rendered from ``val_views`` cameras on a ring (elevation ``val_elevation``), and each render
counts as correct when the held-out CLIP ranks its object's caption first among all 66 shapeworld
retrieval captions ("a {colour} {shape}"). The held-out CLIP is never used for guidance.

Quality bar of the issue: R-precision >= 0.6 and every optimisation under 5 minutes on 2 CPU cores.
Needs the shapeworld diffusion prior and held-out CLIP (shapeworld/README.md); until they are trained the
script stops with the commands that produce them. Usage::

    python benchmarks/sjc_shapeworld_quality.py [--seeds 0 1 2] [--threads 2] [--out runs/sjc_shapeworld_quality.json]
    python benchmarks/sjc_shapeworld_quality.py --prompt-set dev --seeds 0 --configs experiments/shapeworld/sjc.yaml \
        --override my_change.yaml       # tune on the five dev prompts, never on the evaluation ones
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.cli import SuiteCLI  # noqa: E402
from common.io import atomic_write_text  # noqa: E402
from common.metrics import r_precision  # noqa: E402
from common.priors.base import PriorWeightsNotFoundError  # noqa: E402
from common.priors.clip import CLIPModel  # noqa: E402
from shapeworld.captions import HELDOUT_PROMPT_PAIRS, HELDOUT_TEMPLATES, RETRIEVAL_TEMPLATE, all_captions, caption, pair_index  # noqa: E402

CONFIGS = ["experiments/shapeworld/sjc.yaml", "experiments/shapeworld/sjc_sds.yaml"]
#: tuning prompts, disjoint from the ten held-out evaluation pairs: the shapeworld configs' guidance scale, grid
#: size and emptiness weights were chosen on these (``--prompt-set dev``), never on the evaluation prompts
DEV_PROMPT_PAIRS = (("sphere", "red"), ("cone", "blue"), ("cube", "green"), ("cylinder", "orange"), ("torus", "green"))
PROMPT_SETS = {"heldout": HELDOUT_PROMPT_PAIRS, "dev": DEV_PROMPT_PAIRS}


def load_clip(args) -> CLIPModel:
    if args.clip_config:
        return CLIPModel(name="eval-clip", pretrained=None, model_config=args.clip_config, checkpoint=args.clip_weights).load()
    from shapeworld.priors import shapeworld_clip

    return shapeworld_clip("heldout")


def check_prior(config: str) -> None:
    import yaml

    cfg = yaml.safe_load((ROOT / config).read_text())
    model = cfg["model"]["init_args"]["guidance"]["init_args"]["diffusion"]["init_args"]["model"]
    if not (ROOT / model / "model_index.json").is_file() and not Path(model, "model_index.json").is_file():
        raise PriorWeightsNotFoundError(
            f"{config} needs the shapeworld diffusion prior at {model} (a diffusers folder). Train it with "
            "`lightning fit --config experiments/shapeworld/train_diffusion.yaml` (after train_clip.yaml), export it "
            f"with ddpm.export.export_pipeline into {model}, then re-run this benchmark.")


@torch.no_grad()
def evaluate(system, clip: CLIPModel, caption_emb: torch.Tensor, true_idx: int):
    system.eval()
    imgs = torch.stack([system.decode(system.render_camera(c).image).permute(2, 0, 1).cpu() for c in system.eval_cameras()])
    emb = clip.encode_image(imgs.to(clip.device))
    res = r_precision(emb, caption_emb, torch.full((imgs.shape[0],), true_idx))
    return res, imgs


def run_one(config: str, prompt: str, seed: int, root: str, extra: list) -> tuple:
    args = ["fit", "--config", str(ROOT / config), *extra, "--model.init_args.prompt", prompt,
            "--seed_everything", str(seed), "--model.init_args.seed", str(seed), "--run.root", root,
            "--run.name", f"{Path(config).stem}-{seed}", "--run.logger", "none",
            "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.limit_val_batches", "0", "--trainer.callbacks", "[]"]
    t0 = time.perf_counter()
    cli = SuiteCLI(args=args)
    return cli.model, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=CONFIGS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--prompt-set", choices=list(PROMPT_SETS), default="heldout",
                   help="heldout: the ten evaluation prompts (the bar); dev: five tuning prompts disjoint from them")
    p.add_argument("--n-prompts", type=int, default=None, help="first N prompts of the set (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--override", action="append", default=[], help="extra --config layered on each run (testing)")
    p.add_argument("--clip-config", default=None, help="open_clip JSON of a retrieval CLIP (default: shapeworld held-out)")
    p.add_argument("--clip-weights", default=None)
    p.add_argument("--skip-prior-check", action="store_true", help="(testing) do not require the shipped prior")
    p.add_argument("--out", default="runs/sjc_shapeworld_quality.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        clip = load_clip(a)
        if not a.skip_prior_check:
            for c in a.configs:
                check_prior(c)
    except PriorWeightsNotFoundError as err:
        print(f"PENDING: {err}")
        return None
    captions = all_captions(RETRIEVAL_TEMPLATE)
    caption_emb = clip.encode_text(captions)
    extra = [x for o in a.override for x in ("--config", o)]
    rows = {c: {"correct": [], "times": [], "runs": []} for c in a.configs}
    with tempfile.TemporaryDirectory() as root:
        for kind, colour in PROMPT_SETS[a.prompt_set][: a.n_prompts]:
            prompt = caption(kind, colour, HELDOUT_TEMPLATES[0])
            for seed in a.seeds:
                for c in a.configs:  # same caption and seed for every config: side by side
                    system, secs = run_one(c, prompt, seed, root, extra)
                    res, _ = evaluate(system, clip, caption_emb, pair_index(kind, colour))
                    read = [captions[i] for i in res.retrieved.tolist()]  # what each render was read as
                    rows[c]["correct"] += res.correct.tolist()
                    rows[c]["times"].append(secs)
                    rows[c]["runs"].append({"prompt": prompt, "seed": seed, "r_precision": res.value, "seconds": secs,
                                            "retrieved": read})
                    print(f"{Path(c).stem:10s} seed {seed} {prompt!r}: R@1 {res.value:.2f}, {secs:.0f} s, read as {read}",
                          flush=True)
    print("\n| config | R-precision (± s.e.) | renders | mean s/run | max s/run | bar (>= 0.6, < 300 s) |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for c, r in rows.items():
        n = len(r["correct"])
        pr = sum(r["correct"]) / n
        sem = 100 * (pr * (1 - pr) / max(n - 1, 1)) ** 0.5
        ok = pr >= 0.6 and max(r["times"]) < 300
        summary[c] = {"r_precision": pr, "sem_percent": sem, "n": n, "mean_seconds": statistics.mean(r["times"]),
                      "max_seconds": max(r["times"]), "passes_bar": ok, "runs": r["runs"]}
        print(f"| {Path(c).stem} | {pr:.3f} (± {sem / 100:.3f}) | {n} | {statistics.mean(r['times']):.0f} | "
              f"{max(r['times']):.0f} | {'yes' if ok else 'no'} |")
    atomic_write_text(a.out, json.dumps({"threads": a.threads, "seeds": a.seeds, "prompt_set": a.prompt_set,
                                         "configs": summary}, indent=2))
    print(f"\nwrote {a.out}")
    return summary


if __name__ == "__main__":
    main()
