"""Path reinitialisation (specs/vectorfusion.md §2.9, thesis §6.4.3 "Reinitializing paths").

"We periodically reinitialize paths with fill-color opacity or area below a threshold.
Reinitialized paths are removed from optimization and the SVG, and recreated as a randomly located
and colored circle on top of existing paths." Everything here is a pure function of tensors, except
:func:`reset_adam_rows`, which edits an optimizer's state in place.

Representation [NS]: fixed-size rows ``points [P, 3S, 2]``, ``rgba [P, 4]`` and a draw-order
permutation ``order [P]`` (row indices, back to front), so parameter tensors keep their identity
and only the replaced rows and the order change.
"""

import torch
from torch import Tensor

from vectorfusion.paths import path_area
from vectorfusion.styles import random_circles


def reinit_steps(total_steps: int, stop: int, every: int = 50) -> list[int]:
    """Steps after which paths are reinitialised: ``i % every == 0 and i < stop`` (1-indexed) [NS].

    Args:
        total_steps: number of optimisation steps (2000 scratch, 1000 after LIVE).
        stop: first step with no reinit (1500 scratch, 800 after LIVE, 1800 CLIPDraw-icon).
        every: period (50 [S]).

    Example:
        >>> reinit_steps(200, 150)
        [50, 100]
    """
    return [i for i in range(every, total_steps + 1, every) if i < stop]


def select_for_reinit(points: Tensor, rgba: Tensor, alpha_threshold: float = 0.05,
                      area_threshold: float = 64.0) -> Tensor:
    """Rows to replace: ``alpha < alpha_threshold`` or ``area < area_threshold`` (both strict) [S].

    Area is the exact Green's-theorem area of the closed cubic path in canvas px^2 (spec §2.9
    [NS]). ``area_threshold = 0`` disables the area criterion (from scratch).

    Args:
        points: ``[P, 3S, 2]`` closed cubic control points.
        rgba: ``[P, 4]`` fill colours; alpha is ``rgba[:, 3]``.
        alpha_threshold: opacity threshold (0.05 [S]).
        area_threshold: area threshold in px^2 (64 after LIVE, 0 from scratch [S]).

    Returns:
        ``[P]`` bool mask of rows to replace.
    """
    with torch.no_grad():
        alpha = rgba[:, 3]
        small = alpha < alpha_threshold
        if area_threshold > 0:
            small = small | (path_area(points) < area_threshold)
        return small


def reorder_replaced(order: Tensor, mask: Tensor) -> Tensor:
    """New draw order: survivors keep their relative order, replaced rows go on top [S].

    Replaced rows are appended in their previous relative draw order.

    Args:
        order: ``[P]`` row indices, back to front.
        mask: ``[P]`` bool per row.

    Example:
        >>> mask = torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool)
        >>> reorder_replaced(torch.arange(5), mask).tolist()
        [2, 3, 4, 0, 1]
    """
    replaced = mask[order]  # [P], in draw order
    return torch.cat([order[~replaced], order[replaced]])


def reinit_paths(points: Tensor, rgba: Tensor, order: Tensor, mask: Tensor, canvas_w: float = 600.0,
                 canvas_h: float = 600.0, radius: float = 20.0,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Replace the masked rows with new random circles drawn on top (spec §2.9).

    New rows follow the init distribution: LIVE circle of ``radius``, uniform centre, RGB ~ U(0,1),
    alpha ~ U(0.7, 1) [NS: same as init]. Pure: returns new tensors; copy them into the parameters
    with ``param.data.copy_(...)`` under ``torch.no_grad()`` and call :func:`reset_adam_rows`.

    Args:
        points: ``[P, 3S, 2]`` control points.
        rgba: ``[P, 4]`` fill colours.
        order: ``[P]`` draw order.
        mask: ``[P]`` bool rows to replace (from :func:`select_for_reinit`).
        canvas_w: canvas width in px.
        canvas_h: canvas height in px.
        radius: circle radius in px.
        generator: random generator.

    Returns:
        ``(points, rgba, order)``, detached, same shapes as the inputs.
    """
    points, rgba = points.detach().clone(), rgba.detach().clone()
    k = int(mask.sum())
    if k:
        new_pts, new_rgba = random_circles(k, canvas_w, canvas_h, radius, points.shape[1] // 3,
                                           generator)
        points[mask] = new_pts.to(points)
        rgba[mask] = new_rgba.to(rgba)
    return points, rgba, reorder_replaced(order, mask)


@torch.no_grad()
def reset_adam_rows(optimizer: torch.optim.Optimizer, param: Tensor, mask: Tensor) -> None:
    """Zero Adam's ``exp_avg`` / ``exp_avg_sq`` for the replaced rows; keep the step count [NS].

    Args:
        optimizer: an Adam-like optimizer holding ``param``.
        param: ``[P, ...]`` parameter whose rows were replaced.
        mask: ``[P]`` bool rows to reset.
    """
    state = optimizer.state.get(param, {})
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        if key in state and state[key].shape[:1] == mask.shape:
            state[key][mask] = 0
