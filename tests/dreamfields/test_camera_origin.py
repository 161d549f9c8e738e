"""Cameras and origin tracking (spec §13, items 19–21; the issue's origin test)."""

import math

import pytest
import torch
from scipy import stats

from common.cameras import SphericalCameraSampler, get_rays
from common.fields.base import FieldOutput
from dreamfields.origin import OriginTracker, center_of_mass
from dreamfields.renderer import DreamFieldsRenderer


class Blob(torch.nn.Module):
    """Density concentrated in a small ball at ``p`` (in field coordinates)."""

    def __init__(self, p, radius=0.15, sigma=30.0):
        super().__init__()
        self.p, self.radius, self.sigma = torch.tensor(p), radius, sigma

    def forward(self, x, d=None, cov=None):
        inside = ((x - self.p.to(x)).norm(dim=-1) < self.radius).to(x)
        return FieldOutput(self.sigma * inside, torch.ones(*x.shape[:-1], 3))


def test_training_cameras():
    cam = SphericalCameraSampler(32, 32)
    g = torch.Generator().manual_seed(0)
    batch = cam.sample(2000, generator=g)
    pos = batch.c2w[:, :3, 3]
    torch.testing.assert_close(pos.norm(dim=-1), torch.full((2000,), 4.0))
    elev = torch.rad2deg(torch.asin(pos[:, 2] / 4))
    torch.testing.assert_close(elev, torch.full((2000,), 30.0), atol=1e-3, rtol=0)
    assert stats.kstest(batch.azimuth.numpy() / 360.0, "uniform").pvalue > 0.01
    torch.testing.assert_close(batch.focal, torch.full((2000,), 1.2 * 1111.111 * 32 / 800))
    o, d = get_rays(batch.c2w[:1], 2, 2, batch.focal[:1])  # the centre of a 2×2 image lies between its pixels
    centre = d[0].mean(dim=(0, 1))
    dist = torch.linalg.cross(-o[0, 0, 0], torch.nn.functional.normalize(centre, dim=-1)).norm()
    assert dist.item() < 1e-5  # the central ray passes through the look-at point (the origin)


def test_center_of_mass_of_an_off_centre_blob():
    p = (0.3, -0.2, 0.1)
    r = DreamFieldsRenderer(n_samples=64, with_covariance=False, checkpoint_chunks=False).train()
    cams = SphericalCameraSampler(24, 24).sample(1, generator=torch.Generator().manual_seed(0))
    o, d = cams.rays()
    out = r(Blob(p), o, d, return_com=True)
    torch.testing.assert_close(out.density_com, torch.tensor(p), atol=0.05, rtol=0)
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(center_of_mass(x, torch.tensor([1.0, 3.0])), torch.tensor([0.75, 0.0, 0.0]))


def test_ema_update_rules():
    tracker = OriginTracker(0.999)
    c = torch.tensor([0.3, -0.2, 0.1])
    assert tracker.update(c)
    torch.testing.assert_close(tracker.origin, 0.001 * c)
    before = tracker.origin.clone()
    assert not tracker.update(torch.tensor([float("nan"), 0.0, 0.0]))
    assert not tracker.update(torch.tensor([float("inf"), 0.0, 0.0]))
    assert torch.equal(tracker.origin, before)
    off = OriginTracker(enabled=False)
    assert not off.update(c) and torch.all(off.origin == 0)
    assert "origin" in tracker.state_dict()
    with pytest.raises(ValueError):
        OriginTracker(decay=1.5)


def test_origin_tracking_moves_the_box_towards_an_off_centre_blob():
    """Each step renders from a random camera orbiting the tracked origin and updates the EMA: the origin
    approaches the blob, so the scene (the blob in the cube's frame) becomes centred in the camera orbit."""
    p = torch.tensor([0.4, -0.3, 0.2])
    r = DreamFieldsRenderer(n_samples=48, with_covariance=False, checkpoint_chunks=False).train()
    cam = SphericalCameraSampler(16, 16)
    tracker = OriginTracker(decay=0.9)
    g = torch.Generator().manual_seed(0)
    dist = [(tracker.origin - p).norm().item()]
    for _ in range(30):
        o, d = cam.sample(1, generator=g).rays()
        out = r(Blob(p.tolist(), radius=0.2), o + tracker.origin, d, return_com=True)
        tracker.update(out.density_com)
        dist.append((tracker.origin - p).norm().item())
    assert dist[-1] < 0.1 * dist[0]
    assert all(b <= a + 1e-3 for a, b in zip(dist, dist[1:]))
    expected = 1 - 0.9**30  # the EMA from 0 towards a fixed target
    torch.testing.assert_close(tracker.origin, expected * p, atol=0.03, rtol=0)


def test_origin_shift_equivalence_without_bounds():
    """Rendering f(x − o) from shifted rays equals rendering f from unshifted rays (same jitter)."""
    p = torch.tensor([0.1, 0.2, -0.1])
    shift = torch.tensor([0.3, -0.1, 0.2])
    r = DreamFieldsRenderer(n_samples=32, with_covariance=False, intersect_box=False, mask_outside=False,
                            checkpoint_chunks=False).train()
    o, d = SphericalCameraSampler(8, 8).sample(1, generator=torch.Generator().manual_seed(3)).rays()
    torch.manual_seed(0)
    a = r(Blob(p.tolist()), o, d)
    torch.manual_seed(0)
    b = r(Blob((p + shift).tolist()), o + shift, d)
    torch.testing.assert_close(a.rgb, b.rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.opacity, b.opacity, atol=1e-5, rtol=0)


def test_system_camera_orbits_tracked_origin(make_system):
    system = make_system()
    system.setup("fit")
    with torch.no_grad():
        system.origin_tracker.origin.copy_(torch.tensor([0.2, 0.1, -0.3]))
    view = system.render_training_view()
    eye = view.rays_o[0]
    assert (eye - system.origin).norm().item() == pytest.approx(4.0, rel=1e-5)
    assert view.focal_mult == pytest.approx(1.2) and view.radius == pytest.approx(4.0)
    c2w, size, focal = system.heldout_camera()
    el = math.degrees(math.asin(c2w[2, 3].item() / 4))
    assert el == pytest.approx(45.0, abs=1e-4) and size == 32  # the tiny retrieval CLIP's input
    assert focal == pytest.approx(1111.111 * 32 / 800)
