"""Render voxel shapes from the fixed evaluation views into image grids and meshes (§6.2 views)."""

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from common.export import image_grid, marching_cubes_mesh, save_image, save_mesh
from zeroforge.geometry import eval_views
from zeroforge.renderer import VoxelEARenderer

__all__ = ["render_eval_views", "shape_grid", "log_shape_grid", "logits_to_mesh", "save_images_and_meshes"]


@torch.no_grad()
def render_eval_views(renderer: VoxelEARenderer, voxels: Tensor) -> Tensor:
    """``[B·4, 3, R, R]`` renders of ``[B, N, N, N]`` voxels from the 4 evaluation views, view fastest."""
    theta, phi = eval_views()
    V = len(theta)
    vol = voxels.float().repeat_interleave(V, dim=0)  # [B·V, N, N, N]
    return renderer(vol, theta.repeat(voxels.shape[0]).to(vol), phi.repeat(voxels.shape[0]).to(vol)).image


def shape_grid(renderer: VoxelEARenderer, voxels: Tensor) -> Tensor:
    """``[H, W, 3]`` grid: one row per shape, one column per evaluation view."""
    images = render_eval_views(renderer, voxels)
    return image_grid(images.permute(0, 2, 3, 1).cpu(), nrow=len(eval_views()[0]))


def log_shape_grid(trainer, renderer: VoxelEARenderer, voxels: Tensor, key: str, name: str) -> Optional[Path]:
    """Write the shape grid to ``<run>/media/<name>`` (rank 0) and log it as W&B media."""
    if trainer is None or not trainer.is_global_zero:
        return None
    from common.callbacks import save_and_log_image

    return save_and_log_image(trainer, key, shape_grid(renderer, voxels), name)


def logits_to_mesh(logits: Tensor, gamma: float = 0.05):
    """The ``o = γ`` iso-surface of a ``[N, N, N]`` logit grid over ``[-0.5, 0.5]^3`` as a trimesh (empty if none)."""
    import trimesh

    grid = logits.detach().float().cpu()
    if not (grid.min() < gamma < grid.max()):
        return trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=np.int64), process=False)
    return marching_cubes_mesh(grid, level=gamma, bound=0.5)


def save_images_and_meshes(out_dir: Path, names, logits: Tensor, renderer: Optional[VoxelEARenderer], gamma: float,
                           fmt: str = "ply") -> list:
    """Write ``<name>.<fmt>`` meshes (and ``<name>.png`` view strips with a renderer) for each shape; returns the mesh paths."""
    paths = []
    for name, grid in zip(names, logits):
        paths.append(save_mesh(logits_to_mesh(grid, gamma), Path(out_dir) / f"{name}.{fmt}"))
        if renderer is not None:
            save_image(shape_grid(renderer, (grid > gamma)[None]), Path(out_dir) / f"{name}.png")
    return paths
