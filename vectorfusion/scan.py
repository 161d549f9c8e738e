"""No-grad geometric scans behind the soft rasterizer: winding numbers and nearest edges.

The rasterizer needs, for every pixel of a shape's bounding box, (1) the inside test and (2) for
pixels within the anti-aliasing radius of the boundary, the index of the nearest polyline edge
(spec §5.3 step 1). Both are piecewise constant in the geometry, so they carry no gradient.

* :func:`winding_numbers` is a scanline version of Sunday's crossing rule: per pixel row, each
  edge crossing the row's centre line (half-open ``a_y <= y < b_y``, so a shared vertex counts
  once) adds +1 or -1 at its crossing abscissa; the winding number of a pixel is the sum over the
  crossings to its right (sorted crossings + ``searchsorted``): O(h E log E + h w log E).
* :func:`nearest_edges` visits, per edge, only the pixels within ``radius`` of the edge's
  bounding box, O(E k^2) for edges spanning k px, instead of every pixel x every edge.
* :func:`scan_edges` is the dense O(P E) reference both are tested against.
"""

import math

import torch
from torch import Tensor

_TINY = 1e-20


@torch.no_grad()
def winding_numbers(box: tuple[int, int, int, int], a: Tensor, b: Tensor) -> Tensor:
    """Winding number of each pixel centre of a box around a closed polyline.

    Args:
        box: ``(y0, y1, x0, x1)`` half-open pixel ranges.
        a: ``[E, 2]`` edge starts (closed polyline).
        b: ``[E, 2]`` edge ends.

    Returns:
        ``[h, w]`` long winding numbers (sign depends on orientation; parity and zero-ness don't).
    """
    y0, y1, x0, x1 = box
    yc = torch.arange(y0, y1, dtype=a.dtype, device=a.device)[:, None] + 0.5  # [h, 1]
    up = (a[:, 1] <= yc) & (b[:, 1] > yc)  # [h, E]
    down = (b[:, 1] <= yc) & (a[:, 1] > yc)
    dy = b[:, 1] - a[:, 1]
    safe_dy = torch.where(dy == 0, torch.ones_like(dy), dy)
    xc = a[:, 0] + (yc - a[:, 1]) * (b[:, 0] - a[:, 0]) / safe_dy  # [h, E] crossing abscissae
    xc = torch.where(up | down, xc, torch.full_like(xc, math.inf))
    sign = up.long() - down.long()  # [h, E]
    xs, order = xc.sort(dim=1)
    suffix = sign.gather(1, order).flip(1).cumsum(1).flip(1)  # [h, E] sum of crossings >= k
    suffix = torch.cat([suffix, torch.zeros_like(suffix[:, :1])], dim=1)  # [h, E + 1]
    xq = torch.arange(x0, x1, dtype=a.dtype, device=a.device) + 0.5  # [w]
    k = torch.searchsorted(xs.contiguous(), xq.expand(y1 - y0, -1).contiguous(), right=True)
    return suffix.gather(1, k)  # crossings strictly right of the pixel centre


