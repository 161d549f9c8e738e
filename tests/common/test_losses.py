"""Losses: transmittance (value, zero gradient above τ, schedule), emptiness, TV, beta prior, entropy."""

import pytest
import torch

from common.losses import (
    TransmittanceLoss,
    beta_prior_loss,
    binary_entropy_loss,
    camera_scale,
    emptiness_loss,
    emptiness_weight,
    total_variation,
    transmittance_loss,
    transmittance_target,
)


@pytest.mark.parametrize("value", [0.95, 0.88])
def test_transmittance_loss_zero_gradient_at_or_above_target(value):
    T = torch.full((4, 4), value, dtype=torch.float64, requires_grad=True)
    loss = transmittance_loss(T, 0.88)
    loss.backward()
    assert loss.item() == pytest.approx(-0.88)
    assert torch.equal(T.grad, torch.zeros_like(T))


def test_transmittance_loss_below_target():
    T = torch.full((4, 4), 0.5, dtype=torch.float64, requires_grad=True)
    loss = transmittance_loss(T, 0.88)
    loss.backward()
    assert loss.item() == pytest.approx(-0.5)
    torch.testing.assert_close(T.grad, torch.full_like(T, -1 / 16))


def test_transmittance_target_schedule():
    assert transmittance_target(0) == pytest.approx(0.400)
    assert transmittance_target(100) == pytest.approx(0.5651, abs=1e-4)
    assert transmittance_target(250) == pytest.approx(0.7317, abs=1e-4)
    assert transmittance_target(500) == transmittance_target(10_000) == pytest.approx(0.880)
    taus = [transmittance_target(i) for i in range(0, 600, 10)]
    assert all(b >= a for a, b in zip(taus, taus[1:]))
    assert camera_scale(1.2, 4.0) == pytest.approx(1.2)
    assert 1 - transmittance_target(500, scale=camera_scale(1.2, 8.0)) == pytest.approx(0.12 / 4)
    assert transmittance_target(0, scale=1.0) == pytest.approx(0.5)  # PureCLIPNeRF
    assert transmittance_target(0, scale=5.0) == 0.0  # opacity target clipped at 1
    assert TransmittanceLoss()(torch.ones(3), 0).item() == pytest.approx(-0.4)


def test_emptiness_loss_and_schedule():
    w = torch.tensor([0.0, 0.1, 0.5, 0.2], requires_grad=True)
    loss = emptiness_loss(w, beta=10)
    assert loss.item() == pytest.approx(0.8958797, abs=1e-6)
    assert emptiness_loss(torch.zeros(5)).item() == 0.0
    x = torch.tensor([0.0, 1.0], requires_grad=True)
    emptiness_loss(x).backward()
    assert x.grad[0].item() == pytest.approx(11 * x.grad[1].item())  # β/(n(1 + βw)), β = 10
    padded = emptiness_loss(torch.tensor([0.1, 0.5, 0.0, 0.0]))
    assert padded.item() == pytest.approx(emptiness_loss(torch.tensor([0.1, 0.5])).item() / 2)
    assert emptiness_weight(4999, 10_000) == 1e4 and emptiness_weight(5000, 10_000) == 2e5


def test_total_variation_and_entropies():
    assert total_variation(torch.ones(1, 3, 8, 8)).item() == 0.0
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    assert total_variation(ramp).item() == pytest.approx(0.5)  # (1 + 0)/2
    assert total_variation(ramp, power=2).item() == pytest.approx(0.5)
    assert total_variation(torch.ones(1, 2, 4, 4, 4), dims=3).item() == 0.0
    x = torch.tensor([0.0, 1.0, 0.5], requires_grad=True)
    for fn in (beta_prior_loss, binary_entropy_loss):
        v = fn(x)
        (g,) = torch.autograd.grad(v, x)
        assert torch.isfinite(v) and torch.isfinite(g).all()
    assert binary_entropy_loss(torch.tensor([0.5])).item() == pytest.approx(0.6931472)
    T = torch.tensor([0.2, 0.7])
    assert beta_prior_loss(T).item() == pytest.approx(((T.log() + (1 - T).log()).mean()).item())
