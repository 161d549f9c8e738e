import math

import torch

from common.cameras import SphericalCameraSampler, focal_from_fov, get_rays, look_at, pose_spherical


def test_look_at_points_the_camera_at_the_target():
    eye, target = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, 0.5, 0.0])
    c2w = look_at(eye, target)
    forward = -c2w[:3, 2]
    torch.testing.assert_close(forward, torch.nn.functional.normalize(target - eye, dim=0))
    rot = c2w[:3, :3]
    torch.testing.assert_close(rot.T @ rot, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.det(rot) > 0.999
    assert c2w[2, 1] > 0  # camera up has a positive world-z component (z-up world)


def test_central_ray_hits_the_origin_and_pixel_centres():
    c2w = pose_spherical(30.0, 20.0, 4.0)
    h = w = 4
    f = focal_from_fov(60.0, w)
    o, d = get_rays(c2w, h, w, f)
    # the four central pixels are symmetric around the optical axis, which passes through the origin
    mean_dir = torch.nn.functional.normalize(d[1:3, 1:3].reshape(-1, 3).mean(0), dim=0)
    torch.testing.assert_close(o[0, 0] + 4.0 * mean_dir, torch.zeros(3), atol=1e-5, rtol=0)
    # pixel (0, 0) centre at (-1.5, +1.5)/f in camera space
    d_cam = c2w[:3, :3].T @ d[0, 0]
    torch.testing.assert_close(d_cam / -d_cam[2], torch.tensor([-1.5 / f, 1.5 / f, -1.0]), atol=1e-6, rtol=0)


def test_camera_position_convention():
    c2w = pose_spherical(90.0, 0.0, 2.0)
    torch.testing.assert_close(c2w[:3, 3], torch.tensor([2.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    c2w = pose_spherical(0.0, 90.0, 3.0)  # looking straight down: falls back to a valid frame
    assert torch.isfinite(c2w).all()
    torch.testing.assert_close(c2w[:3, 3], torch.tensor([0.0, 0.0, 3.0]), atol=1e-6, rtol=0)


def test_sampler_ranges_and_batching():
    s = SphericalCameraSampler(8, 8, (10, 50), (0, 30), (3, 5), (1.0, 2.0), base_focal=10.0)
    cams = s.sample(200, torch.Generator().manual_seed(0))
    assert cams.c2w.shape == (200, 4, 4)
    assert cams.azimuth.min() >= 10 and cams.azimuth.max() <= 50
    assert cams.radius.min() >= 3 and cams.radius.max() <= 5
    assert cams.focal.min() >= 10 and cams.focal.max() <= 20
    torch.testing.assert_close(cams.c2w[:, :3, 3].norm(dim=-1), cams.radius)
    o, d = cams.rays()
    assert o.shape == d.shape == (200, 8, 8, 3)
    fixed = SphericalCameraSampler(8, 8).sample(3)
    assert torch.all(fixed.elevation == 30) and torch.all(fixed.radius == 4)
    torch.testing.assert_close(fixed.focal, torch.full((3,), 1111.111 * 8 / 800 * 1.2))
    assert abs(math.degrees(2 * math.atan(0.5 * 800 / 1111.111)) - 39.6) < 0.1
