"""PAAS on an empirical mixture (spec §1.4, T3, T4b-d) with the exact Eq. (5) denoiser.

Complements tests/common/guidance/test_sjc_guidance.py, which covers T4a (Gaussian data, antithetic
draws) and T8 (SJC update = SDS with w = 1) for the same :func:`common.guidance.paas`."""

import math

import pytest
import torch

from common.guidance import paas

torch.set_default_dtype(torch.float64)
Y = torch.randn(5, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # 5 data points in R^8
torch.set_default_dtype(torch.float32)


def mixture_denoiser(x, sigma):
    """Optimal denoiser of the empirical data set (eq. 5): softmax(−‖x − y_i‖²/2σ²)-weighted mean."""
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)
    logits = -((x[:, None, :] - Y[None]) ** 2).sum(-1) / (2 * s**2)  # [B, N]
    return torch.softmax(logits, dim=-1) @ Y


def log_p(x, sigma):
    """log p_σ(x) of the mixture (1/N)Σ N(x; y_i, σ²I)."""
    d = Y.shape[1]
    sq = ((x[..., None, :] - Y) ** 2).sum(-1)
    return torch.logsumexp(-sq / (2 * sigma**2), dim=-1) - math.log(Y.shape[0]) - d / 2 * math.log(2 * math.pi * sigma**2)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0])
def test_tweedie_score_is_exact_for_the_mixture(sigma):
    """T3: (D(x; σ) − x)/σ² equals ∇_x log p_σ(x) (eq. 3)."""
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(log_p(x, sigma).sum(), x)
    torch.testing.assert_close((mixture_denoiser(x.detach(), sigma) - x.detach()) / sigma**2, grad, atol=1e-8, rtol=0)


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_paas_is_the_gradient_of_the_jensen_bound(sigma):
    """T4b, Claim 1: with common random numbers, the eq. 15 estimate equals ∇_x mean_m log p_σ(x + σ n_m)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 8, generator=g, dtype=torch.float64).requires_grad_(True)
    n = torch.randn(16, 1, 8, generator=g, dtype=torch.float64)
    est = paas(mixture_denoiser, x.detach(), torch.tensor([sigma], dtype=torch.float64), var_red=False, noise=n)
    (grad,) = torch.autograd.grad(torch.stack([log_p(x + sigma * k, sigma) for k in n]).mean(), x)
    torch.testing.assert_close(est, grad, atol=1e-8, rtol=0)


def test_lemma_1_perturbed_density_is_the_inflated_one():
    """T4c: E_n p_σ(x + σn) = p_{√2σ}(x), and log p_{√2σ}(x) ≥ E_n log p_σ(x + σn) (Jensen)."""
    sigma, M = 1.0, 20000
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, generator=g, dtype=torch.float64) * 0.5
    n = torch.randn(M, 8, generator=g, dtype=torch.float64)
    vals = log_p(x + sigma * n, sigma)  # [M]
    p = vals.exp()
    se = p.std() / math.sqrt(M)
    target = log_p(x, math.sqrt(2) * sigma).exp()
    assert abs(p.mean() - target) < 3 * se
    assert log_p(x, math.sqrt(2) * sigma) >= vals.mean() - 3 * vals.std() / math.sqrt(M)


def test_eq15_and_eq16_differ_by_the_mean_noise():
    """T4d: with the same draws, eq. 16 − eq. 15 = mean_m n_m/σ exactly, and it is within 5/(σ√M) of 0."""
    sigma, M = 0.7, 20000
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 8, generator=g, dtype=torch.float64).expand(M, 8)  # M copies: one draw each, batched
    n = torch.randn(1, M, 8, generator=g, dtype=torch.float64)
    s = torch.tensor([sigma], dtype=torch.float64)
    e16 = paas(mixture_denoiser, x, s, var_red=True, noise=n).mean(0)
    e15 = paas(mixture_denoiser, x, s, var_red=False, noise=n).mean(0)
    torch.testing.assert_close(e16 - e15, n[0].mean(0) / sigma, atol=1e-10, rtol=0)
    assert (e16 - e15).abs().max() < 5 / (sigma * math.sqrt(M))
