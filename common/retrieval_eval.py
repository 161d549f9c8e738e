"""Held-out-view CLIP R-precision evaluation of a text-to-3D LightningModule (the Dream Fields protocol).

Dream Fields (Jain thesis §4.5.1, §9.2) scores a scene by rendering a held-out view (elevation 45°, azimuth
30°, radius 4, white background) at the retrieval CLIP's input size and asking whether the prompt is the
nearest caption of a pool (default: the 153 OC-COCO captions) under each retrieval CLIP, a CLIP other than
the guidance one; PureCLIPNeRF (specs/pureclipnerf.md §5.1) follows the same protocol. Validation writes
``val_metrics.json``, ``lightning test --ckpt_path last`` writes ``test_metrics.json``, the end of ``fit``
writes ``metrics.json`` with the final held-out render and a ring of final views.

:class:`RetrievalEvalMixin` holds that evaluation for :class:`dreamfields.system.DreamFieldsSystem` and
:class:`pureclipnerf.system.PureCLIPNeRFSystem`; list it before ``LightningModule`` in the bases.
"""

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from common.callbacks import run_dir, save_and_log_image
from common.cameras import pose_spherical
from common.export import image_grid
from common.io import atomic_write_text
from common.metrics import CLIPRPrecision, r_precision
from common.priors.clip import CLIPModel

__all__ = ["RetrievalEvalMixin", "clip_name"]


def clip_name(clip: CLIPModel) -> str:
    """A short, file-name-safe name of a CLIP (architecture + tag or checkpoint stem), used as a metric key."""
    tag = clip.pretrained if clip.checkpoint is None else Path(clip.checkpoint).stem
    name = f"{clip.name}_{tag}" if tag else clip.name
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)


