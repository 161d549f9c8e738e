"""PureCLIPNeRF speed on CPU: time per optimisation (and per iteration) of Vox Exp and Vox Imp, next to Dream
Fields, at the shapeworld configs.

    python benchmarks/pureclipnerf_speed.py [--threads 2] [--steps 0] [--warmup 3] [--clip shapeworld|tiny]
        [--configs experiments/shapeworld/pureclipnerf.yaml experiments/shapeworld/pureclipnerf_exp.yaml \
                   experiments/shapeworld/dreamfields.yaml]

Each config runs through the suite's CLI exactly as ``lightning fit`` runs it, with its CLIPs swapped for
random-initialised models of the *same* architecture (``--clip shapeworld``: the shapeworld guidance and held-out
CLIP architectures; ``--clip tiny``: the tiny test CLIP), since compute does not depend on the weights and the
trained shapeworld weights may not be shipped yet; no video or mesh callbacks. ``--steps 0`` runs the config's
whole schedule (the grid grows during a run, so a truncated run underestimates); ``--steps N`` times the first N
iterations and adds (schedule − N) × their mean to the fit's time. One row per config: wall and CPU seconds of the fit (CPU = the time of
this process's threads, robust to other load on the machine), per iteration, and per grid size.
Set ``--threads`` to the cores being claimed (2 for the suite's budget) and run on an otherwise idle machine for
wall times.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_CONFIGS = ["experiments/shapeworld/pureclipnerf.yaml", "experiments/shapeworld/pureclipnerf_exp.yaml",
                   "experiments/shapeworld/dreamfields.yaml"]
CLIP_CONFIGS = {"shapeworld": ("shapeworld/configs/shapeworld_clip_guidance.json",
                               "shapeworld/configs/shapeworld_clip_heldout.json"),
                "tiny": ("common/testing/tiny_clip.json", "common/testing/tiny_clip.json")}


def clip_override(kind: str, n_guidance: int) -> str:
    guide, heldout = CLIP_CONFIGS[kind]
    item = "      - class_path: common.priors.CLIPModel\n        init_args: {{name: bench, pretrained: null, model_config: {}, checkpoint: null}}\n"
    return ("model:\n  init_args:\n    guidance:\n      init_args:\n        clip:\n"
            + "".join("  " + line + "\n" for line in item.format(guide).splitlines()) * n_guidance
            + "    retrieval:\n" + item.format(heldout))


def fit(config: str, clip: str, steps: int, run_root: str, callback) -> tuple:
    """``lightning fit`` of ``config`` with the CLIPs swapped and ``steps`` iterations; returns the fit's
    ``(wall seconds, CPU seconds of this process)``."""
    from common.cli import SuiteCLI

    text = Path(config).read_text()
    guidance_block = text.split("guidance:", 1)[1].split("retrieval:", 1)[0] if "guidance:" in text else ""
    n_guidance = max(1, guidance_block.count("class_path: common.priors.CLIPModel"))
    override = Path(run_root) / f"override_{Path(config).stem}.yaml"
    override.write_text(clip_override(clip, n_guidance)
                        + f"trainer:\n  max_steps: {steps}\n  callbacks: []\n  limit_val_batches: 0\n  enable_checkpointing: false\n"
                        + f"data:\n  init_args: {{steps_per_epoch: {steps}}}\n")
    timing = {}

    class TimedCLI(SuiteCLI):
        def before_fit(self) -> None:
            self.trainer.callbacks.append(callback)
            timing["start"], timing["cpu_start"] = time.perf_counter(), time.process_time()

        def after_fit(self) -> None:
            timing["end"], timing["cpu_end"] = time.perf_counter(), time.process_time()

    TimedCLI(args=["fit", "--config", config, "--config", str(override), "--run.root", run_root,
                   "--run.logger", "none", "--trainer.accelerator", "cpu",
                   "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    return timing["end"] - timing["start"], timing["cpu_end"] - timing["cpu_start"]


class StepTimer:
    """Times each training step (batch start -> batch end), scaling steps included."""

    def __init__(self) -> None:
        from lightning.pytorch import Callback

        timer = self

        class _CB(Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                timer._t, timer._c = time.perf_counter(), time.process_time()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                field = getattr(module, "field", None)
                size = tuple(getattr(field, "world_size", ())) if field is not None else ()
                timer.rows.append((time.perf_counter() - timer._t, size, time.process_time() - timer._c))

        self.rows: list = []
        self.callback = _CB()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="iterations to time (0 = the config's max_steps)")
    ap.add_argument("--warmup", type=int, default=3, help="first iterations left out of the per-iteration stats")
    ap.add_argument("--clip", choices=sorted(CLIP_CONFIGS), default="shapeworld")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    import yaml

    print(f"threads={args.threads} clip={args.clip} load average={os.getloadavg()[0]:.1f} "
          f"(wall times are only meaningful on an otherwise idle machine; CPU time counts this process's threads)")
    print("| config | iterations timed | fit wall s | fit CPU s | wall ms/it | CPU ms/it | CPU ms/it per grid size | "
          "est. wall s per optimisation | est. CPU s per optimisation |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as run_root:
        for config in args.configs:
            if not Path(config).is_file():
                print(f"| {config} | missing, skipped | | | | | | | |")
                continue
            planned = int(yaml.safe_load(Path(config).read_text())["trainer"]["max_steps"])
            steps = args.steps or planned
            timer = StepTimer()
            wall, cpu = fit(config, args.clip, steps, run_root, timer.callback)
            rows = timer.rows[args.warmup:] or timer.rows
            wall_it = statistics.fmean(r[0] for r in rows)
            cpu_it = statistics.fmean(r[2] for r in rows)
            per_size: dict = {}
            for _, size, c in rows:
                per_size.setdefault(size, []).append(c)
            sizes = ", ".join(f"{'x'.join(map(str, k)) or '-'}: {1e3 * statistics.median(v):.0f}" for k, v in per_size.items())
            # truncated run: the timed iterations' mean × the schedule + what the fit spent outside iterations
            # (set-up, end-of-fit renders and R-precision), which does not scale with the iteration count
            extra = planned - steps
            est_wall, est_cpu = wall + extra * wall_it, cpu + extra * cpu_it
            print(f"| {config} | {steps} of {planned} | {wall:.1f} | {cpu:.1f} | {1e3 * wall_it:.0f} | {1e3 * cpu_it:.0f} | "
                  f"{sizes} | {est_wall:.0f} | {est_cpu:.0f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
