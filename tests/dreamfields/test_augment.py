"""Augmentations as Dream Fields uses them (spec §13, items 16–18): backgrounds only change pixels with
alpha < 1, crops use one window for colour and alpha, background statistics."""

import pytest
import torch

from common.augment import (Augment, checkerboard_background, composite, fourier_background, noise_background,
                            random_backgrounds, random_crop_resize)

PAPER_AUG = dict(n_views=8, crop_scale=(154 / 168, 154 / 168), backgrounds=("noise", "checkerboard", "fourier"))


@pytest.mark.parametrize("mode", ["premultiplied", "official"])
def test_background_only_changes_pixels_with_alpha_below_one(mode):
    """Same render and crops, two background draws: I₁ − I₂ = (1 − A)(B₁ − B₂); A = 1 pixels are equal."""
    g = torch.Generator().manual_seed(0)
    alpha = torch.rand(1, 1, 32, 32, generator=g)
    alpha[..., :10, :] = 1.0
    alpha[..., -10:, :] = 0.0
    rgb = torch.rand(1, 3, 32, 32, generator=g) * alpha
    aug = Augment(**PAPER_AUG, composite_mode=mode)
    x = torch.cat([rgb, alpha], 1).repeat_interleave(8, 0)  # colour and alpha cropped together
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    cropped = random_crop_resize(x, (28, 28), aug.crop_scale, g1)
    b1 = random_backgrounds(8, 28, 28, generator=torch.Generator().manual_seed(11))
    b2 = random_backgrounds(8, 28, 28, generator=torch.Generator().manual_seed(12))
    i1 = composite(cropped[:, :3], cropped[:, 3:], b1, mode)
    i2 = composite(cropped[:, :3], cropped[:, 3:], b2, mode)
    a = cropped[:, 3:]
    torch.testing.assert_close(i1 - i2, (1 - a) * (b1 - b2))
    opaque = (a == 1).expand_as(i1)
    assert opaque.any() and torch.equal(i1[opaque], i2[opaque])
    clear = (a == 0).expand_as(i1)
    torch.testing.assert_close(i1[clear], b1[clear])
    # the full pipeline agrees with the pieces for the same generator
    full = aug(rgb, alpha, 28, g2)
    torch.testing.assert_close(full[opaque], i1[opaque])
    assert full.shape == (8, 3, 28, 28)


def test_crops_apply_the_same_window_to_colour_and_alpha():
    """C = A (replicated) with A a ramp: every augmented colour equals its augmented alpha."""
    ramp = torch.linspace(0, 1, 168)
    alpha = (ramp[None, :] * ramp[:, None].flip(0))[None, None]  # [1, 1, 168, 168]
    rgb = alpha.expand(1, 3, 168, 168).clone()
    aug = Augment(**{**PAPER_AUG, "backgrounds": ()})  # no background: the colour itself
    out = aug(rgb, alpha, 224, torch.Generator().manual_seed(0))
    x = torch.cat([rgb, alpha], 1).repeat_interleave(8, 0)
    both = random_crop_resize(x, (224, 224), aug.crop_scale, torch.Generator().manual_seed(0))
    assert out.shape == (8, 3, 224, 224)
    torch.testing.assert_close(out, both[:, :3])
    torch.testing.assert_close(both[:, :3], both[:, 3:].expand(8, 3, 224, 224))
    # every crop window lies inside the image: values stay within the ramp's range, crops differ per view
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out[0], out[1])
    # composited over white, C = A gives C + (1 − A) = 1 everywhere only if both used the same window
    white = Augment(**{**PAPER_AUG, "backgrounds": ("white",), "blur_std_range": (0.0, 0.0)})
    torch.testing.assert_close(white(rgb, alpha, 224, torch.Generator().manual_seed(3)), torch.ones(8, 3, 224, 224))


def test_background_statistics():
    g = torch.Generator().manual_seed(0)
    for bg in (checkerboard_background(2, 224, 224, generator=g), noise_background(2, 224, 224, generator=g),
               fourier_background(2, 224, 224, generator=g), random_backgrounds(4, 224, 224, generator=g)):
        assert bg.shape[1:] == (3, 224, 224) and bg.min() >= 0 and bg.max() <= 1
    cb = checkerboard_background(1, 224, 224, generator=g)[0]
    assert torch.unique(cb.reshape(3, -1).T, dim=0).shape[0] == 2
    assert torch.equal(cb[:, :28, :28], cb[:, :1, :1].expand(3, 28, 28)) and not torch.equal(cb[:, 0, 0], cb[:, 0, 28])

    def high_freq_fraction(img):
        x = img - img.mean(dim=(-1, -2), keepdim=True)
        p = torch.fft.fft2(x).abs() ** 2
        f = (torch.fft.fftfreq(224)[:, None] ** 2 + torch.fft.fftfreq(224)[None, :] ** 2).sqrt()
        return (p[..., f > 0.25].sum() / p.sum()).item()

    four = fourier_background(4, 224, 224, generator=torch.Generator().manual_seed(1))
    noise = noise_background(4, 224, 224, generator=torch.Generator().manual_seed(1))
    assert high_freq_fraction(four) < 0.1 * high_freq_fraction(noise)
    a = random_backgrounds(2, 32, 32, generator=torch.Generator().manual_seed(5))
    b = random_backgrounds(2, 32, 32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_background_type_frequencies():
    """Over 3000 draws each of the three types has frequency 1/3 ± 0.05 (the draw of random_backgrounds)."""
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([1.0, 1.0, 1.0])
    choice = torch.multinomial(p / p.sum(), 3000, replacement=True, generator=g)
    freq = torch.bincount(choice, minlength=3).float() / 3000
    assert torch.all((freq - 1 / 3).abs() < 0.05)
    # white/black/fixed kinds: a single-kind draw gives that background exactly
    assert torch.all(random_backgrounds(2, 8, 8, kinds=("white",), blur_std_range=(0.0, 0.0)) == 1)
