"""Spec §7 E (normalization, units) and F (order ensemble)."""

import itertools
import math

import pytest
import torch

from lmconv.likelihoods import BinaryLikelihood, DiscretizedLogisticMixtureLikelihood
from lmconv.model import log_mean_exp
from lmconv.testing import all_binary_images, tiny_model


@pytest.mark.parametrize("family,variants", [("raster", [0]), ("s_curve", range(8)), ("hilbert", range(8)),
                                             ("random", [0])])
def test_binary_probabilities_sum_to_one(family, variants):  # E1
    model = tiny_model(BinaryLikelihood(), [(2, 2)], family, list(variants))
    x = all_binary_images(2, 2)
    with torch.no_grad():
        for k in range(model.num_orders):
            assert abs(model.log_prob(x, k).exp().sum().item() - 1) < 1e-10
        assert abs(model.log_prob_ensemble(x).exp().sum().item() - 1) < 1e-10


def test_binary_3x3_sums_to_one():  # E1
    model = tiny_model(BinaryLikelihood(), [(3, 3)], "s_curve", [5])
    with torch.no_grad():
        assert abs(model.log_prob(all_binary_images(3, 3), 0).exp().sum().item() - 1) < 1e-10


def _random_head(lik, n=1):
    g = torch.Generator().manual_seed(lik.n_bins)
    out = torch.randn(n, lik.out_channels, 1, 1, generator=g, dtype=torch.float64)
    k, per = lik.n_mix, (3 if lik.channels == 3 else 2)
    for c in range(lik.channels):
        start = k + c * per * k + k  # log-scales of channel c
        out[:, start:start + k] = torch.rand(n, k, 1, 1, generator=g, dtype=torch.float64) * 4 - 3  # [-3, 1]
    return out


@pytest.mark.parametrize("n_bins", [2, 4, 17, 256])
@pytest.mark.parametrize("fallback,tol", [(False, 1e-10), (True, 1e-4)])
def test_dlm_grayscale_pixel_sums_to_one(n_bins, fallback, tol):  # E2
    lik = DiscretizedLogisticMixtureLikelihood(1, n_bins, 5, fallback=fallback)
    out = _random_head(lik)
    levels = torch.arange(n_bins).view(-1, 1, 1, 1)
    total = lik.log_prob(out.expand(n_bins, -1, -1, -1), levels).exp().sum().item()
    assert abs(total - 1) < tol


def test_dlm_rgb_pixel_sums_to_one():  # E2, coupling included
    lik = DiscretizedLogisticMixtureLikelihood(3, 4, 5, fallback=False)
    out = _random_head(lik)
    levels = torch.tensor(list(itertools.product(range(4), repeat=3))).view(-1, 3, 1, 1)
    assert abs(lik.log_prob(out.expand(64, -1, -1, -1), levels).exp().sum().item() - 1) < 1e-10


def test_dlm_whole_model_sums_to_one():  # E3
    gray = tiny_model(DiscretizedLogisticMixtureLikelihood(1, 4, 3, fallback=False), [(2, 2)], "s_curve", [3])
    x = torch.tensor(list(itertools.product(range(4), repeat=4))).view(-1, 1, 2, 2)
    rgb = tiny_model(DiscretizedLogisticMixtureLikelihood(3, 4, 3, fallback=False), [(1, 2)], "s_curve", [0])
    y = torch.tensor(list(itertools.product(range(4), repeat=6))).view(-1, 2, 3).permute(0, 2, 1).reshape(-1, 3, 1, 2)
    with torch.no_grad():
        assert abs(gray.log_prob(x, 0).exp().sum().item() - 1) < 1e-10
        assert abs(rgb.log_prob(y, 0).exp().sum().item() - 1) < 1e-10


def test_units_one_bit_per_dimension():  # E4
    model = tiny_model(BinaryLikelihood(), [(28, 28)], "s_curve", [0], filters=4, nr_resnet=0)
    with torch.no_grad():
        model.network.nin_out.g.zero_()
        model.network.nin_out.bias.zero_()
        nll = -model.log_prob(torch.randint(0, 2, (2, 1, 28, 28)), 0)
    torch.testing.assert_close(nll, torch.full((2,), 784 * math.log(2), dtype=torch.float64), atol=1e-9, rtol=0)
    assert abs(nll[0].item() - 543.43) < 0.01
    assert abs(nll[0].item() / (1 * 28 * 28 * math.log(2)) - 1) < 1e-12


def test_ensemble_identities():  # F1, F2, F3
    model = tiny_model(BinaryLikelihood(), [(4, 4)], "s_curve")
    x = torch.randint(0, 2, (6, 1, 4, 4))
    with torch.no_grad():
        lp = torch.stack([model.log_prob(x, k) for k in range(8)])  # [K, B]
        torch.testing.assert_close(model.log_prob_ensemble(x, [2, 2, 2]), lp[2], atol=1e-12, rtol=0)  # F1
        ens = model.log_prob_ensemble(x)
    nll_ens, nll = -ens, -lp
    assert (nll.min(0).values <= nll_ens + 1e-12).all()  # F2
    assert (nll_ens <= nll.min(0).values + math.log(8) + 1e-12).all()
    assert (nll_ens <= nll.mean(0) + 1e-12).all()  # Jensen
    torch.testing.assert_close(ens, torch.log(lp.exp().mean(0)), atol=1e-10, rtol=0)
    far = torch.tensor([[-1e4], [-1e4 - 1.0], [-1e4 + 2.5]], dtype=torch.float64)  # exp underflows: F3
    ref = -1e4 + math.log((1 + math.exp(-1.0) + math.exp(2.5)) / 3)
    assert abs(log_mean_exp(far).item() - ref) < 1e-9


def test_bad_levels_are_rejected():
    model = tiny_model(BinaryLikelihood(), [(4, 4)], "s_curve", [0])
    with pytest.raises(ValueError, match="Levels must lie in 0..1"):
        model.log_prob(torch.full((1, 1, 4, 4), 3), 0)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        model.log_prob(torch.zeros(1, 3, 4, 4, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="5x5 do not match"):
        model.log_prob(torch.zeros(1, 1, 5, 5, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        DiscretizedLogisticMixtureLikelihood(2)
