"""Contrastive training of the shapeworld CLIPs (an open_clip custom architecture) as a LightningModule.

Loss: CLIP's symmetric InfoNCE (Radford et al. 2021, Fig. 3 pseudo-code) over cosine similarities
scaled by a learned temperature, ``logits = exp(τ)·ĝ(I)ᵀĥ(y)``, with one change: shapeworld batches
repeat (kind, colour) pairs (66 pairs, batches of 128), so every caption of the *same pair* is a
positive. The target of each row is uniform over its positives (multi-positive InfoNCE, Khosla et
al. 2020, eq. 2 "L^sup_out"); with distinct pairs it is exactly CLIP's loss.

Validation: top-1 retrieval of the correct caption among all kind × colour captions
(:func:`shapeworld.metrics.caption_retrieval`) on held-out objects, the quality bar of the issue.
:meth:`ShapeWorldCLIPSystem.export` writes the weights as fp16 safetensors that
:class:`common.priors.clip.CLIPModel` loads (``model_config`` + ``checkpoint``).
"""

import functools
import json
import math
import shutil
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from common.callbacks import run_dir
from common.io import atomic_path
from common.lr_schedules import warmup_cosine_factor
from shapeworld.captions import HELDOUT_TEMPLATES, RETRIEVAL_TEMPLATE, all_captions

CONFIG_DIR = Path(__file__).with_name("configs")


def build_open_clip(model_config: str):
    """A randomly initialised open_clip model and its tokenizer from an architecture JSON."""
    import open_clip

    path = Path(model_config)
    if not path.is_file():
        path = CONFIG_DIR / model_config
    if not path.is_file():
        raise FileNotFoundError(f"open_clip model config not found: {model_config} (nor in {CONFIG_DIR})")
    open_clip.add_model_config(path)
    return open_clip.create_model(path.stem), open_clip.get_tokenizer(path.stem), path


def multi_positive_clip_loss(img: Tensor, txt: Tensor, labels: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE with every same-label pair positive.

    Args:
        img, txt: ``[B, D]`` unit-norm embeddings.
        labels: ``[B]`` pair ids; rows with equal ids are positives of each other.
        logit_scale: log temperature τ (scalar).
    """
    logits = logit_scale.exp() * img @ txt.t()  # [B, B]
    pos = (labels[:, None] == labels[None, :]).float()
    target = pos / pos.sum(dim=1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(target * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return 0.5 * (loss_i + loss_t)


class ShapeWorldCLIPSystem(LightningModule):
    """Trains an open_clip CLIP from scratch on shapeworld image–caption pairs.

    Args:
        model_config: open_clip architecture JSON (path, or a file name in ``shapeworld/configs/``).
        lr: AdamW peak learning rate.
        weight_decay: AdamW weight decay (not applied to gains, biases, embeddings, logit scale).
        warmup_steps: linear warm-up, then cosine decay to 0 at ``trainer.max_steps``.
        max_logit_scale: clamp of ``exp(τ)`` (100, as CLIP).
        export_to: where :meth:`export` writes at the end of training (``.safetensors``; default
            ``<run>/<config stem>.safetensors``).
    """

    def __init__(self, model_config: str = "shapeworld_clip_guidance.json", lr: float = 1e-3, weight_decay: float = 0.1,
                 warmup_steps: int = 200, max_logit_scale: float = 100.0, export_to: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model, self.tokenizer, self.config_path = build_open_clip(model_config)
        pp = self.model.visual.preprocess_cfg
        self.image_size = pp["size"][0] if isinstance(pp["size"], (tuple, list)) else pp["size"]
        self.register_buffer("mean", torch.tensor(pp["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pp["std"]).view(1, 3, 1, 1), persistent=False)
        self.retrieval_captions = all_captions(RETRIEVAL_TEMPLATE)
        self.heldout_captions = all_captions(HELDOUT_TEMPLATES[0])

    # ------------------------------------------------------------------ encoders
    def encode_image(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] → ``[B, D]`` unit norm (same preprocessing as ``CLIPModel``)."""
        if images.shape[-1] != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return F.normalize(self.model.encode_image((images - self.mean) / self.std), dim=-1)

    def encode_text(self, captions: list[str]) -> Tensor:
        """``list[str]`` → ``[N, D]`` unit norm."""
        return F.normalize(self.model.encode_text(self.tokenizer(captions).to(self.device)), dim=-1)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch, batch_idx: int) -> Tensor:
        img, txt = self.encode_image(batch["image"]), self.encode_text(list(batch["caption"]))
        loss = multi_positive_clip_loss(img, txt, batch["pair"], self.model.logit_scale)
        self.log("train/loss_clip", loss, prog_bar=True, batch_size=img.shape[0])
        self.log("train/logit_scale", self.model.logit_scale.exp(), batch_size=img.shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(self.hparams.max_logit_scale))

    def on_validation_epoch_start(self) -> None:
        with torch.no_grad():
            self._txt = {k: self.encode_text(c) for k, c in (("top1", self.retrieval_captions), ("top1_heldout_template", self.heldout_captions))}

    def validation_step(self, batch, batch_idx: int) -> None:
        img = self.encode_image(batch["image"])
        for key, txt in self._txt.items():
            hit = ((img @ txt.t()).argmax(dim=1) == batch["pair"]).float().mean()
            self.log(f"val/{key}", hit, prog_bar=key == "top1", batch_size=img.shape[0], sync_dist=True)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.hparams.lr, betas=(0.9, 0.98), eps=1e-6)
        total = max(1, int(self.trainer.max_steps) if self.trainer and self.trainer.max_steps > 0 else 10000)
        # linear warm-up, cosine decay to 0 (open_clip's default schedule)
        schedule = functools.partial(warmup_cosine_factor, warmup=max(1, self.hparams.warmup_steps), total=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule), "interval": "step"}}

    # ------------------------------------------------------------------ export
    def export(self, path: Optional[str] = None) -> Path:
        """Write fp16 safetensors weights (and the architecture JSON beside them); returns the weights path."""
        from safetensors.torch import save_file

        target = Path(path or self.hparams.export_to or run_dir(self.trainer) / f"{self.config_path.stem}.safetensors")
        state = {k: v.detach().to(torch.float16).cpu().contiguous() for k, v in self.model.state_dict().items()}
        with atomic_path(target) as tmp:
            save_file(state, str(tmp), metadata={"config": json.dumps(json.loads(self.config_path.read_text()))})
        if target.with_suffix(".json") != self.config_path:
            shutil.copyfile(self.config_path, target.with_suffix(".json"))
        return target

    def on_train_end(self) -> None:
        if self.trainer.is_global_zero:
            self.export()
