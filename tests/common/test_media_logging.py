"""W&B media logging: meshes in a format W&B's 3D viewer cannot read (.ply) go through a .glb copy."""

from types import SimpleNamespace

import numpy as np
import pytest
import trimesh

from common.callbacks import log_media, wandb_mesh_path
from common.export import save_mesh


def _coloured_box(tmp_path, suffix):
    mesh = trimesh.creation.box()
    mesh.visual.vertex_colors = np.tile([200, 30, 30, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    return save_mesh(mesh, tmp_path / f"mesh{suffix}"), mesh


def test_wandb_mesh_path_converts_ply_only(tmp_path):
    ply, mesh = _coloured_box(tmp_path, ".ply")
    glb = wandb_mesh_path(ply)
    assert glb.suffix == ".glb" and glb.is_file() and ply.is_file()  # the .ply stays
    loaded = trimesh.load(glb, force="mesh")
    assert len(loaded.faces) == len(mesh.faces)
    assert np.allclose(loaded.bounds, mesh.bounds)
    obj, _ = _coloured_box(tmp_path, ".obj")
    assert wandb_mesh_path(obj) == obj


def test_log_media_accepts_a_ply_mesh_with_a_wandb_logger(tmp_path, monkeypatch):
    """The ISS stage-2 run logged mesh.ply straight to wandb.Object3D, which raises for .ply."""
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="test")
    trainer = SimpleNamespace(is_global_zero=True, loggers=[logger], global_step=0)
    ply, _ = _coloured_box(tmp_path, ".ply")
    try:
        log_media(trainer, "mesh", ply, "mesh")
    finally:
        logger.experiment.finish()
    assert ply.with_suffix(".glb").is_file()
