"""Novelty (specs/iss.md §10.1, Fig. 6): retrieval of training shapes by CLIP cosine and the Chamfer distance to them."""

import numpy as np
import pytest
import torch

from iss.novelty import ShapeBank, bank_from_renders, chamfer_distance, novelty, retrieve, shape_surface_points


def test_chamfer_closed_forms():
    a = np.array([[0.0, 0.0, 0.0]])
    assert chamfer_distance(a, np.array([[3.0, 4.0, 0.0]])) == pytest.approx(5.0)
    cloud = np.random.default_rng(0).normal(size=(200, 3))
    assert chamfer_distance(cloud, cloud) == 0.0
    # adding one point at distance 1 from its nearest neighbour: one direction unchanged, the other gains 1/201
    extra = np.vstack([cloud, cloud[:1] + [1.0, 0.0, 0.0]])
    d_nn = np.linalg.norm(cloud - (cloud[0] + [1.0, 0.0, 0.0]), axis=1).min()
    assert chamfer_distance(cloud, extra) == pytest.approx(0.5 * d_nn / 201)
    assert chamfer_distance(extra, cloud) == pytest.approx(chamfer_distance(cloud, extra))
    with pytest.raises(ValueError, match="non-empty"):
        chamfer_distance(np.zeros((0, 3)), cloud)


def test_retrieve_orders_by_cosine():
    feats = torch.eye(4)
    idx, cos = retrieve(torch.tensor([0.1, 0.2, 1.0, 0.5]), feats, k=3)
    assert idx.tolist() == [2, 3, 1]
    assert (cos[:-1] >= cos[1:]).all() and cos[0] == pytest.approx(1.0 / np.sqrt(1.3), rel=1e-5)
    with pytest.raises(ValueError, match="bank size"):
        retrieve(torch.ones(4), feats, k=5)


def test_novelty_is_zero_for_a_copy_and_positive_otherwise():
    g = np.random.default_rng(1)
    shapes = [g.normal(size=(300, 3)), g.normal(size=(300, 3)) + 3.0]
    bank = ShapeBank(torch.eye(2), lambda i: shapes[i], ["a", "b"])
    copy = novelty(shapes[0], torch.tensor([1.0, 0.0]), bank, k=1)
    assert copy["retrieved"] == ["a"] and copy["min_chamfer"] == 0.0
    other = novelty(shapes[0], torch.tensor([0.0, 1.0]), bank, k=1)
    assert other["retrieved"] == ["b"] and other["min_chamfer"] > 2.0
    both = novelty(shapes[0], torch.tensor([0.2, 1.0]), bank, k=2)
    assert both["retrieved"] == ["b", "a"] and both["min_chamfer"] == 0.0
    assert both["retrieved_pairwise_chamfer"] == pytest.approx(chamfer_distance(shapes[0], shapes[1]))
    assert copy["retrieved_pairwise_chamfer"] is None


def test_bank_averages_each_shapes_renders():
    images = torch.zeros(5, 3, 4, 4)
    images[0, 0] = images[1, 0] = 1.0  # shape 0: red renders
    images[2, 1] = images[3, 2] = images[4, 1] = 1.0  # shape 1: green, blue, green
    embed = lambda x: x.mean((2, 3))  # noqa: E731  (a stand-in "CLIP": mean colour)
    bank = bank_from_renders(embed, images, torch.tensor([0, 0, 1, 1, 1]), lambda i: np.zeros((1, 3)), ["r", "gb"])
    assert torch.allclose(bank.features[0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(bank.features[1], torch.nn.functional.normalize(torch.tensor([0.0, 2.0, 1.0]), dim=0))
    with pytest.raises(ValueError, match="without a render"):
        bank_from_renders(embed, images, torch.tensor([0, 0, 0, 0, 0]), lambda i: None, ["r", "gb"])


def test_shapeworld_surface_points_lie_on_the_sdf_zero_set():
    from shapeworld.shapes import ShapeSpec

    spec = ShapeSpec("sphere", "red", (1.0, 0.0, 0.0), scale=1.0)
    pts = shape_surface_points(spec, 500, resolution=48)
    assert pts.shape == (500, 3)
    assert np.abs(spec.sdf(torch.as_tensor(pts)).numpy()).max() < 2.0 / 48  # within a grid cell of the surface
