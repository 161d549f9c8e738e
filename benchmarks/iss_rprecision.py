"""ISS on shapeworld: R-precision of stage 2 against stage 1 only, scored by the held-out CLIP.

For each shapeworld evaluation prompt (``iss.prompts.shapeworld_eval_prompts``: the 10 held-out (kind, colour) pairs in the
held-out phrasing "an image of a red cube", or all 66 with ``--prompts all``):

* stage 1 only — the text feature fed to the stage-1 mapper without optimisation, ``D(·, M(f_T))`` (the paper's
  "w/o stage 2" row);
* stage 2 — after the test-time optimisation of the mapper with the *guidance* CLIP.

Both shapes are rendered from ``--views`` ring views (64², white background) and every view retrieves among the 66
"a {colour} {shape}" captions with the *held-out* shapeworld CLIP (never used for guidance); R-precision@1 is the
fraction of views whose top caption is the prompt's pair. The bar (iss/README.md): stage 2 ≥ stage 1 only.

Needs the trained chain and both shipped shapeworld CLIPs::

    lightning fit --config experiments/shapeworld/iss_svr.yaml
    lightning fit --config experiments/shapeworld/iss_stage1.yaml --model.init_args.svr_ckpt runs/shapeworld-iss_svr/version_0/checkpoints/last.ckpt
    python benchmarks/iss_rprecision.py --stage1-ckpt runs/shapeworld-iss_stage1/version_0/checkpoints/last.ckpt

(the same numbers come out of ``lightning fit --config experiments/shapeworld/iss.yaml`` in ``stage2_metrics.json``).

Ablations of Table 1 (spec §10.3): ``--svr-ckpt <stage-0 ckpt>`` instead of ``--stage1-ckpt`` is "w/o stage 1" (random
``M``, the SVR decoder without ``L_bg`` fine-tuning); ``--lambda-bg 0`` is "w/o L_bg2".
"""

