"""Losses and schedules (spec §13, items 1–6): transmittance loss and its gradient, λ, τ and lr schedules,
the CLIP loss, the Table 4.2 variants."""

import math

import pytest
import torch

from common.losses import transmittance_loss
from dreamfields.regularizers import SPARSITY_KINDS, sparsity_objective
from dreamfields.renderer import DreamFieldsRenderer
from dreamfields.schedules import ipe_cov_scale, transmittance_target, warmup_lr


def test_transmittance_loss_value_and_gradients():
    t = torch.full((4, 4), 0.95, dtype=torch.float64, requires_grad=True)
    loss = transmittance_loss(t, 0.88)
    loss.backward()
    assert loss.item() == pytest.approx(-0.88)
    assert torch.equal(t.grad, torch.zeros_like(t))  # exactly zero once mean(T) ≥ τ
    t = torch.full((4, 4), 0.5, dtype=torch.float64, requires_grad=True)
    loss = transmittance_loss(t, 0.88)
    loss.backward()
    assert loss.item() == pytest.approx(-0.5)
    torch.testing.assert_close(t.grad, torch.full_like(t, -1.0 / 16))


def test_transmittance_gradient_to_density_is_zero_above_target():
    """Through the renderer: a nearly empty scene (mean T ≥ τ) gets no gradient on σ from L_T."""
    sigma = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)

    class Const(torch.nn.Module):
        def forward(self, x, d=None, cov=None):
            from common.fields.base import FieldOutput
            return FieldOutput(sigma.float().expand(x.shape[:-1]), torch.ones(*x.shape[:-1], 3))

    r = DreamFieldsRenderer(n_samples=8, with_covariance=False, jitter=False, checkpoint_chunks=False)
    o = torch.tensor([[0.0, 0.0, 4.0]]).expand(6, 3)
    d = torch.tensor([[0.0, 0.0, -1.0]]).expand(6, 3)
    out = r(Const(), o, d)
    transmittance_loss(out.transmittance, 0.88).backward()
    assert sigma.grad is None or sigma.grad.item() == 0.0


def test_total_loss_is_clip_plus_lambda_transmittance():
    loss_clip = torch.tensor(-0.3, requires_grad=True)
    t = torch.full((8,), 0.5, requires_grad=True)
    total, terms = sparsity_objective("clipped_additive", loss_clip, t, 0.88, lambda_transmittance=0.5)
    assert total.item() == pytest.approx(-0.3 + 0.5 * -0.5)
    assert terms["loss_transmittance"].item() == pytest.approx(-0.5)
    total.backward()
    assert loss_clip.grad.item() == 1.0
    zero, _ = sparsity_objective("clipped_additive", loss_clip, t, 0.88, lambda_transmittance=0.0)
    assert zero.item() == pytest.approx(-0.3)  # λ = 0 leaves only L_CLIP (and its gradient)


def test_tau_schedule_values():
    assert transmittance_target(0) == pytest.approx(0.400, abs=1e-12)
    assert transmittance_target(100) == pytest.approx(0.5651, abs=1e-4)
    assert transmittance_target(250) == pytest.approx(0.7317, abs=1e-4)
    assert transmittance_target(500) == pytest.approx(0.880) and transmittance_target(10_000) == pytest.approx(0.880)
    taus = [transmittance_target(i) for i in range(0, 700, 7)]
    assert all(b >= a for a, b in zip(taus, taus[1:]))
    # camera scale: radius 8 at m_focal 1.2 makes 1 - τ four times smaller; the opacity target is clipped at 1
    for step in (0, 250, 500):
        assert 1 - transmittance_target(step, 1.2, 8.0) == pytest.approx((1 - transmittance_target(step)) / 4)
    assert transmittance_target(0, focal_mult=4.0) == 0.0


def test_warmup_lr_values():
    assert warmup_lr(0) == pytest.approx(1e-5, rel=1e-12)
    assert warmup_lr(750) == pytest.approx(3.1623e-5, rel=1e-4)
    assert warmup_lr(1500) == pytest.approx(1e-4) and warmup_lr(9999) == pytest.approx(1e-4)
    lrs = [warmup_lr(i) for i in range(0, 2000, 10)]
    assert all(b >= a for a, b in zip(lrs, lrs[1:]))
    # exponential: log lr is linear in the step during the warm-up
    assert math.log(warmup_lr(300)) - math.log(warmup_lr(0)) == pytest.approx(math.log(warmup_lr(600)) - math.log(warmup_lr(300)))
    with pytest.raises(ValueError):
        warmup_lr(0, lr_init=0.0)


