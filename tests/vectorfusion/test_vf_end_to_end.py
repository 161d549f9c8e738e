"""Tiny end-to-end runs through `lightning fit` (tiny SD + tiny CLIP): from scratch and the full pipeline
(spec §7.3 test 21), resuming mid-LIVE, and the evaluation of their outputs."""

import json
from pathlib import Path

import pytest
import torch

from common.cli import SuiteCLI
from vectorfusion.evaluate import main as evaluate_main
from vectorfusion.svg import read_svg
from vectorfusion.system import VectorFusionSystem

ROOT = Path(__file__).resolve().parents[2]


def run(config: str, tmp_path: Path, *extra: str) -> SuiteCLI:
    return SuiteCLI(args=["fit", "--config", str(ROOT / "experiments" / config),
                          "--config", str(ROOT / "tests" / "overrides" / config),
                          "--run.root", str(tmp_path), "--run.logger", "none", "--run.checkpoint_every_n_steps", "2",
                          "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", *extra])


def check_outputs(run_dir: Path, n_paths: int, methods: list[str]) -> dict:
    scene, title = read_svg(run_dir / "media" / "final.svg")
    assert len(scene.shapes) == n_paths and title == "A panda rowing a boat in a pond."
    assert all(torch.isfinite(s.points).all() and s.fill is not None for s in scene.shapes)
    result = json.loads((run_dir / "result.json").read_text())
    assert [r["method"] for r in result["outputs"]] == methods
    assert all((run_dir / r["image"]).is_file() for r in result["outputs"])
    assert (run_dir / "media" / "optimisation.gif").is_file()
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    keys = list(ckpt["state_dict"])
    assert keys and all(k.startswith(("primitives.", "target", "udf_")) for k in keys), keys  # no frozen priors
    return result


def test_from_scratch_through_lightning_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cli = run("vectorfusion_scratch.yaml", tmp_path)
    assert cli.trainer.global_step == 3
    result = check_outputs(Path(cli.trainer.default_root_dir), 4, ["VectorFusion (scratch)"])
    assert result["init"] == "scratch" and result["sds_steps"] == 3


def test_full_pipeline_through_lightning_fit_then_evaluate(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    logged = []  # what would go to W&B as media
    record = lambda trainer, key, path, kind, step=None: logged.append((key, Path(path).name, kind))  # noqa: E731
    monkeypatch.setattr("common.callbacks.log_media", record)
    monkeypatch.setattr("vectorfusion.callbacks.log_media", record)
    cli = run("vectorfusion.yaml", tmp_path)
    keys = {(k, kind) for k, _, kind in logged}
    assert {("media/raster_best", "image"), ("media/preview", "image"), ("media/live", "image"),
            ("media/final", "image"), ("media/optimisation", "video")} <= keys
    run_dir = Path(cli.trainer.default_root_dir)
    assert cli.trainer.global_step == 6 and cli.model.live_steps == 4
    result = check_outputs(run_dir, 4, ["Stable Diff (raster)", "SD init + LIVE", "VectorFusion + SD init + LIVE"])
    assert len(result["rerank_scores"]) == 2 and result["prompt"].endswith("trending on artstation")
    assert (run_dir / "media" / "live.svg").is_file()
    captions = tmp_path / "pool.txt"
    captions.write_text("a red cube\nA panda rowing a boat in a pond.\n")
    rows = evaluate_main([str(tmp_path), "--captions", str(captions), "--clip",
                          f"config:{ROOT / 'common/testing/tiny_clip.json'}"])
    assert {r["method"] for r in rows} == {"Stable Diff (raster)", "SD init + LIVE", "VectorFusion + SD init + LIVE"}
    assert all(r["n"] == 1 and r["tiny_clip"]["r_precision"] in (0.0, 100.0) for r in rows)


def test_resume_mid_live_keeps_the_target(tmp_path, monkeypatch):
    """A run killed after the checkpoint of step 2 (mid-LIVE) resumes with its target; stage A is not redone."""
    monkeypatch.chdir(ROOT)

    def crash(self, batch, batch_idx):
        if self.global_step == 3:
            raise RuntimeError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(VectorFusionSystem, "on_train_batch_start", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run("vectorfusion.yaml", tmp_path)
    run_dir = tmp_path / "vectorfusion" / "version_0"
    samples = run_dir / "media" / "raster_samples.png"
    stamp = samples.stat().st_mtime_ns
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2
    second = run("vectorfusion.yaml", tmp_path, "--ckpt_path", "last")
    assert Path(second.trainer.default_root_dir) == run_dir and second.trainer.global_step == 6
    assert torch.equal(second.model.target, saved["state_dict"]["target"])
    assert samples.stat().st_mtime_ns == stamp  # stage A was not redone
    assert (run_dir / "media" / "final.svg").is_file()
    rows = json.loads((run_dir / "result.json").read_text())["outputs"]
    assert [r["method"] for r in rows] == ["Stable Diff (raster)", "SD init + LIVE", "VectorFusion + SD init + LIVE"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ddp_two_cpu_processes(tmp_path):
    """Two gloo ranks through the CLI (the full pipeline, tiny): rank 0 writes one run folder and the SVG."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "common.cli", "fit", "--config", "experiments/vectorfusion.yaml", "--config",
           "tests/overrides/vectorfusion.yaml", "--run.root", str(tmp_path), "--run.logger", "none",
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=800, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "vectorfusion").iterdir())
    assert len(runs) == 1
    assert torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert len(read_svg(runs[0] / "media" / "final.svg")[0].shapes) == 4
