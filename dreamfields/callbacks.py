"""End-of-run mesh export for Dream Fields: marching cubes of the density at an opacity-based level.

:class:`common.callbacks.MeshExport` meshes ``export_field().density_grid`` at a fixed density or at the
midpoint of the grid's range. Dream Fields' densities have no natural unit, so the default level here is
the density at which one grid cell of thickness Δ = 2·bound/(R − 1) absorbs ``opacity`` of the light,
``σ* = −ln(1 − opacity)/Δ`` (≈ 44 for R = 128 and opacity 0.5); the SDF variant uses its zero level set
(``σ = α/2``). When the grid never reaches that level (e.g. a few-step test run) the midpoint of the
grid's range is used instead, and the level is printed. The pixel baseline has no field and no mesh.
"""

import math
from typing import Optional

from lightning.pytorch import LightningModule, Trainer

from common.callbacks import MeshExport, log_media, run_dir
from common.export import marching_cubes_mesh, save_mesh

__all__ = ["DensityMeshExport"]


class DensityMeshExport(MeshExport):
    """Marching-cubes mesh with vertex colours at the end of fit → ``<run>/media/mesh_<step>.<fmt>``.

    Args:
        resolution: grid size (128).
        threshold: a fixed density level; None picks it from ``opacity`` (see the module docstring).
        opacity: per-cell opacity that defines the surface when ``threshold`` is None.
        fmt: ``ply``, ``obj`` or ``glb`` (a ``.glb`` copy is logged to W&B for ``ply``).
    """

    def __init__(self, resolution: int = 128, threshold: Optional[float] = None, opacity: float = 0.5,
                 fmt: str = "ply") -> None:
        super().__init__(resolution, threshold, fmt)
        if not 0.0 < opacity < 1.0:
            raise ValueError(f"opacity must be in (0, 1), got {opacity}")
        self.opacity = opacity

    def level(self, field, bound: float) -> float:
        if self.threshold is not None:
            return self.threshold
        if hasattr(field, "surface_density"):
            return field.surface_density()
        return -math.log(1.0 - self.opacity) / (2.0 * bound / (self.resolution - 1))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        field = pl_module.export_field()
        if field is None:
            print("DensityMeshExport: this scene has no 3D field (2D pixel baseline); no mesh")
            return
        bound = float(getattr(pl_module.renderer, "bound", 1.0))
        was_training = field.training
        field.eval()
        grid = field.density_grid(self.resolution, bound)
        level = self.level(field, bound)
        lo, hi = float(grid.min()), float(grid.max())
        if not lo < level < hi:
            fallback = 0.5 * (lo + hi)
            print(f"DensityMeshExport: density grid spans [{lo:.4g}, {hi:.4g}], level {level:.4g} is outside it; "
                  f"using the midpoint {fallback:.4g}")
            level = fallback
        try:
            mesh = marching_cubes_mesh(grid, level, bound, color_fn=lambda x: field(x.to(grid.device)).color.cpu())
        except ValueError as err:  # a constant grid: nothing to mesh
            print(f"DensityMeshExport: skipped ({err})")
            field.train(was_training)
            return
        field.train(was_training)
        path = save_mesh(mesh, run_dir(trainer) / "media" / f"mesh_{trainer.global_step:07d}.{self.fmt}")
        log_media(trainer, "media/mesh", path, "mesh")
        print(f"DensityMeshExport: {len(mesh.vertices)} vertices at density {level:.4g} -> {path}")
