"""Mesh extraction, point sampling and metrics (specs/iss.md §15.5)."""

import math

import numpy as np
import torch

from iss.analytic import BoxField, SphereField
from iss.mesh import extract_mesh, grid_vertices, occupancy_grid, sample_surface
from iss.metrics import PointNetClassifier, fpd, frechet_distance, gaussian_stats, iou, point_score


def test_mesh_extraction_sphere():
    field = SphereField(0.3, 10.0, rgb=(0.8, 0.4, 0.2))
    logits = lambda p: field(p[None])[0, :, 0]  # noqa: E731
    colours = lambda p: torch.sigmoid(field(p[None])[0, :, 1:4])  # noqa: E731
    mesh = extract_mesh(logits, colours, resolution_0=64, upsampling_steps=0, bound=0.5)
    assert mesh.is_watertight
    assert abs(mesh.volume - 4 / 3 * math.pi * 0.3 ** 3) / 0.11310 < 0.03
    assert np.abs(mesh.vertices).max() <= 0.5 + 1e-6
    expected = np.round(np.array([0.8, 0.4, 0.2]) * 255)
    assert np.abs(mesh.visual.vertex_colors[:, :3].astype(float) - expected).max() <= 1
    # nothing inside the box: an empty mesh, no error
    assert len(extract_mesh(lambda p: -torch.ones(p.shape[0]), resolution_0=8, upsampling_steps=0).faces) == 0


def test_mise_matches_dense():
    field = BoxField(0.23, 10.0, centre=(0.03, -0.02, 0.01))
    fn = lambda p: field(p[None])[0, :, 0]  # noqa: E731
    coarse_to_fine = occupancy_grid(fn, resolution_0=8, upsampling_steps=2, bound=0.5)
    dense = fn(grid_vertices(33, 0.5).reshape(-1, 3)).reshape(33, 33, 33)
    assert coarse_to_fine.shape == dense.shape
    above = dense > 0
    corners = torch.stack([above[i:32 + i, j:32 + j, k:32 + k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    surface = corners.any(0) & ~corners.all(0)  # cells of the dense grid the surface crosses
    verts = torch.zeros_like(above)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                verts[i:32 + i, j:32 + j, k:32 + k] |= surface
    assert surface.sum() > 100
    assert torch.allclose(coarse_to_fine[verts], dense[verts], atol=1e-6)
    assert torch.equal(coarse_to_fine > 0, above)  # same occupancy everywhere


def test_point_sampling():
    import trimesh

    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    pts, normals, colours = sample_surface(cube, 2048, torch.Generator().manual_seed(0))
    assert pts.shape == (2048, 3) and normals.shape == (2048, 3) and colours.shape == (2048, 3)
    assert (pts.abs().amax(-1) - 0.5).abs().max() < 1e-6
    side = pts.abs().argmax(-1) * 2 + (pts.gather(1, pts.abs().argmax(-1, keepdim=True))[:, 0] > 0).long()
    counts = torch.bincount(side, minlength=6).numpy()
    expected = counts.sum() / 6
    assert ((counts - expected) ** 2 / expected).sum() < 20.52  # χ² with 5 dof: p > 0.001


def test_fpd_fid_math():
    assert abs(frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3))) < 1e-8
    assert abs(frechet_distance([0.0], [[1.0]], [1.0], [[4.0]]) - 2.0) < 1e-6
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 4, generator=g), torch.randn(150, 4, generator=g) * 1.5 + 0.3
    ab = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    ba = frechet_distance(*gaussian_stats(b), *gaussian_stats(a))
    assert ab > 0 and abs(ab - ba) < 1e-6
    net = PointNetClassifier(widths=(8, 8)).eval()
    clouds = torch.rand(24, 32, 6, generator=g)
    assert fpd(net, clouds, clouds) < 1e-6


def test_iou_and_point_score():
    box = torch.zeros(20, 20, 20, dtype=torch.bool)
    box[5:15, 5:15, 5:15] = True
    shifted = torch.roll(box, 3, dims=0)
    assert iou(box, box) == 1.0 and iou(box, torch.roll(box, 10, dims=0)) == 0.0
    assert abs(iou(box, shifted) - (10 - 3) / (10 + 3)) < 1e-9
    one_class = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert abs(point_score(one_class) - 1.0) < 1e-6
    assert abs(point_score(torch.tensor([[1.0, 0.0], [0.0, 1.0]])) - 2.0) < 1e-5
