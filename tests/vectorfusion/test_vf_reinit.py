"""Path reinitialisation (spec §7.2 test 12)."""

import math

import torch

from vectorfusion.paths import path_area
from vectorfusion.reinit import (reinit_paths, reinit_steps, reorder_replaced, reset_adam_rows,
                                 select_for_reinit)
from vectorfusion.styles import circle_points


def _paths_with(alpha_area: list[tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Circles scaled to the requested area (LIVE circle of radius r has area 0.8719 pi r^2)."""
    unit = float(path_area(circle_points(torch.zeros(1, 2), radius=1.0)[0].double()))
    centres = torch.tensor([[100.0 * (i + 1), 300.0] for i in range(len(alpha_area))])
    radii = torch.tensor([math.sqrt(area / unit) for _, area in alpha_area])
    pts = torch.stack([circle_points(c[None], float(r))[0] for c, r in zip(centres, radii)])
    rgba = torch.tensor([[0.5, 0.5, 0.5, a] for a, _ in alpha_area], dtype=torch.float32)
    return pts, rgba


SETUP = [(0.03, 1095.0), (0.9, 50.0), (0.9, 1095.0), (0.05, 1095.0), (0.9, 70.0)]


def test_selection_is_strict_and_exact():
    pts, rgba = _paths_with(SETUP)
    assert torch.allclose(path_area(pts), torch.tensor([a for _, a in SETUP]), rtol=1e-4)
    assert select_for_reinit(pts, rgba, 0.05, 64.0).tolist() == [True, True, False, False, False]
    assert select_for_reinit(pts, rgba, 0.05, 0.0).tolist() == [True, False, False, False, False]


def test_replacement_goes_on_top_and_keeps_survivors():
    pts, rgba = _paths_with(SETUP)
    order = torch.arange(5)
    mask = select_for_reinit(pts, rgba, 0.05, 64.0)
    g = torch.Generator().manual_seed(0)
    new_pts, new_rgba, new_order = reinit_paths(pts, rgba, order, mask, generator=g)
    assert new_order.tolist() == [2, 3, 4, 0, 1]
    assert torch.equal(new_pts[~mask], pts[~mask]) and torch.equal(new_rgba[~mask], rgba[~mask])
    for i in (0, 1):
        rel = new_pts[i] - new_pts[i].mean(0)
        assert torch.allclose(rel.norm(dim=-1), torch.full((12,), 20.0), atol=1e-3)
        assert 0.7 <= float(new_rgba[i, 3]) <= 1.0
    # replaced rows keep their previous relative draw order
    assert reorder_replaced(torch.tensor([4, 1, 0, 3, 2]), mask).tolist() == [4, 3, 2, 1, 0]


def test_adam_moments_reset_for_replaced_rows_only():
    pts, rgba = _paths_with(SETUP)
    param = torch.nn.Parameter(pts.clone())
    opt = torch.optim.Adam([param], lr=0.1, betas=(0.9, 0.9), eps=1e-6, foreach=False)
    for _ in range(2):
        opt.zero_grad()
        (param**2).sum().backward()
        opt.step()
    before = {k: v.clone() for k, v in opt.state[param].items()}
    mask = select_for_reinit(pts, rgba, 0.05, 64.0)
    reset_adam_rows(opt, param, mask)
    state = opt.state[param]
    for key in ("exp_avg", "exp_avg_sq"):
        assert (state[key][mask] == 0).all()
        assert torch.equal(state[key][~mask], before[key][~mask])
    assert torch.equal(state["step"], before["step"])


def test_reinit_schedule():
    assert reinit_steps(2000, 1500) == list(range(50, 1451, 50))
    assert reinit_steps(1000, 800) == list(range(50, 751, 50))