@torch.no_grad()
def nearest_edges(box: tuple[int, int, int, int], a: Tensor, b: Tensor, radius: float,
                  max_elements: int = 1 << 20) -> tuple[Tensor, Tensor]:
    """Distance to and index of the nearest edge, for pixels closer than ``radius`` to an edge.

    Args:
        box: ``(y0, y1, x0, x1)`` half-open pixel ranges.
        a: ``[E, 2]`` edge starts.
        b: ``[E, 2]`` edge ends.
        radius: pixels farther than this from every edge are reported at distance ``inf``.
        max_elements: the largest number of (edge, pixel) pairs evaluated at once.

    Returns:
        ``(dist [h*w], edge_index [h*w] long)``; ``dist`` is exact where ``< radius``, else inf
        (index 0 there).
    """
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    lo = torch.minimum(a, b) - radius - 0.5  # [E, 2] lowest pixel index whose centre may be near
    hi = torch.maximum(a, b) + radius - 0.5
    start = lo.ceil().long()  # [E, 2]
    span = (hi.floor().long() - start + 1).clamp_min(0).max(0).values  # [2] window (kx, ky)
    kx, ky = int(span[0]), int(span[1])
    dist = torch.full((h * w,), math.inf, dtype=a.dtype, device=a.device)
    index = torch.zeros(h * w, dtype=torch.long, device=a.device)
    if kx == 0 or ky == 0:
        return dist, index
    step = max(1, max_elements // (kx * ky))
    ox = torch.arange(kx, device=a.device)
    oy = torch.arange(ky, device=a.device)
    for s in range(0, a.shape[0], step):
        ea, eb, st = a[s:s + step], b[s:s + step], start[s:s + step]  # [e, 2]
        jx = (st[:, 0:1] + ox)[:, None, :]  # [e, 1, kx] pixel columns
        jy = (st[:, 1:2] + oy)[:, :, None]  # [e, ky, 1] pixel rows
        qx, qy = jx.to(a.dtype) + 0.5, jy.to(a.dtype) + 0.5
        ab = eb - ea
        abx, aby = ab[:, 0, None, None], ab[:, 1, None, None]  # [e, 1, 1]
        aqx, aqy = qx - ea[:, 0, None, None], qy - ea[:, 1, None, None]  # [e, 1, kx], [e, ky, 1]
        t = ((aqx * abx + aqy * aby) / (abx**2 + aby**2).clamp_min(_TINY)).clamp(0, 1)
        d2 = (aqx - t * abx) ** 2 + (aqy - t * aby) ** 2  # [e, ky, kx]
        valid = (jx >= x0) & (jx < x1) & (jy >= y0) & (jy < y1) & (d2 < radius**2)
        pix = ((jy - y0) * w + (jx - x0)).expand_as(d2)[valid]  # [n] flat pixel ids
        cand_d = d2[valid].sqrt()
        cand_e = (torch.arange(s, s + ea.shape[0], device=a.device)[:, None, None]
                  .expand_as(d2)[valid])
        best = torch.full_like(dist, math.inf).scatter_reduce(0, pix, cand_d, "amin")
        ties = cand_d == best[pix]  # the nearest candidates; lowest edge index wins
        arg = torch.full_like(index, a.shape[0]).scatter_reduce(0, pix[ties], cand_e[ties], "amin")
        better = best < dist
        dist = torch.where(better, best, dist)
        index = torch.where(better, arg, index)
    return dist, index


@torch.no_grad()
def scan_edges(q: Tensor, a: Tensor, b: Tensor, winding: bool,
               max_elements: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """Nearest edge and (optionally) winding number of every query point, without grad.

    Winding number: Sunday's crossing rule. An edge crossing the horizontal ray from q counts +1
    (upward, q to its left) or -1 (downward, q to its right); the half-open test
    ``a_y <= q_y < b_y`` counts a shared vertex once. Chunks over points bound memory to about
    ``8 * max_elements`` floats.

    Args:
        q: ``[P, 2]`` query points.
        a: ``[E, 2]`` edge starts.
        b: ``[E, 2]`` edge ends.
        winding: also compute winding numbers.
        max_elements: the largest ``chunk * E`` evaluated at once.

    Returns:
        ``(dist [P], edge_index [P] long, winding [P] long or None)``.
    """
    n_edges = a.shape[0]
    step = max(1, max_elements // max(n_edges, 1))
    ab = b - a  # [E, 2]
    inv_len2 = 1.0 / (ab * ab).sum(-1).clamp_min(_TINY)  # [E]
    dists, idxs, winds = [], [], []
    for s in range(0, q.shape[0], step):
        qx, qy = q[s:s + step, 0:1], q[s:s + step, 1:2]  # [p, 1]
        aqx, aqy = qx - a[:, 0], qy - a[:, 1]  # [p, E]
        t = ((aqx * ab[:, 0] + aqy * ab[:, 1]) * inv_len2).clamp(0, 1)
        d2 = (aqx - t * ab[:, 0]) ** 2 + (aqy - t * ab[:, 1]) ** 2  # [p, E]
        dmin, idx = d2.min(dim=1)
        dists.append(dmin.sqrt())
        idxs.append(idx)
        if winding:
            cross = ab[:, 0] * aqy - ab[:, 1] * aqx  # [p, E], > 0: q left of a->b
            up = (a[:, 1] <= qy) & (b[:, 1] > qy) & (cross > 0)
            down = (b[:, 1] <= qy) & (a[:, 1] > qy) & (cross < 0)
            winds.append(up.sum(1) - down.sum(1))
    return torch.cat(dists), torch.cat(idxs), (torch.cat(winds) if winding else None)

