"""Perspective + crop augmentation of SDS from scratch (spec §7.2 test 16)."""

import kornia.augmentation as K
import torch

from vectorfusion.augment import PerspectiveCropAugment


def test_shape_and_exact_window_without_perspective():
    x = torch.rand(1, 3, 600, 600)
    out = PerspectiveCropAugment(p=0.7)(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 512, 512)
    aug = PerspectiveCropAugment(p=0.0, crop_size=64)
    small = torch.rand(1, 3, 80, 80)
    out = aug(small, generator=torch.Generator().manual_seed(3))
    hits = [(y, x_) for y in range(17) for x_ in range(17) if torch.equal(small[..., y:y + 64, x_:x_ + 64], out)]
    assert len(hits) == 1


def test_reproducible_and_differentiable():
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    aug = PerspectiveCropAugment(p=1.0, crop_size=40)
    a = aug(x, generator=torch.Generator().manual_seed(5))
    b = aug(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_warp_probability():
    aug = PerspectiveCropAugment(p=0.7)
    g = torch.Generator().manual_seed(0)
    applied = torch.cat([aug.perspective_params(100, 600, 600, g)[2] for _ in range(10)])
    assert abs(applied.float().mean().item() - 0.7) < 0.05


def test_matches_kornia_random_perspective_given_the_same_corners():
    x = torch.rand(1, 3, 32, 32)
    aug = PerspectiveCropAugment(p=1.0, crop_size=None)
    start, end, _ = aug.perspective_params(1, 32, 32, torch.Generator().manual_seed(1))
    ours = aug.warp(x, start, end)
    kornia = K.RandomPerspective(0.5, p=1.0)(x, params={"start_points": start, "end_points": end,
                                                         "batch_prob": torch.tensor([True])})
    assert torch.allclose(ours, kornia, atol=1e-5)
    # corners move inwards by at most distortion * size / 2
    off = (end - start).abs()
    assert (off <= 0.5 * 32 / 2 + 1e-6).all()
    white = PerspectiveCropAugment(p=1.0, crop_size=None, fill=1.0).warp(torch.ones(1, 3, 32, 32), start, end)
    assert torch.allclose(white, torch.ones_like(white), atol=1e-5)  # fill colour outside the warped image
