"""SDSGuidance: exact w(t)(ε̂ − ε) gradient, no U-Net gradient, reductions, latent path, bad input."""

import pytest
import torch

from common.guidance import SDSGuidance
from common.priors import DiffusionModel
from common.priors.schedule import sds_weight


@pytest.fixture(scope="module")
def sd(tiny_sd_dir):
    return DiffusionModel(model=str(tiny_sd_dir)).load()


def test_gradient_is_w_times_eps_difference_and_unet_gets_none(sd):
    guide = SDSGuidance(sd, guidance_scale=7.5, input_space="model")
    theta = torch.randn(1, 4, 16, 16, requires_grad=True)
    t, noise = torch.tensor([400]), torch.randn(1, 4, 16, 16)
    calls = []
    hook = sd.unet.register_forward_hook(lambda *a: calls.append(torch.is_grad_enabled()))
    sd.unet.requires_grad_(True)  # even trainable weights must get no gradient (spec C8)
    try:
        guide(theta, "a red cube", t=t, noise=noise)["loss_sds"].backward()
    finally:
        sd.unet.requires_grad_(False)
        hook.remove()
    assert calls == [False]
    assert all(p.grad is None for p in sd.unet.parameters())
    ab = sd.alpha_bar[t].float()
    z_t = ab.sqrt() * theta.detach() + (1 - ab).sqrt() * noise
    with torch.no_grad():
        eps_hat = sd.predict_noise(z_t, t, sd.text_context("a red cube"), 7.5)
    torch.testing.assert_close(theta.grad, (1 - ab) * (eps_hat - noise), atol=1e-6, rtol=0)


def test_unconditional_scale_one_is_plain_eps_difference(tiny_pixel_uncond_dir):
    px = DiffusionModel(model=str(tiny_pixel_uncond_dir)).load()
    guide = SDSGuidance(px, guidance_scale=1.0, weighting="uniform", input_space="model")
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    t, noise = torch.tensor([50, 900]), torch.randn(2, 3, 16, 16)
    guide(x, "ignored by an unconditional model", t=t, noise=noise)["loss_sds"].backward()
    ab = px.alpha_bar[t].float().view(-1, 1, 1, 1)
    with torch.no_grad():
        eps = px.unet(ab.sqrt() * x + (1 - ab).sqrt() * noise, t).sample
    torch.testing.assert_close(x.grad, (eps - noise) / 2, atol=1e-6, rtol=0)  # mean over the batch (B6)


def test_oracle_denoiser_gives_zero_gradient(sd, monkeypatch):
    x = torch.randn(1, 4, 16, 16, requires_grad=True)

    def oracle(z_t, t, context=None, guidance_scale=1.0):
        ab = sd.alpha_bar[t].float().view(-1, 1, 1, 1)
        return (z_t - ab.sqrt() * x.detach()) / (1 - ab).sqrt()

    monkeypatch.setattr(sd, "predict_noise", oracle)
    SDSGuidance(sd, input_space="model")(x, "a cube", t=torch.tensor([500]))["loss_sds"].backward()
    assert x.grad.abs().max() < 1e-5


def test_latent_sds_on_rgb_flows_through_encoder(sd):
    guide = SDSGuidance(sd, guidance_scale=10.0, input_space="rgb")
    img = torch.rand(1, 3, 24, 24, requires_grad=True)  # resized to the native 32² before encoding
    t, noise = torch.tensor([300]), torch.randn(1, 4, 16, 16)
    guide(img, "a cube", t=t, noise=noise)["loss_sds"].backward()
    z = sd.encode(torch.nn.functional.interpolate(img.detach(), size=(32, 32), mode="bilinear"))
    g = guide.sds_grad(z, sd.text_context("a cube"), t, noise)
    img2 = img.detach().clone().requires_grad_(True)
    z2 = sd.encode(torch.nn.functional.interpolate(img2, size=(32, 32), mode="bilinear"))
    (vjp,) = torch.autograd.grad(z2, img2, g)
    torch.testing.assert_close(img.grad, vjp, atol=1e-6, rtol=1e-4)
    assert img.grad.dtype == torch.float32


def test_timestep_sampling_and_weights(sd):
    guide = SDSGuidance(sd, t_min=50, t_max=950)
    t = guide.sample_timesteps(4000, torch.Generator().manual_seed(0))
    assert t.min() == 50 and t.max() == 950
    t = SDSGuidance(sd).sample_timesteps(4000, torch.Generator().manual_seed(0))
    assert t.min() == 20 and t.max() == 980
    ab = torch.tensor([0.5])
    assert sds_weight(ab, "uniform").item() == 1.0 and sds_weight(ab, "sigma2").item() == 0.5
    with pytest.raises(ValueError, match="weighting"):
        SDSGuidance(sd, weighting="nope")


def test_bad_input(sd):
    guide = SDSGuidance(sd)
    with pytest.raises(ValueError, match="Empty prompt"):
        guide(torch.rand(1, 3, 32, 32), "")
    with pytest.raises(ValueError, match="values in"):
        guide(torch.rand(1, 3, 32, 32) * 2 - 1, "a cube")
    with pytest.raises(ValueError, match="model-space"):
        SDSGuidance(sd, input_space="model")(torch.rand(1, 3, 16, 16), "a cube")
    with pytest.raises(ValueError, match="prompts for a batch"):
        guide(torch.rand(2, 3, 32, 32), ["a", "b", "c"])
