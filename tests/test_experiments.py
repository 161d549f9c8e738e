"""Every YAML in experiments/ runs through the CLI (`fit`, a few steps) with its tiny override from
tests/overrides/ layered on top as a second --config. A YAML without an override fails here.

The runs log to CSV (not ``none``) so that a logger's hyperparameter merge runs too: Lightning refuses a
model and a datamodule that save the same hyperparameter name with different values.
"""

from pathlib import Path

import pytest

from common.cli import SuiteCLI

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "experiments").rglob("*.yaml"))


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_experiment_runs_with_tiny_override(config, tmp_path, monkeypatch):
    rel = config.relative_to(ROOT / "experiments")
    override = ROOT / "tests" / "overrides" / rel
    assert override.is_file(), f"{config} has no tiny override at {override}: add one so the config cannot rot"
    monkeypatch.chdir(ROOT)
    cli = SuiteCLI(args=["fit", "--config", str(config), "--config", str(override),
                         "--run.root", str(tmp_path), "--run.logger", "csv",
                         "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"])
    assert cli.trainer.global_step > 0, "the tiny run made no optimiser step"
