"""The shared warm-up + cosine learning-rate multiplier (DDPM training, the shapeworld CLIPs)."""

import pytest

from common.lr_schedules import warmup_cosine_factor


def test_warmup_then_constant():
    assert [warmup_cosine_factor(s, 4, 100, "constant") for s in (0, 1, 3, 50, 99)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert warmup_cosine_factor(0, 0, 100, "constant") == 1.0


def test_warmup_then_cosine_to_final_ratio():
    f = [warmup_cosine_factor(s, 4, 104, "cosine", 0.1) for s in (0, 3, 4, 54, 104, 200)]
    assert f[0] == pytest.approx(0.25) and f[1] == pytest.approx(1.0) and f[2] == pytest.approx(1.0)
    assert f[3] == pytest.approx(0.55)  # half way: 0.1 + 0.9 · (1 + cos(π/2)) / 2
    assert f[4] == pytest.approx(0.1) and f[5] == pytest.approx(0.1)
    assert warmup_cosine_factor(10, 0, 20, "cosine", 0.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="constant' or 'cosine"):
        warmup_cosine_factor(0, 1, 10, "linear")


def test_shapeworld_clip_schedule_is_open_clip_cosine():
    """ShapeWorldCLIPSystem's LambdaLR: warm-up to the base lr, then cosine to 0 at max_steps."""
    from lightning.pytorch import Trainer

    from shapeworld.clip_system import ShapeWorldCLIPSystem

    system = ShapeWorldCLIPSystem(lr=1.0, warmup_steps=2)
    system.trainer = Trainer(max_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    sched = system.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert [sched.lr_lambdas[0](s) for s in (0, 1, 6, 10)] == pytest.approx([0.5, 1.0, 0.5, 0.0])
