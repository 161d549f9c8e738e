"""Fast no-grad scans against the dense O(pixels x edges) reference (vectorfusion/scan.py)."""

import math

import pytest
import torch

from vectorfusion.coverage import pixel_centres, polyline_edges
from vectorfusion.scan import nearest_edges, scan_edges, winding_numbers


@pytest.mark.parametrize("seed", [0, 1])
def test_scanline_winding_and_sparse_nearest_edge_match_dense(seed):
    g = torch.Generator().manual_seed(seed)
    verts = torch.rand(40, 2, generator=g) * 50 + 5  # self-intersecting random polygon
    verts[::7] = verts[::7].round() + 0.5  # some vertices exactly on pixel-centre rows
    a, b = polyline_edges(verts, closed=True)
    box = (2, 60, 3, 61)
    q = pixel_centres(box, verts)
    dist, idx, wind = scan_edges(q, a, b, True, 4096)
    assert torch.equal(winding_numbers(box, a, b).reshape(-1), wind)
    for radius in (0.5, 3.5):
        d_fast, i_fast = nearest_edges(box, a, b, radius, max_elements=500)
        near = dist < radius
        assert torch.equal(torch.isinf(d_fast), ~near)
        assert torch.allclose(d_fast[near], dist[near], atol=1e-5)
        # the chosen edge is a nearest one (ties may pick a different index)
        ab, aq = b[i_fast] - a[i_fast], q - a[i_fast]
        t = ((aq * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-20)).clamp(0, 1)
        d_chosen = (aq - t[:, None] * ab).norm(dim=-1)
        assert torch.allclose(d_chosen[near], dist[near], atol=1e-5)


def test_pentagram_winding_is_two_in_the_centre():
    ang = torch.deg2rad(-90.0 + 144.0 * torch.arange(5))
    verts = 32 + 25 * torch.stack([ang.cos(), ang.sin()], -1)
    a, b = polyline_edges(verts, closed=True)
    wind = winding_numbers((0, 64, 0, 64), a, b)
    assert abs(int(wind[32, 32])) == 2 and abs(int(wind[13, 31])) == 1 and int(wind[2, 2]) == 0
    assert not math.isnan(float(wind.float().sum()))
