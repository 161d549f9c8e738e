"""CLIP-Forge networks: autoencoder shapes, residual-block init, flow invertibility and log-det (spec §9 B)."""

import math

import pytest
import torch

from zeroforge.autoencoder import OccSimpleDecoder, ResnetBlockFC, VoxelEncoderBN, compute_iou
from zeroforge.flow import ConditionalRealNVP


def test_resnet_block_fresh_init_adds_only_the_bias():
    block = ResnetBlockFC(16)
    x = torch.randn(4, 16)
    assert torch.allclose(block(x) - x, block.fc_1.bias.expand(4, 16), atol=1e-6)


def test_decoder_shapes_no_sigmoid():
    dec = OccSimpleDecoder(latent_dim=8, hidden=16)
    for b in dec.blocks:
        torch.nn.init.normal_(b.fc_1.weight, std=0.5)
    out = dec(torch.randn(2, 100, 3), torch.randn(2, 8) * 5)
    assert out.shape == (2, 100)
    assert out.min() < 0 or out.max() > 1  # logits, not probabilities
    with pytest.raises(ValueError, match="shape embedding"):
        dec(torch.randn(2, 100, 3), torch.randn(2, 7))


def test_encoder_shapes_eval_determinism_and_latent_noise():
    enc = VoxelEncoderBN(resolution=32, latent_dim=128, channels=(4, 4, 8, 8, 8))
    vox = (torch.rand(64, 32, 32, 32) > 0.5).float()
    enc.eval()
    s1, s2 = enc(vox[:2]), enc(vox[:2])
    assert s1.shape == (2, 128) and torch.equal(s1, s2)
    enc.train()
    d = enc(vox) - enc(vox)  # same batch statistics, different latent noise
    assert 0.12 < float(d.std()) < 0.16  # 0.1·√2
    with pytest.raises(ValueError, match=r"\[B, 32, 32, 32\]"):
        enc(torch.zeros(2, 16, 16, 16))


def _fitted_flow(d=6, c=4, blocks=2):
    flow = ConditionalRealNVP(latent_dim=d, cond_dim=c, hidden=32, n_blocks=blocks)
    flow.train()
    flow.direct(torch.randn(64, d) * 2 + 1, torch.randn(64, c))  # non-trivial running statistics
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return flow.eval()


def test_flow_invertibility_and_sample():
    flow = _fitted_flow(d=8, c=16)
    x, c = torch.randn(10, 8), torch.randn(10, 16)
    u, ld = flow.direct(x, c)
    x2, ld_inv = flow.inverse(u, c)
    assert (x2 - x).abs().max() < 1e-4
    assert torch.allclose(ld, -ld_inv, atol=1e-4)
    assert torch.equal(flow.sample(u, c), flow.inverse(u, c)[0])


def test_flow_logdet_matches_numerical_jacobian():
    flow = _fitted_flow(d=6, c=4).double()
    x, c = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    _, logdet = flow.direct(x, c)
    for b in range(5):
        J = torch.autograd.functional.jacobian(lambda v: flow.direct(v[None], c[b:b + 1])[0][0], x[b])
        assert torch.allclose(logdet[b], torch.linalg.slogdet(J)[1], atol=1e-3)


def test_flow_masks_alternate():
    flow = ConditionalRealNVP(latent_dim=8, cond_dim=4, hidden=16, n_blocks=2).eval()
    x, c = torch.randn(3, 8), torch.randn(3, 4)
    y1, _ = flow.layers[0](x, c)
    assert torch.equal(y1[:, :4], x[:, :4]) and not torch.allclose(y1[:, 4:], x[:, 4:])
    y2, _ = flow.layers[2](x, c)
    assert torch.equal(y2[:, 4:], x[:, 4:]) and not torch.allclose(y2[:, :4], x[:, :4])


def test_flow_conditioning():
    flow = _fitted_flow(d=8, c=16)
    z = torch.randn(1, 8).expand(2, 8)
    c = torch.randn(2, 16)
    s = flow.sample(z, c)
    assert not torch.allclose(s[0], s[1])
    assert torch.equal(flow.sample(z, c[:1].expand(2, 16))[0], flow.sample(z, c[:1].expand(2, 16))[1])
    with pytest.raises(ValueError, match="cond_dim"):
        flow.sample(z, torch.randn(2, 15))


def test_flow_nll_learns_conditional_toy_data():
    torch.manual_seed(0)
    d, cdim = 4, 3
    A = torch.randn(d, cdim)

    def data(n):
        c = torch.randn(n, cdim)
        return c @ A.T + 0.1 * torch.randn(n, d), c

    true_nll = d * (0.5 * math.log(2 * math.pi * 0.01) + 0.5)
    flow = ConditionalRealNVP(latent_dim=d, cond_dim=cdim, hidden=32, n_blocks=3)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    xv, cv = data(512)

    def val_nll():
        flow.eval()
        with torch.no_grad():
            return float(-flow.log_prob(xv, cv).mean())

    flow.train()
    flow.log_prob(*data(256))  # initial running statistics
    start = val_nll()
    for _ in range(300):
        flow.train()
        x, c = data(128)
        loss = -flow.log_prob(x, c).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = val_nll()
    assert start - end > 0.5 * (start - true_nll), (start, end, true_nll)


def test_compute_iou_values():
    a = torch.zeros(1, 4, 4, dtype=torch.bool)
    a[:, :2] = True
    b = torch.zeros(1, 4, 4, dtype=torch.bool)
    b[:, 1:3] = True
    assert float(compute_iou(a, a)[0]) == 1.0
    assert float(compute_iou(a, ~a)[0]) == 0.0
    assert abs(float(compute_iou(a, b)[0]) - 1 / 3) < 1e-6
