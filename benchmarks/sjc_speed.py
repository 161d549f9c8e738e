"""SJC speed on CPU: render + backward of the paper's 100³ latent grid at 64×64, and one full shapeworld step.

1. **Render + backward** (the part of an SJC iteration that does not depend on the diffusion model; a
   tiny random SD of the real shapes would not say anything about SD's own cost): a random training
   camera, the fixed-step renderer (≈300 samples per ray, 4096 rays), the emptiness loss and a random
   image-space gradient, backward into the 100³×(1 + 4) grids. With and without the 1e-4 weight
   threshold, at 1 and 2 threads.
2. **shapeworld step**: one complete SJC iteration of ``experiments/shapeworld/sjc.yaml`` (64³ RGB grid,
   32×32 render, CFG UNet call of the shapeworld prior's architecture). Uses the real prior if it is
   shipped, else random weights of the same architecture (``experiments/shapeworld/train_diffusion.yaml``),
   which cost the same; prints the projected time of the configured run length.

Times are wall-clock medians and process CPU time per iteration (the CPU column is robust to other jobs
on the machine). Usage::

    python benchmarks/sjc_speed.py [--iters 5] [--threads 1 2] [--skip-shapeworld]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.losses import emptiness_loss  # noqa: E402
from sjc.background import SphericalBackground  # noqa: E402
from sjc.cameras import SJCCameraSampler  # noqa: E402
from sjc.field import SJCVoxelField  # noqa: E402
from sjc.renderer import SJCRenderer  # noqa: E402


def _time(fn, iters: int):
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(iters):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def bench_render(iters: int, threads: int, weight_thresh: float, resolution: int = 100, size: int = 64):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    field, bg = SJCVoxelField(resolution=resolution, channels=4), SphericalBackground(4)
    renderer, cams = SJCRenderer(weight_thresh=weight_thresh), SJCCameraSampler(size=size)
    gen = torch.Generator().manual_seed(0)
    info = {}

    def step():
        cam = cams.sample(gen)
        out = renderer(field, *cam.rays(), background=bg)
        g = torch.randn_like(out.image)
        loss = -(g * out.image).sum() + 1e4 * emptiness_loss(out.weights)
        field.zero_grad(set_to_none=True)
        loss.backward()
        info["k"] = out.n_samples
        info["evaluated"] = int((out.weights > weight_thresh).sum()) if weight_thresh > 0 else int((out.weights > 0).sum())

    wall, cpu = _time(step, iters)
    return wall, cpu, info


def save_shapeworld_like_pipeline(path: Path) -> Path:
    """Random weights of the shapeworld prior's architecture (train_diffusion.yaml) as a pipeline folder."""
    import json

    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from common.testing.tiny_models import write_toy_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=128,
        attention_head_dim=8, norm_num_groups=16)
    tok = write_toy_tokenizer(path / "tokenizer", 16)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                                        num_attention_heads=4, max_position_embeddings=16, bos_token_id=len(tok) - 2,
                                        eos_token_id=len(tok) - 1, pad_token_id=len(tok) - 1))
    unet.save_pretrained(path / "unet")
    text.save_pretrained(path / "text_encoder")
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear").save_pretrained(
        path / "scheduler")
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "DiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"]}))
    return path


def bench_shapeworld(iters: int, threads: int, config: str = "experiments/shapeworld/sjc.yaml"):
    import yaml

    from common.model_config import model_from_section

    torch.set_num_threads(threads)
    cfg = yaml.safe_load((ROOT / config).read_text())
    model_cfg = cfg["model"]
    diff = model_cfg["init_args"]["guidance"]["init_args"]["diffusion"]["init_args"]
    real = (ROOT / diff["model"] / "model_index.json").is_file()
    tmp = None
    if not real:
        tmp = tempfile.TemporaryDirectory()
        diff["model"] = str(save_shapeworld_like_pipeline(Path(tmp.name)))
    system = model_from_section(model_cfg)
    system.total_steps = cfg["trainer"]["max_steps"]
    system.setup("fit")
    opt = system.configure_optimizers()
    step = {"i": 0}

    def one():
        loss = system.training_step({"index": torch.tensor(step["i"])}, step["i"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step["i"] += 1

    wall, cpu = _time(one, iters)
    if tmp is not None:
        tmp.cleanup()
    return wall, cpu, real, cfg["trainer"]["max_steps"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--skip-shapeworld", action="store_true")
    a = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} default threads")
    print("\n| benchmark | threads | weight_thresh | wall s/iter | CPU s/iter | notes |")
    print("|---|---|---|---|---|---|")
    for threads in a.threads:
        for thr in (1e-4, 0.0):
            wall, cpu, info = bench_render(a.iters, threads, thr)
            print(f"| render+backward 100³×(1+4), 64×64 | {threads} | {thr:g} | {wall:.3f} | {cpu:.3f} | "
                  f"k = {info['k']} samples/ray, {info['evaluated']} feature look-ups |")
    if not a.skip_shapeworld:
        for threads in a.threads:
            wall, cpu, real, n = bench_shapeworld(a.iters, threads)
            src = "shipped prior" if real else "random weights, same architecture"
            print(f"| shapeworld SJC step (64³ RGB, 32×32, CFG) | {threads} | 1e-4 | {wall:.3f} | {cpu:.3f} | "
                  f"{src}; {n} steps ≈ {n * wall / 60:.1f} min wall |")


if __name__ == "__main__":
    main()
