"""Latent diffusion in ``ddpm``: the KL autoencoder (LDM stage 1), the latent DDPM and its SD-layout export."""

import json

import pytest
import torch
from diffusers import UNet2DConditionModel

from common.priors.diffusion import DiffusionModel
from common.testing import tiny_models
from ddpm.autoencoder import AutoencoderSystem, downsampling_factor, latent_scale, load_autoencoder
from ddpm.conditioning import CLIPTextConditioner
from ddpm.export import export_pipeline
from ddpm.system import DDPMSystem
from tests.ddpm.test_ddpm import tiny_cond_unet


def tiny_autoencoder(**kw) -> AutoencoderSystem:
    torch.manual_seed(0)
    return AutoencoderSystem(block_out_channels=(8, 8), norm_num_groups=4, sample_size=16, **kw)


def blobs(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    """``[n, 3, size, size]`` in [0, 1]: a coloured disc of random colour and radius on white (shapeworld-like)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    r = 0.3 + 0.5 * torch.rand(n, 1, 1, generator=g)
    mask = ((xx**2 + yy**2)[None] < r**2).float()[:, None]  # [n, 1, S, S]
    colour = torch.rand(n, 3, 1, 1, generator=g)
    return mask * colour + (1 - mask)


def test_autoencoder_reconstruction_improves_by_training():
    ae = tiny_autoencoder(lr=3e-3)
    x = blobs() * 2 - 1
    opt = torch.optim.Adam(ae.vae.parameters(), lr=3e-3)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    first = ae.losses(x, g())[1].item()
    for _ in range(60):
        loss = ae.losses(x, g())[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ae.losses(x, g())[1].item() < 0.5 * first, "L1 reconstruction should at least halve in 60 steps"


def test_autoencoder_loss_is_l1_plus_weighted_kl_and_latents_are_f_times_smaller():
    x = blobs() * 2 - 1
    a, b = tiny_autoencoder(kl_weight=0.0), tiny_autoencoder(kl_weight=0.5)
    ta, l1a, kla = a.losses(x, torch.Generator().manual_seed(1))
    tb, l1b, klb = b.losses(x, torch.Generator().manual_seed(1))
    assert torch.allclose(ta, l1a) and torch.allclose(l1a, l1b) and torch.allclose(tb, l1b + 0.5 * klb)
    dist = a.vae.encode(x).latent_dist
    manual = 0.5 * (dist.mean**2 + dist.var - 1 - dist.logvar).sum(dim=(1, 2, 3)).mean()  # KL(N(μ, σ²) ‖ N(0, I))
    assert torch.allclose(kla, manual, rtol=1e-5)
    assert downsampling_factor(a.vae) == 2 and dist.mean.shape == (8, 4, 8, 8)
    with pytest.raises(ValueError, match="kl_weight"):
        tiny_autoencoder(kl_weight=-1.0)
    with pytest.raises(ValueError, match="norm_num_groups"):
        AutoencoderSystem(block_out_channels=(6, 8), norm_num_groups=4)


def test_export_sets_the_latent_scale_to_unit_std_and_loads_back(tmp_path):
    ae = tiny_autoencoder()
    images = blobs(16)
    folder = ae.export(tmp_path / "ae", images)
    cfg = json.loads((folder / "config.json").read_text())
    vae = load_autoencoder(str(tmp_path / "ae"))  # finds ae/vae
    assert cfg["scaling_factor"] == pytest.approx(latent_scale(ae.vae, images * 2 - 1), rel=1e-6)
    z = vae.encode(images * 2 - 1).latent_dist
    z = z.mean + z.std * torch.randn(z.mean.shape, generator=torch.Generator().manual_seed(0))
    assert (z * vae.config.scaling_factor).std().item() == pytest.approx(1.0, rel=1e-4)
    assert not any(p.requires_grad for p in vae.parameters())
    with torch.no_grad():
        assert torch.allclose(vae.decode(z).sample, ae.vae.decode(z).sample, atol=1e-5)
    ae.export(tmp_path / "ae", images[:8])  # a second export replaces the first, nothing left beside it
    assert sorted(p.name for p in (tmp_path / "ae").iterdir()) == ["vae"]
    with pytest.raises(FileNotFoundError, match="train_autoencoder.yaml"):
        load_autoencoder(str(tmp_path / "nothing"))


@pytest.fixture
def latent_parts(tmp_path):
    """A tiny f = 2 autoencoder folder, a text conditioner and a 4-channel 8×8 UNet (16 px images)."""
    tiny_autoencoder().export(tmp_path / "ae", blobs(16))
    enc = CLIPTextConditioner(tiny_models.tiny_clip())
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=enc.dim,
                                norm_num_groups=4, attention_head_dim=4)
    return tmp_path / "ae", enc, unet


def test_latent_ddpm_trains_on_scaled_latents_and_decodes_its_samples(latent_parts, tmp_path):
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    ae, enc, unet = latent_parts
    system = DDPMSystem(unet, text_encoder=enc, autoencoder=str(ae), sample_steps=2, val_samples=2, warmup_steps=2,
                        ema_decay=0.9)
    assert not system.scheduler.config.clip_sample, "latents are unbounded: no x̂₀ clipping"
    images = blobs(4) * 2 - 1
    torch.manual_seed(0)
    z = system.to_model_space(images)
    assert z.shape == (4, 4, 8, 8)
    dist = system.vae.encode(images).latent_dist
    u = (z / system.vae.config.scaling_factor - dist.mean) / dist.std  # a posterior sample z = sf·(μ + σ·u), u ~ N(0, I)
    assert abs(u.mean().item()) < 0.1 and abs(u.std().item() - 1) < 0.1
    items = [{"image": x, "caption": c} for x, c in zip(blobs(4), ["a red cube", "a blue mug"] * 2)]
    loader = DataLoader(items, batch_size=2)
    trainer = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      num_sanity_val_steps=0, limit_val_batches=1, default_root_dir=str(tmp_path / "run"),
                      enable_model_summary=False)
    trainer.fit(system, loader, loader)
    assert not any(k.startswith(("_vae", "vae")) for k in system.state_dict()), "the frozen autoencoder is not checkpointed"
    x = system.generate(2, ["a red cube"] * 2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 16, 16) and 0 <= x.min() and x.max() <= 1


def test_latent_ddpm_rejects_a_unet_of_the_wrong_channel_count(latent_parts):
    ae, enc, _ = latent_parts
    with pytest.raises(ValueError, match="in_channels and out_channels to 4"):
        DDPMSystem(tiny_cond_unet(dim=enc.dim), text_encoder=enc, autoencoder=str(ae))  # a 3-channel pixel UNet


def test_latent_export_loads_as_a_latent_prior_with_the_same_decoder(latent_parts, tmp_path):
    ae, enc, unet = latent_parts
    system = DDPMSystem(unet, text_encoder=enc, autoencoder=str(ae), ema_decay=None).eval()
    export_pipeline(system, tmp_path / "pipe")
    prior = DiffusionModel(model=str(tmp_path / "pipe")).load()
    assert prior.is_latent and prior.channels == 4
    assert prior.scaling_factor == pytest.approx(system.vae.config.scaling_factor)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(prior.decode(z), ((system.from_model_space(z) + 1) / 2).clamp(0, 1), atol=1e-5)
    t = torch.tensor([500, 500])
    with torch.no_grad():
        mine = system.unet(z, t, encoder_hidden_states=enc(["a red cube"] * 2)).sample
    assert torch.allclose(prior.predict_noise(z, t, prior.text_context(["a red cube"] * 2)), mine, atol=1e-4)
