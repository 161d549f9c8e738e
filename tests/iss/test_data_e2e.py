"""Data (shapeworld renders in DVR's convention, prompts) and the tiny end-to-end chain of all stages (§15.6)."""

import json
import math
import time

import torch
from lightning.pytorch import LightningDataModule, Trainer

from common.data import CameraDataModule
from iss.analytic import BoxField, SphereField
from iss.cameras import DVRCameras, ViewSampler, pixel_grid
from iss.data import PromptDataModule, ShapeWorldSVRDataModule
from iss.prompts import SHAPENET_PROMPT_CATEGORIES, shapenet_eval_prompts, shapeworld_eval_prompts
from iss.stage1 import Stage1System
from iss.stage2 import Stage2System
from iss.stylize import StylizeSystem
from iss.svr import SVRSystem


def test_eval_prompts_ship_with_the_package():
    ps = shapenet_eval_prompts()
    assert len(ps) == 52 and ps.prompts[0] == "a cabinet with cylindrical legs" and ps.prompts[-1] == "a monitor with square base"
    assert "a red recliner seems confortable" in ps.prompts  # the source's typo is kept
    counts = {c: SHAPENET_PROMPT_CATEGORIES.count(c) for c in set(SHAPENET_PROMPT_CATEGORIES)}
    assert len(counts) == 13 and set(counts.values()) == {4}
    sw = shapeworld_eval_prompts()
    assert len(sw) == 10 and len(sw.pool) == 66 and sw.prompts[0] == "an image of a red cube"
    assert sw.pool[sw.true_index[0]] == "a red cube"
    dm = PromptDataModule(preset="shapenet52", limit=3, seeds=2)
    items = list(dm.train_dataloader())
    assert len(items) == 6 and items[1]["prompt"] == items[0]["prompt"] and items[1]["seed"] != items[0]["seed"]
    shards = [list(PromptDataModule(preset="shapenet52", num_shards=3, shard=k).train_dataloader()) for k in range(3)]
    assert sorted(i["index"] for sh in shards for i in sh) == list(range(52))


def test_shapeworld_views_in_dvr_convention(tmp_path):
    from shapeworld.shapes import object_specs

    dm = ShapeWorldSVRDataModule(image_size=16, n_train_objects=2, train_views=2, n_val_objects=1, val_views=2, val_points=32,
                                 n_samples=32, batch_size=2, cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (2, 3, 16, 16) and batch["image"].shape == (2, 3, 16, 16)
    assert batch["mask"].shape == (2, 16, 16) and batch["c2w"].shape == (2, 4, 4) and batch["focal"].shape == (2, 2)
    assert "points" in next(iter(dm.val_dataloader()))
    # lifting the GT depth of the object pixels through the converted camera lands on the object's surface
    specs = object_specs("train", 2, 0)
    cams = DVRCameras(batch["c2w"], batch["focal"])
    w = cams.ray_vectors(pixel_grid(16, 16))
    for b in range(2):
        on = batch["mask"][b].reshape(-1) > 0.5
        z = batch["depth"][b].reshape(-1)[on]
        assert on.sum() > 5 and torch.isfinite(z).all()
        pts = cams.origins[b] + z[:, None] * w[b][on]
        sdf = specs[int(batch["object"][b])].sdf(pts).abs()
        assert sdf.median() < 0.03 and torch.quantile(sdf, 0.9) < 0.1


class _Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _trainer(tmp_path, name, **kw):
    return Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path / name), **kw)


