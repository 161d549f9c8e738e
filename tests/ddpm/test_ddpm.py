"""DDPM: schedule values, loss falls, samplers, CFG dropout, data modules, FID skip, Lightning smoke."""

import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from common.testing import tiny_models
from ddpm.conditioning import CLIPTextConditioner, drop_condition
from ddpm.data import CIFAR10DataModule, ImageFolderDataModule
from ddpm.fid import fid_unavailable_reason, make_fid
from ddpm.sampling import make_scheduler, sample
from ddpm.system import DDPMSystem


def tiny_unet(size: int = 8) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)


def tiny_cond_unet(size: int = 8, dim: int = 32, text_time: bool = False) -> UNet2DConditionModel:
    """``text_time``: the attention-pooled text states are also added to the timestep embedding
    (diffusers ``addition_embed_type="text"``, as in DeepFloyd IF; tried for the shapeworld prior, see
    shapeworld/README.md, not shipped)."""
    torch.manual_seed(0)
    extra = dict(addition_embed_type="text", addition_embed_type_num_heads=4) if text_time else {}
    return UNet2DConditionModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=dim,
                                norm_num_groups=4, attention_head_dim=4, **extra)


def test_ddpm_rejects_an_unknown_lr_decay():
    with pytest.raises(ValueError, match="lr_decay"):
        DDPMSystem(tiny_unet(), lr_decay="linear")


def test_cosine_decay_reaches_the_final_ratio_at_max_steps(tmp_path):
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    system = DDPMSystem(tiny_unet(), ema_decay=None, lr=1e-3, warmup_steps=2, lr_decay="cosine", lr_final_ratio=0.2)
    loader = DataLoader([{"image": torch.rand(3, 8, 8)} for _ in range(4)], batch_size=2)
    trainer = Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      limit_val_batches=0, default_root_dir=str(tmp_path), enable_model_summary=False)
    trainer.fit(system, loader)
    # the scheduler has stepped 6 times: the next step's learning rate is the final one
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.2e-3)


def test_schedule_reference_values():
    """sds_ddpm.md §3.2: ᾱ_1 = 0.9999, ᾱ_500 = 0.0785872, ᾱ_1000 = 4.0358e-5 (diffusers index t−1)."""
    ab = make_scheduler().alphas_cumprod.double()
    assert ab[0].item() == pytest.approx(0.9999, rel=1e-6)
    assert ab[499].item() == pytest.approx(0.0785872, rel=1e-4)
    assert ab[999].item() == pytest.approx(4.0358e-5, rel=1e-3)
    assert ab[49].sqrt().item() == pytest.approx(0.98540, abs=1e-4)


