"""Callbacks and helpers that write media into the run folder and, with W&B, log them as media.

Systems that support exports implement two hooks:

* ``render_view(c2w [4,4], height, width, focal) -> RenderOutput`` — a full image, no grad;
* ``export_field() -> Field`` — the field whose density is meshed (with its bound in ``.bound``
  or the renderer's).
"""

from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from common.cameras import SphericalCameraSampler
from common.export import marching_cubes_mesh, save_image, save_mesh, save_video


def run_dir(trainer: Trainer) -> Path:
    """The run directory (``trainer.default_root_dir``)."""
    return Path(trainer.default_root_dir)


WANDB_MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".stl")  # what wandb.Object3D reads from a file (not .ply)


def wandb_mesh_path(path: Path) -> Path:
    """``path`` if W&B's 3D viewer reads its format, else a ``.glb`` copy written beside it (atomically)."""
    path = Path(path)
    if path.suffix.lower() in WANDB_MESH_SUFFIXES:
        return path
    import trimesh

    return save_mesh(trimesh.load(path, force="mesh"), path.with_suffix(".glb"))


def log_media(trainer: Optional[Trainer], key: str, path: Path, kind: str, step: Optional[int] = None) -> None:
    """Log a written file as W&B media (``image``, ``video`` or ``mesh``) when the logger is W&B.

    A mesh in a format W&B cannot show (``.ply``) is logged through a ``.glb`` copy beside it."""
    if trainer is None or not trainer.is_global_zero:
        return
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            if kind == "mesh":
                path = wandb_mesh_path(path)
            media = {"image": wandb.Image, "video": wandb.Video, "mesh": wandb.Object3D}[kind](str(path))
            logger.experiment.log({key: media, "trainer/global_step": trainer.global_step if step is None else step})


def save_and_log_image(trainer: Trainer, key: str, image: torch.Tensor, name: str) -> Path:
    """Write ``[H, W, C]`` in [0,1] to ``<run>/media/<name>`` and log it."""
    path = save_image(image, run_dir(trainer) / "media" / name)
    log_media(trainer, key, path, "image")
    return path


@torch.no_grad()
def render_turntable(module: LightningModule, n_frames: int, size: int, elevation: float, radius: float,
                     focal_mult: float = 1.0) -> torch.Tensor:
    """``[N, H, W, 3]`` frames around the scene through the system's ``render_view`` hook."""
    cams = SphericalCameraSampler(size, size).ring(n_frames, elevation, radius, focal_mult)
    frames = []
    for k in range(n_frames):
        out = module.render_view(cams.c2w[k].to(module.device), size, size, float(cams.focal[k]))
        frames.append(out.rgb[..., :3].clamp(0, 1).cpu())
    return torch.stack(frames)


class TurntableVideo(Callback):
    """Render a turntable at the end of training (and every ``every_n_steps`` if > 0), write
    ``<run>/media/turntable_<step>.mp4`` and log it.

    Args:
        n_frames, size, elevation, radius, focal_mult: the orbit (degrees, scene units).
        every_n_steps: also during training; 0 = only at the end.
        fmt: ``mp4`` or ``gif``.
    """

    def __init__(self, n_frames: int = 60, size: int = 128, elevation: float = 30.0, radius: float = 4.0,
                 focal_mult: float = 1.0, every_n_steps: int = 0, fmt: str = "mp4") -> None:
        self.n_frames, self.size, self.elevation, self.radius = n_frames, size, elevation, radius
        self.focal_mult, self.every_n_steps, self.fmt = focal_mult, every_n_steps, fmt

    def _write(self, trainer: Trainer, module: LightningModule) -> Optional[Path]:
        if not trainer.is_global_zero:
            return None
        was_training = module.training
        module.eval()
        frames = render_turntable(module, self.n_frames, self.size, self.elevation, self.radius, self.focal_mult)
        module.train(was_training)
        path = save_video(frames, run_dir(trainer) / "media" / f"turntable_{trainer.global_step:07d}.{self.fmt}")
        log_media(trainer, "media/turntable", path, "video")
        return path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module)


class MeshExport(Callback):
    """Marching cubes of the system's ``export_field()`` density at the end of training →
    ``<run>/media/mesh_<step>.<fmt>`` with vertex colours, logged as a W&B 3D object.

    Args:
        resolution: grid size of the density samples.
        threshold: density iso-level; None uses the mean of the grid's min and max (logged).
        fmt: ``ply``, ``obj`` or ``glb``.
    """

    def __init__(self, resolution: int = 128, threshold: Optional[float] = None, fmt: str = "ply") -> None:
        self.resolution, self.threshold, self.fmt = resolution, threshold, fmt

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        field = pl_module.export_field()
        bound = float(getattr(field, "bound", getattr(getattr(pl_module, "renderer", None), "bound", 1.0)))
        grid = field.density_grid(self.resolution, bound)
        level = self.threshold if self.threshold is not None else 0.5 * float(grid.min() + grid.max())
        try:
            mesh = marching_cubes_mesh(grid, level, bound, color_fn=lambda x: field(x.to(grid.device)).color.cpu())
        except ValueError as err:  # empty or fully opaque scene: say so, don't fail the run
            print(f"MeshExport: skipped ({err})")
            return
        path = save_mesh(mesh, run_dir(trainer) / "media" / f"mesh_{trainer.global_step:07d}.{self.fmt}")
        log_media(trainer, "media/mesh", path, "mesh")
