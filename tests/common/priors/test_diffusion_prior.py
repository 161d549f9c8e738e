"""DiffusionModel: σ ↔ ᾱ algebra, loading through from_pretrained, CFG, denoiser, encode/decode, errors."""

import time

import pytest
import torch
from torch import nn

from common.priors import DiffusionModel, PriorWeightsNotFoundError
from common.priors.schedule import (
    alpha_bar_from_sigma,
    classifier_free_guidance,
    nearest_timestep,
    sigma_from_alpha_bar,
    v_to_epsilon,
    ve_to_vp_input,
)


@pytest.fixture(scope="module")
def sd(tiny_sd_dir):
    return DiffusionModel(model=str(tiny_sd_dir)).load()


def test_sigma_alpha_bar_round_trip_and_reference_values(sd, tiny_pixel_uncond_dir):
    ab = sd.alpha_bar  # SD scaled-linear schedule (sjc.md T1)
    sig = sigma_from_alpha_bar(ab)
    torch.testing.assert_close(alpha_bar_from_sigma(sig), ab, rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma_from_alpha_bar(alpha_bar_from_sigma(sig)), sig, rtol=1e-10, atol=0)
    ref = {0: 0.0291672, 999: 14.61464, 10: 0.0982911, 969: 12.22876}
    for t, v in ref.items():
        assert sd.sigmas[t].item() == pytest.approx(v, rel=1e-5)
    assert (sd.sigmas[10:970].diff() > 0).all() and sd.sigmas[10:970].numel() == 960
    px = DiffusionModel(model=str(tiny_pixel_uncond_dir)).load()  # DDPM linear schedule
    assert px.sigmas[0].item() == pytest.approx(0.0100005, rel=1e-5)
    assert px.sigmas[999].item() == pytest.approx(157.4073, rel=1e-5)
    x, n, s = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64), sig[500]
    a = alpha_bar_from_sigma(s)
    torch.testing.assert_close(ve_to_vp_input(x + s * n, s), a.sqrt() * x + (1 - a).sqrt() * n, atol=1e-12, rtol=0)


def test_loaded_through_from_pretrained_and_frozen(sd):
    assert sd.is_latent and sd.is_conditional and sd.channels == 4 and sd.scaling_factor == pytest.approx(0.18215)
    owner = nn.Module()
    owner.prior = sd
    assert owner.state_dict() == {} and list(owner.parameters()) == []
    assert all(not p.requires_grad for p in sd.unet.parameters()) and not sd.unet.training


def test_classifier_free_guidance(sd):
    z = torch.randn(2, 4, 16, 16)
    t = torch.tensor([100, 700])
    ctx = sd.text_context("a red cube")
    with torch.no_grad():
        e_c = sd.unet(z, t, encoder_hidden_states=ctx.cond.expand(2, -1, -1)).sample
        e_u = sd.unet(z, t, encoder_hidden_states=ctx.uncond.expand(2, -1, -1)).sample
        torch.testing.assert_close(sd.predict_noise(z, t, ctx, 1.0), e_c, atol=1e-5, rtol=0)
        torch.testing.assert_close(sd.predict_noise(z, t, ctx, 7.5), e_u + 7.5 * (e_c - e_u), atol=1e-4, rtol=0)
    omega = 6.5  # eq. 6.3 form with ω = s − 1
    torch.testing.assert_close(classifier_free_guidance(e_c, e_u, 7.5), (1 + omega) * e_c - omega * e_u)
    torch.testing.assert_close(classifier_free_guidance(e_c, e_u, 0.0), e_u)


def test_denoiser_is_ve_form_of_eps_prediction(sd):
    ctx = sd.text_context("a cube")
    x = torch.randn(1, 4, 16, 16)
    t = 300
    s = sd.sigmas[t].float()
    with torch.no_grad():
        eps = sd.predict_noise(x / (1 + s**2).sqrt(), torch.tensor([t]), ctx, 3.0)
        d = sd.denoise(x, s, ctx, 3.0)
    torch.testing.assert_close(d, x - s * eps, atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(sd.score(x, s, ctx, 3.0), (d - x) / s**2, atol=1e-4, rtol=1e-4)


def test_nearest_tick_snapping():
    sigmas = torch.tensor([0.1, 0.2, 0.4, 0.8], dtype=torch.float64)
    assert nearest_timestep(torch.tensor(0.4), sigmas).item() == 2
    assert nearest_timestep(torch.tensor(0.30001), sigmas).item() == 2
    assert nearest_timestep(torch.tensor(0.29999), sigmas).item() == 1
    assert nearest_timestep(torch.tensor([0.1, 0.8]), sigmas).tolist() == [0, 3]


def test_v_prediction_conversion():
    x0, eps, ab = torch.randn(3), torch.randn(3), torch.tensor(0.3)
    z = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
    torch.testing.assert_close(v_to_epsilon(v, z, ab), eps)


def test_encode_decode(sd):
    img = torch.rand(1, 3, 32, 32, requires_grad=True)
    z = sd.encode(img)
    assert z.shape == (1, 4, 16, 16)
    z.sum().backward()
    assert img.grad.abs().sum() > 0
    out = sd.decode(z.detach())
    assert out.shape == (1, 3, 32, 32) and 0 <= out.min() and out.max() <= 1


def test_text_errors_and_truncation(sd, tiny_pixel_uncond_dir):
    assert sd.encode_text("").shape == (1, 16, 16)  # "" is CFG's unconditional prompt
    with pytest.warns(UserWarning, match="truncated"):
        sd.encode_text("a prompt far longer than sixteen characters")
    px = DiffusionModel(model=str(tiny_pixel_uncond_dir)).load()
    assert not px.is_latent and not px.is_conditional
    with pytest.raises(ValueError, match="unconditional"):
        px.encode_text("a cube")
    with pytest.raises(ValueError, match="text-conditional"):
        px.predict_noise(torch.randn(1, 3, 16, 16), 10, None, 7.5)
    with pytest.raises(ValueError, match="TextContext"):
        sd.predict_noise(torch.randn(1, 4, 16, 16), 10, None)


def test_missing_model_offline_is_clear_and_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(PriorWeightsNotFoundError) as err:
        DiffusionModel(model="someorg/not-a-cached-model", cache_dir=str(tmp_path)).load()
    assert time.time() - t0 < 5
    assert "someorg/not-a-cached-model" in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(PriorWeightsNotFoundError, match="not found"):
        DiffusionModel(model=str(tmp_path / "a" / "b" / "c")).load()
    with pytest.raises(PriorWeightsNotFoundError, match="model_index.json"):
        DiffusionModel(model=str(tmp_path)).load()
