"""Tables of Table 3.1's form (averages over scenes) and Table 9.2's (per scene) from test runs.

Each ``lightning test`` of a DietNeRF/NeRF config writes ``<run>/test_metrics.json`` (per-view and mean
PSNR/SSIM/LPIPS) and ``<run>/media/test_renders/*.png``. This module gathers runs by method::

    python -m dietnerf.table --run DietNeRF='runs/dietnerf*/version_*' --run NeRF='runs/nerf_8view*/version_*' \\
        --paper --out results.md
    # FID/KID over all scenes (needs torch-fidelity's Inception weights on disk; skipped otherwise):
    python -m dietnerf.table ... --fid-real /data/nerf_synthetic/{chair,drums,...} --inception-weights FILE

PSNR and SSIM are averaged over each scene's test views, then over scenes (spec §5.1). A metric that
could not be computed is written with its reason, never as a number.
"""

import argparse
import glob
import json
import math
from pathlib import Path
from typing import Optional, Sequence

SCENES = ("lego", "chair", "drums", "ficus", "mic", "ship", "materials", "hotdog")

#: Table 3.1 of the thesis (8 views, averages over the 8 scenes): PSNR, SSIM, LPIPS, FID, KID.
PAPER_TABLE_3_1 = {
    "NeRF": (14.934, 0.687, 0.318, 228.1, 0.076),
    "NV": (17.859, 0.741, 0.245, 239.5, 0.117),
    "Simplified NeRF": (20.092, 0.822, 0.179, 189.2, 0.047),
    "DietNeRF": (23.147, 0.866, 0.109, 74.9, 0.005),
    "DietNeRF, L_MSE ft": (23.591, 0.874, 0.097, 72.0, 0.004),
    "NeRF, 100 views": (31.153, 0.954, 0.046, 50.5, 0.001),
}
#: Table 9.2 PSNR per scene (order of SCENES).
PAPER_TABLE_9_2_PSNR = {
    "NeRF": (9.726, 21.049, 17.472, 13.728, 26.287, 12.929, 7.837, 10.446),
    "Simplified NeRF": (16.735, 21.870, 15.021, 21.091, 24.206, 17.092, 20.659, 24.060),
    "DietNeRF": (23.897, 24.633, 20.034, 20.744, 26.321, 23.043, 21.254, 25.250),
    "DietNeRF, L_MSE ft": (24.311, 25.595, 20.029, 20.940, 26.794, 22.536, 21.621, 26.626),
}


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def scene_table(summary: dict) -> str:
    """Markdown for one test run (one scene, one method)."""
    lp = _fmt(summary.get("lpips")) if summary.get("lpips") is not None else f"– ({summary.get('lpips_status', 'n/a')})"
    lines = [
        f"# {summary.get('method', '?')} on {summary.get('scene', '?')} (step {summary.get('step')}, "
        f"{summary.get('n_views')} test views, observed views {summary.get('train_views')})",
        "",
        "| views | PSNR ↑ | SSIM ↑ | LPIPS ↓ |",
        "|---|---|---|---|",
        f"| all test views | {_fmt(summary.get('psnr'))} | {_fmt(summary.get('ssim'))} | {lp} |",
        f"| far views (≥ {_fmt(summary.get('far_views_min_angle_deg'), 1)}° from the nearest observed camera) | "
        f"{_fmt(summary.get('psnr_far'))} | {_fmt(summary.get('ssim_far'))} | – |",
        "",
        f"Protocol: {summary.get('protocol', '')}; LPIPS input range {summary.get('lpips_input_range')}.",
    ]
    return "\n".join(lines) + "\n"


def load_runs(specs: Sequence[str]) -> dict[str, list[dict]]:
    """``METHOD=GLOB`` → ``{method: [summary, ...]}`` (the newest summary per scene wins)."""
    runs: dict[str, dict[str, dict]] = {}
    for spec in specs:
        if "=" not in spec:
            raise SystemExit(f"--run expects METHOD=GLOB, got {spec!r}")
        method, pattern = spec.split("=", 1)
        files = []
        for match in sorted(glob.glob(pattern)):
            path = Path(match)
            path = path / "test_metrics.json" if path.is_dir() else path
            if path.name == "test_metrics.json" and path.is_file():
                files.append(path)
        if not files:
            raise SystemExit(f"no test_metrics.json under {pattern!r}: run `lightning test --config ... --ckpt_path last` first")
        for f in sorted(files, key=lambda p: p.stat().st_mtime):
            s = json.loads(f.read_text())
            s["_run"] = str(f.parent)
            runs.setdefault(method, {})[s.get("scene", f.parent.name)] = s
    return {m: list(by_scene.values()) for m, by_scene in runs.items()}


