"""Dream Fields on shapeworld: CLIP R-precision over the shapeworld evaluation captions and time per optimisation.

One Dream Field per caption of ``dreamfields/data/shapeworld_eval_66.txt`` (``shapeworld.captions.all_captions()``:
11 kinds × 6 colours) with ``experiments/shapeworld/dreamfields.yaml`` (guidance: the shapeworld guidance CLIP),
scored by the *held-out* shapeworld CLIP (a different model, spec §9.2) on the 45° held-out view against all 66
captions. Bars (issue 5): R-precision ≥ 0.6, each optimisation < 5 minutes on 2 CPU cores.

    python benchmarks/dreamfields_shapeworld_rprecision.py                   # all 66 captions, seed 0, 2 threads
    python benchmarks/dreamfields_shapeworld_rprecision.py --limit 12 --stride 5   # a 12-caption subset

It runs ``dreamfields.sweep`` (resumable: finished captions are kept under ``--out``) and prints the table.
While the shapeworld CLIP weights are not trained it prints what is missing and exits with status 2.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONFIG = "experiments/shapeworld/dreamfields.yaml"
RANDOM_CLIPS = """model:
  init_args:
    guidance:
      init_args:
        clip:
          init_args: {checkpoint: null}
    retrieval:
      - class_path: common.priors.CLIPModel
        init_args: {name: shapeworld_clip_heldout, pretrained: null, checkpoint: null,
                    model_config: shapeworld/configs/shapeworld_clip_heldout.json}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/dreamfields_shapeworld_rprecision")
    ap.add_argument("--limit", type=int, default=None, help="number of captions (default: all 66)")
    ap.add_argument("--stride", type=int, default=1, help="take every k-th caption (spreads a subset over kinds)")
    ap.add_argument("--start", type=int, default=0, help="first caption index of the stride (another subset: use a new --out)")
    ap.add_argument("--extra-config", action="append", default=[],
                    help="override file layered after the shapeworld config (repeatable; use a new --out)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--random-weights", action="store_true",
                    help="pipeline/timing check with randomly initialised shapeworld CLIPs (R-precision is meaningless)")
    ap.add_argument("--max-steps", type=int, default=None, help="override the config's 600 steps (checks only)")
    args = ap.parse_args()
    os.chdir(ROOT)
    from shapeworld.priors import clip_paths

    missing = [str(w) for role in ("guidance", "heldout") for w in [clip_paths(role)[1]] if not w.is_file()]
    if missing and not args.random_weights:
        print("PENDING: the shapeworld CLIP weights are not trained yet; missing " + ", ".join(missing) + ".\n"
              "Train them with `lightning fit --config experiments/shapeworld/train_clip.yaml` and "
              "`lightning fit --config experiments/shapeworld/train_clip_heldout.yaml` (shapeworld/README.md), "
              "then rerun this benchmark.")
        sys.exit(2)
    import torch

    from dreamfields import sweep
    from dreamfields.captions import SHAPEWORLD_FILE, load_captions

    torch.set_num_threads(args.threads)
    captions = load_captions(SHAPEWORLD_FILE, normalize=False)
    chosen = captions[args.start::args.stride][:args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "captions.txt"  # the sweep's caption list; the R-precision pool stays all 66
        subset.write_text("\n".join(chosen) + "\n")
        extra = ["--model.init_args.caption_file", str(SHAPEWORLD_FILE), "--run.logger", "csv",
                 "--trainer.enable_progress_bar", "false"]
        configs = [CONFIG, *args.extra_config]
        if args.random_weights:
            random = Path(tmp) / "random_clips.yaml"
            random.write_text(RANDOM_CLIPS)
            configs.append(str(random))
        if args.max_steps:
            extra += ["--trainer.max_steps", str(args.max_steps), "--trainer.val_check_interval", str(args.max_steps)]
        records = sweep.run_sweep(configs, args.out, "shapeworld", str(subset), normalize=False, seeds=args.seeds,
                                  extra=extra)
    summary = sweep.summarise(records)
    if args.random_weights:
        print("\nNOTE: random-weight CLIPs: the R-precision below is meaningless; the times are representative.")
    minutes = [r["seconds"] / 60 for r in records]
    print(f"\nDream Fields on shapeworld: {len(records)} optimisations ({len(chosen)} captions × {len(args.seeds)} seeds), "
          f"{args.threads} threads, pool of 66 captions, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| retrieval CLIP | R-precision (bar ≥ 0.6) | ± SEM (%) | n | minutes per optimisation, mean / max (bar < 5) |")
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        rp = "n/a (random weights)" if args.random_weights else f"{s['p']:.3f} ({'met' if s['p'] >= 0.6 else 'NOT met'})"
        t = f"{statistics.mean(minutes):.2f} / {max(minutes):.2f} ({'met' if max(minutes) < 5 else 'NOT met'})"
        print(f"| {name} | {rp} | {s['sem']:.1f} | {s['n']} | {t} |")
    print(json.dumps({"summary": summary, "minutes": minutes}, indent=None))


if __name__ == "__main__":
    main()
