"""Spec §7 G (completion likelihood and sampler) and H (sampling)."""

import pytest
import torch

from lmconv.likelihoods import BinaryLikelihood, DiscretizedLogisticMixtureLikelihood
from lmconv.orders import rank_grid, s_curve
from lmconv.sampling import complete, sample
from lmconv.testing import all_binary_images, tiny_model


def test_conditional_likelihood_matches_brute_force():  # G1
    model = tiny_model(BinaryLikelihood(), [(2, 4)], "s_curve")
    xs = all_binary_images(2, 4)  # [256, 1, 2, 4]
    hidden = torch.zeros(2, 4, dtype=torch.bool)
    hidden[0] = True
    flat_h = hidden.flatten()
    with torch.no_grad():
        for variant, max_context in ((1, True), (0, False)):
            assert model.completion_order(hidden, hidden_last=max_context) == model.masks.order(variant, 2, 4)
            cond = model.conditional_log_prob(xs, hidden, variant)  # [256]
            joint = model.log_prob(xs, variant)
            bits = xs.view(256, 8)
            for i in range(0, 256, 37):
                same_obs = (bits[:, ~flat_h] == bits[i, ~flat_h]).all(1)
                same_hid = (bits[:, flat_h] == bits[i, flat_h]).all(1)
                if max_context:  # log p(x_H | x_O) = log p(x) − log Σ_{x'_H} p(x'_H, x_O)
                    ref = joint[i] - torch.logsumexp(joint[same_obs], 0)
                else:  # the adversarial sum is the marginal log Σ_{x'_O} p(x_H, x'_O)
                    ref = torch.logsumexp(joint[same_hid], 0)
                assert abs(cond[i].item() - ref.item()) < 1e-10


def test_completion_keeps_observed_and_matches_greedy_decode():  # G3
    model = tiny_model(BinaryLikelihood(), [(6, 6)], "s_curve")
    x = torch.randint(0, 2, (3, 1, 6, 6))
    hidden = torch.zeros(6, 6, dtype=torch.bool)
    hidden[:3] = True
    out = complete(model, x, hidden, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.long and torch.equal(out[:, :, ~hidden], x[:, :, ~hidden])
    assert out.min() >= 0 and out.max() <= 1
    greedy = complete(model, x, hidden, greedy=True)
    order = model.masks.order(1, 6, 6)  # trained max-context variant for the top half
    canvas = x.double() * 2 - 1
    canvas[:, :, hidden] = 0
    with torch.no_grad():
        for r, c in order[18:]:
            logits = model.forward_raw(canvas, 1)[:, :, r, c]
            canvas[:, 0, r, c] = logits.argmax(1).double() * 2 - 1
    assert torch.equal(greedy, ((canvas + 1) / 2).round().long())


def test_completion_bad_masks():
    model = tiny_model(BinaryLikelihood(), [(4, 4)], "s_curve", [0, 1])
    x = torch.randint(0, 2, (1, 1, 4, 4))
    with pytest.raises(ValueError, match="hides no pixel"):
        complete(model, x, torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="hides every pixel.*sample\\(\\)"):
        complete(model, x, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="images are 4x4"):
        complete(model, x, torch.ones(3, 3, dtype=torch.bool).triu())
    hidden = torch.zeros(4, 4, dtype=torch.bool)
    hidden[:2] = True
    with pytest.raises(ValueError, match="every observed pixel before every hidden one"):
        complete(model, x, hidden, order=0)  # variant 0 generates the top rows first
    odd = torch.zeros(4, 4, dtype=torch.bool)
    odd[1, 2] = odd[3, 0] = True  # no trained order fits: stable partition of variant 0
    order = model.completion_order(odd)
    assert set(order[-2:]) == {(1, 2), (3, 0)}
    assert torch.equal(complete(model, x, odd)[:, :, ~odd], x[:, :, ~odd])


def test_sampling_log_prob_bookkeeping():  # H1
    model = tiny_model(BinaryLikelihood(), [(6, 6)], "s_curve")
    imgs, lp = sample(model, 16, (6, 6), order=3, generator=torch.Generator().manual_seed(1), return_log_prob=True)
    assert imgs.shape == (16, 1, 6, 6) and set(imgs.unique().tolist()) <= {0, 1}
    with torch.no_grad():
        torch.testing.assert_close(lp, model.log_prob(imgs, 3), atol=1e-8, rtol=0)
    dlm = tiny_model(DiscretizedLogisticMixtureLikelihood(3, 8, 3), [(3, 3)], "s_curve", [2])
    imgs, lp = sample(dlm, 8, (3, 3), order=0, generator=torch.Generator().manual_seed(2), return_log_prob=True)
    assert imgs.dtype == torch.long and imgs.min() >= 0 and imgs.max() <= 7
    with torch.no_grad():
        torch.testing.assert_close(lp, dlm.log_prob(imgs, 0), atol=1e-8, rtol=0)


def test_continuous_samples_stay_in_range():
    lik = DiscretizedLogisticMixtureLikelihood(1, 17, 3, quantize_samples=False)
    model = tiny_model(lik, [(3, 3)], "s_curve", [0])
    x = sample(model, 4, (3, 3), generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64 and x.min() >= -1 and x.max() <= 1


def test_sample_distribution_matches_exact():  # H2
    # float32 and a 2-block network keep 4 passes over a batch of 20,000 cheap
    model = tiny_model(BinaryLikelihood(), [(2, 2)], "s_curve", [0, 5], filters=4, nr_resnet=0, dtype=torch.float32)
    xs = all_binary_images(2, 2)
    codes = torch.tensor([1, 2, 4, 8]).view(1, 1, 2, 2)
    for k in range(2):
        with torch.no_grad():
            exact = model.log_prob(xs, k).exp()
        imgs = sample(model, 20_000, (2, 2), order=k, generator=torch.Generator().manual_seed(k))
        emp = torch.bincount((imgs * codes).sum((1, 2, 3)), minlength=16).double() / 20_000
        assert 0.5 * (emp - exact).abs().sum() < 0.02


def test_sampling_conditionals_ignore_unfilled_pixels():  # H3
    model = tiny_model(BinaryLikelihood(), [(4, 4)], "s_curve", [4])
    s = sample(model, 2, (4, 4), order=0, generator=torch.Generator().manual_seed(3))
    order = model.masks.order(0, 4, 4)
    ranks = rank_grid(order, 4, 4)
    with torch.no_grad():
        full = model.forward_raw(s.double() * 2 - 1, 0)
        for t, (r, c) in enumerate(order):
            canvas = (s.double() * 2 - 1) * (ranks < t)
            assert torch.equal(model.forward_raw(canvas, 0)[:, :, r, c], full[:, :, r, c])
    assert order == [(c, r) for (r, c) in s_curve(4, 4)]
