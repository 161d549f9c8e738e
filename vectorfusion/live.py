"""LIVE, layer-wise image vectorisation (Ma et al. 2022), as VectorFusion's stage B (spec §2.8).

Paths are added in stages (64 paths: ``[8, 8, 16, 16, 16]``, AMB-7). At the start of a stage the new
paths are placed where the error is largest ("component-wise" init, :func:`sparse_centres`) as
circles of radius 20 (AMB-8) filled with the target colour at their centre, α = 1. Each stage then
runs ``iters_per_stage`` Adam steps on all paths placed so far with the UDF loss (thesis eq. (6.5),
weight map from the *current* stage's silhouettes, recomputed every iteration as LIVE's code does,
plus the map frozen at the end of the previous stage) and the Xing loss on the current stage's paths
(eq. (6.6)). The background is fixed white; colours are clamped to [0, 1].

The stage logic is split into pure pieces (:func:`sparse_centres`, :func:`place_paths`,
:func:`silhouette_weight`) that the LightningModule calls one optimisation step at a time, and
:func:`live_vectorize` runs them in a plain loop (tests, benchmarks, notebooks).
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from vectorfusion.losses import XING_WEIGHT, udf_loss, udf_weight, xing_loss
from vectorfusion.paths import Scene, Shape
from vectorfusion.rasterizer import render
from vectorfusion.schedules import LIVESchedule
from vectorfusion.styles import circle_points


@dataclass
class LIVESettings:
    """LIVE's settings (spec §2.8).

    Args:
        schedule: new paths per stage ([8, 8, 16, 16, 16] for 64 paths, AMB-7; 16: [2, 4, 10];
            128: [8, 16, 32, 72] [S]).
        iters_per_stage: Adam iterations per stage (500 [LIVE]).
        radius: init circle radius in canvas px (20, AMB-8; LIVE's own default is 5).
        render_size: side of the LIVE render and target in px (default: the canvas size; the target
            is the chosen raster sample resized to it, AMB-3).
        xing_weight: weight of the Xing loss on the current stage's paths (1e-5 effective [LIVE]).
        truncate: UDF clipping distance in px (10 [LIVE]).
        nodiff_threshold: errors below this are ignored by the placement (0.1 [LIVE]).
        quantile_bins: quantile levels of the error map (200 [LIVE]).
        optim: LIVE's per-stage Adam and lr decay.
    """

    schedule: list[int] = field(default_factory=lambda: [8, 8, 16, 16, 16])
    iters_per_stage: int = 500
    radius: float = 20.0
    render_size: int | None = None
    xing_weight: float = XING_WEIGHT
    truncate: float = 10.0
    nodiff_threshold: float = 0.1
    quantile_bins: int = 200
    optim: LIVESchedule = field(default_factory=LIVESchedule)

    @property
    def total_steps(self) -> int:
        """Optimisation steps of the whole LIVE stage."""
        return len(self.schedule) * self.iters_per_stage

    def stage_rows(self, stage: int) -> tuple[int, int]:
        """Rows ``[start, end)`` of the paths added at ``stage``."""
        start = sum(self.schedule[:stage])
        return start, start + self.schedule[stage]


def sparse_centres(error: np.ndarray, n: int, nodiff_threshold: float = 0.1, quantile_bins: int = 200,
                   generator: torch.Generator | None = None) -> list[tuple[float, float]]:
    """LIVE's component-wise placement: centres of the largest high-error regions [LIVE].

    1. errors below ``nodiff_threshold`` are set to 0;
    2. the map is quantised into quantile bins (``np.quantile`` at ``quantile_bins`` levels, unique,
       end levels dropped, ``np.digitize``) and the lowest bin is dropped; a map with only two distinct
       values keeps its top level, so its nonzero pixels form one bin (LIVE would fall back to 3);
    3. per path: take the bin with the most pixels, its largest 4-connected component, and the
       component pixel closest to the component's centroid; remove the component. With no bins
       left, the centre is uniform on the image.

    Args:
        error: ``[H, W]`` error map ``sum_c (render - target)^2``.
        n: number of centres.
        nodiff_threshold: see 1.
        quantile_bins: see 2.
        generator: for the uniform fallback.

    Returns:
        ``n`` centres ``(x, y)`` in pixel-centre coordinates of the map.
    """
    from scipy.ndimage import label

    err = np.where(error < nodiff_threshold, 0.0, error)
    levels = np.unique(np.quantile(err, np.linspace(0.0, 1.0, quantile_bins)))
    # LIVE drops the end levels; with <= 2 distinct error values (a flat block on a blank canvas) that
    # leaves no level and LIVE would place at random: keep the top level so the block is one bin.
    levels = levels[1:-1] if len(levels) > 2 else levels[1:]
    ids = np.clip(np.digitize(err, levels, right=False), 0, 255).astype(np.int64)
    count = {int(i): int((ids == i).sum()) for i in np.unique(ids)}
    count.pop(min(count))
    h, w = err.shape
    centres = []
    for _ in range(n):
        if not count:
            u = torch.rand(2, generator=generator).tolist()
            centres.append((u[0] * w, u[1] * h))
            continue
        target = max(count, key=count.get)
        comp, num = label(ids == target)  # 4-connectivity (the default cross structure)
        sizes = np.bincount(comp.ravel(), minlength=num + 1)[1:]
        cid = int(sizes.argmax()) + 1
        coords = np.argwhere(comp == cid)  # [M, 2] (row, col)
        nearest = coords[np.linalg.norm(coords - coords.mean(0), axis=1).argmin()]
        count[target] -= int(sizes.max())
        if count[target] <= 0:
            count.pop(target)
        ids[comp == cid] = 0
        centres.append((float(nearest[1]) + 0.5, float(nearest[0]) + 0.5))
    return centres


@torch.no_grad()
def place_paths(image: Tensor, target: Tensor, n: int, canvas: float, settings: LIVESettings,
                num_segments: int = 4, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """New circle paths at the high-error regions, coloured from the target (α = 1) [LIVE].

    Args:
        image: ``[1, 3, h, h]`` current render (white background) in [0, 1].
        target: ``[1, 3, h, h]`` target in [0, 1].
        n: number of new paths.
        canvas: canvas side in px (the render covers the whole canvas).
        settings: radius and placement settings.
        num_segments: cubic segments per path.
        generator: for the uniform fallback.

    Returns:
        ``(points [n, 3S, 2] in canvas px, rgba [n, 4])``.
    """
    error = ((image - target) ** 2).sum(1)[0].cpu().numpy()  # [h, h]
    centres = sparse_centres(error, n, settings.nodiff_threshold, settings.quantile_bins, generator)
    h = target.shape[-1]
    px = torch.tensor(centres, dtype=torch.float32)  # [n, 2] map pixels
    rows = px[:, 1].long().clamp(0, h - 1)
    cols = px[:, 0].long().clamp(0, h - 1)
    rgb = target[0, :, rows, cols].T.float().cpu()  # [n, 3]
    rgba = torch.cat([rgb, torch.ones(n, 1)], dim=-1)
    points = circle_points(px * (canvas / h), settings.radius, num_segments)
    return points, rgba


@torch.no_grad()
def silhouette_weight(points: Tensor, canvas: float, size: int, previous: Tensor | None,
                      settings: LIVESettings) -> Tensor:
    """UDF weight of the current stage: the new paths drawn opaque, then :func:`udf_weight`.

    Args:
        points: ``[n, 3S, 2]`` the current stage's control points (canvas px).
        canvas: canvas side in px.
        size: render side in px.
        previous: ``[size, size]`` map frozen at the end of the previous stage, or None.
        settings: truncation distance.

    Returns:
        ``[size, size]`` weights in [0, 1].
    """
    opaque = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=points.dtype, device=points.device)
    scene = Scene(canvas, canvas, [Shape(p, closed=True, fill=opaque) for p in points])
    alpha = render(scene, size, size).alpha  # [size, size]
    return udf_weight(alpha, previous, settings.truncate)


def live_vectorize(target: Tensor, settings: LIVESettings, canvas: float | None = None, num_segments: int = 4,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Vectorise ``target`` with LIVE in a plain loop (no Lightning).

    Args:
        target: ``[1, 3, h, h]`` image in [0, 1]; the render size is its size.
        settings: schedule, iterations, radius, losses and optimiser.
        canvas: canvas side in px (default: ``h``).
        num_segments: cubic segments per path.
        generator: for the placement fallback.

    Returns:
        ``(points [P, 3S, 2], rgba [P, 4])`` with ``P = sum(schedule)``, detached.
    """
    h = target.shape[-1]
    canvas = float(canvas or h)
    white = torch.ones(3, dtype=target.dtype, device=target.device)
    points = torch.zeros(0, 3 * num_segments, 2, device=target.device)
    rgba = torch.zeros(0, 4, device=target.device)
    previous = weight = None
    for stage, n in enumerate(settings.schedule):
        with torch.no_grad():
            blank = white.view(1, 3, 1, 1).expand_as(target)
            image = draw(points, rgba, canvas, h).over(white) if len(points) else blank
        new_pts, new_rgba = place_paths(image, target, n, canvas, settings, num_segments, generator)
        points = torch.cat([points.detach(), new_pts.to(points)]).requires_grad_(True)
        rgba = torch.cat([rgba.detach(), new_rgba.to(rgba)]).requires_grad_(True)
        opt = torch.optim.Adam([{"params": [points], "lr": settings.optim.point_lr},
                                {"params": [rgba], "lr": settings.optim.color_lr}],
                               betas=settings.optim.betas, eps=settings.optim.eps)
        start = len(points) - n
        previous = weight if stage > 0 else None
        for k in range(settings.iters_per_stage):
            lrs = settings.optim.lrs(k)
            opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lrs["points"], lrs["colors"]
            weight = silhouette_weight(points[start:].detach(), canvas, h, previous, settings)
            image = draw(points, rgba, canvas, h).over(white)
            loss = udf_loss(image, target, weight) + settings.xing_weight * xing_loss(points[start:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                rgba.clamp_(0, 1)
    return points.detach(), rgba.detach()


def draw(points: Tensor, rgba: Tensor, canvas: float, size: int):
    """Render filled closed paths in row order (premultiplied :class:`RasterOutput`)."""
    scene = Scene(canvas, canvas, [Shape(p, closed=True, fill=c) for p, c in zip(points, rgba)])
    return render(scene, size, size)
