"""Augmentations: DiffAug invariants, backgrounds, batch composition, PerspAug, crop (spec §8 F15–F17)."""

import pytest
import torch

from common.augment import checkerboard_background, fourier_background, noise_background
from pureclipnerf.augment import (PureCLIPAugment, SharedCropResize, blurred_backgrounds, diff_augment,
                                  shared_perspective)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_diffaug_shape_and_translation():  # F15
    x = torch.rand(4, 3, 32, 32)
    assert diff_augment(x, generator=gen()).shape == x.shape
    for seed in range(20):
        delta = torch.zeros(1, 3, 32, 32)
        delta[..., 16, 16] = 1.0
        out = diff_augment(delta, ["translation"], generator=gen(seed))
        assert out.sum() == 3 and set(out.unique().tolist()) == {0.0, 1.0}  # integer shift, zero fill
        y, x_ = (out[0, 0] == 1).nonzero()[0].tolist()
        assert abs(y - 16) <= 4 and abs(x_ - 16) <= 4  # round(0.125·32) = 4
    edge = torch.ones(1, 1, 32, 32)
    shifted = [diff_augment(edge, ["translation"], generator=gen(s)) for s in range(20)]
    assert any(s.min() == 0 for s in shifted)  # pixels shifted in from outside are black


def test_diffaug_cutout_zoom_and_brightness():  # F15
    ones = torch.ones(6, 3, 32, 32)
    for seed in range(10):
        out = diff_augment(ones, ["cutout"], generator=gen(seed))
        for img in out:
            hole = img[0] == 0
            rows, cols = hole.any(1).nonzero()[:, 0], hole.any(0).nonzero()[:, 0]
            assert hole.sum() == len(rows) * len(cols)  # one (possibly clipped) square
            assert len(rows) <= 8 and len(cols) <= 8  # side round(0.25·32) = 8
            assert (img[:, hole] == 0).all()
    zoomed = diff_augment(ones, ["zoom"], zoom_range=(0.8, 0.8), generator=gen())
    assert zoomed.shape == ones.shape and torch.equal(zoomed[0], zoomed[5])  # one factor per batch
    assert (zoomed[:, :, 0] == 0).all() and (zoomed[:, :, 16, 16] == 1).all()  # shrunk, zero-padded border
    ramp = torch.rand(3, 3, 32, 32)
    bright = diff_augment(ramp, ["brightness"], generator=gen(1))
    shift = bright - ramp
    for i in range(3):
        torch.testing.assert_close(shift[i], torch.full_like(shift[i], float(shift[i, 0, 0, 0])))
        assert abs(float(shift[i, 0, 0, 0])) <= 0.5
    assert not torch.allclose(shift[0], shift[1])  # each image its own value


def test_diffaug_policy_validation():
    with pytest.raises(ValueError, match="unknown DiffAug op"):
        diff_augment(torch.rand(1, 3, 8, 8), ["rotate"])


def test_backgrounds():  # F16
    for maker in (checkerboard_background, noise_background, fourier_background):
        bg = maker(2, 32, 32, generator=gen())
        assert bg.shape == (2, 3, 32, 32) and torch.isfinite(bg).all() and bg.min() >= 0 and bg.max() <= 1
    cb = checkerboard_background(1, 32, 32, generator=gen())[0]
    assert cb.reshape(3, -1).T.unique(dim=0).shape[0] == 2
    assert torch.equal(cb[:, :4, :4], cb[:, :4, :4][:, :1, :1].expand(3, 4, 4))  # 8×8 squares of 4 px
    assert not torch.equal(cb[:, 0, 0], cb[:, 0, 4])
    sharp = blurred_backgrounds(8, 32, 32, ("noise",), (0.0, 0.0), generator=gen())
    soft = blurred_backgrounds(8, 32, 32, ("noise",), (3.0, 3.0), blur_kernel=9, generator=gen())
    assert soft.var() < sharp.var()


def test_batch_composition_official():  # F17
    aug = PureCLIPAugment(diffaug=False, n_diff=2, n_bkgd=3, perspaug=False, bg_blur_kernel=5)
    rgb, t_last = torch.rand(1, 3, 16, 16), torch.rand(1, 1, 16, 16)
    torch.manual_seed(3)
    y = aug(rgb, t_last, generator=gen(5))
    assert y.shape == (3, 3, 16, 16)  # n_d = 1 without DiffAug
    bg = blurred_backgrounds(3, 16, 16, aug.bg_kinds, aug.bg_blur_std, 5, generator=gen(5))
    torch.testing.assert_close(y, rgb + bg * t_last)  # Y[d, b] = C + B[b]·T_last
    full = PureCLIPAugment(n_diff=2, n_bkgd=3, perspaug=False, bg_blur_kernel=5)
    assert full(rgb, t_last, generator=gen()).shape == (6, 3, 16, 16) and full.batch_size == 6
    aug_id = PureCLIPAugment(diffaug=True, diffaug_policy=[], n_diff=2, n_bkgd=3, perspaug=False, bg_blur_kernel=5)
    y2 = aug_id(rgb, t_last, generator=gen(5)).reshape(3, 2, 3, 16, 16)  # background-major
    torch.testing.assert_close(y2[:, 0], y2[:, 1])
    torch.testing.assert_close(y2[:, 0], rgb + bg * t_last)
    clean = PureCLIPAugment(diffaug=False, n_bkgd=3, perspaug=False, bg_blur_kernel=5, composite_mode="clean")
    premult = rgb * (1 - t_last)
    torch.testing.assert_close(clean(premult + t_last, t_last, generator=gen(5)), premult + bg * t_last)
    none = PureCLIPAugment(diffaug=False, backaug=False, perspaug=False)
    assert torch.equal(none(rgb, t_last), rgb)


def test_perspective_and_crop():  # F17
    x = torch.rand(1, 3, 32, 32).expand(4, 3, 32, 32)
    warped = shared_perspective(x, 0.6, generator=gen())
    assert torch.equal(warped[0], warped[3])  # one warp for the whole batch
    assert not torch.allclose(warped[0], x[0])  # p = 1: the image changes
    crop = SharedCropResize(16)
    img = torch.rand(5, 3, 224, 224)
    out = crop(img, size=(224, 224), generator=gen())
    assert out.shape == (5, 3, 224, 224)
    raw = SharedCropResize(16)(img, size=208, generator=gen(1))  # no resize: the crop itself
    assert raw.shape == (5, 3, 208, 208)
    found = [(y, x_) for y in range(17) for x_ in range(17) if torch.equal(img[0, :, y:y + 208, x_:x_ + 208], raw[0])]
    assert len(found) == 1 and torch.equal(img[4, :, found[0][0]:found[0][0] + 208, found[0][1]:found[0][1] + 208], raw[4])
    with pytest.raises(ValueError):
        PureCLIPAugment()(torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8))


def test_augment_pipeline_gradients():
    rgb = torch.rand(1, 3, 24, 24, requires_grad=True)
    t_last = torch.rand(1, 1, 24, 24, requires_grad=True)
    y = PureCLIPAugment(n_diff=2, n_bkgd=2, bg_blur_kernel=5)(rgb, t_last, generator=gen())
    y.square().sum().backward()
    assert rgb.grad.abs().sum() > 0 and t_last.grad.abs().sum() > 0