def _mean(vals) -> Optional[float]:
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def aggregate_table(runs: dict[str, list[dict]], fid_kid: Optional[dict] = None, paper: bool = False) -> str:
    """Table 3.1's form (scene averages) followed by Table 9.2's per-scene PSNR/SSIM/LPIPS."""
    fid_kid = fid_kid or {}
    scenes = [s for s in SCENES if any(r.get("scene") == s for rs in runs.values() for r in rs)]
    scenes += sorted({r.get("scene") for rs in runs.values() for r in rs} - set(scenes))
    out = ["## Averages over scenes (Table 3.1's form)", "",
           "| Method | scenes | PSNR ↑ | SSIM ↑ | LPIPS ↓ | FID ↓ | KID ↓ |", "|---|---|---|---|---|---|---|"]
    notes = set()
    for method, rs in runs.items():
        lp = _mean(r.get("lpips") for r in rs)
        if lp is None:
            notes.update(r.get("lpips_status", "") for r in rs)
        fk = fid_kid.get(method, {})
        out.append(f"| {method} | {len(rs)} | {_fmt(_mean(r.get('psnr') for r in rs))} | "
                   f"{_fmt(_mean(r.get('ssim') for r in rs))} | {_fmt(lp)} | {_fmt(fk.get('fid'), 1)} | "
                   f"{_fmt(fk.get('kid'))} |")
    if paper:
        for method, vals in PAPER_TABLE_3_1.items():
            out.append(f"| {method} (thesis Table 3.1) | 8 | " + " | ".join(
                _fmt(v, 1 if i == 3 else 3) for i, v in enumerate(vals)) + " |")
    out.append("")
    for n in sorted(n for n in notes if n):
        out.append(f"LPIPS {n}")
    if "status" in fid_kid:
        out.append(f"FID/KID: {fid_kid['status']}")
    for metric, digits in (("psnr", 3), ("ssim", 3), ("lpips", 3)):
        out += ["", f"## {metric.upper()} per scene (Table 9.2's form)", "",
                "| Method | " + " | ".join(scenes) + " | mean |", "|---" * (len(scenes) + 2) + "|"]
        for method, rs in runs.items():
            by = {r.get("scene"): r.get(metric) for r in rs}
            vals = [by.get(s) for s in scenes]
            out.append(f"| {method} | " + " | ".join(_fmt(v, digits) for v in vals) + f" | {_fmt(_mean(vals), digits)} |")
        if paper and metric == "psnr" and all(s in SCENES for s in scenes):
            for method, vals in PAPER_TABLE_9_2_PSNR.items():
                sel = [vals[SCENES.index(s)] for s in scenes]
                out.append(f"| {method} (thesis) | " + " | ".join(_fmt(v) for v in sel) + f" | {_fmt(_mean(sel))} |")
    return "\n".join(out) + "\n"


def fid_kid_for_runs(runs: dict[str, list[dict]], real_roots: Sequence[str], weights: Optional[str]) -> dict:
    """FID/KID of each method's test renders (all scenes pooled) against all real images of ``real_roots``
    (train+val+test splits at 400², composited on white, spec §5.1)."""
    import imageio.v3 as iio
    import torch

    from common.data import load_blender_split
    from common.priors.base import PriorWeightsNotFoundError
    from dietnerf.metrics import fid_from_features, inception_extractor, kid_from_features

    try:
        extract = inception_extractor(weights)
    except (PriorWeightsNotFoundError, ModuleNotFoundError) as err:
        return {"status": "skipped: " + " ".join(str(err).split())}

    def feats(images):  # list of [H, W, 3] in [0, 1]
        return torch.cat([extract(torch.stack(images[i:i + 32]).permute(0, 3, 1, 2)) for i in range(0, len(images), 32)])

    real = []
    for root in real_roots:
        for split in ("train", "val", "test"):
            real += list(load_blender_split(root, split, downscale=2).images)
    f_real = feats(real)
    result = {"status": f"ok: {len(real)} real images"}
    for method, rs in runs.items():
        fake = [torch.from_numpy(iio.imread(p)[..., :3] / 255.0).float()
                for r in rs for p in sorted(Path(r["_run"], "media", "test_renders").glob("*.png"))]
        if len(fake) < 2:
            result[method] = {}
            continue
        f_fake = feats(fake)
        result[method] = {"fid": fid_from_features(f_real, f_fake),
                          "kid": kid_from_features(f_real, f_fake, subset_size=min(200, len(fake)))[0]}
    return result


def main(argv: Optional[Sequence[str]] = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="METHOD=GLOB of run folders (repeatable)")
    ap.add_argument("--paper", action="store_true", help="add the thesis' rows for comparison")
    ap.add_argument("--fid-real", nargs="*", default=None, help="Blender scene folders of the real set (FID/KID)")
    ap.add_argument("--inception-weights", default=None, help="torch-fidelity Inception-v3 weights file")
    ap.add_argument("--out", default=None, help="also write the markdown here")
    args = ap.parse_args(argv)
    runs = load_runs(args.run)
    fk = fid_kid_for_runs(runs, args.fid_real, args.inception_weights) if args.fid_real else \
        {"status": "not computed (pass --fid-real with the scene folders and --inception-weights)"}
    text = aggregate_table(runs, fk, args.paper)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
