"""Dream Fields: time of one training iteration of the paper config on CPU, per component.

The system is built from ``experiments/dreamfields.yaml`` (168² render, 192 samples per ray with activation
checkpointing over 1024-ray chunks, the 315,396-parameter MLP, 8 augmentations of 154² crops resized to 224²)
with one change: the guidance CLIP is a *randomly initialised* ViT-B/16 of the real architecture
(``open_clip.create_model("ViT-B-16", pretrained=None)`` through ``CLIPModel(pretrained=None)``), because
real weights are not needed for timing. No retrieval CLIP.

Components of one ``training_step`` (timed in order, synchronous):

* ``render``   camera + rays + volume render (forward; under checkpointing it stores no MLP activations);
* ``clip``     augmentations + CLIP image encoder forward + losses;
* ``backward`` CLIP backward + per-chunk re-computation of the render + MLP backward;
* ``step``     Adam step + origin EMA.

Wall time and process CPU time (``time.process_time``, all threads) are both reported: on a shared machine the
wall time depends on the load (printed), the CPU time much less.

    python benchmarks/dreamfields_iteration_time.py                 # 1 warm-up + 3 timed iterations, 2 threads
    python benchmarks/dreamfields_iteration_time.py --size 84 --iters 2
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_system(configs, size: int, samples: Optional[int]):
    """Parse and instantiate the ``model`` of layered configs (as ``lightning fit`` does)."""
    from common.model_config import build_model

    args = ["--model.init_args.retrieval", "[]",
            "--model.init_args.camera.init_args.height", str(size), "--model.init_args.camera.init_args.width", str(size)]
    if samples:
        args += ["--model.init_args.renderer.init_args.n_samples", str(samples)]
    model = build_model(configs, args)
    for clip in model.guidance.clips:  # random init of the real architecture: open_clip.create_model(..., pretrained=None)
        clip.pretrained, clip.checkpoint = None, None
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "experiments" / "dreamfields.yaml"))
    ap.add_argument("--extra-config", action="append", default=[],
                    help="override file layered after --config (repeatable)")
    ap.add_argument("--size", type=int, default=168, help="training render size (paper: 168)")
    ap.add_argument("--samples", type=int, default=None, help="samples per ray (default: the config's 192)")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    system = build_system([args.config, *args.extra_config], args.size, args.samples)
    system.setup("fit")
    opt = system.configure_optimizers()
    clip = system.guidance.clips[0]
    r = system.renderer
    n_params = sum(p.numel() for p in system.field.parameters())
    print(f"Dream Fields paper config: {args.size}² render, {r.n_samples} samples/ray, chunk {r.chunk} rays "
          f"(checkpointing {r.checkpoint_chunks}), field {n_params:,} params, {system.guidance.augment.n_views} augs -> "
          f"{clip.image_size[0]}² random-init {clip.name}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = {k: [] for k in ("render", "clip", "backward", "step", "total")}
    cpu_rows = {k: [] for k in rows}
    peak_rss = 0
    for it in range(args.warmup + args.iters):
        marks = [("start", time.perf_counter(), time.process_time())]
        view = system.render_training_view()
        marks.append(("render", time.perf_counter(), time.process_time()))
        total, _ = system.compute_losses(view, it)
        marks.append(("clip", time.perf_counter(), time.process_time()))
        total.backward()
        marks.append(("backward", time.perf_counter(), time.process_time()))
        opt.step()
        opt.zero_grad(set_to_none=True)
        system.origin_tracker.update(view.com)
        marks.append(("step", time.perf_counter(), time.process_time()))
        try:
            import resource

            peak_rss = max(peak_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
        except ImportError:  # pragma: no cover
            pass
        line = []
        for (_, w0, c0), (name, w1, c1) in zip(marks, marks[1:]):
            line.append(f"{name} {w1 - w0:.1f}s")
            if it >= args.warmup:
                rows[name].append(w1 - w0)
                cpu_rows[name].append(c1 - c0)
        if it >= args.warmup:
            rows["total"].append(marks[-1][1] - marks[0][1])
            cpu_rows["total"].append(marks[-1][2] - marks[0][2])
        print(f"iter {it}{' (warm-up)' if it < args.warmup else ''}: " + ", ".join(line), flush=True)
    print(f"\n| component | wall s/iter (mean, min) | CPU s/iter (mean) | share of wall |")
    print("|---|---|---|---|")
    tot = statistics.mean(rows["total"])
    for name in rows:
        w = rows[name]
        print(f"| {name} | {statistics.mean(w):.2f}, {min(w):.2f} | {statistics.mean(cpu_rows[name]):.2f} | "
              f"{100 * statistics.mean(w) / tot:.0f}% |")
    print(f"\npeak RSS {peak_rss:.1f} GB; load average now {os.getloadavg()[0]:.1f}; "
          f"{args.iters} timed iterations after {args.warmup} warm-up")


if __name__ == "__main__":
    main()
