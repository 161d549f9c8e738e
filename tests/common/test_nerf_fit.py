"""The NeRF fit on the generated sphere scene raises held-out PSNR by >= 10 dB over the initial render."""

import lightning.pytorch as pl
import torch

from common.fields import MLPField, PositionalEncoding
from common.nerf import NeRFSystem, mse_to_psnr
from common.rendering import VolumeRenderer
from common.synthetic import SphereSceneDataModule


def _heldout_psnr(system, dm):
    views = dm.split("test")
    system.eval()
    psnrs = []
    with torch.no_grad():
        for k in range(views.images.shape[0]):
            out = system.render_view(views.c2w[k], views.height, views.width, views.focal)
            psnrs.append(mse_to_psnr(torch.mean((out.rgb.clamp(0, 1) - views.images[k]) ** 2)))
    return float(torch.stack(psnrs).mean())


def test_nerf_fit_raises_heldout_psnr_by_10db(tmp_path):
    pl.seed_everything(0)
    dm = SphereSceneDataModule(root=str(tmp_path / "scene"), size=32, n_train=16, batch_rays=512, steps_per_epoch=150)
    dm.setup("fit")
    dm.setup("test")
    field = MLPField(PositionalEncoding(4), width=64, depth=3, skips=[], view_dependent=False,
                     density_activation="softplus", density_bias=-1.0)
    system = NeRFSystem(field, VolumeRenderer(n_samples=32, bound=1.0), lr=1e-2, lr_final=1e-3, lr_decay_steps=150)
    before = _heldout_psnr(system, dm)
    system.train()
    trainer = pl.Trainer(max_steps=150, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         limit_val_batches=0, default_root_dir=str(tmp_path), enable_model_summary=False)
    trainer.fit(system, dm)
    after = _heldout_psnr(system, dm)
    assert after - before >= 10.0, f"held-out PSNR {before:.2f} -> {after:.2f} dB"
