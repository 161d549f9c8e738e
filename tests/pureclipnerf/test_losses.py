"""Losses, windows, lr schedule, CLIP loss and masked Adam (spec §8 G18–G23, H24)."""

import math

import pytest
import torch

from common.guidance import CLIPGuidance
from common.losses import TransmittanceLoss, binary_entropy_loss, total_variation
from common.testing import tiny_clip
from pureclipnerf.augment import SharedCropResize
from pureclipnerf.grids import VoxExpField, raw_to_alpha
from pureclipnerf.losses import in_window, kl_sphere, sphere_mask, tv_huber_grad_, tv_weight
from pureclipnerf.optim import MaskedAdam, decayed_lr, steps_since_reset


def test_transmittance_schedule_and_gradient():  # G18
    tr = TransmittanceLoss(500, 0.5, 0.1, scale=1.0)
    assert math.isclose(tr.target(0), 0.5) and abs(tr.target(250) - 0.77639) < 1e-4
    assert math.isclose(tr.target(500), 0.9) and math.isclose(tr.target(1000), 0.9)
    for mean, expect_zero in ((0.95, True), (0.5, False)):
        T = torch.full((4, 4), mean, requires_grad=True)
        loss = tr(T, 1000)
        assert math.isclose(loss.item(), -min(0.9, mean), rel_tol=1e-6)
        loss.backward()
        torch.testing.assert_close(T.grad, torch.zeros(4, 4) if expect_zero else torch.full((4, 4), -1 / 16))


def test_kl_sphere_values_and_gradient(pcn):  # G19
    f = VoxExpField(num_voxels=16 * 40**3, num_scales=4, bbox=pcn.BOX)  # ~40³ at the start stage
    prior = sphere_mask(f.coords())
    lo, hi = pcn.box_tensors()
    frac = float(prior.float().mean())
    assert abs(frac - (4 * math.pi / 3) / float((hi - lo).prod())) < 0.01
    assert abs(kl_sphere(torch.ones(f.world_size), prior).item() - frac * math.log(1 / (1 + 1e-4) + 1e-4)) < 1e-6
    alpha0 = f.alpha_grid()
    assert abs(float(alpha0.mean()) - 2.5e-6) < 1e-7  # α₀ at δ = one start voxel (ratio 16^(1/3))
    val = kl_sphere(alpha0, prior).item()
    assert math.isclose(val, frac * math.log(1 / (float(alpha0.mean()) + 1e-4) + 1e-4), rel_tol=1e-3)
    assert abs(val - frac * 9.19) < 0.02 * frac * 9.19
    loss = kl_sphere(f.alpha_grid(f.grid_density), prior)
    loss.backward()
    g = f.grid_density.grad[0]
    assert (g[~prior] == 0).all() and (g[prior] < 0).all()  # descent raises density inside only


def test_total_variation_forms(pcn):  # G20
    assert total_variation(torch.full((1, 5, 6, 7), 0.3), dims=3).item() == 0.0
    ramp = torch.arange(5.0)[:, None, None].expand(5, 6, 7)[None]
    assert math.isclose(total_variation(ramp, dims=3).item(), 1 / 3, rel_tol=1e-6)
    torch.manual_seed(0)
    v = (torch.randn(2, 5, 6, 7) * 1.5).requires_grad_(True)
    c = 0.37
    huber = torch.nn.functional.huber_loss
    ref = sum(huber(v.diff(dim=d), torch.zeros_like(v.diff(dim=d)), reduction="sum", delta=1.0) for d in (1, 2, 3))
    (c * ref).backward()
    grad0 = torch.zeros(2, 5, 6, 7)
    touched = torch.rand(2, 5, 6, 7) < 0.5
    grad0[touched] = torch.randn(int(touched.sum()))
    p = v.detach().clone().requires_grad_(True)
    p.grad = grad0.clone()
    tv_huber_grad_(p, c)
    torch.testing.assert_close(p.grad[touched], grad0[touched] + v.grad[touched], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p.grad[~touched], grad0[~touched])  # untouched voxels unchanged
    p.grad = grad0.clone()
    tv_huber_grad_(p, c, dense=True)
    torch.testing.assert_close(p.grad, grad0 + v.grad, atol=1e-5, rtol=1e-5)
    assert math.isclose(tv_weight(0.1, (148, 148, 184), 224 * 224), 0.1 * 184 / 128 / 6 / 50176)


def test_entropy():  # G21
    assert math.isclose(binary_entropy_loss(torch.full((3,), 0.5)).item(), math.log(2), rel_tol=1e-6)
    assert binary_entropy_loss(torch.tensor([1e-6, 1 - 1e-6])).item() < 2e-5


