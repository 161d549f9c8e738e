"""Seconds per DietNeRF step with and without the semantic consistency loss, and the share of a semantic
step spent in CLIP (forward + backward through φ).

CLIP is open_clip's ViT-B/32 architecture with random weights (``create_model("ViT-B-32", pretrained=None)``
through :class:`common.priors.clip.CLIPModel`): timing does not need real weights. The posed images are
random 400×400 images with cameras from π, so no dataset is needed either.

    python benchmarks/dietnerf_speed.py                      # paper scale on CPU (slow: minutes per semantic step)
    python benchmarks/dietnerf_speed.py --scale shapeworld   # the experiments/shapeworld/dietnerf.yaml networks
    python benchmarks/dietnerf_speed.py --device cuda

Reported per step: wall-clock seconds and process CPU seconds (on a shared machine the CPU time is the
steadier number). "amortised" is the mean step time with the loss every K steps: ((K−1)·t_mse + t_sc)/K.
"""

import argparse
import os
import time

import torch

from common.priors.clip import CLIPModel
from dietnerf.data import PosedImages
from dietnerf.field import NeRFMLPField
from dietnerf.hierarchical import HierarchicalRenderer
from dietnerf.poses import PoseSampler
from dietnerf.rays import blender_intrinsics
from dietnerf.semantic import SemanticEncoder
from dietnerf.system import DietNeRFSystem

SCALES = {
    # image size, field kwargs, coarse, fine, rays per step, semantic grid
    "paper": dict(size=400, field={}, n_samples=64, n_importance=128, batch_rays=1024, grid=168),
    "shapeworld": dict(size=64, field=dict(pos_freqs=6, dir_freqs=2, width=64, depth=4, skips=[2], view_width=32),
                       n_samples=32, n_importance=32, batch_rays=256, grid=28),
}


