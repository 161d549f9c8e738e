"""Ancestral sampling in any order and image completion (thesis §2.3, eq. 2.3; specs/lmconv.md §2.10).

Sampling starts from a zero canvas (0 in [-1, 1] scale) and, for ``t = 0..N−1``, runs the full network
with the order's masks, reads the distribution at ``π[t]``, draws and writes the value: ``N`` forward
passes, batched over images. Completion copies the image, zeroes the hidden pixels, picks an order in
which every observed pixel comes first (maximum receptive field, thesis §2.3) and samples only the
hidden pixels in that order; observed pixels are never overwritten.
"""

from typing import Optional

import torch

from lmconv.model import LMConvModel, OrderRef, _check_hidden


@torch.no_grad()
def _decode(model: LMConvModel, canvas: torch.Tensor, order, start: int, generator, greedy: bool):
    """Fill ``canvas`` [B, C, H, W] (in [-1, 1]) at ``order[start:]``; returns (canvas, Σ log p of drawn values)."""
    h, w = canvas.shape[-2:]
    order, masks = model.resolve(order, h, w)
    log_p = canvas.new_zeros(canvas.shape[0])
    for r, c in order[start:]:
        out = model.network(canvas, masks)[:, :, r:r + 1, c:c + 1]  # [B, n_out, 1, 1]
        value = model.likelihood.sample(out, generator=generator, greedy=greedy)  # [B, C, 1, 1]
        canvas[:, :, r:r + 1, c:c + 1] = value
        log_p += model.likelihood.log_prob(out, model.likelihood.to_levels(value)).flatten()
    return canvas, log_p


def sample(model: LMConvModel, num: int, image_size: tuple[int, int], order: OrderRef = 0,
           generator: Optional[torch.Generator] = None, greedy: bool = False, return_log_prob: bool = False):
    """Draw ``num`` images along ``order`` (an index into the training orders or an explicit order).

    Args:
        model: the trained model (put it in ``eval()`` yourself if it has dropout).
        num: batch of images to draw.
        image_size: ``(H, W)``; must be one of the sizes the masks were built for.
        order: order index or explicit list of ``(row, col)``.
        generator: torch RNG for reproducible draws.
        greedy: take each conditional's mode instead of sampling (deterministic decoding).
        return_log_prob: also return ``[B]`` Σ_t log p of the drawn values (nats).

    Returns:
        Levels ``[num, C, H, W]`` (long) when the head quantizes samples (binary; DLM default), else the
        continuous values in [-1, 1]; plus the log-probabilities if asked.
    """
    p = next(model.parameters())
    canvas = torch.zeros(num, model.likelihood.channels, *image_size, dtype=p.dtype, device=p.device)
    canvas, log_p = _decode(model, canvas, order, 0, generator, greedy)
    out = _finish(model, canvas)
    return (out, log_p) if return_log_prob else out


def complete(model: LMConvModel, levels: torch.Tensor, hidden: torch.Tensor, order: Optional[OrderRef] = None,
             generator: Optional[torch.Generator] = None, greedy: bool = False, return_log_prob: bool = False):
    """Sample the hidden pixels of ``levels`` given the observed ones, with maximum receptive field.

    Args:
        levels: ``[B, C, H, W]`` integer levels; values under ``hidden`` are ignored.
        hidden: ``[H, W]`` bool, True where missing; shared by the batch. Hiding no pixel or every
            pixel raises ``ValueError`` (use :func:`sample` for the latter).
        order: order to use; it must list every observed pixel before every hidden one. Default:
            ``model.completion_order(hidden)`` (a trained max-context variant, else a stable partition).
        generator / greedy / return_log_prob: as in :func:`sample`; the log-probability is
            ``log p(x_H | x_O)`` of the drawn completion.

    Returns:
        ``[B, C, H, W]`` with observed pixels bit-identical to ``levels``.
    """
    model.check_levels(levels)
    hidden = _check_hidden(hidden)
    h, w = levels.shape[-2:]
    if tuple(hidden.shape) != (h, w):
        raise ValueError(f"The hidden mask is {tuple(hidden.shape)} but the images are {h}x{w}.")
    order = model.completion_order(hidden) if order is None else order
    order_list, _ = model.resolve(order, h, w)
    n_obs = int((~hidden).sum())
    if any(bool(hidden[p]) for p in order_list[:n_obs]):
        raise ValueError("The completion order must list every observed pixel before every hidden one; "
                         "leave order=None to build one (spec §2.2 stable partition).")
    p = next(model.parameters())
    canvas = model.likelihood.to_input(levels.long(), p.dtype).to(p.device)
    canvas[:, :, hidden.to(canvas.device)] = 0.0  # hidden pixels start blank
    canvas, log_p = _decode(model, canvas, order_list, n_obs, generator, greedy)
    out = _finish(model, canvas)
    if not out.dtype.is_floating_point:  # observed pixels are copied back bit-identical
        out = torch.where(hidden.to(out.device), out, levels.to(out.device).long())
    return (out, log_p) if return_log_prob else out


def _finish(model: LMConvModel, canvas: torch.Tensor) -> torch.Tensor:
    lik = model.likelihood
    if getattr(lik, "quantize_samples", True):
        return lik.to_levels(canvas)
    return canvas
