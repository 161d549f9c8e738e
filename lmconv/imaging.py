"""Image grids for samples and completions: PNGs in the run directory (write-then-rename), W&B when on."""

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch


def levels_to_uint8(levels: torch.Tensor, n_bins: int) -> np.ndarray:
    """``[B, C, H, W]`` levels in 0..n_bins−1 (or values in [-1, 1] if floating) → ``[B, H, W, C]`` uint8."""
    if levels.dtype.is_floating_point:
        x = (levels.clamp(-1, 1) + 1) / 2
    else:
        x = levels.float() / (n_bins - 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def image_grid(images: np.ndarray, ncols: int, pad: int = 1, upscale: int = 1) -> np.ndarray:
    """Tile ``[B, H, W, C]`` uint8 images row-major into one ``[H', W', C]`` image (grey padding)."""
    b, h, w, c = images.shape
    if upscale > 1:
        images = images.repeat(upscale, axis=1).repeat(upscale, axis=2)
        h, w = h * upscale, w * upscale
    nrows = (b + ncols - 1) // ncols
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 128, dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
    return grid


def completion_rows(observed: np.ndarray, completed: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Interleave ``Obs | sample | GT`` per image: ``[3B, H, W, C]`` for a 3-column grid."""
    return np.stack([observed, completed, truth], axis=1).reshape(-1, *observed.shape[1:])


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write ``[H, W, C]`` uint8 to ``path`` atomically (temporary file, then ``os.replace``)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def log_image(trainer, key: str, image: np.ndarray, filename: str, caption: Optional[str] = None) -> Path:
    """Save a grid PNG under ``<default_root_dir>/images/`` and, if the logger is W&B, log a ``wandb.Image``."""
    path = save_png(Path(trainer.default_root_dir) / "images" / filename, image)
    loggers: Sequence = getattr(trainer, "loggers", None) or []
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return path
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            import wandb

            lg.experiment.log({key: wandb.Image(str(path), caption=caption), "trainer/global_step": trainer.global_step})
    return path
