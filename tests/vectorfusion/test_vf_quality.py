"""SDS through the rasterizer moves the SVG the right way: with an oracle denoiser whose data
distribution is one target image, ε̂(z_t) = (z_t − α_t x*)/σ_t, the SDS gradient is
w(t) α_t (z − x*)/σ_t, so optimising the paths must bring the render closer to x*."""

import torch
from lightning.pytorch import Trainer

from common.data import CameraDataModule
from common.guidance.sds import SDSGuidance
from common.priors.diffusion import DiffusionModel
from vectorfusion.primitives import IconPaths
from vectorfusion.schedules import SDSSchedule
from vectorfusion.system import ReinitSettings, VectorFusionSystem


def _target(size: int = 16) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    disc = (((xs - size / 2) ** 2 + (ys - size / 2) ** 2).sqrt() < size / 3).float()
    img = torch.ones(1, 3, size, size)
    img[0, 1:] -= disc  # a red disc on white
    return img


def test_sds_with_an_oracle_denoiser_pulls_the_svg_towards_the_target(tmp_path):
    target = _target()
    diffusion = DiffusionModel("tiny:pixel")
    guidance = SDSGuidance(diffusion, guidance_scale=1.0, t_min=50, t_max=950, resolution=16)
    x_star = 2 * target - 1  # model space of a pixel model

    def oracle(z_t, t, context=None, guidance_scale=1.0):
        ab = diffusion.alpha_bar.to(z_t)[t].view(-1, 1, 1, 1)
        return (z_t - ab.sqrt() * x_star) / (1 - ab).sqrt()

    prim = IconPaths(num_paths=8, canvas=64.0, radius=8.0, seed=1)
    system = VectorFusionSystem(guidance, prim, prompt="a red disc", prompt_suffix="", init="scratch", augment=False,
                                render_size=32, reinit=ReinitSettings(enabled=False),
                                schedule=SDSSchedule(point_lr_init=0.5, point_lr_max=0.5, point_lr_final=0.5,
                                                     point_warmup=1, color_ratio=0.05))
    diffusion.load()
    diffusion.predict_noise = oracle

    def mse() -> float:
        with torch.no_grad():
            img = torch.nn.functional.interpolate(prim.render(system.rasterizer, 32), size=16, mode="bilinear",
                                                  antialias=True)
        return float(((img - target) ** 2).mean())

    before = mse()
    Trainer(max_steps=30, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path)).fit(
        system, CameraDataModule(steps_per_epoch=40))
    after = mse()
    assert after < 0.5 * before, (before, after)
