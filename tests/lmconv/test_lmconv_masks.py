"""Spec §7 B: masks from an order (Algorithm 2)."""

import pytest
import torch

from lmconv.masks import MaskBank, build_mask, build_mask_loop
from lmconv.orders import make_orders, random_order, rank_grid, raster, s_curve


def _mask_at(mask, k, r, c, w):
    return mask[0, :, r * w + c].reshape(k, k).tolist()


def test_golden_s_curve_3x3():  # B1
    ranks = rank_grid(s_curve(3, 3), 3, 3)
    a, b = build_mask(ranks, 3, 1, "A"), build_mask(ranks, 3, 1, "B")
    golden = {(0, 0): [[0, 0, 0], [0, 0, 0], [0, 0, 0]], (0, 2): [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
              (1, 1): [[1, 1, 1], [0, 0, 1], [0, 0, 0]], (1, 0): [[0, 1, 1], [0, 0, 1], [0, 0, 0]],
              (2, 2): [[1, 1, 0], [1, 0, 0], [0, 0, 0]]}
    for (r, c), m in golden.items():
        assert _mask_at(a, 3, r, c, 3) == m
        m[1][1] = 1
        assert _mask_at(b, 3, r, c, 3) == m


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("d", [1, 2])
def test_definition_and_loop_equivalence(k, d):  # B2, B3
    h, w, half = 5, 7, k // 2
    for seed in range(3):
        order = random_order(h, w, seed)
        ranks = rank_grid(order, h, w)
        for kind in ("A", "B"):
            m = build_mask(ranks, k, d, kind)
            assert m.shape == (1, k * k, h * w)
            assert torch.equal(m, build_mask_loop(order, h, w, k, d, kind))
            assert m[0, :, order[0][0] * w + order[0][1]].sum() == (kind == "B")  # B3: first pixel sees nothing
            for r in range(h):
                for c in range(w):
                    for j in range(k * k):
                        dr, dc = j // k - half, j % k - half
                        q = (r + d * dr, c + d * dc)
                        inside = 0 <= q[0] < h and 0 <= q[1] < w
                        want = float(kind == "B") if (dr, dc) == (0, 0) else float(inside and ranks[q] < ranks[r, c])
                        assert m[0, j, r * w + c] == want


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("d", [1, 2])
def test_raster_is_pixelcnn(k, d):  # B4
    h = w = 9
    ranks = rank_grid(raster(h, w), h, w)
    pix_a = torch.zeros(k, k)
    pix_a[: k // 2] = 1
    pix_a[k // 2, : k // 2] = 1
    pix_b = pix_a.clone()
    pix_b[k // 2, k // 2] = 1
    pad = d * (k // 2)
    for kind, ref in (("A", pix_a), ("B", pix_b)):
        m = build_mask(ranks, k, d, kind)
        for r in range(pad, h - pad):
            for c in range(pad, w - pad):
                assert torch.equal(m[0, :, r * w + c], ref.flatten())


def test_mask_bank_and_bad_sizes():
    bank = MaskBank("s_curve", [0, 1, 6], [(4, 4), (6, 6)])
    assert bank.num_orders == 3
    masks = bank.masks(2, 6, 6)
    assert masks.first.shape == masks.inner.shape == masks.dilated.shape == (1, 9, 36)
    assert bank.order(2, 4, 4) == make_orders("s_curve", 4, 4, [6])[0]
    assert not [k for k in bank.state_dict()]  # masks are non-persistent: never in a checkpoint
    with pytest.raises(ValueError, match="5x5 do not match.*4x4, 6x6"):
        bank.masks(0, 5, 5)
    with pytest.raises(IndexError):
        bank.masks(3, 4, 4)
    with pytest.raises(ValueError, match="Unknown order family"):
        MaskBank("spiral", [0], [(4, 4)])
    with pytest.raises(ValueError, match="odd"):
        build_mask(rank_grid(raster(3, 3), 3, 3), 2, 1, "A")
