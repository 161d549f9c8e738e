"""ZeroForge's CLIP and contrastive losses on hand-made embeddings (eqs. 3–4; spec §3.8, §9 F)."""

import math

import torch
import torch.nn.functional as F

from zeroforge.losses import contrastive_loss, duplicate_mask, sim_loss, zeroforge_loss


def test_sim_loss():
    T = F.normalize(torch.randn(4, 8), dim=-1)
    assert abs(float(sim_loss(3.0 * T, T)) + 1.0) < 1e-6
    I = torch.randn(4, 8)
    assert torch.allclose(sim_loss(I, T), sim_loss(7.0 * I, T))
    assert -1.0 <= float(sim_loss(I, T)) <= 1.0


def test_contrastive_invariances():
    g = torch.Generator().manual_seed(0)
    I, T = torch.randn(6, 8, generator=g), F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    qid = torch.arange(6) % 3
    ref = contrastive_loss(I, T, qid)
    assert torch.allclose(contrastive_loss(5 * I, T, qid), ref, atol=1e-5)
    perm = torch.randperm(6, generator=g)
    assert torch.allclose(contrastive_loss(I[perm], T[perm], qid[perm]), ref, atol=1e-5)


def test_perfect_alignment_is_the_minimum():
    T = torch.eye(4, 8)
    for axis in ("text", "image", "symmetric"):
        assert float(contrastive_loss(T.clone(), T, torch.arange(4), tau=50.0, axis=axis)) < 1e-10


def test_collapse_value_is_log_b():
    T = torch.eye(4, 8)
    I = F.normalize(T.sum(0, keepdim=True), dim=-1).expand(4, 8)
    for axis in ("text", "image"):
        assert abs(float(contrastive_loss(I, T, torch.arange(4), tau=50.0, axis=axis)) - math.log(4)) < 1e-5


def test_duplicate_mask_and_modes():
    qid = torch.arange(9) % 3  # k = 3 queries × 3 copies
    M = duplicate_mask(qid)
    assert int(M.sum()) == 18
    i, j = torch.nonzero(M).T
    assert ((i - j) % 3 == 0).all() and (i != j).all()
    g = torch.Generator().manual_seed(0)
    base = F.normalize(torch.randn(3, 16, generator=g), dim=-1)
    T = base[qid]
    I = F.normalize(T + 0.3 * torch.randn(9, 16, generator=g), dim=-1)
    assert (torch.diagonal(I @ T.T) >= 0.3).all()
    zero = contrastive_loss(I, T, qid, tau=50.0, dup_mode="zero")
    excl = contrastive_loss(I, T, qid, tau=50.0, dup_mode="exclude")
    assert abs(float(zero - excl)) < 1e-3 and float(zero - excl) <= math.log(1 + 2 * math.exp(-15)) + 1e-9


def test_axis_modes():
    g = torch.Generator().manual_seed(3)
    I, T = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    S = F.normalize(I, dim=-1) @ F.normalize(T, dim=-1).T
    qid = torch.arange(5)
    text = contrastive_loss(I, T, qid, tau=50.0, axis="text")
    image = contrastive_loss(I, T, qid, tau=50.0, axis="image")
    assert torch.allclose(text, -torch.diagonal(torch.log_softmax(50 * S, dim=1)).mean(), atol=1e-5)
    assert torch.allclose(image, -torch.diagonal(torch.log_softmax(50 * S, dim=0)).mean(), atol=1e-5)
    assert not torch.allclose(text, image)


def test_contrastive_gradient_fights_collapse():
    T = torch.eye(4, 8)
    I = F.normalize(T.sum(0, keepdim=True), dim=-1).expand(4, 8).clone().requires_grad_(True)

    def cosines(x):
        S = F.normalize(x, dim=-1) @ T.T
        off = S[~torch.eye(4, dtype=torch.bool)]
        return float(off.mean()), float(torch.diagonal(S).mean())

    off0, diag0 = cosines(I)
    loss = contrastive_loss(I, T, torch.arange(4), tau=50.0)
    (g,) = torch.autograd.grad(loss, I)
    off1, diag1 = cosines(I.detach() - 0.01 * g)
    assert off1 < off0 and diag1 > diag0


def test_zero_weight_is_the_similarity_loss():
    I = torch.randn(6, 8, requires_grad=True)
    T = F.normalize(torch.randn(6, 8), dim=-1)
    terms = zeroforge_loss(I, T, torch.arange(6) % 3, lambda_contrast=0.0)
    assert torch.equal(terms["loss"], sim_loss(I, T))
    (g1,) = torch.autograd.grad(terms["loss"], I)
    (g2,) = torch.autograd.grad(sim_loss(I, T), I)
    assert torch.equal(g1, g2)
