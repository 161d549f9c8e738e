"""Evaluation stand-ins on hand-made inputs: R@1 over templates, collapse index, automatic 2AFC (spec §6.2)."""

import torch

from zeroforge.evaluation import auto_2afc, mean_pairwise_cos, mean_pairwise_iou, r_at_1


def test_r_at_1_averages_over_templates():
    shapes = torch.eye(3, 4)
    text = torch.stack([torch.eye(3, 4), torch.eye(3, 4)[[1, 0, 2]]])  # template 2 swaps queries 0 and 1
    assert r_at_1(shapes, text, torch.arange(3)).tolist() == [0.5, 0.5, 1.0]


def test_collapse_index():
    a = torch.zeros(3, 4, 4, 4)
    a[:, :2] = 1
    assert mean_pairwise_iou(a) == 1.0  # fully collapsed
    b = a.clone()
    b[1] = 1 - b[1]
    assert abs(mean_pairwise_iou(b) - 1 / 3) < 1e-6  # pairs (0,1), (1,2) disjoint, (0,2) identical
    assert abs(mean_pairwise_cos(torch.eye(3)) - 0.0) < 1e-6 and mean_pairwise_cos(torch.ones(3, 2)) > 0.999


def test_auto_2afc():
    text = torch.eye(4, 8)
    shapes = torch.eye(4, 8).repeat(2, 1)
    query_of = torch.arange(4).repeat(2)
    assert auto_2afc(shapes, query_of, text)["2afc"] == 100.0
    collapsed = torch.ones(8, 8)
    out = auto_2afc(collapsed, query_of, text, participants=5)
    assert out["2afc"] == 50.0 and out["2afc_std"] == 0.0  # ties are coin flips
