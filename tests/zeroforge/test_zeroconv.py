"""ZeroConv decoder (paper eq. 6; spec §3.9, §9 C)."""

import torch

from zeroforge.autoencoder import OccSimpleDecoder
from zeroforge.zeroconv import ZeroConvDecoder


def _pretrained(latent=8, hidden=16):
    dec = OccSimpleDecoder(latent_dim=latent, hidden=hidden)
    for b in dec.blocks:  # mimic pretrained weights (fresh fc_1 weights are zero)
        torch.nn.init.normal_(b.fc_1.weight, std=0.1)
    return dec


def test_identity_at_init():
    base = _pretrained()
    p, s = torch.randn(2, 50, 3), torch.randn(2, 8)
    ref = base(p, s)
    zc = ZeroConvDecoder(base)
    assert torch.allclose(zc(p, s), ref, atol=1e-6)
    assert all(float(z.weight.abs().sum()) == 0 and float(z.bias.abs().sum()) == 0 for z in zc.zero_maps)


def test_parameter_partition():
    for freeze_io in (False, True):
        zc = ZeroConvDecoder(_pretrained(), freeze_io=freeze_io)
        assert not any(p.requires_grad for p in zc.base.blocks.parameters())
        assert all(p.requires_grad for p in zc.copies.parameters()) and all(p.requires_grad for p in zc.zero_maps.parameters())
        for io in (zc.base.fc_p, zc.base.fc_z, zc.base.fc_out):
            assert all(p.requires_grad == (not freeze_io) for p in io.parameters())


def test_first_steps_with_adam():
    zc = ZeroConvDecoder(_pretrained())
    frozen0 = [p.clone() for p in zc.base.blocks.parameters()]
    copies0 = [p.clone() for p in zc.copies.parameters()]
    opt = torch.optim.Adam([p for p in zc.parameters() if p.requires_grad], lr=1e-2)
    p, s = torch.randn(2, 50, 3), torch.randn(2, 8)

    def step():
        opt.zero_grad()
        zc(p, s).pow(2).mean().backward()
        opt.step()

    opt.zero_grad()
    zc(p, s).pow(2).mean().backward()
    assert all(q.grad is None or float(q.grad.abs().max()) == 0 for q in zc.copies.parameters())
    assert all(float(z.weight.grad.abs().sum()) > 0 for z in zc.zero_maps)
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(copies0, zc.copies.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(frozen0, zc.base.blocks.parameters()))
    step()
    assert any(not torch.equal(a, b) for a, b in zip(copies0, zc.copies.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(frozen0, zc.base.blocks.parameters()))


def test_copies_are_real_copies():
    zc = ZeroConvDecoder(_pretrained())
    before = zc.base.blocks[0].fc_0.weight.clone()
    with torch.no_grad():
        zc.copies[0].fc_0.weight.add_(1.0)
    assert torch.equal(zc.base.blocks[0].fc_0.weight, before)
