"""ISS stage 2 on one shapeworld prompt, traced: the guidance loss, L_bg and hit fraction per iteration, and each
snapshot scored by both shapeworld CLIPs on renders with the colour field as background (what stage 2 optimises)
and with misses painted white (what the mesh and the R-precision benchmark show).

    python benchmarks/iss_stage2_trace.py --stage1-ckpt runs/shapeworld-iss_stage1/version_0/checkpoints/last.ckpt \
        --prompt-index 3 [--lr 3e-5] [--lambda-bg 30] [--clip-background white]

Prompt k is the k-th of ``iss.prompts.shapeworld_eval_prompts('heldout')`` (3: "an image of a yellow cone"); the
seed is k, as in benchmarks/iss_rprecision.py. iss/README.md records what this showed.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage1-ckpt", required=True)
    ap.add_argument("--prompt-index", type=int, default=3)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--lambda-bg", type=float, default=None)
    ap.add_argument("--clip-background", choices=["field", "white"], default=None)
    ap.add_argument("--config", default=str(ROOT / "experiments/shapeworld/iss.yaml"), help="stage-2 config")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from iss.clip_features import embed_renders
    from iss.metrics import clip_r_precision
    from iss.prompts import shapeworld_eval_prompts
    from iss.stage2 import white_background
    from iss_rprecision import build_system

    bench = argparse.Namespace(config=args.config, stage1_ckpt=args.stage1_ckpt,
                               svr_ckpt=None, ei_svr_ckpt=None, lambda_bg=args.lambda_bg, views=8, iters=None,
                               lr=args.lr, clip_background=args.clip_background)
    s = build_system(bench)
    s.hparams.snapshot_iters = [2, 5, 10, 15]
    ps = shapeworld_eval_prompts("heldout")
    k = args.prompt_index
    prompt, true = ps.prompts[k], ps.true_index[k]
    x, _ = s.text_features(prompt)
    res = s.optimise(prompt, seed=k)
    h = s.hparams
    print(f"{prompt!r}: lr {h.lr:g}, λ_bg {h.lambda_bg:g}, clip_background {h.clip_background}")
    for key in ("loss_clip", "loss_bg", "hit_fraction"):
        print(f"{key:12s}", " ".join(f"{v:.3f}" for v in res["history"][key]))
    codes = {"stage 1": s.stage1_code(x), **{f"it {i}": v["code"] for i, v in res["snapshots"].items()},
             f"it {h.n_iters}": res["code"]}
    cams = s.views.ring(h.n_eval_views).scale_translation(h.cam_scale)  # evaluate_code's views
    clips = {"held-out": s.eval_clip, "guidance": s.clip}
    texts = {n: F.normalize(c.encode_text([prompt]).float(), dim=-1) for n, c in clips.items()}
    print("| shape | held-out R@1 (white) | cos held-out field / white | cos guidance field / white | hit fraction |\n"
          "|---|---|---|---|---|")
    for name, code in codes.items():
        with torch.no_grad():  # one render per shape, scored with either background
            out = s.renderer.render_image(s.decoder, code.reshape(1, -1).expand(len(cams), -1), cams, h.eval_res or 64,
                                          ray_chunk=4096)
            field = out.chw()
            white = white_background(out.rgb, out.hit).clamp(0, 1).permute(0, 3, 1, 2)  # as Stage2System.render_code
            cos = {n: [(embed_renders(c, im, h.clip_resize_mode, h.clip_norm) @ texts[n].T).mean().item() for im in (field, white)]
                   for n, c in clips.items()}
            r_at_1 = clip_r_precision(s.eval_clip, white, ps.pool, [int(true)] * len(cams)).value
        print(f"| {name} | {r_at_1:.2f} | {cos['held-out'][0]:.2f} / {cos['held-out'][1]:.2f} | "
              f"{cos['guidance'][0]:.2f} / {cos['guidance'][1]:.2f} | {out.hit.float().mean():.3f} |")

if __name__ == "__main__":
    main()