class RetrievalEvalMixin:
    """CLIP R-precision of held-out renders: validation/test steps, metric files, the end-of-fit summary.

    The host LightningModule provides ``prompt``; ``camera`` (a
    :class:`~common.cameras.SphericalCameraSampler`); ``guidance.clips``; the hyper-parameters
    ``eval_elevation``, ``eval_azimuth``, ``eval_radius``, ``eval_focal_mult``, ``eval_size``,
    ``n_final_views`` and ``long_prompt``; ``render_heldout(index, n_views)`` (``[H, W, 3]`` on white),
    ``_final_views()`` (``[N, S, S, 3]``) and ``_last_terms`` (the last logged training terms). It calls
    :meth:`_init_retrieval_eval` in ``__init__`` and :meth:`_setup_retrieval` in ``setup``, and may extend
    :meth:`_summary_header` / :meth:`_final_summary_header` (the leading keys of the metric files).
    """

    # ------------------------------------------------------------------ set-up
    def _init_retrieval_eval(self, retrieval: Optional[List[CLIPModel]]) -> None:
        """The retrieval CLIPs (default: ViT-B/32 ``openai``; ``[]`` skips R-precision) and empty state."""
        self.retrieval = nn.ModuleList(retrieval if retrieval is not None else [CLIPModel("ViT-B-32", "openai")])
        self._pool: List[str] = []
        self._true_idx = -1
        self._rprec: Dict[str, CLIPRPrecision] = {}
        self._eval: Dict[str, list] = {}
        self._ckpt_step: Optional[int] = None

    def _setup_retrieval(self, pool: Sequence[str], true_idx: int) -> None:
        """Use caption ``pool`` (already normalised) with the prompt at ``true_idx``; retrieval CLIPs loaded."""
        self._pool, self._true_idx = list(pool), true_idx
        self._rprec = {clip_name(c): CLIPRPrecision(c, self._pool, normalize=False) for c in self.retrieval}

    def _check_prompt_length(self, clip: CLIPModel) -> None:
        """A prompt longer than ``clip``'s text context is an error, or (``long_prompt: truncate``) a warning."""
        encode = getattr(clip.tokenizer, "encode", None)
        if encode is None:
            return
        n = len(encode(self.prompt)) + 2  # + start / end tokens
        if n > clip.context_length:
            msg = (f"prompt has {n} tokens, more than the {clip.context_length}-token text context of CLIP "
                   f"{clip.name!r}: {self.prompt[:80]!r}... Shorten the prompt, or set `long_prompt: truncate` "
                   "to let the tokenizer cut it.")
            if self.hparams.long_prompt == "error":
                raise ValueError(msg)
            # logged under the host's module (``dreamfields.system`` ...), as before the mixin
            logging.getLogger(type(self).__module__).warning(msg.replace("Shorten", "It is truncated. Shorten"))

    # ------------------------------------------------------------------ held-out view
    def heldout_camera(self, index: int = 0, n_views: int = 1, size: Optional[int] = None):
        """``(c2w [4, 4], size, focal)`` of held-out view ``index`` of ``n_views`` (45° elevation; Dream Fields
        §4.5.1, PureCLIPNeRF §5.1). View k is at azimuth ``eval_azimuth + k·360°/n``."""
        h = self.hparams
        size = size or self.eval_size()
        az = h.eval_azimuth + index * 360.0 / max(n_views, 1)
        c2w = pose_spherical(az, h.eval_elevation, h.eval_radius)
        focal = self.camera.base_focal * size / self.camera.width * h.eval_focal_mult
        return c2w, size, focal

    def eval_size(self) -> int:
        """Held-out render size: ``eval_size``, else the first retrieval (or guidance) CLIP's input size."""
        if self.hparams.eval_size:
            return int(self.hparams.eval_size)
        clip = self.retrieval[0] if len(self.retrieval) else self.guidance.clips[0]
        clip.load()
        return int(clip.image_size[0])

    # ------------------------------------------------------------------ R-precision
    @torch.no_grad()
    def retrieval_outcomes(self, image: Tensor) -> Dict[str, dict]:
        """R-precision outcome of one ``[H, W, 3]`` render under every retrieval CLIP (Dream Fields §9.2,
        PureCLIPNeRF §5.1)."""
        out = {}
        for name, rp in self._rprec.items():
            emb = rp.clip.encode_image(image.permute(2, 0, 1)[None].float().to(rp.clip.device))  # [1, D]
            pool = rp.caption_embeddings()  # [M, D]
            res = r_precision(emb, pool, torch.tensor([self._true_idx]))
            sims = (emb @ pool.T)[0].float().cpu()
            out[name] = {"correct": bool(res.correct[0]), "rank": int((sims > sims[self._true_idx]).sum()),
                         "cos_true": float(sims[self._true_idx]), "top_caption": self._pool[int(sims.argmax())],
                         "pool_size": len(self._pool)}
        return out

    def _n_eval_views(self, stage: str) -> int:
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        try:
            return len(loader.dataset)
        except (AttributeError, TypeError):
            return 1

    def _eval_step(self, batch: dict, stage: str) -> None:
        index = int(batch["index"]) if isinstance(batch, dict) and "index" in batch else 0
        image = self.render_heldout(index, self._n_eval_views(stage))
        self._eval.setdefault(stage, []).append(self.retrieval_outcomes(image))
        if self._trainer is not None and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            save_and_log_image(self.trainer, f"{stage}/heldout_{index}", image,
                               f"{stage}_heldout{index}_step{self._trained_steps():07d}.png")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._eval["val"] = []

    def on_test_epoch_start(self) -> None:
        self._eval["test"] = []

    # ------------------------------------------------------------------ steps behind the weights
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._ckpt_step = int(checkpoint.get("global_step", 0))

    def _trained_steps(self) -> int:
        """Optimiser steps behind the current weights (the checkpoint's step under ``test``/``validate``)."""
        return self.global_step if self.global_step or self._ckpt_step is None else self._ckpt_step

    # ------------------------------------------------------------------ metric files
    def _summary_header(self) -> dict:
        """The leading keys of ``val_metrics.json`` / ``test_metrics.json``."""
        return {"prompt": self.prompt, "caption_index": self._true_idx, "pool_size": len(self._pool),
                "step": self._trained_steps()}

    def _final_summary_header(self) -> dict:
        """The leading keys of the end-of-fit ``metrics.json`` (default: :meth:`_summary_header`)."""
        return self._summary_header()

    def _summarise(self, stage: str) -> dict:
        views = self._eval.get(stage, [])
        summary = dict(self._summary_header(), n_views=len(views), retrieval={})
        for name in self._rprec:
            per_view = [v[name] for v in views]
            if not per_view:
                continue
            rprec = sum(v["correct"] for v in per_view) / len(per_view)
            cos = sum(v["cos_true"] for v in per_view) / len(per_view)
            summary["retrieval"][name] = {"r_precision": rprec, "correct": per_view[0]["correct"],
                                          "rank": per_view[0]["rank"], "cos_true": cos, "views": per_view}
            self.log(f"{stage}/rprec_{name}", rprec, batch_size=1)
            self.log(f"{stage}/cos_{name}", cos, batch_size=1)
        return summary

    def on_validation_epoch_end(self) -> None:
        summary = self._summarise("val")
        if not self.trainer.sanity_checking and self.trainer.is_global_zero and summary["n_views"]:
            atomic_write_text(run_dir(self.trainer) / "val_metrics.json", json.dumps(summary, indent=2))

    def on_test_epoch_end(self) -> None:
        summary = self._summarise("test")
        if self.trainer.is_global_zero:
            path = atomic_write_text(run_dir(self.trainer) / "test_metrics.json", json.dumps(summary, indent=2))
            for name, res in summary["retrieval"].items():
                print(f"R-precision ({name}) of {self.prompt!r}: {res['r_precision']:.3f} "
                      f"(rank {res['rank']} of {summary['pool_size']}) -> {path}")

    # ------------------------------------------------------------------ end of fit: final renders + metrics
    def on_train_end(self) -> None:
        """Final held-out render, a ring of views and ``metrics.json`` in the run folder."""
        if self._trainer is None or not self.trainer.is_global_zero:
            return
        root = run_dir(self.trainer)
        image = self.render_heldout()
        save_and_log_image(self.trainer, "final/heldout", image, "final_heldout.png")
        summary = dict(self._final_summary_header(), train=self._last_terms,
                       retrieval={k: dict(v, r_precision=float(v["correct"]))
                                  for k, v in self.retrieval_outcomes(image).items()})
        if self.hparams.n_final_views > 0:
            views = self._final_views()
            save_and_log_image(self.trainer, "final/views", image_grid(views, nrow=len(views)), "final_views.png")
            summary["final_views"] = str(root / "media" / "final_views.png")
        atomic_write_text(root / "metrics.json", json.dumps(summary, indent=2))
        for name, res in summary["retrieval"].items():
            print(f"final R-precision ({name}) of {self.prompt!r}: {int(res['correct'])} "
                  f"(rank {res['rank']} of {summary['pool_size']})")
