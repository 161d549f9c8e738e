"""Augmentations: background compositing identity, crop consistency, background statistics, gradients."""

import pytest
import torch

from common.augment import (
    Augment,
    blur,
    checkerboard_background,
    composite,
    fourier_background,
    noise_background,
    random_backgrounds,
    random_crop_resize,
    random_perspective,
)


@pytest.mark.parametrize("mode", ["premultiplied", "official"])
def test_background_changes_only_pixels_with_alpha_below_one(mode):
    g = torch.Generator().manual_seed(0)
    alpha = torch.rand(2, 1, 16, 16, generator=g)
    alpha[:, :, :4] = 1.0
    alpha[:, :, -4:] = 0.0
    rgb = torch.rand(2, 3, 16, 16, generator=g) * alpha
    b1, b2 = random_backgrounds(2, 16, 16, generator=g), random_backgrounds(2, 16, 16, generator=g)
    i1, i2 = composite(rgb, alpha, b1, mode), composite(rgb, alpha, b2, mode)
    torch.testing.assert_close(i1 - i2, (1 - alpha) * (b1 - b2))
    assert torch.equal(i1[:, :, :4], i2[:, :, :4])
    torch.testing.assert_close(i1[:, :, -4:], b1[:, :, -4:])


def test_augment_ignores_background_where_opaque():
    aug = Augment(n_views=2, crop_scale=(1.0, 1.0))
    rgb = torch.rand(1, 3, 16, 16)
    a = aug(rgb, torch.ones(1, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    b = aug(rgb, torch.ones(1, 1, 16, 16), generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 3, 16, 16)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[0], rgb[0])


def test_crop_uses_same_window_for_colour_and_alpha():
    ramp = torch.linspace(0, 1, 24).view(1, 1, 1, 24).expand(2, 1, 24, 24)
    aug = Augment(n_views=4, crop_scale=(0.5, 0.9), perspective_prob=0.5, backgrounds=())
    x = torch.cat([ramp.expand(2, 3, 24, 24), ramp], 1).repeat_interleave(4, 0)
    out = random_crop_resize(x, (16, 16), (0.5, 0.9), torch.Generator().manual_seed(0))
    assert out.shape == (8, 4, 16, 16)
    torch.testing.assert_close(out[:, :3], out[:, 3:].expand(-1, 3, -1, -1))
    assert out.min() >= 0 and out.max() <= 1  # the window stays inside the image
    assert aug(ramp.expand(2, 3, 24, 24).contiguous(), None, 16).shape == (8, 3, 16, 16)


def test_backgrounds_ranges_and_structure():
    g = torch.Generator().manual_seed(0)
    for bg in (checkerboard_background(2, 32, 32, generator=g), noise_background(2, 32, 32, generator=g),
               noise_background(2, 32, 32, "gaussian", generator=g), fourier_background(2, 32, 32, generator=g),
               random_backgrounds(4, 32, 32, generator=g)):
        assert bg.shape[1:] == (3, 32, 32) and bg.min() >= 0 and bg.max() <= 1
    cb = checkerboard_background(1, 32, 32, generator=g)[0]
    assert torch.unique(cb.reshape(3, -1), dim=1).shape[1] == 2
    assert torch.equal(cb[:, 0, 0], cb[:, 3, 3]) and not torch.equal(cb[:, 0, 0], cb[:, 0, 4])
    img = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(blur(img, torch.zeros(3)), img, atol=1e-6, rtol=0)
    a = fourier_background(1, 16, 16, generator=torch.Generator().manual_seed(5))
    b = fourier_background(1, 16, 16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def _high_freq_fraction(img):
    x = img - img.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs() ** 2
    fy, fx = torch.fft.fftfreq(x.shape[-2])[:, None], torch.fft.fftfreq(x.shape[-1])[None]
    high = ((fy**2 + fx**2).sqrt() > 0.25).float()
    return ((power * high).sum() / power.sum()).item()


def test_fourier_background_is_low_frequency_and_types_are_balanced():
    g = torch.Generator().manual_seed(0)
    assert _high_freq_fraction(fourier_background(4, 64, 64, generator=g)) < 0.1 * _high_freq_fraction(
        noise_background(4, 64, 64, generator=g))
    counts = torch.zeros(3)
    bgs = random_backgrounds(3000, 4, 4, kinds=("white", "black", "noise"), blur_std_range=(0, 0), generator=g)
    counts[0] = (bgs == 1).all(dim=(1, 2, 3)).sum()
    counts[1] = (bgs == 0).all(dim=(1, 2, 3)).sum()
    counts[2] = 3000 - counts[:2].sum()
    assert ((counts / 3000 - 1 / 3).abs() < 0.05).all()


def test_augment_is_differentiable_through_perspective_and_crop():
    rgb = torch.rand(1, 3, 16, 16, requires_grad=True)
    alpha = torch.rand(1, 1, 16, 16, requires_grad=True)
    out = Augment(n_views=2, perspective_prob=1.0)(rgb, alpha, 12, torch.Generator().manual_seed(0))
    out.sum().backward()
    assert out.shape == (2, 3, 12, 12) and rgb.grad.abs().sum() > 0 and alpha.grad.abs().sum() > 0
    warped = random_perspective(torch.ones(1, 1, 16, 16), 0.5, 1.0, torch.Generator().manual_seed(0))
    assert warped.min() == 0  # corners moved inward: zero fill appears


def test_bad_arguments():
    with pytest.raises(ValueError, match="composite mode"):
        composite(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 2, 2), "nope")
    with pytest.raises(ValueError, match="alpha must be"):
        composite(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="unknown background"):
        random_backgrounds(1, 4, 4, kinds=("plaid",))
    with pytest.raises(ValueError, match="rgb must be"):
        Augment()(torch.zeros(1, 4, 8, 8))