def test_loss_falls():
    system = DDPMSystem(tiny_unet(), ema_decay=None, warmup_steps=0)
    data = torch.rand(4, 3, 1, 1).expand(4, 3, 8, 8) * 2 - 1  # four flat colours in [-1, 1]
    opt = torch.optim.Adam(system.unet.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        loss = system.diffusion_loss(data, None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampling_shape_range(sampler):
    system = DDPMSystem(tiny_unet(), ema_decay=0.99, sampler=sampler, sample_steps=3)
    x = system.generate(2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 8, 8) and x.min() >= 0 and x.max() <= 1 and torch.isfinite(x).all()


def test_ddim_eta0_deterministic_and_ancestral_stochastic():
    unet = tiny_unet().eval()
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    run = lambda sched, seed, eta=0.0: sample(unet, make_scheduler(sched), (2, 3, 8, 8), 4, eta=eta, x_T=x_T.clone(),
                                               generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run("ddim", 0), run("ddim", 1))
    assert not torch.allclose(run("ddim", 0, eta=1.0), run("ddim", 1, eta=1.0))
    assert not torch.allclose(run("ddpm", 0), run("ddpm", 1))


def test_ddim_step_matches_eq_6_2():
    """x_{t−1} = α_{t−1}·x̂ + σ_{t−1}·ε with x̂ = (x_t − σ_t ε)/α_t (thesis eq. 6.2), one strided step."""
    sched = make_scheduler("ddim", clip_sample=False)
    sched.set_timesteps(10)
    t, t_prev = int(sched.timesteps[0]), int(sched.timesteps[1])
    x_t, eps = torch.randn(1, 3, 4, 4, dtype=torch.float64), torch.randn(1, 3, 4, 4, dtype=torch.float64)
    ab = sched.alphas_cumprod.double()
    x_hat = (x_t - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()
    expected = ab[t_prev].sqrt() * x_hat + (1 - ab[t_prev]).sqrt() * eps
    out = sched.step(eps, sched.timesteps[0], x_t, eta=0.0).prev_sample
    assert torch.allclose(out, expected, atol=1e-5)


def test_v_prediction_loss_target_is_the_velocity():
    """v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x0 (Salimans & Ho 2022): the v-MSE of a UNet that outputs zero is E‖v‖²,
    recomputed here from the same t and ε by hand."""
    unet = tiny_unet()
    for p in unet.parameters():
        p.data.zero_()  # zero output
    system = DDPMSystem(unet, ema_decay=None, prediction_type="v_prediction")
    x0 = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    loss = system.diffusion_loss(x0, None, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (3,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    ab = make_scheduler().alphas_cumprod[t].view(3, 1, 1, 1)
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
    assert loss.item() == pytest.approx((v**2).mean().item(), rel=1e-5)
    eps_loss = DDPMSystem(unet, ema_decay=None).diffusion_loss(x0, None, torch.Generator().manual_seed(0))
    assert eps_loss.item() == pytest.approx((eps**2).mean().item(), rel=1e-5) and abs(eps_loss.item() - loss.item()) > 1e-3


def test_min_snr_weighted_loss_matches_the_closed_form():
    """Min-SNR-γ (Hang et al. 2023): with a zero-output UNet the ε-loss is mean_b w_b·mean(ε_b²) with
    w = min(SNR, γ)/SNR, recomputed by hand from the same t and ε; the v-weight min(SNR, γ)/(SNR + 1) puts the same
    weight on the ε-MSE (v-MSE = ε-MSE·(SNR + 1)/SNR); validation's unweighted loss is the plain mean."""
    unet = tiny_unet()
    for p in unet.parameters():
        p.data.zero_()
    system = DDPMSystem(unet, ema_decay=None, snr_gamma=5.0)
    x0 = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    loss = system.diffusion_loss(x0, None, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (6,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    ab = make_scheduler().alphas_cumprod.double()[t]
    snr = ab / (1 - ab)
    w = torch.minimum(snr, torch.full_like(snr, 5.0)) / snr
    assert (w < 1).any() and (w == 1).any()  # both regimes occur in this batch
    expected = (w * (eps.double() ** 2).flatten(1).mean(1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    plain = system.diffusion_loss(x0, None, torch.Generator().manual_seed(0), weighted=False)
    assert plain.item() == pytest.approx((eps**2).mean().item(), rel=1e-5) and abs(plain.item() - loss.item()) > 1e-3
    v_system = DDPMSystem(unet, ema_decay=None, snr_gamma=5.0, prediction_type="v_prediction")
    assert torch.allclose(v_system.loss_weight(t).double() * (snr + 1) / snr, w.float().double(), rtol=1e-5)


def test_min_snr_gamma_must_be_positive():
    with pytest.raises(ValueError, match="snr_gamma"):
        DDPMSystem(tiny_unet(), ema_decay=None, snr_gamma=0.0)


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_v_prediction_sampler_matches_the_equivalent_epsilon_model(sampler, eta):
    """A v-network built from an ε-network (v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x̂0, x̂0 = (x − sqrt(1 − ᾱ)·ε)/sqrt(ᾱ))
    sampled with a v-prediction scheduler gives the ε-network's samples: the scheduler is configured for v."""
    eps_net = tiny_unet().eval()
    ab = make_scheduler().alphas_cumprod

    class VNet(torch.nn.Module):
        def forward(self, x, t):
            e = eps_net(x, t).sample
            a = ab[t].view(-1, 1, 1, 1)
            x0 = (x - (1 - a).sqrt() * e) / a.sqrt()
            return type("Out", (), {"sample": a.sqrt() * e - (1 - a).sqrt() * x0})()

    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    run = lambda net, pred: sample(net, make_scheduler(sampler, clip_sample=False, prediction_type=pred), (2, 3, 8, 8),
                                   5, eta=eta, x_T=x_T.clone(), generator=torch.Generator().manual_seed(3),
                                   device=torch.device("cpu"))
    with torch.no_grad():
        a, b = run(eps_net, "epsilon"), run(VNet(), "v_prediction")
        wrong = run(VNet(), "epsilon")
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, wrong, atol=1e-2)


def test_unknown_prediction_type_is_rejected():
    with pytest.raises(ValueError, match="prediction_type"):
        make_scheduler(prediction_type="sample")


def test_cfg_dropout_rate():
    ctx, null = torch.ones(20000, 2, 3), torch.zeros(1, 2, 3)
    out, dropped = drop_condition(ctx, null, 0.3, torch.Generator().manual_seed(0))
    assert abs(dropped.float().mean().item() - 0.3) < 0.015
    assert torch.equal(out[dropped], torch.zeros_like(out[dropped])) and (out[~dropped] == 1).all()
    assert not drop_condition(ctx, null, 0.0)[1].any() and drop_condition(ctx, null, 1.0)[1].all()
    with pytest.raises(ValueError):
        drop_condition(ctx, null, 1.5)


def test_conditional_system_fit_and_sample_grid(tmp_path):
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    clip = tiny_models.tiny_clip()
    enc = CLIPTextConditioner(clip)
    assert enc(["a red cube", ""]).shape == (2, 16, enc.dim)
    system = DDPMSystem(tiny_cond_unet(dim=enc.dim), text_encoder=enc, sample_steps=2, val_samples=2, warmup_steps=2,
                        ema_decay=0.9, p_uncond=0.5)
    items = [{"image": torch.rand(3, 8, 8), "caption": c} for c in ["a red cube", "a blue mug"] * 2]
    loader = DataLoader(items, batch_size=2)
    trainer = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      num_sanity_val_steps=0, limit_val_batches=1, default_root_dir=str(tmp_path), enable_model_summary=False)
    trainer.fit(system, loader, loader)
    assert list((tmp_path / "samples").glob("step_*.png"))
    assert not any(k.startswith("text_encoder") for k in system.state_dict())
    x = system.generate(2, ["a red cube", "a red cube"], guidance_scale=2.0)
    assert x.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="one prompt per sample"):
        system.generate(2)


def test_image_folder_and_cifar_errors(tmp_path):
    from PIL import Image

    for i in range(5):
        Image.new("RGB", (12, 10), (i * 40, 0, 0)).save(tmp_path / f"im{i}.png")
    (tmp_path / "im0.txt").write_text("a red square")
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, val_fraction=0.2, batch_size=2, num_workers=0)
    dm.setup()
    assert len(dm.train_set) == 4 and len(dm.val_set) == 1
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 8, 8)
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found in .*cifar-10-python.tar.gz"):
        CIFAR10DataModule(root=str(tmp_path / "nope")).prepare_data()
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderDataModule(str(tmp_path / "missing")).setup()


def test_fid_skips_with_reason(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_fidelity(name, *a, **k):
        if name == "torch_fidelity":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_fidelity)
    reason = fid_unavailable_reason()
    assert reason and "FID skipped" in reason
    assert make_fid() == (None, reason)


def test_init_weights_fine_tunes_from_a_unet_folder_and_grows_a_pooled_text_embedding(tmp_path):
    from ddpm.system import load_unet_weights

    src = tiny_cond_unet()
    with torch.no_grad():  # tiny_cond_unet is seeded: make the folder's weights differ from a fresh one's
        for p in src.parameters():
            p.add_(0.05 * torch.randn_like(p))
    src.save_pretrained(tmp_path / "pipe" / "unet")  # a pipeline folder's layout
    x, t, c = torch.randn(2, 3, 8, 8), torch.tensor([3, 900]), torch.randn(2, 5, 32)
    with torch.no_grad():
        ref = src(x, t, c).sample
    # the same architecture: every tensor loaded, same outputs, through the system's constructor (UNet and EMA)
    system = DDPMSystem(unet=tiny_cond_unet(), init_weights=str(tmp_path / "pipe"), ema_decay=0.9)
    with torch.no_grad():
        torch.testing.assert_close(system.unet(x, t, c).sample, ref)
        torch.testing.assert_close(system.ema(x, t, c).sample, ref)
    # a pooled-text embedding the folder lacks starts at zero: the network computes what the folder's did,
    # and the new embedding still receives a gradient
    grown = tiny_cond_unet(text_time=True)
    missing = load_unet_weights(grown, str(tmp_path / "pipe" / "unet"))
    assert missing and all(k.startswith("add_embedding.") for k in missing)
    out = grown(x, t, c).sample
    torch.testing.assert_close(out.detach(), ref)
    out.square().sum().backward()
    assert grown.add_embedding.norm2.weight.grad.abs().sum() > 0
    # a different architecture is refused, naming the fix; a folder without weights says where it looked
    with pytest.raises(ValueError, match="block_out_channels"):
        load_unet_weights(UNet2DConditionModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8),
                                               layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                               up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                               attention_head_dim=4, norm_num_groups=8), str(tmp_path / "pipe"))
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        load_unet_weights(tiny_cond_unet(), str(tmp_path))
