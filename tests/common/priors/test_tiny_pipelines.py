"""`tiny:` model names write a tiny random pipeline once and load it through the real from_pretrained path."""

import pytest
import torch

from common.priors.diffusion import DiffusionModel, tiny_pipeline_dir


@pytest.mark.parametrize("name,latent", [("tiny:sd", True), ("tiny:pixel", False), ("tiny:pixel-uncond", False)])
def test_tiny_pipeline_names_load_through_from_pretrained(tmp_path, monkeypatch, name, latent):
    monkeypatch.setenv("PRIORLAB_CACHE", str(tmp_path))
    model = DiffusionModel(name).load()
    assert model.is_latent == latent
    path = tiny_pipeline_dir(name)
    assert (path / "model_index.json").is_file() and path.parent == tmp_path / "tiny"
    stamp = (path / "model_index.json").stat().st_mtime_ns
    DiffusionModel(name).load()  # second use reads the same folder, does not rewrite it
    assert (path / "model_index.json").stat().st_mtime_ns == stamp
    assert not any(p.name.startswith(".") for p in (tmp_path / "tiny").iterdir())  # no temp dirs left
    assert all(not p.requires_grad for p in model.unet.parameters())


def test_unknown_tiny_name(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORLAB_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="unknown tiny pipeline 'tiny:xl'"):
        DiffusionModel("tiny:xl").load()
