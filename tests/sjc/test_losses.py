"""SJC centre-depth loss (Eq. 27, spec T12). The emptiness loss values and its λ schedule (T11) are
tested once, in tests/common/test_losses.py::test_emptiness_loss_and_schedule; the system's use of the
schedule is tested in test_system.py."""

import pytest
import torch

from sjc.losses import center_box, center_depth_loss


def _depth():
    d = torch.full((64, 64), 10.0, dtype=torch.float64)
    d[7:57, 7:57] = 1.0
    return d.requires_grad_(True)


def test_center_box_is_rows_and_columns_7_to_57():
    rows, cols = center_box(64, 64)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (7, 57, 7, 57)
    with pytest.raises(ValueError):
        center_box(2, 2)


def test_value_and_gradient():
    d = _depth()
    loss = center_depth_loss(d)
    assert loss.item() == pytest.approx(-2.1972246, abs=1e-7)  # Δ = −9, L = −log 9
    loss.backward()
    assert d.grad[30, 30].item() == pytest.approx(1 / (9 * 2500), rel=1e-9)  # > 0: descent brings the centre nearer
    assert d.grad[0, 0].item() == pytest.approx(-1 / (9 * 1596), rel=1e-9)


@pytest.mark.parametrize("delta_sign", [-1, 1])
def test_gradient_equals_the_code_form(delta_sign):
    """−log(|Δ| + ε) has the gradient of the code's −log(Δ + ε) for either sign of Δ (A7); its value is finite."""
    g = torch.Generator().manual_seed(0)
    d = (torch.rand(16, 16, generator=g, dtype=torch.float64) * 3 + 2).requires_grad_(True)
    with torch.no_grad():
        rows, cols = center_box(16, 16)
        d[rows, cols] += delta_sign * 2.0
    ours = torch.autograd.grad(center_depth_loss(d), d)[0]
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[rows, cols] = True
    delta = d[mask].mean() - d[~mask].mean()
    code = -torch.log(delta + 1e-12)  # NaN value for Δ < 0, finite gradient
    theirs = torch.autograd.grad(code, d)[0]
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-9)
    assert torch.isfinite(center_depth_loss(d))
