"""DVR renderer: cameras, cube intersection, secant root finding, implicit depth gradient (specs/iss.md §15.2)."""

import math

import torch

from iss.analytic import SphereField
from iss.cameras import DVRCameras, ViewSampler, fov_degrees, pixel_grid
from iss.renderer import DVRRenderer


def _sphere_roots(o, w, r, centre=(0.0, 0.0, 0.0)):
    """Analytic first root d of |o + d·w − centre| = r, and the hit mask."""
    oc = o - torch.tensor(centre)
    a, b, c = (w * w).sum(-1), 2 * (oc * w).sum(-1), (oc * oc).sum(-1) - r * r
    disc = b * b - 4 * a * c
    return (-b - disc.clamp_min(0).sqrt()) / (2 * a), disc > 0


def test_ray_cube_intersection(make_cams):
    cams = make_cams([[0.0, 0.0, 2.0]])
    ren = DVRRenderer(bound=0.5, padding=0.1)
    o, w, near, far, box_hit = ren.ray_setup(cams, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert box_hit[0, 0] and torch.allclose(near[0, 0], torch.tensor(1.45), atol=1e-5)
    assert torch.allclose(far[0, 0], torch.tensor(2.55), atol=1e-5)
    assert not box_hit[0, 1]  # NDC (1, 1) grazes past the padded cube


def test_pixel_lift_depth_convention():
    g = torch.Generator().manual_seed(1)
    cams = ViewSampler(radius=(1.2, 2.0)).sample(3, g)
    uv = torch.rand(3, 10, 2, generator=g) * 2 - 1
    w = cams.ray_vectors(uv)
    x_pix = cams.origins[:, None] + w
    assert torch.allclose(cams.camera_depth(x_pix), torch.ones(3, 10), atol=1e-5)
    d = torch.rand(3, 10, generator=g) * 3
    assert torch.allclose(cams.camera_depth(cams.origins[:, None] + d[..., None] * w), d, atol=1e-5)
    # pixel-centre convention: f_ndc = 2 f_px / (W - 1) reproduces common.cameras' rays
    from common.cameras import get_rays, pose_spherical

    c2w = pose_spherical(30.0, 20.0, 4.0)[None]
    H = W = 9
    ours = DVRCameras.from_opengl(c2w, 12.0, W)
    w_ours = torch.nn.functional.normalize(ours.ray_vectors(pixel_grid(H, W)), dim=-1).reshape(H, W, 3)
    _, d_common = get_rays(c2w[0], H, W, 12.0)
    assert torch.allclose(w_ours, d_common, atol=1e-5)


def test_secant_depth_sphere(make_cams):
    torch.manual_seed(0)
    cams = make_cams([[0.0, 0.5, 1.6]])
    field = SphereField(0.3, 10.0)
    ren = DVRRenderer(bound=0.5, n_steps=64, n_secant=8)
    with torch.no_grad():
        out = ren.render_rays(field, None, cams, pixel_grid(16, 16))
    d_true, hit_true = _sphere_roots(out.origins[0], out.vectors[0], 0.3)
    assert torch.equal(out.hit[0], hit_true) and hit_true.sum() > 10
    assert (out.depth[0][hit_true] - d_true[hit_true]).abs().max() < 1e-4
    assert torch.isinf(out.depth[0][~hit_true]).all()
    # misses use the pixel lifted to depth 1 (x_pix)
    x_pix = out.origins[0] + out.vectors[0]
    assert torch.allclose(out.points[0][~hit_true], x_pix[~hit_true], atol=1e-6)


def test_first_crossing_selected(make_cams):
    class TwoSpheres(torch.nn.Module):
        def forward(self, p, c=None):
            a = 10 * (0.1 - (p - torch.tensor([0.0, 0.0, 0.25])).norm(dim=-1))
            b = 10 * (0.1 - (p - torch.tensor([0.0, 0.0, -0.25])).norm(dim=-1))
            return torch.cat([torch.maximum(a, b)[..., None], torch.zeros(*p.shape[:-1], 3)], -1)

    cams = make_cams([[0.0, 0.0, 2.0]])
    ren = DVRRenderer(bound=0.5, n_steps=64)
    with torch.no_grad():
        out = ren.render_rays(TwoSpheres(), None, cams, torch.zeros(1, 2))
    assert out.hit[0, 0] and abs(out.depth[0, 0].item() - (2.0 - 0.35)) < 1e-4  # near sphere, not the far one
    # a ray whose first sample is occupied gets d = 0 and counts as a hit
    with torch.no_grad():
        full = ren.render_rays(SphereField(2.0, 10.0), None, cams, torch.zeros(1, 2))
    assert full.hit[0, 0] and full.depth[0, 0].item() == 0.0


def test_implicit_depth_gradient(make_cams):
    torch.manual_seed(0)
    cams = make_cams([[0.2, 0.3, 1.0]])
    ren = DVRRenderer(bound=0.5, n_steps=64, n_secant=8)
    field = SphereField(0.3, 10.0).double()
    uv = pixel_grid(10, 10).double()
    cams = DVRCameras(cams.c2w.double(), cams.focal.double())
    out = ren.render_rays(field, None, cams, uv)
    hit = out.hit[0]
    assert hit.sum() > 5
    grads = torch.stack([torch.autograd.grad(out.depth[0, i], field.r, retain_graph=True)[0] for i in torch.nonzero(hit)[:, 0]])
    p = out.points[0][hit].detach()
    analytic = field.r.detach() / (p * out.vectors[0][hit]).sum(-1)  # ∂d/∂r = r / ((o + d w)·w)
    assert ((grads - analytic).abs() / analytic.abs()).max() < 1e-3
    # finite differences of the marched depth
    eps = 1e-4
    with torch.no_grad():
        field.r += eps
        d_plus = ren.render_rays(field, None, cams, uv).depth[0][hit]
        field.r -= 2 * eps
        d_minus = ren.render_rays(field, None, cams, uv).depth[0][hit]
        field.r += eps
    fd = (d_plus - d_minus) / (2 * eps)
    assert ((grads - fd).abs() / fd.abs()).max() < 1e-2
    # through a latent code c (radius r + c0): non-zero and equal to finite differences
    c = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    out_c = ren.render_rays(field, c, cams, uv)
    i = int(torch.nonzero(out_c.hit[0])[0, 0])
    (g_c,) = torch.autograd.grad(out_c.depth[0, i], c)
    with torch.no_grad():
        fd_c = (ren.render_rays(field, c + eps, cams, uv).depth[0, i] - ren.render_rays(field, c - eps, cams, uv).depth[0, i]) / (2 * eps)
    assert g_c.abs().item() > 0.1 and abs(g_c.item() - fd_c.item()) / abs(fd_c.item()) < 1e-2


def test_render_image_shapes_and_grad(make_cams, tiny_parts, surface_decoder):
    _, dec, _, ren = tiny_parts()
    dec = surface_decoder(dec)
    c = torch.zeros(1, dec.c_dim, requires_grad=True)
    out = ren.render_image(dec, c, make_cams([[0.0, 0.3, 1.5]]), 12)
    assert out.rgb.shape == (1, 12, 12, 3) and out.hit.shape == (1, 12, 12) and out.hit.dtype == torch.bool
    assert out.rgb.min() >= 0 and out.rgb.max() <= 1
    out.rgb.sum().backward()
    assert c.grad is not None and c.grad.abs().sum() > 0
    assert all(p.grad is not None for p in dec.parameters())


def test_camera_scaling(make_cams):
    cams = ViewSampler().sample(4, torch.Generator().manual_seed(0))
    scaled = cams.scale_translation(1.5)
    assert torch.allclose(scaled.origins.norm(dim=-1), 1.5 * cams.origins.norm(dim=-1), atol=1e-5)
    assert abs(fov_degrees(2.1875) - 49.134) < 0.01
    # shapeworld (z-up) views look at the origin: the centre pixel's ray passes through it
    sw = ViewSampler(elevation=(15, 50), radius=(4, 4), focal=(2.8, 3.4), up="z").sample(3, torch.Generator().manual_seed(0))
    o, w = sw.origins, sw.ray_vectors(torch.zeros(1, 2))[:, 0]
    closest = o - ((o * w).sum(-1, keepdim=True) / (w * w).sum(-1, keepdim=True)) * w
    assert closest.norm(dim=-1).max() < 1e-5
    assert math.isclose(float(sw.origins[:, 2].min()), 4 * math.sin(math.radians(15)), rel_tol=0.5)


def test_shapeworld_miss_points_lie_in_free_space():
    """A missing ray's colour is read at camera depth ``miss_point_depth`` and ``L_bg`` pushes it to white. DVR's
    d = 1 with ShapeNet's cameras (distance 2.732, ISS's ×1.5 in stage 2) puts that point in free space in front of
    the object box; the shapeworld configs must too, or ``L_bg`` whitens the field beside the silhouette and erodes
    the shape (iss/README.md)."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "experiments" / "shapeworld"
    for name in ("iss_svr.yaml", "iss_stage1.yaml", "iss.yaml", "iss_stylize.yaml"):
        args = yaml.safe_load((root / name).read_text())["model"]["init_args"]
        ren = DVRRenderer(**args["renderer"]["init_args"])
        views = args.get("views", {}).get("init_args", {"azimuth": [0.0, 360.0], "elevation": [15.0, 50.0],
                                                      "radius": [4.0, 4.0], "focal": [2.82, 3.39], "up": "z"})
        cams = ViewSampler(**views).sample(16, torch.Generator().manual_seed(0))
        cams = cams.scale_translation(args.get("cam_scale", 1.0))
        o, w, *_ = ren.ray_setup(cams, pixel_grid(16, 16))
        miss_points = o + ren.miss_point_depth * w  # [B, R, 3]
        assert (miss_points.abs().amax(-1) > ren.cube).all(), name
    # and the DVR geometry this mirrors: ShapeNet box 0.5, camera distance 2.732 (×1.5 in stage 2), d = 1
    for scale in (1.0, 1.5):
        cams = ViewSampler(radius=(2.732, 2.732)).sample(16, torch.Generator().manual_seed(0)).scale_translation(scale)
        ren = DVRRenderer()
        o, w, *_ = ren.ray_setup(cams, pixel_grid(16, 16))
        assert ((o + ren.miss_point_depth * w).abs().amax(-1) > ren.cube).all()
