"""SJC camera sampler (spec §2.5, T13): pose distribution, prompt prefixes, FoV, rays, spiral."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from common.cameras import get_rays
from common.rendering import ray_aabb
from sjc.cameras import VIEW_PREFIXES, SJCCameraSampler, view_prefix


@pytest.fixture(scope="module")
def draws():
    sampler = SJCCameraSampler(size=64)
    g = torch.Generator().manual_seed(0)
    return sampler.sample_batch(20000, g)


def test_batch_and_single_draws_agree():
    sampler = SJCCameraSampler(size=8)
    one = sampler.sample(torch.Generator().manual_seed(3))
    many = sampler.sample_batch(1, torch.Generator().manual_seed(3))[0]
    torch.testing.assert_close(one.c2w, many.c2w, atol=1e-6, rtol=0)
    assert one.focal == pytest.approx(many.focal) and one.prefix == many.prefix


def test_pose_distribution(draws):
    eyes = torch.stack([c.c2w[:3, 3] for c in draws]).double()
    np.testing.assert_allclose(eyes.norm(dim=1).numpy(), 1.5, atol=1e-5)
    cos_phi = (eyes[:, 1] / 1.5).numpy()  # polar angle from +y
    phi = np.degrees(np.arccos(np.clip(cos_phi, -1, 1)))
    assert phi.min() >= 6.47 - 0.01 and phi.max() <= 96.38 + 0.01
    lo, hi = 1 - 2 * 0.01 / math.pi, 1 - 2 * math.radians(100) / math.pi  # cos φ uniform on [hi, lo]
    assert stats.kstest(cos_phi, stats.uniform(loc=hi, scale=lo - hi).cdf).pvalue > 0.01
    fov = np.array([math.degrees(2 * math.atan(32 / c.focal)) for c in draws])
    assert fov.min() >= 40 - 1e-6 and fov.max() <= 70 + 1e-6 and abs(fov.mean() - 55) < 0.5
    # each camera looks at the origin: its back axis is parallel to the eye
    backs = torch.stack([c.c2w[:3, 2] for c in draws]).double()
    torch.testing.assert_close(backs, eyes / 1.5, atol=1e-5, rtol=0)
    # y is up: the camera's right axis is horizontal
    assert torch.stack([c.c2w[1, 0] for c in draws]).abs().max() < 1e-5


def test_prefix_frequencies_and_rule(draws):
    freq = {p: sum(c.prefix == p for c in draws) / len(draws) for p in VIEW_PREFIXES}
    expected = {"overhead view of": 0.30, "front view of": 0.175, "backside view of": 0.175, "side view of": 0.35}
    for p, f in expected.items():
        assert abs(freq[p] - f) < 0.01, (p, freq[p])
    for c in draws[:200]:
        assert c.prefix == view_prefix(c.azimuth, c.v)
    assert view_prefix(44.9, 40) == "front view of" and view_prefix(45.0, 40) == "side view of"
    assert view_prefix(134.9, 40) == "side view of" and view_prefix(135.0, 40) == "backside view of"
    assert view_prefix(225.0, 40) == "side view of" and view_prefix(315.0, 40) == "front view of"
    assert view_prefix(10, 29.99) == "overhead view of" and view_prefix(10, 30.0) == "front view of"
    assert SJCCameraSampler(view_prompts=False).sample(torch.Generator().manual_seed(0)).prefix == ""


def test_rays_pass_through_pixel_centres_and_hit_the_box(draws):
    cam = draws[0]
    o, d = cam.rays()
    assert o.shape == d.shape == (64, 64, 3)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(64, 64))
    centre = d[31:33, 31:33].reshape(-1, 3).mean(0)  # mean of the 4 central rays is the optical axis
    eye = cam.c2w[:3, 3]
    assert torch.nn.functional.cosine_similarity(centre, -eye, dim=0) > 1 - 1e-6
    hits, total = 0, 0
    for k in range(0, 2000, 500):  # 2000 poses, each at 16² rays with its own FoV, in batches
        c2w = torch.stack([c.c2w for c in draws[k:k + 500]])
        focal = torch.tensor([c.focal / 4 for c in draws[k:k + 500]])
        o, d = get_rays(c2w, 16, 16, focal)
        _, _, hit = ray_aabb(o.reshape(-1, 3), d.reshape(-1, 3), -1.0, 1.0)
        hits, total = hits + int(hit.sum()), total + hit.numel()
    assert hits / total >= 0.999


def test_spiral_and_ring():
    sampler = SJCCameraSampler(size=8)
    spiral = sampler.spiral(100, turns=3)
    assert len(spiral) == 100
    first, last = spiral[0].c2w[:3, 3], spiral[-1].c2w[:3, 3]
    assert first[1].item() == pytest.approx(1.5 * 0.99, abs=1e-5) and math.hypot(first[0], first[2]) == pytest.approx(0.5, abs=1e-5)
    assert last[1].item() == pytest.approx(0.0, abs=1e-6) and math.hypot(last[0], last[2]) == pytest.approx(1.5, abs=1e-5)
    assert spiral[0].focal == pytest.approx(4 / math.tan(math.radians(30)))
    ring = sampler.ring(4, elevation=30.0)
    eyes = torch.stack([c.c2w[:3, 3] for c in ring])
    torch.testing.assert_close(eyes[:, 1], torch.full((4,), 1.5 * math.sin(math.radians(30))))
    with pytest.raises(ValueError):
        SJCCameraSampler(fov_range=(70, 40))
    with pytest.raises(ValueError):
        SJCCameraSampler(radius=0)
