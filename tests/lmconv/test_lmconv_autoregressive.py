"""Spec §7 D (autoregressive property of the whole model), G2 (context visibility), I2 (shapes)."""

import pytest
import torch

from lmconv.likelihoods import BinaryLikelihood, DiscretizedLogisticMixtureLikelihood
from lmconv.network import LMConvNetwork
from lmconv.orders import rank_grid
from lmconv.testing import dependency_matrix, tiny_model

HEADS = {"binary": BinaryLikelihood, "rgb": lambda: DiscretizedLogisticMixtureLikelihood(3, 256, 3)}


def _future(order, h, w):
    r = rank_grid(order, h, w).flatten()
    return r[None, :] >= r[:, None]  # [p, q]: q is not earlier than p


@pytest.mark.parametrize("head", ["binary", "rgb"])
@pytest.mark.parametrize("family,variants", [("raster", [0]), ("s_curve", range(8)), ("hilbert", range(8)),
                                             ("random", range(3))])
def test_exact_zero_gradient_on_the_future(head, family, variants):  # D1
    lik = HEADS[head]()
    model = tiny_model(lik, [(6, 6)], family, list(variants), order_seed=11)
    x = torch.randn(1, lik.channels, 6, 6, dtype=torch.float64)
    for k in range(model.num_orders):
        jac = dependency_matrix(model, x, k)
        assert (jac[_future(model.masks.order(k, 6, 6), 6, 6)] == 0).all()  # exactly, q = p included


@pytest.mark.parametrize("family", ["s_curve", "hilbert"])
def test_maximum_receptive_field(family):  # D2
    model = tiny_model(BinaryLikelihood(), [(8, 8)], family)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    for k in range(8):
        jac = dependency_matrix(model, x, k)  # a random channel projection rules out cancellations
        past = ~_future(model.masks.order(k, 8, 8), 8, 8)
        assert (jac[past] != 0).all(), f"{family} variant {k} misses a predecessor"


def test_raster_has_a_blind_spot():  # D2
    model = tiny_model(BinaryLikelihood(), [(8, 8)], "raster", [0])
    jac = dependency_matrix(model, torch.randn(1, 1, 8, 8, dtype=torch.float64), 0, n_proj=2)
    past = ~_future(model.masks.order(0, 8, 8), 8, 8)
    assert (jac[past] == 0).any()


def test_perturbing_the_future_changes_nothing():  # D3, D4
    lik = DiscretizedLogisticMixtureLikelihood(3, 256, 3)
    model = tiny_model(lik, [(5, 6)], "random", [0], order_seed=4)
    order = model.masks.order(0, 5, 6)
    ranks = rank_grid(order, 5, 6)
    x = torch.rand(1, 3, 5, 6, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        base = model.forward_raw(x, 0)
        for t in (0, 7, 29):
            y = x.clone()
            later = ranks >= t
            y[:, :, later] = torch.rand(1, 3, int(later.sum()), dtype=torch.float64) * 2 - 1
            out = model.forward_raw(y, 0)
            assert torch.equal(out[:, :, ranks <= t], base[:, :, ranks <= t])
        roots = [model.forward_raw(torch.rand_like(x) * 2 - 1, 0)[:, :, order[0][0], order[0][1]] for _ in range(5)]
        assert all(torch.equal(r, roots[0]) for r in roots)  # D4: the first pixel is unconditional


def test_context_visibility_for_completion():  # G2
    model = tiny_model(BinaryLikelihood(), [(8, 8)], "s_curve")
    hidden = torch.zeros(8, 8, dtype=torch.bool)
    hidden[:4] = True
    hid, obs = hidden.flatten(), ~hidden.flatten()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    jac1 = dependency_matrix(model, x, 1, n_proj=2)  # variant 1: top rows last (max context)
    assert (jac1[hid][:, obs] != 0).all()
    jac0 = dependency_matrix(model, x, 0)  # variant 0: top rows first (adversarial)
    assert (jac0[hid][:, obs] == 0).all()


@pytest.mark.parametrize("lik,n_out", [(BinaryLikelihood(), 2), (DiscretizedLogisticMixtureLikelihood(1, 256), 30),
                                       (DiscretizedLogisticMixtureLikelihood(3, 256), 100)])
def test_shapes_and_skip_stack(lik, n_out):  # I2
    assert lik.out_channels == n_out
    for h, w in ((8, 8), (28, 28), (6, 10)):
        model = tiny_model(lik, [(h, w)], "s_curve", [0], nr_resnet=5, filters=4, dtype=torch.float32)
        with torch.no_grad():
            out = model.forward_raw(torch.zeros(1, lik.channels, h, w), 0)
        assert out.shape == (1, n_out, h, w)
        assert model.network.skip_counts == (18, 17)


def test_parameter_counts_match_the_thesis():  # I1
    counts = {}
    with torch.device("meta"):
        for name, (f, lik) in {"rgb160": (160, DiscretizedLogisticMixtureLikelihood(3)),
                               "gray160": (160, DiscretizedLogisticMixtureLikelihood(1)),
                               "bin160": (160, BinaryLikelihood()),
                               "rgb320": (320, DiscretizedLogisticMixtureLikelihood(3))}.items():
            net = LMConvNetwork(lik.channels, lik.out_channels, f, 5, 3, 2)
            counts[name] = sum(p.numel() for p in net.parameters())
    assert counts == {"rgb160": 46_072_360, "gray160": 46_058_140, "bin160": 46_053_604, "rgb320": 184_202_120}
