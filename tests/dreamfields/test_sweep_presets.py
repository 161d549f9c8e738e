"""The sweep runner (serial and sharded) and the ablation presets of Tables 4.1 and 4.2."""

import json
import os
from pathlib import Path

import pytest

from dreamfields import sweep
from dreamfields.system import DreamFieldsSystem

ROOT = Path(__file__).resolve().parents[2]
EXP, TINY = "experiments/dreamfields.yaml", "tests/overrides/dreamfields.yaml"
PRESETS = sorted((ROOT / "dreamfields" / "presets").rglob("*.yaml"))


def test_resolve_shard_from_flag_and_launcher_environments():
    assert sweep.resolve_shard(None, {}) == (0, 1, 0)
    assert sweep.resolve_shard("2/4", {}) == (2, 4, 0)
    assert sweep.resolve_shard(None, {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (3, 8, 1)
    assert sweep.resolve_shard(None, {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1"}) == (1, 2, 1)
    with pytest.raises(ValueError, match="INDEX/COUNT"):
        sweep.resolve_shard("2-4", {})
    with pytest.raises(ValueError, match="outside"):
        sweep.resolve_shard("4/4", {})
    assert sweep.shard_items(list(range(7)), 1, 3) == [1, 4]


def test_single_process_env_hides_the_launcher(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_PORT", "1234")
    with sweep.single_process_env():
        assert "RANK" not in os.environ and "WORLD_SIZE" not in os.environ and "MASTER_PORT" not in os.environ
    assert os.environ["RANK"] == "1" and os.environ["MASTER_PORT"] == "1234"


def test_serial_and_sharded_sweep_write_the_table(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    captions = tmp_path / "caps.txt"
    captions.write_text("a red cube\na blue sphere\na green cone\n")
    out = tmp_path / "sweep"
    extra = ["--run.logger", "none", "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "1"]
    recs = sweep.run_sweep([EXP, TINY], str(out), "tiny row", str(captions), normalize=False, seeds=[0], limit=2,
                           shard="0/1", extra=extra)
    assert [r["caption"] for r in recs] == ["a red cube", "a blue sphere"]
    assert all(r["pool_size"] == 3 and r["steps"] == 1 for r in recs)
    # a second label run as shard 1 of 2 (as one process of a distributed launch) takes captions 1 only
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    recs2 = sweep.run_sweep([EXP, TINY], str(out), "sharded", str(captions), normalize=False, seeds=[0], extra=extra)
    assert [r["caption_index"] for r in recs2] == [1]
    table = (out / "table.md").read_text()
    assert "| tiny row |" in table and "(n=2)" in table and "| sharded |" in table and "(n=1)" in table
    data = json.loads((out / "table.json").read_text())
    assert data["tiny row"]["tiny-clip"]["n"] == 2 and 0 <= data["tiny row"]["tiny-clip"]["p"] <= 1
    # finished scenes are not run again
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    again = sweep.run_sweep([EXP, TINY], str(out), "tiny row", str(captions), normalize=False, limit=2, extra=["--bad"])
    assert [r["caption"] for r in again] == ["a red cube", "a blue sphere"]
    assert sweep.collect(str(out)) == table


def test_summary_uses_the_standard_error_of_table_4_1():
    recs = [{"retrieval": {"m": {"correct": i < 183}}} for i in range(306)]  # 183/306 = 0.598
    s = sweep.summarise(recs)["m"]
    assert s["n"] == 306 and round(100 * s["p"], 1) == 59.8 and round(s["sem"], 1) == 2.8


def build_model(configs):
    """The ``model`` of layered configs, parsed and instantiated by jsonargparse as the CLI does."""
    from common.model_config import build_model as build

    return build(configs)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: str(p.relative_to(ROOT / "dreamfields" / "presets")))
def test_every_preset_builds(preset, tmp_path, monkeypatch):
    """Each ablation preset layered over the paper config builds a system with the row's switches set
    (baselines over the tiny override too; they run end to end in test_system.py)."""
    monkeypatch.chdir(ROOT)
    order = [EXP, TINY, str(preset)] if "baselines" in str(preset) else [EXP, str(preset)]
    model = build_model(order)  # builds the parts; no weights are loaded before setup()
    assert isinstance(model, DreamFieldsSystem)
    name = preset.stem
    if name in ("01_simplified_nerf", "02_mip_nerf_ipe", "03_higher_freq_fourier", "04_random_crops"):
        assert model.hparams.sparsity == "none" and not model.origin_tracker.enabled
        assert not model.renderer.mask_outside and model.field.trunk.__class__.__name__ == "PlainMLP"
    if name == "01_simplified_nerf":
        assert not model.renderer.with_covariance and model.guidance.augment.backgrounds == ()
        assert model.guidance.augment.crop_scale == (1.0, 1.0)
        assert sum(p.numel() for p in model.field.parameters()) == 494_084 - 2 * (63 - 39) * 256  # NeRF 494,084 at 63-d input; 39-d (L = 6) enters 2 layers
    if name == "06_background_aug":
        assert model.guidance.augment.backgrounds == ("noise", "checkerboard", "fourier")
    if name == "08_scene_bounds":
        assert model.renderer.mask_outside and not model.origin_tracker.enabled
    if name in ("09_track_origin",):
        assert model.origin_tracker.enabled and sum(p.numel() for p in model.field.parameters()) == 315_396
    if "table4_2" in str(preset):
        assert model.hparams.sparsity == name
        assert model.guidance.clips[0].pretrained == "laion2b_s34b_b79k"
    if name == "perturb_sigma":
        assert model.field.density_noise_std == 1.0
