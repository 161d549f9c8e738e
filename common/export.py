"""Exports: density grid → marching cubes → mesh with vertex colours; turntable videos; image grids.

Every file is written atomically (:mod:`common.io`). Meshes go through trimesh (``.ply``, ``.obj``,
``.glb``), marching cubes through scikit-image, videos through imageio (mp4 via imageio-ffmpeg, or gif).
"""

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from common.io import PathLike, atomic_path

MESH_SUFFIXES = (".ply", ".obj", ".glb")


def to_uint8(images: Union[Tensor, np.ndarray]) -> np.ndarray:
    """``[..., H, W, C]`` floats in [0, 1] (tensor or array) → uint8 array."""
    if isinstance(images, Tensor):
        images = images.detach().float().cpu().numpy()
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def marching_cubes_mesh(
    density: Union[Tensor, np.ndarray],
    level: float,
    bound: float = 1.0,
    color_fn: Optional[Callable[[Tensor], Tensor]] = None,
):
    """Extract the ``level`` iso-surface of a density grid as a trimesh mesh.

    Args:
        density: ``[R, R, R]`` grid over ``[-bound, bound]^3`` in (x, y, z) index order (as
            :meth:`common.fields.base.Field.density_grid` returns).
        level: iso-value (density threshold).
        bound: half side of the box the grid covers.
        color_fn: maps ``[V, 3]`` vertex positions to ``[V, 3]`` colours in [0, 1].

    Returns:
        ``trimesh.Trimesh`` in world units, outward normals.
    """
    import trimesh
    from skimage.measure import marching_cubes

    grid = density.detach().float().cpu().numpy() if isinstance(density, Tensor) else np.asarray(density, np.float32)
    if grid.ndim != 3:
        raise ValueError(f"density grid must be [R, R, R], got shape {grid.shape}")
    if not (grid.min() < level < grid.max()):
        raise ValueError(
            f"no surface at level {level}: the density grid spans [{grid.min():.4g}, {grid.max():.4g}]. "
            "Choose a threshold inside that range (the scene may be empty or fully opaque)."
        )
    spacing = tuple(2.0 * bound / (n - 1) for n in grid.shape)
    # Density grows inwards, so negate it to get outward normals from skimage's convention.
    verts, faces, _, _ = marching_cubes(-grid, level=-level, spacing=spacing)
    verts = verts - bound
    colors = None
    if color_fn is not None:
        with torch.no_grad():
            c = color_fn(torch.from_numpy(verts.astype(np.float32)))
        colors = to_uint8(c[..., :3])
    return trimesh.Trimesh(vertices=verts, faces=faces, vertex_colors=colors, process=False)


def save_mesh(mesh, path: PathLike) -> Path:
    """Write a trimesh mesh atomically; the format comes from the suffix (.ply, .obj, .glb)."""
    path = Path(path)
    if path.suffix not in MESH_SUFFIXES:
        raise ValueError(f"mesh file {path} must end in one of {MESH_SUFFIXES}")
    with atomic_path(path) as tmp:
        mesh.export(str(tmp), file_type=path.suffix[1:])
    return path


def save_image(image: Union[Tensor, np.ndarray], path: PathLike) -> Path:
    """Write one ``[H, W, C]`` image in [0, 1] (PNG/JPEG by suffix) atomically."""
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, to_uint8(image))
    return Path(path)


def image_grid(images: Union[Tensor, Sequence[Tensor]], nrow: int = 8, padding: int = 2) -> Tensor:
    """``[N, H, W, C]`` images → one ``[H', W', C]`` grid (torchvision's make_grid)."""
    from torchvision.utils import make_grid

    if not isinstance(images, Tensor):
        images = torch.stack(list(images))
    grid = make_grid(images.permute(0, 3, 1, 2).float(), nrow=nrow, padding=padding, pad_value=1.0)
    return grid.permute(1, 2, 0)


def save_video(frames: Union[Tensor, np.ndarray, Sequence], path: PathLike, fps: int = 20) -> Path:
    """Write ``[N, H, W, 3]`` frames in [0, 1] as ``.mp4`` (imageio-ffmpeg) or ``.gif`` atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    if not isinstance(frames, (Tensor, np.ndarray)):
        frames = torch.stack([torch.as_tensor(f) for f in frames])
    data = to_uint8(frames)
    if path.suffix not in (".mp4", ".gif"):
        raise ValueError(f"video file {path} must end in .mp4 or .gif")
    with atomic_path(path) as tmp:
        if path.suffix == ".mp4":
            h, w = data.shape[1:3]
            if h % 2 or w % 2:  # yuv420p needs even sizes
                data = np.pad(data, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            imageio.mimwrite(tmp, list(data), fps=fps, codec="libx264", macro_block_size=1)
        else:
            imageio.mimwrite(tmp, list(data), duration=1000.0 / fps, loop=0)
    return path
