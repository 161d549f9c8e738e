"""DietNeRF vs. the plain NeRF baseline on the shapeworld few-view scene (same views, same networks, same
steps): held-out-view PSNR over the 24 ring views, and PSNR on the views far from the observed ones (the half
whose camera is furthest, in angle, from its nearest observed camera).

    python benchmarks/dietnerf_shapeworld_quality.py                 # needs the shipped shapeworld CLIP
    python benchmarks/dietnerf_shapeworld_quality.py --smoke         # plumbing check: tiny random CLIP, tiny runs

Runs ``lightning fit`` then ``test`` of experiments/shapeworld/dietnerf_nerf.yaml and
experiments/shapeworld/dietnerf.yaml into ``--run-root`` and prints a table with the margins. Without
shapeworld/weights/shapeworld_clip_guidance.safetensors it prints PENDING and exits with status 2.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"NeRF": "experiments/shapeworld/dietnerf_nerf.yaml", "DietNeRF": "experiments/shapeworld/dietnerf.yaml"}
SMOKE = {"NeRF": "tests/overrides/shapeworld/dietnerf_nerf.yaml", "DietNeRF": "tests/overrides/shapeworld/dietnerf.yaml"}


def run(method: str, args) -> dict:
    from common.cli import SuiteCLI

    cfg = ["--config", str(ROOT / CONFIGS[method])]
    if args.smoke:
        cfg += ["--config", str(ROOT / SMOKE[method])]
    custom_sc = method == "DietNeRF" and args.lambda_sc is not None
    name = f"quality-{method.lower()}" + (f"-sc{args.lambda_sc:g}" if custom_sc else "")
    if args.views:
        name += f"-{args.views}views"
    if args.view_seed:
        name += f"-seed{args.view_seed}"
    if method == "DietNeRF" and args.tag:
        name += f"-{args.tag}"
    extra = ["--run.root", args.run_root, "--run.name", name, "--run.logger", "csv",
             "--trainer.enable_progress_bar", "false", "--trainer.accelerator", args.accelerator]
    if args.steps:
        extra += ["--trainer.max_steps", str(args.steps)]
    if args.views:
        extra += ["--data.init_args.num_train_views", str(args.views)]
    if args.view_seed:
        extra += ["--data.init_args.train_view_seed", str(args.view_seed)]
    if custom_sc:
        lam = args.lambda_sc
        extra += ["--model.init_args.loss_weights",
                  f"{{lambda_mse: 1.0, lambda_mse_coarse: 1.0, lambda_sc: {lam}, lambda_sc_coarse: {lam}}}"]
    if method == "DietNeRF":
        extra += args.dietnerf_arg
    cli = SuiteCLI(args=["fit", *cfg, *extra])
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    return json.loads((Path(cli.trainer.default_root_dir) / "test_metrics.json").read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny random CLIP and tiny runs: checks the command only")
    ap.add_argument("--steps", type=int, default=None, help="override trainer.max_steps (default: the configs')")
    ap.add_argument("--lambda-sc", type=float, default=None,
                    help="override the semantic-loss weight λ (coarse and fine) of the DietNeRF run")
    ap.add_argument("--baseline-metrics", default=None,
                    help="test_metrics.json of an earlier NeRF run of this benchmark (skips refitting the baseline)")
    ap.add_argument("--dietnerf-arg", action="append", default=[],
                    help="extra CLI argument of the DietNeRF run (repeat), e.g. "
                         "--dietnerf-arg=--model.init_args.pose_sampler.init_args.elevation_range=[15,50]")
    ap.add_argument("--tag", default="", help="suffix of the DietNeRF run name (with --dietnerf-arg)")
    ap.add_argument("--views", type=int, default=None,
                    help="number of observed views of both runs (default: the configs' 2; the same seeded draw)")
    ap.add_argument("--view-seed", type=int, default=0,
                    help="seed of the observed-view draw of both runs (default: the configs' 0)")
    ap.add_argument("--only", choices=["NeRF", "DietNeRF"], default=None,
                    help="run one method and print its row (run the two in parallel processes, one core each)")
    ap.add_argument("--run-root", default="runs/benchmarks")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--summarise", action="store_true",
                    help="fit nothing: pair the finished NeRF/DietNeRF runs under --run-root by view seed and print the "
                         "per-draw table with the mean margin ± standard error")
    args = ap.parse_args(argv)
    if args.summarise:
        return summarise(Path(args.run_root))
    weights = ROOT / "shapeworld" / "weights" / "shapeworld_clip_guidance.safetensors"
    if not args.smoke and not weights.is_file():
        print(f"PENDING: the shapeworld guidance CLIP is not shipped ({weights} is missing). Train it with "
              "`lightning fit --config experiments/shapeworld/train_clip.yaml`, copy the exported safetensors there "
              "(shapeworld/README.md), then rerun this benchmark.")
        return 2
    if args.only:
        r = run(args.only, args)
        print(f"\n{args.only}: observed views {r.get('train_views')}, step {r['step']}: PSNR held-out {r['psnr']:.2f}, "
              f"far views {r['psnr_far']:.2f} (>= {r['far_views_min_angle_deg']:.1f} deg), SSIM {r['ssim']:.3f}")
        return 0
    results = {m: (json.loads(Path(args.baseline_metrics).read_text()) if m == "NeRF" and args.baseline_metrics
                   else run(m, args)) for m in ("NeRF", "DietNeRF")}
    base, diet = results["NeRF"], results["DietNeRF"]
    print(f"\nshapeworld {diet.get('scene')}: observed views {diet.get('train_views')}, {diet['n_views']} held-out views, "
          f"far views: >= {diet['far_views_min_angle_deg']:.1f} deg from the nearest observed camera; step {diet['step']}"
          + ("  [SMOKE: tiny random CLIP, numbers meaningless]" if args.smoke else ""))
    print("| method | PSNR held-out ↑ | PSNR far views ↑ | SSIM held-out ↑ |\n|---|---|---|---|")
    for m, r in results.items():
        print(f"| {m} | {r['psnr']:.2f} | {r['psnr_far']:.2f} | {r['ssim']:.3f} |")
    print(f"| margin (DietNeRF − NeRF) | {diet['psnr'] - base['psnr']:+.2f} dB | {diet['psnr_far'] - base['psnr_far']:+.2f} dB | "
          f"{diet['ssim'] - base['ssim']:+.3f} |")
    return 0


def _latest_metrics(run_dir: Path):
    files = sorted(run_dir.glob("version_*/test_metrics.json"), key=lambda f: int(f.parent.name.split("_")[1]))
    return json.loads(files[-1].read_text()) if files else None


def summarise(run_root: Path) -> int:
    """Per-draw margins of every view seed with both a NeRF and a DietNeRF run (default settings, any ``--views 2``
    spelling of the name), their mean ± standard error, the paired t statistic (mean / s.e.) and two-sided p-values (t and Wilcoxon)."""
    import re

    from common.metrics import mean_sem

    pat = re.compile(r"quality-(nerf|dietnerf)(?:-2views)?(?:-seed(\d+))?$")  # untagged runs at the default λ only
    found: dict = {}
    for d in sorted(run_root.glob("quality-*")):
        m = pat.match(d.name)
        if m and (r := _latest_metrics(d)) is not None:
            found.setdefault(int(m.group(2) or 0), {})["NeRF" if m.group(1) == "nerf" else "DietNeRF"] = r
    pairs = {s: v for s, v in sorted(found.items()) if len(v) == 2}
    if not pairs:
        print(f"no view seed under {run_root} has both a NeRF and a DietNeRF run")
        return 1
    print("| view seed | observed views | NeRF held-out / far (dB) | DietNeRF held-out / far (dB) | "
          "margin held-out / far (dB) | SSIM margin |\n|---|---|---|---|---|---|")
    margins = {"psnr": [], "psnr_far": [], "ssim": []}
    for seed, v in pairs.items():
        b, d = v["NeRF"], v["DietNeRF"]
        for k in margins:
            margins[k].append(d[k] - b[k])
        print(f"| {seed} | {d.get('train_views')} | {b['psnr']:.2f} / {b['psnr_far']:.2f} | {d['psnr']:.2f} / "
              f"{d['psnr_far']:.2f} | {margins['psnr'][-1]:+.2f} / {margins['psnr_far'][-1]:+.2f} | {margins['ssim'][-1]:+.3f} |")

    (mh, sh), (mf, sf), (ms, ss) = (mean_sem(margins[k]) for k in ("psnr", "psnr_far", "ssim"))
    print(f"| **mean ± s.e. ({len(pairs)} draws)** | | | | **{mh:+.2f} ± {sh:.2f} / {mf:+.2f} ± {sf:.2f}** | "
          f"{ms:+.3f} ± {ss:.3f} |")
    wins = [sum(x > 0 for x in margins[k]) for k in ("psnr", "psnr_far")]
    print(f"DietNeRF ahead on {wins[0]}/{len(pairs)} draws held-out, {wins[1]}/{len(pairs)} far; paired t = "
          f"{mh / sh:.2f} held-out, {mf / sf:.2f} far ({len(pairs) - 1} degrees of freedom)")
    from scipy.stats import ttest_1samp, wilcoxon  # scipy comes with scikit-image

    for k, label in (("psnr", "held-out"), ("psnr_far", "far")):
        t_p = ttest_1samp(margins[k], 0.0).pvalue
        w_p = wilcoxon(margins[k]).pvalue
        print(f"{label}: two-sided p = {t_p:.3f} (paired t), {w_p:.3f} (Wilcoxon signed-rank, robust to the outlying draws)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
