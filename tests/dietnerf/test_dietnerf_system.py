"""End to end (specs/dietnerf.md §9.5): a tiny overfitting run, the DietNeRF loop with checkpoints and
MSE-only fine-tuning by resuming, and the test stage's metric files."""

import json

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger

from common.synthetic import SphereSceneDataModule
from dietnerf.data import FewShotBlenderDataModule
from dietnerf.field import NeRFMLPField
from dietnerf.hierarchical import HierarchicalRenderer
from dietnerf.metrics import psnr
from dietnerf.system import DietNeRFLossWeights, DietNeRFSystem

from .conftest import tiny_system


def _train_psnr(system) -> float:
    system.eval()
    vals = [psnr(system.render_image(system.train_c2w[k], system.train_intr[k], *system.train_rgb.shape[1:3]).rgb.clamp(0, 1),
                 system.train_rgb[k]) for k in range(system.train_rgb.shape[0])]
    system.train()
    return sum(vals) / len(vals)


def test_overfit_tiny_scene_raises_psnr(tmp_path):
    pl.seed_everything(0)
    dm = FewShotBlenderDataModule(scene=SphereSceneDataModule(root=str(tmp_path / "scene"), size=32, n_train=16),
                                  num_train_views=8, testskip=1, steps_per_epoch=200)
    dm.setup("fit")

    def field():
        return NeRFMLPField(pos_freqs=6, dir_freqs=2, width=32, depth=4, skips=[2], view_width=32)

    # The spec's W=64, 32+32 samples, 512 rays, 300 steps, shrunk to ~10 CPU-seconds; it reaches ~27 dB.
    system = DietNeRFSystem(field(), field(), HierarchicalRenderer(16, 16, near=2.0, far=6.0), encoder=None,
                            batch_rays=256, lr=5e-3, precrop_iters=50, lr_decay_steps=3000, pixel_offset=0.5)
    system.attach_views(dm.train_views(), dm.pose_pool())
    before = _train_psnr(system)
    trainer = pl.Trainer(max_steps=200, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(system, dm)
    after = _train_psnr(system)
    assert after >= before + 6 and after >= 18, f"train-view PSNR {before:.2f} -> {after:.2f} dB"


def _dm(scene, steps):
    return FewShotBlenderDataModule(root=str(scene), num_train_views=3, downscale=1, testskip=2, steps_per_epoch=steps)


def test_dietnerf_loop_smoke(sphere_scene, tmp_path):
    system = tiny_system(semantic_every=5, lr_decay_steps=100)
    trainer = pl.Trainer(max_steps=30, logger=CSVLogger(str(tmp_path), name="", version="csv"), log_every_n_steps=1,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         default_root_dir=str(tmp_path), callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)])
    trainer.fit(system, _dm(sphere_scene, 30))
    assert system.semantic_calls == 6
    import csv

    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    logged = [(int(r["step"]), float(r["train/loss_sc"])) for r in rows if r.get("train/loss_sc")]
    assert [s for s, _ in logged] == [4, 9, 14, 19, 24, 29]  # once per semantic step, at it = 5, 10, ..., 30
    assert all(0 <= v <= 2 for _, v in logged)
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 29 and all(torch.isfinite(torch.tensor(losses)))

    ckpt_path = tmp_path / "ckpt" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)  # loadable safely: plain tensors and hyper-parameters
    assert ckpt["global_step"] == 30
    assert not any(k.startswith("encoder") or "clip" in k for k in ckpt["state_dict"])
    reloaded = tiny_system(semantic_every=5)
    reloaded.load_state_dict(ckpt["state_dict"], strict=True)

    # MSE-only fine-tuning: resume with the semantic branch stopped at the saved step
    ft = tiny_system(semantic_every=5, semantic_stop_step=30, lr_decay_steps=100)
    trainer = pl.Trainer(max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(ft, _dm(sphere_scene, 40), ckpt_path=str(ckpt_path))
    assert trainer.global_step == 40 and ft.semantic_calls == 0 and ft.encoder.calls == 0
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert abs(lr - 5e-3 * 0.1 ** (40 / 100)) < 1e-9  # the lr schedule continues from the saved step


def test_test_stage_writes_metrics_and_renders(sphere_scene, tmp_path):
    system = tiny_system(encoder=False)
    dm = _dm(sphere_scene, 2)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(system, dm)
    trainer.test(system, dm)
    summary = json.loads((tmp_path / "test_metrics.json").read_text())
    assert summary["n_views"] == 2 and summary["method"] == "NeRF" and summary["train_views"] == dm.train_views().indices
    assert summary["psnr"] is not None and -1 <= summary["ssim"] <= 1 and summary["psnr_far"] is not None
    assert summary["lpips"] is None and summary["lpips_status"].startswith("skipped")  # compute_lpips=False here
    assert all({"view", "psnr", "ssim", "angle_to_nearest_observed_deg"} <= set(r) for r in summary["per_view"])
    assert (tmp_path / "test_table.md").is_file()
    assert sorted(p.name for p in (tmp_path / "media" / "test_renders").iterdir()) == ["r_0.png", "r_2.png"]


def test_simplified_nerf_has_no_fine_network(sphere_scene, tmp_path):
    system = DietNeRFSystem(NeRFMLPField(pos_freqs=6, width=16, depth=2, skips=[], view_dependent=False),
                            renderer=HierarchicalRenderer(16, 0), encoder=None, batch_rays=32,
                            loss_weights=DietNeRFLossWeights(lambda_sc=0, lambda_sc_coarse=0))
    assert system.fine_field is None
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(system, _dm(sphere_scene, 2))
    assert trainer.global_step == 2
