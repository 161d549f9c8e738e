"""SJCGuidance / PAAS: analytic Gaussian score, SDS (w = 1) identity, surrogate gradient, isolation."""

import pytest
import torch

from common.guidance import SJCGuidance, paas
from common.priors import DiffusionModel


@pytest.fixture(scope="module")
def sd(tiny_sd_dir):
    return DiffusionModel(model=str(tiny_sd_dir)).load()


@pytest.mark.parametrize("var_red", [True, False])
def test_paas_matches_analytic_gaussian_score(var_red):
    mu, s, sigma = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64), 0.4, torch.tensor([0.8], dtype=torch.float64)

    def denoiser(x, sig):  # exact denoiser of N(mu, s² I) data (sjc.md §7)
        return mu + s**2 / (s**2 + sig.view(-1, 1) ** 2) * (x - mu)

    x = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64)
    M = 5000
    est = paas(denoiser, x, sigma, n_samples=M, var_red=var_red, generator=torch.Generator().manual_seed(0))
    analytic = -(x - mu) / (s**2 + sigma**2)  # for Gaussian data PAAS = score at σ (spec §1.4 caveat)
    k = s**2 / (s**2 + sigma.item() ** 2)  # per-draw noise term: k·n/σ (eq. 16) or (k − 1)·n/σ (eq. 15)
    se = (k if var_red else 1 - k) / (sigma.item() * M**0.5)
    torch.testing.assert_close(est, analytic, atol=5 * se, rtol=0)
    n = torch.randn(1, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = paas(denoiser, x, sigma, var_red=var_red, noise=torch.cat([n, -n]))  # antithetic pair (T4a)
    torch.testing.assert_close(exact, analytic, atol=1e-10, rtol=0)


def test_sjc_update_equals_sds_with_unit_weight(sd):
    x = torch.randn(1, 4, 16, 16)
    t = 420
    sigma = sd.sigmas[t].float().reshape(1)
    n = torch.randn(1, 1, 4, 16, 16)
    ctx = sd.text_context("a cube")
    ab = sd.alpha_bar[t].float()
    with torch.no_grad():
        eps_hat = sd.predict_noise(ab.sqrt() * x + (1 - ab).sqrt() * n[0], torch.tensor([t]), ctx, 7.5)
    g = SJCGuidance(sd, guidance_scale=7.5).score_update(x, ctx, sigma, noise=n)
    torch.testing.assert_close(g, n[0] - eps_hat, atol=1e-5, rtol=1e-4)
    g15 = SJCGuidance(sd, guidance_scale=7.5, var_red=False).score_update(x, ctx, sigma, noise=n)
    torch.testing.assert_close(g15, -eps_hat, atol=1e-5, rtol=1e-4)
    gp = SJCGuidance(sd, guidance_scale=7.5, score_weighting="paper").score_update(x, ctx, sigma, noise=n)
    torch.testing.assert_close(gp, (n[0] - eps_hat) / sigma, atol=1e-4, rtol=1e-4)


def test_loss_gradient_is_minus_g_and_unet_isolated(sd):
    guide = SJCGuidance(sd, guidance_scale=100.0)
    x = torch.randn(1, 4, 16, 16, requires_grad=True)
    sigma, n = sd.sigmas[200].float().reshape(1), torch.randn(1, 1, 4, 16, 16)
    calls = []
    hook = sd.unet.register_forward_hook(lambda *a: calls.append(torch.is_grad_enabled()))
    try:
        guide(x, "a cube", sigma=sigma, noise=n)["loss_sjc"].backward()
    finally:
        hook.remove()
    assert calls == [False] and all(p.grad is None for p in sd.unet.parameters())
    g = guide.score_update(x.detach(), sd.text_context("a cube"), sigma, noise=n)
    torch.testing.assert_close(x.grad, -g, atol=1e-6, rtol=0)


def test_sigma_sampling_range(sd):
    guide = SJCGuidance(sd)
    s = guide.sample_sigma(5000, torch.Generator().manual_seed(0))
    assert s.min().item() == pytest.approx(sd.sigmas[10].item()) and s.max().item() == pytest.approx(sd.sigmas[969].item())


def test_rgb_input_on_pixel_model(tiny_pixel_dir):
    px = DiffusionModel(model=str(tiny_pixel_dir)).load()
    img = torch.rand(1, 3, 8, 8, requires_grad=True)
    out = SJCGuidance(px, guidance_scale=3.0, input_space="rgb", resolution=16)(img, "a cube")
    out["loss_sjc"].backward()
    assert torch.isfinite(out["loss_sjc"]) and img.grad.abs().sum() > 0
