"""Media of a VectorFusion run: SVG snapshots, PNG previews, the optimisation video, ``result.json``.

Everything goes to ``<run>/media/`` (and to W&B as media when the logger is W&B):

* every ``preview_every_n_steps``: ``preview_<step>.png`` and ``latest.svg``;
* every ``video_every_n_steps``: a frame of the optimisation video (LIVE stages included);
* at the end of LIVE / the L1 fit: ``live.svg`` + ``live.png`` (the "SD init + LIVE" / "SD+L1" output);
* at the end: ``final.svg``, ``final.png`` (rendered at ``eval_size`` = 512 on its background, the
  evaluation protocol of spec §4.2), ``optimisation.mp4`` and ``<run>/result.json``, which lists the
  images that :mod:`vectorfusion.evaluate` scores, one per method row.

SVGs are written atomically and only from finite parameters (:func:`~vectorfusion.svg.write_svg`
refuses NaN/Inf), so a diverged step never leaves a corrupt file.
"""

import json
import logging
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from common.callbacks import log_media, run_dir, save_and_log_image
from common.export import save_video
from common.io import atomic_write_text
from vectorfusion.svg import write_svg

log = logging.getLogger(__name__)


class VectorFusionMedia(Callback):
    """Write SVGs, previews, the video and ``result.json`` for a :class:`~vectorfusion.system.VectorFusionSystem`.

    Args:
        preview_every_n_steps: PNG preview + ``latest.svg`` period (0 = off).
        preview_size: preview side in px.
        video_every_n_steps: video frame period (0 = no video).
        video_size: video side in px.
        fps: video frame rate.
        eval_size: side of ``final.png`` / ``live.png`` (512, spec §4.2).
        video_format: ``"mp4"`` or ``"gif"``.
    """

    def __init__(self, preview_every_n_steps: int = 100, preview_size: int = 256, video_every_n_steps: int = 10,
                 video_size: int = 256, fps: int = 20, eval_size: int = 512, video_format: str = "mp4") -> None:
        self.preview_every, self.preview_size = preview_every_n_steps, preview_size
        self.video_every, self.video_size, self.fps = video_every_n_steps, video_size, fps
        self.eval_size, self.video_format = eval_size, video_format
        self.frames: list = []
        self.outputs: dict[str, str] = {}
        self._last_step = -1

    def _media(self, trainer: Trainer) -> Path:
        return run_dir(trainer) / "media"

    def write_svg(self, trainer: Trainer, module: LightningModule, name: str) -> Path | None:
        """Write the current SVG as ``media/<name>`` unless a parameter is NaN/Inf (then warn)."""
        try:
            return write_svg(module.primitives.scene(), self._media(trainer) / name, title=module.caption)
        except ValueError as err:
            log.warning("not writing %s: %s", name, err)
            return None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last_step:
            return  # a skipped (non-finite) step does not advance global_step
        self._last_step = step
        if self.video_every and step % self.video_every == 0:
            self.frames.append(pl_module.render_preview(self.video_size))
        if self.preview_every and step % self.preview_every == 0:
            save_and_log_image(trainer, "media/preview", pl_module.render_preview(self.preview_size),
                               f"preview_{step:07d}.png")
            self.write_svg(trainer, pl_module, "latest.svg")
        if pl_module.live_steps > 0 and step == pl_module.live_steps:
            self._write_output(trainer, pl_module, "live", "media/live")

    def _write_output(self, trainer: Trainer, module: LightningModule, name: str, key: str) -> None:
        if self.write_svg(trainer, module, f"{name}.svg") is not None:
            save_and_log_image(trainer, key, module.render_preview(self.eval_size), f"{name}.png")
            self.outputs[name] = f"media/{name}.png"

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._write_output(trainer, pl_module, "final", "media/final")
        if self.frames:
            self.frames.append(pl_module.render_preview(self.video_size))
            path = save_video(self.frames, self._media(trainer) / f"optimisation.{self.video_format}", fps=self.fps)
            log_media(trainer, "media/optimisation", path, "video")
        atomic_write_text(run_dir(trainer) / "result.json", json.dumps(self.result(trainer, pl_module), indent=2))

    def result(self, trainer: Trainer, module: LightningModule) -> dict:
        """The run's record for :mod:`vectorfusion.evaluate`: caption, settings and one image per method."""
        k = module.sampler.num_samples if module.init == "raster" and module.sampler is not None else None
        rows = []
        if module.init == "raster" and (self._media(trainer) / "raster_best.png").is_file():
            rows.append({"method": "Stable Diff (raster)", "K": k, "image": "media/raster_best.png"})
        if module.live_steps > 0 and (self._media(trainer) / "live.png").is_file():  # also after a resume
            rows.append({"method": "SD init + LIVE" if module.is_icon else "SD+L1", "K": k, "image": "media/live.png"})
        if "final" in self.outputs and module.sds_steps > 0:
            rows.append({"method": module.method_name(), "K": k, "image": self.outputs["final"]})
        scores = module.rerank_scores
        return {"caption": module.caption, "prompt": module.prompt_full, "style": module.primitives.style,
                "init": module.init, "steps": trainer.global_step, "live_steps": module.live_steps,
                "sds_steps": module.sds_steps, "rerank_scores": None if scores is None else scores.tolist(),
                "svg": "media/final.svg" if "final" in self.outputs else None, "outputs": rows}