def test_e2e_tiny(tmp_path, tiny_clip_model, tiny_parts, scene_items):
    start = time.perf_counter()
    fields = [SphereField(0.3, rgb=(0.8, 0.1, 0.1)), BoxField(0.25, rgb=(0.1, 0.1, 0.8)),
              SphereField(0.25, rgb=(0.1, 0.8, 0.1)), BoxField(0.2, rgb=(0.8, 0.8, 0.1))]
    items = scene_items(fields, 4, 16)
    data = LightningDataModule.from_datasets(train_dataset=_Items(items), val_dataset=_Items(items[:2]), batch_size=2)
    # stage 0: 3 SVR steps
    enc, dec, mapper, ren = tiny_parts(n_steps=12)
    svr = SVRSystem(enc, dec, ren, n_pixels=32, sample_milestones=[], sample_counts=[12], n_val_images=1)
    _trainer(tmp_path, "svr", max_steps=3, limit_val_batches=1, val_check_interval=3).fit(svr, datamodule=data)
    assert torch.isfinite(svr.trainer.callback_metrics["train/loss"])
    svr.trainer.save_checkpoint(tmp_path / "svr.ckpt")
    # stage 1: 2 steps from the SVR checkpoint
    enc1, dec1, mapper1, ren1 = tiny_parts(seed=1, n_steps=12)
    s1 = Stage1System(tiny_clip_model, enc1, dec1, mapper1, ren1, svr_ckpt=str(tmp_path / "svr.ckpt"), n_pixels=32,
                      sample_milestones=[], sample_counts=[12], n_val_images=1)
    t1 = _trainer(tmp_path, "stage1", max_steps=2, limit_val_batches=1, val_check_interval=2)
    t1.fit(s1, datamodule=data)
    assert all(torch.isfinite(t1.callback_metrics[k]) for k in ("train/loss", "train/loss_mapper", "val/cosdist_mapped_image"))
    t1.save_checkpoint(tmp_path / "stage1.ckpt")
    # stage 2: 2 iterations × 2 views at 12² for one prompt, through the Trainer (manual optimisation)
    _, dec2, mapper2, ren2 = tiny_parts(seed=2, n_steps=12)
    s2 = Stage2System(tiny_clip_model, dec2, mapper2, ren2, ViewSampler(), stage1_ckpt=str(tmp_path / "stage1.ckpt"),
                      n_iters=2, n_views=2, render_res=12, mesh_resolution_0=8, mesh_upsampling_steps=1, n_preview_views=2,
                      preview_res=12, video_frames=2, video_res=12, eval_clip=tiny_clip_model, n_eval_views=2, eval_res=12,
                      snapshot_iters=[1])
    t2 = _trainer(tmp_path, "stage2", max_epochs=1)
    t2.fit(s2, datamodule=PromptDataModule(prompts=["a red sphere"]))
    assert t2.global_step == 2  # optimiser steps = iterations
    folder = tmp_path / "stage2" / "prompts" / "000_0_a_red_sphere"
    assert (folder / "result.pt").is_file() and (folder / "views.png").is_file() and (folder / "turntable.mp4").is_file()
    snap = torch.load(folder / "result_it001.pt", weights_only=True)  # the intermediate checkpoint, same layout
    assert snap["iteration"] == 1 and snap["stage"] == "stage2_result" and snap["code"].shape == (dec2.c_dim,)
    summary = json.loads((tmp_path / "stage2" / "stage2_metrics.json").read_text())
    assert summary["n_prompts"] == 1 and "stage1_r_precision" in summary and "stage2_clip_similarity" in summary
    assert "stage1_r_precision_sem" not in summary  # a standard error over prompts needs two of them
    record = json.loads((folder / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in record["history"]["loss"])
    assert len(record["stage2"]["retrieved"]) == 2 and record["stage2"]["retrieved"][0] == "a red sphere"  # pool of one
    # texture stylisation: 1 step from the stage-1 decoder and the stage-2 code; mesh at 24³
    _, dec3, _, ren3 = tiny_parts(seed=3, n_steps=12)
    st = StylizeSystem(tiny_clip_model, dec3, ren3, ViewSampler(), style="wooden", stage1_ckpt=str(tmp_path / "stage1.ckpt"),
                       stage2_result=str(folder / "result.pt"), n_views=2, render_res=12, mesh_resolution_0=24,
                       mesh_upsampling_steps=0, video_frames=2, video_res=12)
    ts = _trainer(tmp_path, "stylize", max_steps=1)
    ts.fit(st, datamodule=CameraDataModule(steps_per_epoch=1))
    assert torch.isfinite(ts.callback_metrics["train/loss"])
    assert torch.allclose(st.code.cpu(), torch.load(folder / "result.pt", weights_only=True)["code"])
    assert (tmp_path / "stylize" / "media").is_dir()
    assert time.perf_counter() - start < 60
