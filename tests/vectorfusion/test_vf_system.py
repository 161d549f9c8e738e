"""The VectorFusion LightningModule: SDS gradient path, LIVE stages, reinit on schedule, bad input."""

import logging

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from common.data import CameraDataModule
from common.guidance.sds import SDSGuidance
from common.priors.clip import CLIPModel
from common.priors.diffusion import DiffusionModel
from common.testing.tiny_models import TINY_CLIP_CONFIG
from vectorfusion.callbacks import VectorFusionMedia
from vectorfusion.live import LIVESettings
from vectorfusion.primitives import IconPaths, PixelGrid, SketchStrokes
from vectorfusion.sampling import RasterSampler
from vectorfusion.styles import circle_points
from vectorfusion.svg import read_svg
from vectorfusion.system import NonFiniteParametersError, ReinitSettings, VectorFusionSystem, join_prompt


def guidance() -> SDSGuidance:
    return SDSGuidance(DiffusionModel("tiny:sd"), guidance_scale=100.0, t_min=50, t_max=950, resolution=32)


def icon_system(num_paths=5, init="scratch", reinit=ReinitSettings(enabled=False), **kw) -> VectorFusionSystem:
    prim = IconPaths(num_paths=num_paths, canvas=64.0, radius=8.0, seed=0)
    sampler = None
    if init == "raster":
        clip = CLIPModel(name="tiny", pretrained=None, model_config=TINY_CLIP_CONFIG)
        sampler = RasterSampler(clip, num_samples=2, steps=2)
    return VectorFusionSystem(guidance(), prim, prompt="a red cube", init=init, sampler=sampler, augment=False,
                              render_size=32, reinit=reinit, **kw)


def fit(system, steps, tmp_path, callbacks=()):
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      default_root_dir=str(tmp_path), callbacks=list(callbacks))
    trainer.fit(system, CameraDataModule(steps_per_epoch=steps + 10))
    return trainer


