"""common.priors.checks: diffusion pipeline checks shared by the systems (SJC's bad-input tests in
tests/sjc/test_system.py run them through SJCSystem.setup on broken copies of a tiny pipeline)."""

import shutil

import pytest
import torch

from common.priors.base import PriorWeightsNotFoundError
from common.priors.checks import check_pipeline_dir, check_sigma_range, check_timestep_range
from common.priors.diffusion import tiny_pipeline_dir


def test_diffusion_check_resolves_tiny_names_and_skips_hub_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORLAB_CACHE", str(tmp_path))
    path = check_pipeline_dir("tiny:pixel", need_text=True)
    assert path == tiny_pipeline_dir("tiny:pixel") and (path / "model_index.json").is_file()
    assert check_pipeline_dir("runwayml/stable-diffusion-v1-5") is None  # DiffusionModel resolves hub ids
    with pytest.raises(ValueError, match="unknown tiny pipeline"):
        check_pipeline_dir("tiny:xl")
    with pytest.raises(ValueError, match="unconditional model: set the guidance's guidance_scale: 1.0"):
        check_pipeline_dir("tiny:pixel-uncond", need_text=True)
    with pytest.raises(PriorWeightsNotFoundError, match="lists no 'vae'.*Stable Diffusion latents"):
        check_pipeline_dir("tiny:pixel", need_vae=True)
    shutil.rmtree(path / "unet")  # a damaged cached tiny pipeline: the fix is to delete it
    with pytest.raises(PriorWeightsNotFoundError, match=r"folder .*unet is missing\. Fix: delete .*pixel-seed0"):
        check_pipeline_dir("tiny:pixel")


def test_diffusion_check_ranges():
    check_timestep_range(10, None, 1000)
    check_timestep_range(0.02, 0.98, 1000, fractions=True, kind="SDS")
    with pytest.raises(ValueError, match=r"SJC timestep range \[10, 1000\] is outside the model's 0..999.*t_min/t_max"):
        check_timestep_range(10, 1000, 1000)
    with pytest.raises(ValueError, match="SDS timestep range"):
        check_timestep_range(0.6, 0.2, 1000, fractions=True, kind="SDS")
    sigmas = torch.linspace(0.1, 10.0, 50, dtype=torch.float64)
    check_sigma_range(sigmas, [0.1, 5.0, 10.0])
    with pytest.raises(ValueError, match=r"noise range \[0.1, 10\].*Choose σ inside"):
        check_sigma_range(sigmas, [20.0, float("nan")])