import argparse
import json
import time
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--stage1-ckpt", help="ISS: the stage-1 checkpoint")
    src.add_argument("--svr-ckpt", help="the 'w/o stage 1' ablation: stage-0 decoder, random mapper (its 'stage 1' row is the "
                                        "random mapper)")
    src.add_argument("--ei-svr-ckpt", help="the E_I + D baseline: an SVR checkpoint of experiments/shapeworld/iss_svr_clip.yaml; "
                                           "each prompt's shape is D(·, normalize(f_T)), no mapper, no optimisation")
    ap.add_argument("--lambda-bg", type=float, default=None, help="stage-2 λ_bg (0: the 'w/o L_bg2' ablation; default: the config's 3)")
    ap.add_argument("--config", default=str(ROOT / "experiments/shapeworld/iss.yaml"), help="stage-2 config for the sizes")
    ap.add_argument("--prompts", choices=["heldout", "all"], default="heldout")
    ap.add_argument("--iters", type=int, default=None, help="override n_iters (default: the config's 20)")
    ap.add_argument("--lr", type=float, default=None, help="override the stage-2 Adam learning rate (default: the config's; the code's is 1e-4)")
    ap.add_argument("--clip-background", choices=["field", "white"], default=None,
                    help="what the guidance CLIP sees on missed rays (default: the config's; 'field' is the code, 'white' "
                         "stops stage 2 painting the prompt into the off-surface colour field, iss/README.md)")
    ap.add_argument("--guidance-score", action="store_true",
                    help="also score every shape with the guidance CLIP (a diagnostic: does stage 2 fool only the CLIP it "
                         "optimises?); the table's figures stay held-out")
    ap.add_argument("--views", type=int, default=8, help="evaluation views per shape")
    ap.add_argument("--start", type=int, default=0, help="first prompt (index into --prompts)")
    ap.add_argument("--stride", type=int, default=1,
                    help="every k-th prompt from --start (with --prompts all, a stride coprime to 6, e.g. 5, varies the colours)")
    ap.add_argument("--limit", type=int, default=None, help="score at most N prompts (a smoke run)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write per-prompt rows here")
    ap.add_argument("--summarise", nargs="+", metavar="JSON", default=None,
                    help="print the table of earlier --json files, pooled (e.g. several --start/--stride subsets); runs nothing")
    args = ap.parse_args()
    if args.summarise:
        rows = [row for f in args.summarise for row in json.loads(Path(f).read_text())]
        seen = [r["prompt"] for r in rows]
        if len(set(seen)) != len(seen):
            raise SystemExit("the --summarise files share prompts; pool disjoint subsets only")
        report(rows)
        return
    if not (args.stage1_ckpt or args.svr_ckpt or args.ei_svr_ckpt):
        ap.error("give --stage1-ckpt, --svr-ckpt or --ei-svr-ckpt (or --summarise JSON files)")
    if args.threads:
        torch.set_num_threads(args.threads)

    from common.io import atomic_write_text
    from common.priors.base import PriorWeightsNotFoundError
    from iss.prompts import shapeworld_eval_prompts
    from shapeworld.priors import clip_paths

    for role in ("guidance", "heldout"):
        if not clip_paths(role)[1].is_file():
            raise PriorWeightsNotFoundError(f"the shapeworld {role} CLIP is not shipped yet ({clip_paths(role)[1]}); "
                                            "train it (shapeworld/README.md) before measuring R-precision")
    system = build_system(args)
    ps = shapeworld_eval_prompts(args.prompts)
    rows = []
    if args.start < 0 or args.stride < 1:
        raise SystemExit(f"need --start >= 0 and --stride >= 1, got {args.start} and {args.stride}")
    chosen = list(range(len(ps.prompts)))[args.start::args.stride][:args.limit]
    for i in chosen:  # i seeds the prompt's cameras, as in stage 2 runs of the whole list
        prompt, true = ps.prompts[i], ps.true_index[i]
        x, _ = system.text_features(prompt)
        if args.ei_svr_ckpt:  # E_I + D: the text feature in place of the image feature [P]
            rows.append({"prompt": prompt, "ei_d": system.evaluate_code(x[0], prompt, ps.pool, true)})
            print(f"{prompt:40s} E_I + D R@1 {rows[-1]['ei_d']['r_precision']:.2f} sim {rows[-1]['ei_d']['clip_similarity']:.3f}",
                  flush=True)
        else:
            start = time.perf_counter()
            res = system.optimise(prompt, seed=i)
            seconds = time.perf_counter() - start
            codes = {"stage1": system.stage1_code(x), **{f"stage2_it{k}": v["code"] for k, v in sorted(res["snapshots"].items())},
                     "stage2": res["code"]}
            scores = {stage: system.evaluate_code(code, prompt, ps.pool, true) for stage, code in codes.items()}
            if args.guidance_score:
                for stage, code in codes.items():
                    g = system.evaluate_code(code, prompt, ps.pool, true, clip=system.clip)
                    scores[stage].update(guidance_r_precision=g["r_precision"], guidance_clip_similarity=g["clip_similarity"])
            s1, s2 = scores["stage1"], scores["stage2"]
            rows.append({"prompt": prompt, **scores, "seconds": seconds, "history": res["history"]})
            print(f"{prompt:40s} stage1 R@1 {s1['r_precision']:.2f} sim {s1['clip_similarity']:.3f} | "
                  f"stage2 R@1 {s2['r_precision']:.2f} sim {s2['clip_similarity']:.3f} | {rows[-1]['seconds']:.0f} s", flush=True)
        if args.json:  # after every prompt, so that an interrupted run keeps what it measured
            atomic_write_text(Path(args.json), json.dumps(rows, indent=2))
    labels = {"ei_d": "E_I + D (normalize(f_T) → D, no optimisation)",
              "stage1": "random M, stage-0 D (no optimisation)" if args.svr_ckpt else "stage 1 only (M(f_T), no optimisation)",
              "stage2": f"stage 2 ({system.hparams.n_iters} iterations)"}
    report(rows, labels)