class Clock:
    def __init__(self, device):
        self.device = device

    def now(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()


def build(scale: dict, device: torch.device, semantic_size: int) -> DietNeRFSystem:
    torch.manual_seed(0)
    clip = CLIPModel(name="ViT-B-32", pretrained=None, precision="fp16" if device.type == "cuda" else "fp32")
    system = DietNeRFSystem(
        NeRFMLPField(**scale["field"]), NeRFMLPField(**scale["field"]),
        HierarchicalRenderer(scale["n_samples"], scale["n_importance"], checkpoint=True),
        SemanticEncoder(clip), PoseSampler(), semantic_rows=semantic_size, semantic_cols=semantic_size,
        batch_rays=scale["batch_rays"], precrop_iters=0, compute_lpips=False)
    s = scale["size"]
    c2w = PoseSampler().sample(8, torch.Generator().manual_seed(0))
    focal = 0.5 * s / torch.tan(torch.tensor(0.5 * 0.6911112)).item()
    views = PosedImages(torch.rand(8, s, s, 3), c2w, blender_intrinsics(focal, s, s).expand(8, 4).clone(), list(range(8)), [])
    system = system.to(device)
    system.attach_views(views, c2w)
    system.encoder.load()
    system.train()
    system.compute_targets()
    return system


def mse_step(system, opt):
    o, d, rgb = system.sample_train_rays(10_000)
    out = system.render(o, d)
    loss = sum(system.compute_losses(out, rgb).values())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def semantic_step(system, opt, clock):
    """One step with L_SC; returns the phase times (wall, cpu) of render, CLIP forward, backward."""
    t0 = clock.now()
    o, d, rgb = system.sample_train_rays(10_000)
    out = system.render(o, d)
    loss = sum(system.compute_losses(out, rgb).values())
    sem = system.semantic_render()
    t1 = clock.now()
    target = system._targets[:1]
    imgs = [rp.rgb.permute(2, 0, 1)[None] for rp in (sem.fine, sem.coarse)]
    feats = [system.encoder(im) for im in imgs]
    t2 = clock.now()
    loss = loss + sum(0.1 * (1 - torch.cosine_similarity(target, f).mean()) for f in feats)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    t3 = clock.now()
    return [(b[0] - a[0], b[1] - a[1]) for a, b in ((t0, t1), (t1, t2), (t2, t3), (t0, t3))]


def clip_backward_time(system, n_rows, clock):
    """Time of CLIP's backward alone: forward+backward on leaf images minus forward (2 images, as a step)."""
    x = torch.rand(2, 1, 3, n_rows, n_rows, device=system.device)
    target = system._targets[:1]
    f0 = clock.now()
    with torch.no_grad():
        [system.encoder(x[i]) for i in range(2)]
    f1 = clock.now()
    xs = [x[i].clone().requires_grad_(True) for i in range(2)]
    b0 = clock.now()
    sum((1 - torch.cosine_similarity(target, system.encoder(xi)).mean()) for xi in xs).backward()
    b1 = clock.now()
    return (b1[0] - b0[0]) - (f1[0] - f0[0]), (b1[1] - b0[1]) - (f1[1] - f0[1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(SCALES), default="paper")
    ap.add_argument("--semantic-size", type=int, default=None, help="semantic grid side (default: the scale's)")
    ap.add_argument("--mse-steps", type=int, default=3)
    ap.add_argument("--semantic-steps", type=int, default=1)
    ap.add_argument("--every", type=int, default=10, help="K")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    scale = SCALES[args.scale]
    n = args.semantic_size or scale["grid"]
    system = build(scale, device, n)
    clock = Clock(device)
    opt = torch.optim.Adam([p for p in system.parameters() if p.requires_grad], lr=5e-4)
    mse_step(system, opt)  # warm-up
    t0 = clock.now()
    for _ in range(args.mse_steps):
        mse_step(system, opt)
    t1 = clock.now()
    t_mse = ((t1[0] - t0[0]) / args.mse_steps, (t1[1] - t0[1]) / args.mse_steps)
    phases = [semantic_step(system, opt, clock) for _ in range(args.semantic_steps)]
    mean = lambda i, j: sum(p[i][j] for p in phases) / len(phases)  # noqa: E731
    clip_bwd = clip_backward_time(system, n, clock)
    clip_total = (mean(1, 0) + clip_bwd[0], mean(1, 1) + clip_bwd[1])
    t_sc = (mean(3, 0), mean(3, 1))
    k = args.every
    amort = tuple(((k - 1) * t_mse[j] + t_sc[j]) / k for j in range(2))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nDietNeRF step time, scale={args.scale} ({scale['size']}^2 images, {scale['n_samples']}+{scale['n_importance']} "
          f"samples, {scale['batch_rays']} rays, semantic {n}x{n} -> CLIP ViT-B/32 224^2), device={device}, "
          f"threads={args.threads}, load average {load:.1f}")
    print("| step | wall s | CPU s |\n|---|---|---|")
    print(f"| L_MSE only | {t_mse[0]:.3f} | {t_mse[1]:.3f} |")
    print(f"| L_MSE + L_SC | {t_sc[0]:.3f} | {t_sc[1]:.3f} |")
    print(f"|   semantic render (fwd) + MSE batch | {mean(0, 0):.3f} | {mean(0, 1):.3f} |")
    print(f"|   CLIP forward (2 images) | {mean(1, 0):.3f} | {mean(1, 1):.3f} |")
    print(f"|   CLIP backward (2 images) | {clip_bwd[0]:.3f} | {clip_bwd[1]:.3f} |")
    print(f"|   backward + Adam (whole step) | {mean(2, 0):.3f} | {mean(2, 1):.3f} |")
    print(f"| amortised, K={k} | {amort[0]:.3f} | {amort[1]:.3f} |")
    print(f"\nshare of the semantic step in CLIP: {100 * clip_total[0] / t_sc[0]:.1f}% (wall), "
          f"{100 * clip_total[1] / t_sc[1]:.1f}% (CPU); semantic/MSE step: {t_sc[1] / t_mse[1]:.1f}x (CPU)")


if __name__ == "__main__":
    main()
