"""Metrics: R-precision (perfect = 1, constant = chance, SEM), captions, CLIP score, PSNR/SSIM, offline LPIPS/FID."""

import math
import time

import pytest
import torch

from common.metrics import (
    CLIPRPrecision,
    clip_score,
    fid_metric,
    lpips_metric,
    normalize_caption,
    psnr,
    r_precision,
    r_precision_sem,
    ssim,
)
from common.priors import PriorWeightsNotFoundError
from common.testing.fixtures import tiny_clip_model  # noqa: F401  (session fixture)


def test_r_precision_perfect_constant_and_hand_built():
    captions = torch.nn.functional.normalize(torch.randn(10, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    idx = torch.arange(10)
    assert r_precision(captions.clone(), captions, idx).value == 1.0
    const = r_precision(torch.ones(10, 8), captions, idx)  # every image retrieves the same caption
    assert const.value == pytest.approx(1 / 10)  # chance for a pool with one caption per image
    assert r_precision(captions[[1, 2, 0]], captions[:3], torch.arange(3)).value == 0.0
    sim_imgs = torch.eye(3)[[0, 2, 2]]  # argmaxes 0, 2, 2 vs true 0, 1, 2
    res = r_precision(sim_imgs, torch.eye(3), torch.arange(3))
    assert res.value == pytest.approx(2 / 3) and res.correct.tolist() == [True, False, True]
    assert res.retrieved.tolist() == [0, 2, 2]  # the miss (image 1) was read as caption 2
    tie = r_precision(torch.ones(1, 2), torch.eye(2), torch.tensor([0]))  # tie -> lowest index
    assert tie.value == 1.0


def test_sem_and_caption_normalisation():
    assert r_precision_sem(0.598, 306) == pytest.approx(2.81, abs=5e-3)
    assert r_precision_sem(0.771, 153) == pytest.approx(3.41, abs=5e-3)
    assert normalize_caption("A red stop sign. ") == "a red stop sign."
    with pytest.raises(ValueError, match="true indices"):
        r_precision(torch.ones(2, 4), torch.ones(3, 4), torch.tensor([0]))


def test_clip_r_precision_and_score_with_tiny_clip(tiny_clip_model):
    pool = ["A red cube.", "a blue ball", "a green cone, "]
    metric = CLIPRPrecision(tiny_clip_model, pool)
    imgs = torch.rand(3, 3, 32, 32)
    res = metric(imgs, ["a red cube", "a blue ball.", "A green cone"])
    assert 0.0 <= res.value <= 1.0 and res.n == 3
    with pytest.raises(KeyError, match="not in the R-precision caption pool"):
        metric(imgs[:1], ["a purple torus"])
    s = clip_score(tiny_clip_model, imgs, ["a red cube"])
    assert -100 <= s.item() <= 100


def test_psnr_ssim():
    a = torch.rand(1, 3, 16, 16)
    assert ssim(a, a).item() == pytest.approx(1.0, abs=1e-4)
    assert psnr(a, (a + 0.1).clamp(0, 1)).item() > 15


def test_lpips_and_fid_fail_clearly_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    t0 = time.time()
    with pytest.raises(PriorWeightsNotFoundError, match="alexnet") as err:
        lpips_metric("alex")
    assert str(tmp_path) in str(err.value) and "download" in str(err.value)
    with pytest.raises(PriorWeightsNotFoundError, match="Inception") as err:
        fid_metric()
    assert "weights_path" in str(err.value)
    assert time.time() - t0 < 5


def test_mean_sem_closed_form():
    from common.metrics import mean_sem

    m, se = mean_sem([1.0, 2.0, 3.0, 6.0])
    assert m == 3.0 and se == pytest.approx(math.sqrt(14.0 / 3.0 / 4.0))  # sample variance 14/3, n = 4
    assert math.isnan(mean_sem([2.0])[1])
    with pytest.raises(ValueError, match="at least one"):
        mean_sem([])