class AtStep(Callback):
    """Run ``fn(module, optimizer)`` at the start and/or the end of given global steps."""

    def __init__(self, start=None, end=None):
        self.start, self.end = start or {}, end or {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step in self.start:
            self.start.pop(trainer.global_step)(module, trainer.optimizers[0])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step in self.end:
            self.end.pop(trainer.global_step)(module, trainer.optimizers[0])


def test_join_prompt_and_style_suffix():
    s = icon_system()
    assert s.prompt_full.startswith("a red cube. minimal flat 2d vector icon")
    assert join_prompt("A cat.", "") == "A cat."
    with pytest.raises(ValueError, match="Empty prompt"):
        VectorFusionSystem(guidance(), IconPaths(num_paths=2), prompt="  ", init="scratch")
    with pytest.raises(ValueError, match="always starts from scratch"):
        VectorFusionSystem(guidance(), SketchStrokes(num_paths=2), prompt="a cat", init="raster",
                           sampler=RasterSampler(None, num_samples=1))


def test_optimiser_groups():
    opt = icon_system().configure_optimizers()
    assert [g["name"] for g in opt.param_groups] == ["points", "colors", "background"]
    assert all(g["betas"] == (0.9, 0.9) and g["eps"] == 1e-6 for g in opt.param_groups)
    pixel = VectorFusionSystem(guidance(), PixelGrid(rows=2, cols=2), prompt="a cat", init="scratch")
    assert [g["name"] for g in pixel.configure_optimizers().param_groups] == ["pixels"]


def test_sds_gradient_reaches_points_and_colours_not_the_unet_or_vae():
    s = icon_system()
    s.setup("fit")
    x = s.primitives.render(s.rasterizer, 32)
    loss = s.guidance(x, s.context, generator=torch.Generator().manual_seed(0))["loss_sds"]
    loss.backward()
    prim = s.primitives
    assert prim.points.grad.abs().sum() > 0 and prim.rgba.grad.abs().sum() > 0 and prim.background.grad is not None
    d = s.guidance.diffusion
    for net in (d.unet, d.vae, d._nets["text_encoder"]):
        assert all(not p.requires_grad and p.grad is None for p in net.parameters())
    assert next(d.vae.parameters()).dtype == torch.float32  # encoder Jacobian in fp32
    assert not any(k.startswith(("guidance", "sampler")) for k in s.state_dict())  # priors stay out of checkpoints


def test_training_step_backpropagates_into_the_svg(tmp_path):
    s = icon_system()
    grads = []
    s.primitives.points.register_hook(lambda g: grads.append(g.clone()))
    start = s.primitives.points.detach().clone()
    fit(s, 2, tmp_path)
    assert len(grads) == 2 and all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert not torch.equal(start, s.primitives.points.detach())


def test_reinit_replaces_exactly_the_paths_under_threshold_and_resets_their_adam_state(tmp_path):
    s = icon_system(reinit=ReinitSettings(every=2, stop=4, alpha_threshold=0.05, area_threshold=30.0))
    seen = {}

    def spoil(module, opt):  # row 0 nearly transparent, row 1 tiny (area ~2.7 px² < 30)
        with torch.no_grad():
            module.primitives.rgba[0, 3] = 0.01
            module.primitives.points[1] = circle_points(module.primitives.points[1].mean(0, keepdim=True), 1.0)[0]
        seen["before"] = module.primitives.points.detach().clone()

    def check(module, opt):
        seen["order"] = module.primitives.order.clone()
        seen["points"] = module.primitives.points.detach().clone()
        seen["rgba"] = module.primitives.rgba.detach().clone()
        seen["exp_avg"] = opt.state[module.primitives.points]["exp_avg"].clone()
        seen["exp_avg_rgba"] = opt.state[module.primitives.rgba]["exp_avg"].clone()
        seen["step"] = float(opt.state[module.primitives.points]["step"])

    def spoil_late(module, opt):  # done = 4 == stop: no reinit any more
        with torch.no_grad():
            module.primitives.rgba[2, 3] = 0.01

    fit(s, 4, tmp_path, [AtStep(start={1: spoil, 3: spoil_late}, end={2: check})])
    assert seen["order"].tolist() == [2, 3, 4, 0, 1]
    for row in (0, 1):
        rel = seen["points"][row] - seen["points"][row].mean(0)
        assert torch.allclose(rel.norm(dim=-1), torch.full((12,), 8.0), atol=1e-3)  # a new radius-8 circle
        assert 0.7 <= float(seen["rgba"][row, 3]) <= 1.0
    assert torch.allclose(seen["points"][2:], seen["before"][2:], atol=0.5)  # survivors only moved by Adam
    assert seen["exp_avg"][:2].abs().max() == 0 and seen["exp_avg"][2:].abs().min() > 0
    assert seen["exp_avg_rgba"][:2].abs().max() == 0 and seen["exp_avg_rgba"][2:].abs().sum() > 0
    assert seen["step"] == 2.0  # the step counter is kept
    assert float(s.primitives.rgba[2, 3].detach()) < 0.05 and s.primitives.order.tolist() == [2, 3, 4, 0, 1]


def test_live_stages_place_paths_and_reset_the_optimiser(tmp_path):
    s = icon_system(num_paths=4, init="raster", live=LIVESettings(schedule=[2, 2], iters_per_stage=2, radius=8.0,
                                                                  render_size=32))
    init_points = s.primitives.points.detach().clone()
    seen = {}

    def record(name):
        def fn(module, opt):
            seen[name] = (module.primitives.points.detach().clone(),
                          float(opt.state[module.primitives.points]["step"]))
        return fn

    fit(s, 6, tmp_path, [AtStep(end={1: record("stage0"), 3: record("stage1"), 5: record("sds")})])
    assert bool(s.target_ready) and float(s.target.std()) > 0
    pts0, step0 = seen["stage0"]
    assert not torch.equal(pts0[:2], init_points[:2]) and torch.equal(pts0[2:], init_points[2:])
    assert step0 == 1.0
    pts1, step1 = seen["stage1"]
    assert not torch.equal(pts1[2:], init_points[2:]) and step1 == 1.0  # a fresh Adam per stage
    assert seen["sds"][1] == 1.0  # and for SDS
    assert (tmp_path / "media" / "raster_best.png").is_file() and (tmp_path / "media" / "raster_samples.png").is_file()
    assert s.phase(3) == ("live", 3) and s.phase(4) == ("sds", 0) and s.live_steps == 4


def test_max_steps_shorter_than_live_is_refused(tmp_path):
    s = icon_system(num_paths=4, init="raster", live=LIVESettings(schedule=[2, 2], iters_per_stage=2, render_size=32))
    with pytest.raises(ValueError, match="shorter than the LIVE"):
        fit(s, 3, tmp_path)


def test_nan_control_points_are_rolled_back_and_the_run_continues(tmp_path, caplog):
    s = icon_system()

    def poison(module, opt):
        with torch.no_grad():
            module.primitives.points[0, 0, 0] = float("nan")

    media = VectorFusionMedia(preview_every_n_steps=1, video_every_n_steps=0, eval_size=32, preview_size=32)
    with caplog.at_level(logging.WARNING):
        fit(s, 4, tmp_path, [AtStep(start={2: poison}), media])
    assert "NaN/Inf at the start of the step" in caplog.text
    assert s.primitives.finite()
    scene, _ = read_svg(tmp_path / "media" / "final.svg")
    assert len(scene.shapes) == 5 and all(torch.isfinite(sh.points).all() for sh in scene.shapes)


def test_persistent_nan_stops_the_run_without_writing_a_corrupt_svg(tmp_path):
    s = icon_system(max_bad_steps=2)
    real = s.guidance.sds_grad

    def nan_after_two(x, context, t, noise):
        g = real(x, context, t, noise)
        return g * float("nan") if s.global_step >= 2 else g

    s.guidance.sds_grad = nan_after_two
    media = VectorFusionMedia(preview_every_n_steps=1, video_every_n_steps=0, eval_size=32, preview_size=32)
    with pytest.raises(NonFiniteParametersError, match="NaN is never written"):
        fit(s, 6, tmp_path, [media])
    scene, _ = read_svg(tmp_path / "media" / "latest.svg")  # the last SVG written is finite and parses
    assert all(torch.isfinite(sh.points).all() for sh in scene.shapes)
    assert not (tmp_path / "media" / "final.svg").exists()
    assert s.primitives.finite()


def test_degenerate_path_renders_nothing_gets_no_gradient_and_is_reinitialised(tmp_path):
    s = icon_system(num_paths=3, reinit=ReinitSettings(every=1, stop=10, area_threshold=1.0))
    with torch.no_grad():
        s.primitives.points[0] = 20.0  # all control points equal
    grads = []
    s.primitives.points.register_hook(lambda g: grads.append(g.clone()))
    fit(s, 1, tmp_path)
    assert grads[0][0].abs().max() == 0 and grads[0][1:].abs().sum() > 0
    assert s.primitives.order.tolist() == [1, 2, 0]  # replaced and drawn on top
    assert float((s.primitives.points[0] - s.primitives.points[0].mean(0)).norm(dim=-1).min()) > 7.9


def test_zero_width_strokes_render_nothing_and_stay_finite(tmp_path):
    prim = SketchStrokes(num_paths=3, width=0.0, canvas=64.0)
    s = VectorFusionSystem(guidance(), prim, prompt="a cat", init="scratch", augment=False, render_size=32)
    s.setup("fit")
    x = prim.render(s.rasterizer, 32)
    assert torch.equal(x, torch.ones_like(x))
    loss = s.guidance(x, s.context)["loss_sds"]
    assert torch.isfinite(loss) and not loss.requires_grad  # nothing drawn: no path to the points
    media = VectorFusionMedia(preview_every_n_steps=0, video_every_n_steps=0, eval_size=32)
    fit(s, 1, tmp_path, [media])
    text = (tmp_path / "media" / "final.svg").read_text()
    assert 'stroke="none"' in text and len(read_svg(tmp_path / "media" / "final.svg")[0].shapes) == 3


def test_pixel_art_saturation_term_and_frozen_geometry(tmp_path):
    prim = PixelGrid(rows=4, cols=4, canvas=64.0)
    s = VectorFusionSystem(guidance(), prim, prompt="a cat", init="scratch", augment=False, render_size=32)
    logged = {}

    class Grab(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            logged.update({k: float(v) for k, v in trainer.callback_metrics.items()})

    fit(s, 1, tmp_path, [Grab()])
    assert "train/loss_saturation" in logged and "train/loss_sds" in logged
    assert [n for n, _ in prim.named_parameters()] == ["rgba"]
