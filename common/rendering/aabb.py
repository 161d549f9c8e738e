"""Ray–axis-aligned-box intersection (slab test), written by hand: nerfacc's version is CUDA-only."""

from typing import Union

import torch
from torch import Tensor


def ray_aabb(
    rays_o: Tensor, rays_d: Tensor, box_min: Union[float, Tensor] = -1.0, box_max: Union[float, Tensor] = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distances of rays through the box ``[box_min, box_max]``.

    For each axis the ray crosses the two planes at ``t = (b − o) / d``; the ray is inside the box on
    the intersection of the three slab intervals: ``near = max_a min(t0_a, t1_a)``,
    ``far = min_a max(t0_a, t1_a)``. Rays starting inside the box get ``near = 0``.

    Args:
        rays_o, rays_d: ``[..., 3]`` origins and directions (need not be unit length; ``t`` is in
            units of ``|d|``).
        box_min, box_max: scalars or ``[3]`` corners.

    Returns:
        ``(near, far, hit)``, each ``[...]``; ``hit`` is True where ``far > max(near, 0)``. For rays
        that miss, ``near`` and ``far`` are undefined (callers mask them).
    """
    box_min = torch.as_tensor(box_min, dtype=rays_o.dtype, device=rays_o.device).expand(3)
    box_max = torch.as_tensor(box_max, dtype=rays_o.dtype, device=rays_o.device).expand(3)
    # Avoid division by zero for axis-parallel rays: a tiny direction gives ±huge t of the right sign.
    safe_d = torch.where(rays_d.abs() < 1e-12, torch.full_like(rays_d, 1e-12), rays_d)
    t0 = (box_min - rays_o) / safe_d
    t1 = (box_max - rays_o) / safe_d
    near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near
    return near, far, hit
