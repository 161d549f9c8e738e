"""Meshes from the occupancy field: coarse-to-fine grids, marching cubes at τ = 0.5, colours, surface points.

specs/iss.md §7 [C][D]: Occupancy Networks' MISE starts at 32³ and upsamples 3 times (256³ effective)
over the box ``[−b, b]³`` (ShapeNet: b = 0.5); marching cubes at occupancy 0.5 (logit 0); vertex colours
from the colour field; 2048 area-weighted surface points for metrics.

:func:`occupancy_grid` implements the coarse-to-fine idea directly: the grid is evaluated densely at
``resolution_0``; at each upsampling step the grid is trilinearly upsampled ×2 and the field is
re-evaluated only at the vertices of cells (dilated by one) whose corners straddle the threshold. Cells
whose corners all lie on one side keep interpolated values, which lie on that side too, so the iso-surface
comes only from exactly evaluated cells. (The 30-step RMSprop vertex refinement of ONet is not done.)
"""

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from common.export import marching_cubes_mesh

__all__ = ["grid_vertices", "occupancy_grid", "extract_mesh", "sample_surface", "code_field"]

LogitFn = Callable[[Tensor], Tensor]


def grid_vertices(n: int, bound: float, device=None) -> Tensor:
    """``[n, n, n, 3]`` vertices of an ``(n−1)³``-cell grid spanning ``[−bound, bound]³`` (index order x, y, z)."""
    lin = torch.linspace(-bound, bound, n, device=device)
    return torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1)


def _evaluate(fn: LogitFn, pts: Tensor, chunk: int) -> Tensor:
    return torch.cat([fn(pts[i:i + chunk]) for i in range(0, pts.shape[0], chunk)]) if pts.shape[0] else pts.new_zeros(0)


@torch.no_grad()
def occupancy_grid(fn: LogitFn, resolution_0: int = 32, upsampling_steps: int = 3, bound: float = 0.5,
                   threshold_logit: float = 0.0, chunk: int = 65536) -> Tensor:
    """Occupancy logits on a ``(resolution_0·2^k + 1)³`` vertex grid over ``[−bound, bound]³``.

    Args:
        fn: ``[N, 3]`` points → ``[N]`` occupancy logits.
        resolution_0: cells per side of the dense start grid (32, [C]).
        upsampling_steps: ×2 refinements (3 → 256³ cells, [C]); 0 = dense grid.
        bound: half side of the box (0.5, padding 0, [C]).
        threshold_logit: iso-level (logit 0 = occupancy 0.5).
        chunk: points per call.
    """
    n = resolution_0 + 1
    pts = grid_vertices(n, bound)
    grid = _evaluate(fn, pts.reshape(-1, 3), chunk).reshape(n, n, n)
    for _ in range(upsampling_steps):
        above = grid > threshold_logit  # [n, n, n]
        corners = torch.stack([above[i:n - 1 + i, j:n - 1 + j, k:n - 1 + k]
                               for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # [8, n-1, n-1, n-1]
        active = corners.any(0) & ~corners.all(0)  # cells the surface passes through
        active = F.max_pool3d(active[None, None].float(), 3, 1, 1)[0, 0] > 0  # dilate by one cell
        m = 2 * (n - 1) + 1
        fine = F.interpolate(grid[None, None], size=(m, m, m), mode="trilinear", align_corners=True)[0, 0]
        # fine vertices that belong to an active coarse cell: vertex v lies in cells floor(v/2) and floor((v-1)/2)
        act = F.pad(active.float(), (1, 1, 1, 1, 1, 1))  # [n+1]^3, index shifted by 1
        idx = torch.arange(m)
        lo, hi = (idx - 1) // 2 + 1, idx // 2 + 1  # padded cell indices touching fine vertex idx
        sel = torch.zeros(m, m, m, dtype=torch.bool)
        for a in (lo, hi):
            for b in (lo, hi):
                for c in (lo, hi):
                    sel |= act[a][:, b][:, :, c] > 0
        fine_pts = grid_vertices(m, bound)
        if sel.any():
            fine[sel] = _evaluate(fn, fine_pts[sel], chunk).to(fine)
        grid, n = fine, m
    return grid


def code_field(decoder, code: Tensor) -> tuple[LogitFn, Callable[[Tensor], Tensor]]:
    """``(logit_fn, colour_fn)`` of a decoder at one shape code ``[C]`` or ``[1, C]``, for meshing."""
    c = code.reshape(1, -1)

    def logits(p: Tensor) -> Tensor:
        return decoder(p[None].to(c), c)[0, :, 0]

    def colours(p: Tensor) -> Tensor:
        return torch.sigmoid(decoder(p[None].to(c), c)[0, :, 1:4]).cpu()

    return logits, colours


@torch.no_grad()
def extract_mesh(logit_fn: LogitFn, colour_fn: Optional[Callable[[Tensor], Tensor]] = None, resolution_0: int = 32,
                 upsampling_steps: int = 3, bound: float = 0.5, threshold: float = 0.5, chunk: int = 65536):
    """Marching cubes of the occupancy field at probability ``threshold``; vertex colours from ``colour_fn``.

    Returns:
        a ``trimesh.Trimesh`` (empty when the field has no surface in the box).
    """
    import trimesh

    level = float(np.log(threshold / (1 - threshold)))
    grid = occupancy_grid(logit_fn, resolution_0, upsampling_steps, bound, level, chunk)
    try:
        return marching_cubes_mesh(grid.cpu(), level, bound, color_fn=colour_fn)
    except ValueError:  # no surface at this level: empty or completely full box
        return trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=np.int64), process=False)


def sample_surface(mesh, n: int = 2048, generator: Optional[torch.Generator] = None):
    """``n`` area-weighted surface points of a mesh with normals and colours.

    Returns:
        ``(points [n, 3], normals [n, 3], colours [n, 3] in [0, 1])`` float32 tensors (colours 0.5 without vertex colours).
    """
    v = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float64)
    f = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.long)
    if f.shape[0] == 0:
        raise ValueError("cannot sample points on an empty mesh")
    tri = v[f]  # [F, 3, 3]
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    area = 0.5 * cross.norm(dim=-1)
    face = torch.multinomial(area.float(), n, replacement=True, generator=generator)
    r1, r2 = torch.rand(n, generator=generator, dtype=torch.float64), torch.rand(n, generator=generator, dtype=torch.float64)
    s = r1.sqrt()
    bary = torch.stack([1 - s, s * (1 - r2), s * r2], -1)  # uniform on the triangle
    pts = (bary[:, :, None] * tri[face]).sum(1)
    normals = F.normalize(cross[face], dim=-1)
    vc = getattr(mesh.visual, "vertex_colors", None)
    if vc is not None and len(vc) == len(v):
        col = torch.as_tensor(np.asarray(vc)[:, :3], dtype=torch.float64) / 255.0
        colours = (bary[:, :, None] * col[f[face]]).sum(1)
    else:
        colours = torch.full((n, 3), 0.5, dtype=torch.float64)
    return pts.float(), normals.float(), colours.float()
