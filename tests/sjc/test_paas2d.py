"""SJC's 2D experiments (spec §4): the OOD demonstration and canvas ascent write a comparison figure;
PAAS and single-step denoising differ exactly as eq. 12 vs eq. 16 say; σ outside the model's range fails."""

import json

import pytest
import torch

from common.priors import DiffusionModel
from sjc.paas2d import blob_image, main, ood_demo, optimize_canvas, sigma_schedule


@pytest.fixture(scope="module")
def px(tiny_pixel_uncond_dir):
    return DiffusionModel(model=str(tiny_pixel_uncond_dir)).load()


def test_blob_is_an_orange_disc_on_grey():
    img = blob_image(64)
    assert img.shape == (1, 3, 64, 64)
    torch.testing.assert_close(img[0, :, 32, 32], torch.tensor([1.0, 0.5, 0.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(img[0, :, 0, 0], torch.tensor([0.5, 0.5, 0.5]), atol=1e-3, rtol=0)


def test_ood_demo_matches_its_definitions(px):
    x = px.encode(blob_image(16))
    g = torch.Generator().manual_seed(0)
    out = ood_demo(px, x, sigma=6.5, n_paas=3, generator=g)
    s = torch.tensor([6.5])
    with torch.no_grad():
        torch.testing.assert_close(out["single_step"], px.denoise(x, s), atol=1e-5, rtol=0)
        n = torch.randn((3, *x.shape), generator=torch.Generator().manual_seed(0))
        d = torch.stack([px.denoise(x + 6.5 * k, s) for k in n])
    torch.testing.assert_close(out["noisy"], x + 6.5 * n[0])
    torch.testing.assert_close(out["denoised_noisy"], d[0], atol=1e-5, rtol=0)
    # E_n D(x + σn; σ) = x + σ²·PAAS (eq. 16)
    torch.testing.assert_close(out["paas_mean"], d.mean(0), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="outside the model's noise range"):
        ood_demo(px, x, sigma=500.0)


def test_sigma_schedules(px):
    rnd = sigma_schedule(px, "random", 2000, generator=torch.Generator().manual_seed(0))
    assert rnd.min() >= px.sigmas[10] and rnd.max() <= px.sigmas[969]
    ann = sigma_schedule(px, "annealed", 100, stages=10)
    assert ann.shape == (100,) and ann[0] == pytest.approx(80.0) and ann[-1] == pytest.approx(px.sigmas[0].item())
    assert (ann.diff() <= 0).all() and len(ann.unique()) == 10
    with pytest.raises(ValueError):
        sigma_schedule(px, "cosine", 10)


def test_canvas_estimators_differ_as_specified(px, monkeypatch):
    """With a denoiser that returns a fixed image y, single-step ascends (y − θ)/σ and PAAS (eq. 16) also
    (y − θ)/σ: the same target. Both pull the canvas to y; eq. 15 adds −n."""
    y = torch.full((1, 3, 16, 16), 0.3)
    monkeypatch.setattr(px, "denoise", lambda x, s, *a, **k: y.clone())
    for est in ("single_step", "paas"):
        out = optimize_canvas(px, torch.zeros(1, 3, 16, 16), est, "random", steps=60, lr=0.05,
                              generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, y, atol=0.06, rtol=0)
    with pytest.raises(ValueError):
        optimize_canvas(px, y, "naive", "random", steps=1)


def test_command_line_writes_the_figure(tiny_pixel_dir, tmp_path):
    path = main(["--model", str(tiny_pixel_dir), "--prompt", "a cube", "--guidance-scale", "3", "--steps", "4",
                 "--stages", "2", "--n-paas", "2", "--out", str(tmp_path)])
    assert path.is_file() and path.stat().st_size > 0
    stats = json.loads((tmp_path / "paas2d.json").read_text())
    assert set(stats["ood"]) == {"input", "single_step", "noisy", "denoised_noisy", "paas_mean"}
    assert set(stats["canvas"]) == {"single_step/random", "single_step/annealed", "paas/random", "paas/annealed"}