def test_windows_and_lr():  # G22
    assert in_window(0, (0, 8000)) and in_window(8000, (0, 8000)) and not in_window(8001, (0, 8000))
    tv = (5000, 13000)
    assert not in_window(5000, tv, closed=False) and not in_window(13000, tv, closed=False)
    assert in_window(5001, tv, closed=False) and in_window(12999, tv, closed=False)
    g = CLIPGuidance([tiny_clip(0), tiny_clip(1)], weights=[1.0, 0.5], start_steps=[0, 5000])
    img = torch.rand(1, 3, 32, 32)
    assert g(img, "a cube", step=4999)["loss_clip2"].item() == 0.0
    assert g(img, "a cube", step=5000)["loss_clip2"].item() != 0.0
    scales = [5000, 7000, 9000, 11000]
    for t, k in ((1, 0), (4999, 4998), (5000, 0), (6999, 1999), (7000, 0), (12000, 1000)):
        assert steps_since_reset(t, scales) == k
    assert steps_since_reset(7000, scales, reset_on_scale=False) == 6999
    assert math.isclose(decayed_lr(5e-3, 10000), 5e-3 * 0.1**0.5)


def test_clip_loss_and_ensemble():  # G23
    clip = tiny_clip(0)
    g = CLIPGuidance(clip, augment=SharedCropResize(4), loss_form="one_minus_cos", check_range=False)
    imgs = torch.rand(6, 3, 32, 32) * 1.6 - 0.3  # unclamped DiffAug output is allowed
    loss = g(imgs, "a red cube", generator=torch.Generator().manual_seed(0))["loss_clip"]
    assert 0.0 <= loss.item() <= 2.0
    text = clip.encode_text("a red cube")

    class Rigged(torch.nn.Module):  # the image tower outputs the text embedding
        def forward(self, x):
            return text.expand(x.shape[0], -1)

    model = clip.model
    original = model.encode_image
    model.encode_image = lambda x, normalize=False: Rigged()(x)
    try:
        assert abs(g(imgs, "a red cube")["loss_clip"].item()) < 1e-6
    finally:
        model.encode_image = original
    second = tiny_clip(1)
    ens = CLIPGuidance([clip, second], augment=None, weights=[1.0, 0.5], start_steps=[0, 5000], loss_form="one_minus_cos",
                       check_range=False)
    x = torch.rand(2, 3, 32, 32)
    terms = ens(x, "a red cube", step=6000)
    l1 = 1 - (clip.encode_image(x, check_range=False) * clip.encode_text("a red cube")).sum(-1).mean()
    l2 = 1 - (second.encode_image(x, check_range=False) * second.encode_text("a red cube")).sum(-1).mean()
    torch.testing.assert_close(terms["loss_clip"] + terms["loss_clip2"], l1 + 0.5 * l2)


def _reference_adam(p, grads, lr, betas=(0.9, 0.99), eps=1e-8):
    """Adam with ε outside the bias correction (DVGO), no masking."""
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        p = p - lr * math.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t) * m / (v.sqrt() + eps)
    return p, m, v


def test_masked_adam():  # H24
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(20))
    p0 = p.detach().clone()
    opt = MaskedAdam([{"params": [p], "lr": 0.1, "skip_zero_grad": True}])
    grads = [torch.randn(20) for _ in range(3)]
    frozen = torch.zeros(20, dtype=torch.bool)
    frozen[:5] = True
    for g in grads:
        p.grad = torch.where(frozen, torch.zeros(20), g)
        opt.step()
    state = opt.state[p]
    assert torch.equal(p.detach()[:5], p0[:5])  # zero-gradient entries keep their value ...
    assert (state["exp_avg"][:5] == 0).all() and (state["exp_avg_sq"][:5] == 0).all()  # ... and their moments
    ref_p, ref_m, ref_v = _reference_adam(p0[5:], [g[5:] for g in grads], 0.1)
    torch.testing.assert_close(p.detach()[5:], ref_p, atol=1e-6, rtol=0)
    torch.testing.assert_close(state["exp_avg"][5:], ref_m, atol=1e-6, rtol=0)
    q = torch.nn.Parameter(p0.clone())
    plain = MaskedAdam([q], lr=0.1)  # unmasked group: zero gradients still decay the moments
    for g in grads:
        q.grad = g.clone()
        plain.step()
    torch.testing.assert_close(q.detach(), _reference_adam(p0, grads, 0.1)[0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        MaskedAdam([q], lr=-1)


def test_alpha_vertex_values_match_render_formula(pcn):
    f = VoxExpField(num_voxels=20**3, num_scales=0, bbox=pcn.BOX)
    torch.testing.assert_close(f.alpha_grid(delta=1.0), raw_to_alpha(torch.zeros(f.world_size), f.shift, 1.0))
