"""End-of-fit exports of a voxel model: the α and RGB grids (``.npz``) and a marching-cubes mesh (spec §3.12).

The grids are exported at their own vertices (the scene box is not a cube, so
:func:`common.export.marching_cubes_mesh`, which assumes ``[-b, b]³``, is not used). The surface is the
``alpha_level`` iso-surface of the α grid with δ = one base voxel, i.e. the opacity one final-size voxel
of the field would have; vertex colours are the interpolated sigmoid colours.
"""

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from common.callbacks import log_media, run_dir
from common.export import save_mesh, to_uint8
from common.io import atomic_path
from pureclipnerf.gridmath import trilerp
from pureclipnerf.grids import VoxelGridField

__all__ = ["grid_arrays", "grid_mesh", "GridExport"]


@torch.no_grad()
def grid_arrays(field: VoxelGridField) -> dict:
    """``{alpha [X, Y, Z], rgb [X, Y, Z, 3], xyz_min [3], xyz_max [3]}`` as numpy (α with δ = 1 base voxel)."""
    dens, logits = field.raw_grids()
    return {"alpha": field.alpha_grid(dens, delta=1.0).float().cpu().numpy(),
            "rgb": torch.sigmoid(logits).permute(1, 2, 3, 0).float().cpu().numpy(),
            "xyz_min": field.xyz_min.cpu().numpy(), "xyz_max": field.xyz_max.cpu().numpy()}


@torch.no_grad()
def grid_mesh(field: VoxelGridField, alpha_level: float = 0.5, min_alpha: float = 0.05):
    """Marching-cubes mesh of the α grid at ``alpha_level`` (the grid's midpoint if the level is outside
    its range) in world units, with vertex colours. Raises ``ValueError`` for an empty scene (max α below
    ``min_alpha``) or a constant grid."""
    import trimesh
    from skimage.measure import marching_cubes

    arrays = grid_arrays(field)
    alpha = arrays["alpha"]
    lo, hi = float(alpha.min()), float(alpha.max())
    if hi < min_alpha:
        raise ValueError(f"the scene is empty (max α {hi:.3g} < {min_alpha}): nothing to mesh")
    if not lo < hi:
        raise ValueError(f"the α grid is constant ({lo:.3g}): nothing to mesh")
    level = alpha_level if lo < alpha_level < hi else 0.5 * (lo + hi)
    spacing = tuple((arrays["xyz_max"] - arrays["xyz_min"]) / (np.array(alpha.shape) - 1))
    verts, faces, _, _ = marching_cubes(-alpha, level=-level, spacing=spacing)  # α grows inwards
    verts = verts + arrays["xyz_min"]
    _, logits = field.raw_grids()
    pts = torch.from_numpy(verts.astype(np.float32)).to(field.xyz_min.device)
    colors = to_uint8(torch.sigmoid(trilerp(logits, pts, field.xyz_min, field.xyz_max)).cpu())
    return trimesh.Trimesh(vertices=verts, faces=faces, vertex_colors=colors, process=False), level


class GridExport(Callback):
    """At the end of fit write ``<run>/media/grids_<step>.npz`` and ``<run>/media/mesh_<step>.<fmt>``
    (logged to W&B as a 3D object; a ``.glb`` copy is written for W&B when ``fmt='ply'``).

    Args:
        alpha_level: iso-level of the mesh on the α grid (δ = one base voxel).
        fmt: ``ply``, ``obj`` or ``glb``.
        save_grids: also write the ``.npz`` grids.
    """

    def __init__(self, alpha_level: float = 0.5, fmt: str = "ply", save_grids: bool = True) -> None:
        if not 0.0 < alpha_level < 1.0:
            raise ValueError(f"alpha_level must be in (0, 1), got {alpha_level}")
        self.alpha_level, self.fmt, self.save_grids = alpha_level, fmt, save_grids

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        field: Optional[VoxelGridField] = getattr(pl_module, "field", None)
        if not isinstance(field, VoxelGridField):
            return
        media = run_dir(trainer) / "media"
        step = trainer.global_step
        if self.save_grids:
            path = media / f"grids_{step:07d}.npz"
            with atomic_path(path) as tmp:
                np.savez_compressed(tmp, **grid_arrays(field))
        try:
            mesh, level = grid_mesh(field, self.alpha_level)
        except ValueError as err:
            print(f"GridExport: no mesh ({err})")
            return
        path: Path = save_mesh(mesh, media / f"mesh_{step:07d}.{self.fmt}")
        log_media(trainer, "media/mesh", path, "mesh")
        print(f"GridExport: {len(mesh.vertices)} vertices at α = {level:.3g} -> {path}")
