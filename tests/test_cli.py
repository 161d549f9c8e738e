"""The `lightning` CLI: fit, resume from `last`, bad configs, --print_config."""

import logging
from pathlib import Path

import pytest
import torch

from common.cli import SuiteCLI, main, resolve_run_dir

EXP = "experiments/nerf_sphere.yaml"
TINY = "tests/overrides/nerf_sphere.yaml"


def _fit(tmp_path, *extra):
    return SuiteCLI(args=["fit", "--config", EXP, "--config", TINY, "--run.root", str(tmp_path),
                          "--run.logger", "csv", *extra])


def test_fit_writes_checkpoint_and_resume_continues(tmp_path, caplog):
    _fit(tmp_path, "--trainer.max_steps", "4", "--run.checkpoint_every_n_steps", "2")
    run = tmp_path / "nerf_sphere" / "version_0"
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and "step0000002.ckpt" in ckpts and "step0000004.ckpt" in ckpts
    assert (run / "config.yaml").is_file() and (run / "csv" / "metrics.csv").is_file()
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["global_step"] == 4
    assert not any("clip" in k or "unet" in k for k in first["state_dict"])

    with caplog.at_level(logging.INFO):
        cli = _fit(tmp_path, "--trainer.max_steps", "6", "--ckpt_path", "last")
    assert Path(cli.trainer.default_root_dir) == run  # same run folder, not a new version
    assert any("Restoring states from the checkpoint path at" in r.getMessage() and "last.ckpt" in r.getMessage()
               for r in caplog.records)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert cli.trainer.global_step == 6


def test_new_runs_get_new_versions_and_missing_last_is_explained(tmp_path):
    assert resolve_run_dir(str(tmp_path), "x", False).name == "version_0"
    (tmp_path / "x" / "version_0").mkdir(parents=True)
    assert resolve_run_dir(str(tmp_path), "x", False).name == "version_1"
    with pytest.raises(FileNotFoundError, match="no run of 'x'.*has checkpoints/last.ckpt"):
        resolve_run_dir(str(tmp_path), "x", True)


def test_bad_key_fails_before_work_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    learning_rat: 0.1\n")
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", EXP, "--config", str(bad), "--run.root", str(tmp_path)])
    assert exc.value.code != 0
    assert "learning_rat" in capsys.readouterr().err
    assert not (tmp_path / "nerf_sphere").exists()


def test_unknown_class_fails_with_jsonargparse_message(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: common.nerf.NoSuchSystem\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", EXP, "--config", str(bad), "--run.root", str(tmp_path)])
    assert "NoSuchSystem" in capsys.readouterr().err


def test_print_config(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", EXP, "--print_config"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: common.nerf.NeRFSystem" in out and "checkpoint_every_n_steps" in out


def test_wandb_offline_logs_media_into_the_run_folder(tmp_path, monkeypatch, capsys):
    import wandb

    wandb.finish()  # a run left open by an earlier test in this process would be reused by the logger
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cli = SuiteCLI(args=["fit", "--config", EXP, "--config", TINY, "--run.root", str(tmp_path), "--run.logger", "wandb",
                         "--trainer.max_steps", "2"])
    run = Path(cli.trainer.default_root_dir)
    offline = list((run / "wandb").glob("offline-run-*"))
    assert offline, "no offline W&B run in the run folder"
    media = list(offline[0].rglob("files/media/**/*.*"))
    assert any(p.suffix in (".png", ".gif") for p in media), media
    assert f"Run folder: {run}" in capsys.readouterr().out
    wandb.finish()


def test_ddp_two_cpu_processes(tmp_path):
    """Lightning DDP with 2 CPU processes (gloo) through the CLI: both ranks step, rank 0 saves."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "common.cli", "fit", "--config", EXP, "--config", TINY, "--run.root", str(tmp_path),
           "--run.logger", "none", "--trainer.max_steps", "2", "--trainer.accelerator", "cpu",
           "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[1],
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "nerf_sphere").iterdir())
    assert len(runs) == 1, f"ranks wrote {len(runs)} run folders: {runs}"
    ckpt = torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2


def test_build_without_running(tmp_path):
    """`SuiteCLI(run=False)` builds model, datamodule and trainer from the config without fitting."""
    cli = SuiteCLI(args=["--config", EXP, "--config", TINY, "--run.root", str(tmp_path), "--run.logger", "none"],
                   run=False)
    assert type(cli.model).__name__ == "NeRFSystem" and cli.trainer.global_step == 0
    assert Path(cli.trainer.default_root_dir) == tmp_path / "nerf_sphere" / "version_0"


def test_resume_from_a_checkpoint_file_keeps_changed_config_arguments(tmp_path, caplog):
    """Lightning would replace the model's arguments by the checkpoint's; the suite keeps the config's."""
    _fit(tmp_path, "--trainer.max_steps", "2")
    ckpt = tmp_path / "nerf_sphere" / "version_0" / "checkpoints" / "last.ckpt"
    saved_lr = torch.load(ckpt, weights_only=True)["hyper_parameters"]["lr"]
    with caplog.at_level(logging.WARNING):
        cli = _fit(tmp_path, "--trainer.max_steps", "3", "--ckpt_path", str(ckpt), "--model.init_args.lr", "0.0123")
    assert saved_lr != 0.0123 and cli.model.hparams.lr == 0.0123
    assert cli.trainer.global_step == 3  # the states were restored and training continued
    assert any("lr: checkpoint" in r.getMessage() and "config 0.0123" in r.getMessage() for r in caplog.records)
