"""Spec §7 A: generation orders."""

import pytest
import torch

from lmconv.orders import (check_order, gilbert, hilbert_textbook, make_orders, random_order, rank_grid, raster,
                           s_curve, stable_partition, variant)

SIZES = [(28, 28), (8, 8), (7, 7), (6, 5)]


def _adjacent(order):
    return all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(order, order[1:]))


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("family", ["raster", "s_curve", "hilbert"])
def test_permutation_and_hamiltonian(family, h, w):  # A1, A2
    for v in range(8):
        order = variant(family, v, h, w)
        check_order(order, h, w)
        assert _adjacent(order) == (family != "raster")


def test_textbook_hilbert_is_a_permutation():  # A1
    for n in (2, 4, 8, 16):
        check_order(hilbert_textbook(n), n, n)
    with pytest.raises(ValueError, match="power-of-two"):
        hilbert_textbook(6)


def test_golden_orders():  # A3
    assert s_curve(3, 3) == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0), (2, 0), (2, 1), (2, 2)]
    assert hilbert_textbook(2) == [(0, 0), (1, 0), (1, 1), (0, 1)]
    assert hilbert_textbook(4) == [(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (3, 0), (3, 1), (2, 1), (2, 2), (3, 2),
                                   (3, 3), (2, 3), (1, 3), (1, 2), (0, 2), (0, 3)]
    for n in (2, 4, 8, 16, 32):
        assert gilbert(n, n) == hilbert_textbook(n)
    assert raster(2, 3) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


@pytest.mark.parametrize("n", [4, 8])
def test_variant_semantics(n):  # A4
    orders = make_orders("s_curve", n, n)
    assert len({tuple(o) for o in orders}) == 8
    e = n - 1
    ends = {0: ((0, 0), (e, 0)), 1: ((e, 0), (0, 0)), 2: ((0, e), (e, e)), 3: ((e, e), (0, e)),
            4: ((0, 0), (0, e)), 5: ((e, 0), (e, e)), 6: ((0, e), (0, 0)), 7: ((e, e), (e, 0))}
    for v, (start, end) in ends.items():
        assert (orders[v][0], orders[v][-1]) == (start, end)
    row0, last_row, col0 = {(0, c) for c in range(n)}, {(e, c) for c in range(n)}, {(r, 0) for r in range(n)}
    for v in (1, 3):
        assert set(orders[v][-n:]) == row0
    for v in (0, 2):
        assert set(orders[v][-n:]) == last_row
    for v in (6, 7):
        assert set(orders[v][-n:]) == col0


def test_non_square_variants_are_permutations():
    for v in range(8):
        check_order(variant("s_curve", v, 3, 5), 3, 5)
        check_order(variant("hilbert", v, 6, 10), 6, 10)


def test_stable_partition():  # A4
    order = random_order(4, 5, seed=3)
    hidden = torch.rand(4, 5, generator=torch.Generator().manual_seed(0)) < 0.4
    part = stable_partition(order, hidden)
    check_order(part, 4, 5)
    n_obs = int((~hidden).sum())
    assert all(not hidden[p] for p in part[:n_obs]) and all(hidden[p] for p in part[n_obs:])
    assert part[:n_obs] == [p for p in order if not hidden[p]]
    assert part[n_obs:] == [p for p in order if hidden[p]]
    adv = stable_partition(order, hidden, hidden_last=False)
    assert adv == part[n_obs:] + part[:n_obs]


def test_rank_grid_and_bad_names():
    order = s_curve(3, 4)
    r = rank_grid(order, 3, 4)
    assert [r[p].item() for p in order] == list(range(12))
    with pytest.raises(ValueError, match="Unknown order family 'zigzag'"):
        variant("zigzag", 0, 4, 4)
    with pytest.raises(ValueError, match="0..7"):
        variant("s_curve", 8, 4, 4)
    with pytest.raises(ValueError, match="exactly once"):
        rank_grid(order[:-1], 3, 4)
    assert random_order(5, 7, 1) == random_order(5, 7, 1) != random_order(5, 7, 2)