def test_ipe_cov_scale():
    assert ipe_cov_scale(0) == 1.0 and ipe_cov_scale(10_000) == 1.0  # off by default
    assert ipe_cov_scale(0, 1000) == pytest.approx(4.0)  # sc = 2 -> sc² = 4
    assert ipe_cov_scale(500, 1000) == pytest.approx(2.0)
    assert ipe_cov_scale(1000, 1000) == 1.0 and ipe_cov_scale(5000, 1000) == 1.0


def test_clip_loss_is_minus_one_when_encoder_returns_text_embedding(system):
    """L_CLIP = −1 if every augmented view embeds to h(y); gradients reach the field, not CLIP."""
    clip = system.guidance.clips[0]
    e_y = system.text_embedding()
    view = system.render_training_view()
    orig = clip.encode_image
    clip.encode_image = lambda images, check_range=True: e_y.expand(images.shape[0], -1) + 0 * images.mean()
    try:
        _, terms = system.compute_losses(view, step=0)
    finally:
        clip.encode_image = orig
    assert terms["loss_clip"].item() == pytest.approx(-1.0, abs=1e-6)


def test_clip_loss_matches_manual_average_and_gradients_reach_field_only(system):
    clip = system.guidance.clips[0]
    view = system.render_training_view()
    gen_state = system._generator("augment").get_state()
    total, terms = system.compute_losses(view, step=0)
    system._generator("augment").set_state(gen_state)
    views = system.guidance.augment(view.rgb.clamp(0, 1), view.alpha, clip.image_size, system._generator("augment"))
    manual = -(clip.encode_image(views) @ system.text_embedding().T).mean()
    torch.testing.assert_close(terms["loss_clip"], manual)
    total.backward()
    assert all(p.grad is None for p in clip.model.parameters())
    assert all(not p.requires_grad for p in clip.model.parameters())
    assert sum(p.grad.abs().sum() for p in system.field.parameters() if p.grad is not None) > 0


def test_beta_prior_and_gated_variants():
    t = torch.tensor([0.0, 1.0, 0.25, 0.5], dtype=torch.float64, requires_grad=True)
    loss_clip = torch.tensor(-0.4, dtype=torch.float64)
    total, terms = sparsity_objective("beta_prior", loss_clip, t, 0.88, lambda_beta=1e-3)
    tc = t.detach().clamp(1e-6, 1 - 1e-6)
    beta = (tc.log() + (1 - tc).log()).mean()  # eq. 4.10 with clamping
    torch.testing.assert_close(terms["loss_beta"], beta)
    torch.testing.assert_close(total, loss_clip + 1e-3 * beta)
    total.backward()
    assert torch.isfinite(t.grad).all()  # no NaN at T ∈ {0, 1}
    mean_t = t.detach().mean()
    torch.testing.assert_close(sparsity_objective("gated", loss_clip, t, 0.88)[0], mean_t * loss_clip)
    torch.testing.assert_close(sparsity_objective("gated_as_written", loss_clip, t, 0.88)[0], -mean_t * loss_clip)
    # eq. 4.11: min(τ, mean T)·L_CLIP, both below and above the target
    torch.testing.assert_close(sparsity_objective("clipped_gated", loss_clip, t, 0.88)[0], mean_t * loss_clip)
    torch.testing.assert_close(sparsity_objective("clipped_gated", loss_clip, t, 0.3)[0], 0.3 * loss_clip)
    for kind in ("none", "perturb_sigma"):
        assert sparsity_objective(kind, loss_clip, t, 0.88)[0] is loss_clip
    assert set(SPARSITY_KINDS) >= {"none", "perturb_sigma", "beta_prior", "gated", "clipped_gated", "clipped_additive"}
    with pytest.raises(ValueError, match="unknown sparsity"):
        sparsity_objective("l1", loss_clip, t, 0.88)


def test_perturb_sigma_sets_field_noise_in_training_only(make_system):
    sys_ = make_system(sparsity="perturb_sigma", sigma_noise_std=1.0)
    assert sys_.field.density_noise_std == 1.0
    x = torch.zeros(64, 3)
    sys_.field.train()
    assert sys_.field(x).density.std() > 0.1  # ε ~ N(0, 1) before the softplus
    sys_.field.eval()
    assert sys_.field(x).density.std() < 1e-6