def report(rows: list, labels: Optional[dict] = None) -> None:
    """Print the table of per-prompt rows: R@1 with its standard error over prompts (the views of one shape are not
    independent), the colour/shape parts of the retrieved captions, similarity, and the paired stage 2 − stage 1."""
    import statistics

    from common.metrics import mean_sem
    from iss.prompts import shapeworld_eval_prompts

    ps = shapeworld_eval_prompts("all")
    pairs = {p: ps.pool[t] for p, t in zip(ps.prompts, ps.true_index)}  # the prompt's "a {colour} {shape}" caption
    labels = {"stage1": "stage 1 only (M(f_T), no optimisation)", "stage2": "stage 2 (final iteration)", **(labels or {})}

    def part_accuracy(stage: str, part: int) -> float:
        """Fraction of views whose retrieved caption has the prompt's colour (part 0) or shape (part 1)."""
        split = lambda c: (c.split(" ", 2)[1], c.split(" ", 2)[2])  # noqa: E731  "a red cube" → ("red", "cube")
        hits = [split(c)[part] == split(pairs[r["prompt"]])[part] for r in rows for c in r[stage]["retrieved"]]
        return sum(hits) / len(hits)

    views = len(rows[0][next(k for k in rows[0] if k.startswith("stage") or k == "ei_d")]["retrieved"])
    print(f"\n| | R-precision@1 ± s.e. over prompts (held-out CLIP, {len(rows)} prompts × {views} views) | colour read right "
          f"| shape read right | CLIP similarity |\n|---|---|---|---|---|")
    stages = [k for k in rows[0] if k.startswith("stage") or k == "ei_d"]
    for stage in stages:
        p, se = mean_sem([r[stage]["r_precision"] for r in rows])
        sim = statistics.mean(r[stage]["clip_similarity"] for r in rows)
        label = labels.get(stage) or (f"stage 2 after {stage.split('_it')[1]} iterations (the code's intermediate checkpoint)"
                                      if "_it" in stage else stage)
        guided = ""
        if "guidance_r_precision" in rows[0][stage]:
            gp = statistics.mean(r[stage]["guidance_r_precision"] for r in rows)
            gs = statistics.mean(r[stage]["guidance_clip_similarity"] for r in rows)
            guided = f" guidance CLIP: R@1 {100 * gp:.1f} %, similarity {gs:.3f} |"
        print(f"| {label} | {100 * p:.1f} ± {100 * se:.1f} % | {100 * part_accuracy(stage, 0):.1f} % "
              f"| {100 * part_accuracy(stage, 1):.1f} % | {sim:.3f} |{guided}")
    if "stage1" in stages and "stage2" in stages:  # the bar: stage 2 ≥ stage 1, paired by prompt
        d = [r["stage2"]["r_precision"] - r["stage1"]["r_precision"] for r in rows]
        m, se = mean_sem(d)
        print(f"stage 2 − stage 1, paired by prompt: {100 * m:+.1f} ± {100 * se:.1f} points (t = {m / se:.2f}); "
              f"stage 2 ahead on {sum(x > 0 for x in d)}, behind on {sum(x < 0 for x in d)}, level on {sum(x == 0 for x in d)}")
    if "seconds" in rows[0]:
        print(f"seconds per prompt (stage 2): {statistics.mean(r['seconds'] for r in rows):.1f}")


def build_system(args):
    """The Stage2System of the config with its stage-1 checkpoint (the CLI's own parser builds the classes)."""
    from common.model_config import instantiate, model_parser
    from iss.stage2 import Stage2System

    parser = model_parser()
    cfg = parser.parse_args(["--config", args.config])
    cfg.model.init_args.stage1_ckpt = args.stage1_ckpt
    cfg.model.init_args.svr_ckpt = args.svr_ckpt or args.ei_svr_ckpt
    if args.ei_svr_ckpt:  # D takes CLIP-width codes: size the decoder (and the unused mapper) by the checkpoint
        from iss.checkpoints import read_checkpoint

        meta = read_checkpoint(args.ei_svr_ckpt, "ISS E_I + D SVR", "--ei-svr-ckpt")[1]
        if meta.get("encoder") != "clip":
            raise SystemExit(f"{args.ei_svr_ckpt} is not an E_I + D checkpoint (experiments/shapeworld/iss_svr_clip.yaml)")
        cfg.model.init_args.decoder.init_args.c_dim = cfg.model.init_args.mapper.init_args.c_dim = int(meta["c_dim"])
    if args.lambda_bg is not None:
        cfg.model.init_args.lambda_bg = args.lambda_bg
    cfg.model.init_args.n_eval_views = args.views
    if args.iters is not None:
        cfg.model.init_args.n_iters = args.iters
    if args.lr is not None:
        cfg.model.init_args.lr = args.lr
    if args.clip_background is not None:
        cfg.model.init_args.clip_background = args.clip_background
    system = instantiate(parser, cfg).model
    if not isinstance(system, Stage2System):
        raise SystemExit(f"{args.config} configures {type(system).__name__}, not the ISS stage-2 Stage2System")
    system.load_pretrained()
    return system.eval()


if __name__ == "__main__":
    main()
