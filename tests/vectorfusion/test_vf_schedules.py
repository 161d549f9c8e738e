"""Learning-rate schedules and the SDS-phase Adam (spec §7.2 test 15)."""

import pytest

from vectorfusion.schedules import LIVESchedule, SDSSchedule, live_lr_factor, warmup_cosine


def test_point_lr_warmup_then_cosine():
    s, n = SDSSchedule(), 2000
    lr = [s.lrs(i, n)["points"] for i in range(n + 1)]
    assert lr[0] == pytest.approx(0.02) and lr[250] == pytest.approx(0.11) and lr[500] == pytest.approx(0.2)
    assert lr[n] == pytest.approx(0.05)
    assert all(a >= b - 1e-12 for a, b in zip(lr[500:], lr[501:]))  # monotone after the warm-up
    for i in (0, 123, 500, 1500, n):
        g = s.lrs(i, n)
        assert g["colors"] == pytest.approx(g["points"] / 20) and g["background"] == pytest.approx(g["points"] / 200)
    assert s.betas == (0.9, 0.9) and s.eps == 1e-6


def test_pixel_lr():
    s = SDSSchedule()
    assert s.lrs(0, 2000)["pixels"] == pytest.approx(1e-5) and s.lrs(1000, 2000)["pixels"] == pytest.approx(1e-4)
    assert s.lrs(2000, 2000)["pixels"] == pytest.approx(2.5e-5)
    assert s.lrs(999, 1000)["pixels"] < 1e-4  # a 1000-step fine-tune is all warm-up


def test_short_runs_do_not_divide_by_zero():
    assert warmup_cosine(10, 5, 5, 0.02, 0.2, 0.05) == pytest.approx(0.2)
    assert warmup_cosine(600, 500, 100, 0.02, 0.2, 0.05) == pytest.approx(0.05)


def test_live_lr_decay():
    assert [round(live_lr_factor(i), 4) for i in (0, 250, 499, 500, 750, 1000)] == [1.0, 0.7, 0.4012, 0.4, 0.28, 0.16]
    g = LIVESchedule().lrs(250)
    assert g["points"] == pytest.approx(0.7) and g["colors"] == pytest.approx(0.007) and g["background"] == 0.0
    assert LIVESchedule().betas == (0.9, 0.999)
