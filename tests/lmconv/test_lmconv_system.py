"""Spec §7 I3–I5 (training bookkeeping), J1–J3 (end to end), data modules and configuration errors."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Trainer

from lmconv.callbacks import EpochAveragingCallback
from lmconv.data import CelebAHQDataModule, CIFAR10DataModule, DigitsDataModule, MNISTDataModule
from lmconv.likelihoods import BinaryLikelihood
from lmconv.system import LMConvSystem
from lmconv.testing import all_binary_images, tiny_model

ROOT = Path(__file__).resolve().parents[2]
STEPS_J1 = 300


def test_order_draw_is_uniform_and_rank_independent():  # I3
    a, b = LMConvSystem(filters=4, nr_resnet=0), LMConvSystem(filters=4, nr_resnet=0)
    draws = [a.order_index(s) for s in range(800)]
    assert draws == [b.order_index(s) for s in range(800)]  # every rank agrees for a given global_step
    counts = np.bincount(draws, minlength=8)
    assert (counts > 0).all()
    chi2 = ((counts - 100.0) ** 2 / 100.0).sum()
    assert chi2 < 24.32  # p > 0.001 for 7 degrees of freedom


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_learning_rate_decay(interval):  # I4
    system = LMConvSystem(filters=4, nr_resnet=0, lr_decay_interval=interval)
    conf = system.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == interval
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["weight_decay"] == 0
    for _ in range(7):
        opt.step()
        sched.step()
    assert math.isclose(opt.param_groups[0]["lr"], 2e-4 * 0.999995**7, rel_tol=1e-12)


def test_experiment_yamls_clip_at_2e6():  # I4: the thesis's clip on the summed-nats loss
    for name in ("lmconv_digits", "lmconv_mnist", "lmconv_cifar10"):
        cfg = yaml.safe_load((ROOT / "experiments" / f"{name}.yaml").read_text())
        assert cfg["trainer"]["gradient_clip_val"] == 2.0e6 and cfg["trainer"]["gradient_clip_algorithm"] == "norm"


def test_parameter_averaging():  # I5
    module = torch.nn.Linear(2, 1)
    cb = EpochAveragingCallback(last_n_epochs=3)
    trainer = type("T", (), {"max_epochs": 5, "current_epoch": 0})()
    snapshots = []
    for epoch in range(5):
        with torch.no_grad():
            for p in module.parameters():
                p.fill_(float(epoch * epoch))
        trainer.current_epoch = epoch
        cb.on_train_epoch_end(trainer, module)
        if epoch >= 2:
            snapshots.append({n: p.detach().clone() for n, p in module.named_parameters()})
    cb.on_train_end(trainer, module)
    for n, p in module.named_parameters():
        torch.testing.assert_close(p, torch.stack([s[n] for s in snapshots]).mean(0))
    with pytest.raises(ValueError, match="max_epochs"):
        cb.on_fit_start(type("T", (), {"max_epochs": -1})(), module)


def _symmetric_target() -> torch.Tensor:
    """A random distribution over the 16 binary 2×2 images, averaged over the 8 symmetries of the square.

    The network is translation-equivariant and masks out-of-image taps, so it cannot tell *where* a pixel is;
    a target without the symmetry would ask for different root marginals at different corners for the 8
    S-curve variants, which no such network can represent (KL plateaus near 0.1 nats).
    """
    xs = all_binary_images(2, 2)
    codes = torch.tensor([1, 2, 4, 8]).view(1, 1, 2, 2)
    q = torch.softmax(torch.randn(16, generator=torch.Generator().manual_seed(0)) * 1.5, 0)
    p = torch.zeros(16)
    for k in range(4):
        for flip in (False, True):
            g = torch.rot90(xs, k, (2, 3))
            g = g.flip(3) if flip else g
            p += q[(g * codes).sum((1, 2, 3))] / 8
    return p


def test_learning_a_known_2x2_distribution():  # J1
    """8 S-curve orders, one order per step; the loss is the exact expectation over p* (all 16 images weighted
    by p*) instead of a sampled batch, which keeps the test deterministic and short on a shared CPU."""
    p_star = _symmetric_target()
    xs = all_binary_images(2, 2)
    model = tiny_model(BinaryLikelihood(), [(2, 2)], "s_curve", filters=8, nr_resnet=0, dtype=torch.float32).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for step in range(STEPS_J1):
        loss = -(p_star * model.log_prob(xs, step % 8)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        kls = [(p_star * (p_star.log() - lp)).sum().item()
               for lp in [model.log_prob(xs, k) for k in range(8)] + [model.log_prob_ensemble(xs)]]
    assert max(kls) < 0.05, kls


@pytest.mark.parametrize("variant,likelihood,n_bins", [("binary", "binary", 2), ("gray17", "dlm", 17)])
def test_lightning_fast_dev_run(tmp_path, variant, likelihood, n_bins):  # J2, J3
    system = LMConvSystem(likelihood=likelihood, n_bins=n_bins, filters=8, nr_resnet=0, lr=1e-3, num_samples=4,
                          num_completions=4)
    dm = DigitsDataModule(variant, batch_size=16)
    trainer = Trainer(accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=str(tmp_path), gradient_clip_val=2e6)
    trainer.fit(system, dm)
    m = trainer.callback_metrics
    for key in ("train/bpd", "val/nll_nats_1order", "val/bpd_1order", "val/bpd_ens8", "val/cond_T_maxctx",
                "val/cond_T_adv"):
        assert key in m and torch.isfinite(m[key]), key
    assert m["val/bpd_ens8"] <= torch.stack([m[f"val/bpd_order{k}"] for k in range(8)]).mean() + 1e-6
    pngs = sorted(p.name for p in (tmp_path / "images").glob("*.png"))
    assert pngs == ["completions_step0000001.png", "samples_step0000001.png"]
    from PIL import Image

    assert Image.open(tmp_path / "images" / pngs[0]).size[0] > 3 * 64  # Obs | sample | GT, upscaled


def test_digits_data():
    dm = DigitsDataModule("binary", seed=0)
    dm.setup()
    assert (len(dm.train_set), len(dm.test_set)) == (1437, 360)
    x1, x2 = dm.train_set[0], dm.train_set[0]
    assert x1.shape == (1, 8, 8) and set(x1.unique().tolist()) <= {0, 1}
    assert not all(torch.equal(dm.train_set[i], dm.train_set[i]) for i in range(20))  # dynamic binarization
    assert torch.equal(dm.test_set[3], dm.test_set[3])  # the test split is binarized once
    gray = DigitsDataModule("gray17")
    gray.setup()
    assert gray.n_bins == 17 and int(gray.train_set.levels.max()) == 16


def test_missing_datasets_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST not found: looked for MNIST/raw.*download=true"):
        MNISTDataModule(root=str(tmp_path / "nope")).setup()
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found.*cifar-10-batches-py"):
        CIFAR10DataModule(root=str(tmp_path)).setup()
    with pytest.raises(FileNotFoundError, match="CelebA-HQ not found.*train/"):
        CelebAHQDataModule(root=str(tmp_path)).setup()
    fake = CIFAR10DataModule(root=str(tmp_path), fake_samples=3)  # explicit synthetic fallback (tests only)
    fake.setup()
    assert fake.train_set[0].shape == (3, 32, 32)


def test_celebahq_resize_then_quantize(tmp_path):
    from PIL import Image

    for split in ("train", "validation"):
        (tmp_path / split).mkdir()
        Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(tmp_path / split / "a.png")
    dm = CelebAHQDataModule(root=str(tmp_path), image_size=4, bits=5)
    dm.setup()
    x = dm.train_set[0]
    assert x.shape == (3, 4, 4) and int(x.max()) == 31 and dm.n_bins == 32


def test_configuration_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown order family 'spiral'"):
        LMConvSystem(order_family="spiral", filters=4, nr_resnet=0)
    with pytest.raises(ValueError, match="binary likelihood models 1-channel"):
        LMConvSystem(channels=3, likelihood="binary")
    system = LMConvSystem(likelihood="dlm", n_bins=256, filters=4, nr_resnet=0)
    trainer = Trainer(accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False,
                      default_root_dir=str(tmp_path))
    with pytest.raises(ValueError, match="n_bins=17 but the model was configured for 256"):
        trainer.fit(system, DigitsDataModule("gray17"))
    wrong_size = LMConvSystem(image_size=(28, 28), filters=4, nr_resnet=0)
    with pytest.raises(ValueError, match="8x8 do not match .*28x28"):
        Trainer(accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False,
                default_root_dir=str(tmp_path)).fit(wrong_size, DigitsDataModule())
