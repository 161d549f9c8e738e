"""Stage 1: CLIP image → SVR shape-space alignment (specs/iss.md §4), a LightningModule.

Per batch (eq. 1–2 of the paper, the code's forms by default)::

    f_S  = E_S(I).detach()                         # frozen, eval mode (BN statistics fixed) [S]
    f_I  = CLIP.encode_image(I)  (raw)              # frozen
    x    = normalize(0.25·f_I + 0.75·z/‖z‖)         # stage1_feature_noise (code) [C]; off: normalize(f_I) [P]
    L_M  = mapper_loss(M(x), f_S)                   # 2000·mean-L1 [C] | Σ‖·‖² [P]
    L_D, rays = DVR losses with c = f_S             # D conditioned on E_S(I), never on M(x)
    L_bg = bg_loss(rays)                            # λ_bg = 30 [C]
    loss = λ_M·L_M + L_D + λ_bg·L_bg                # one Adam over M ∪ D (lr 1e-4) [C]

The gradients are kept apart by construction: ``M``'s output only enters ``L_M``, and ``f_S`` is detached,
so ``L_M`` updates only ``M`` and ``L_D + L_bg`` only ``D``. The SVR model (``E_S``, ``D``) is read from
``svr_ckpt``; checkpoints hold ``M`` and the fine-tuned ``D`` (``E_S`` and CLIP are reloaded, never saved).
"""

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from common.checks import check_finite_loss
from common.priors.clip import CLIPModel
from iss.cameras import DVRCameras
from iss.checkpoints import CheckpointMismatchError, decoder_meta, load_part, read_checkpoint, sub_state
from iss.clip_features import embed_dim, encode_image_raw, stage1_mapper_input
from iss.data import check_svr_batch
from iss.losses import (BgForm, DVRLossWeights, MapperForm, bg_loss, default_mapper_weight, dvr_losses, mapper_loss,
                        weighted_dvr_loss)
from iss.models import CLIP2ShapeMapper, DVRDecoder, ResNetEncoder
from iss.renderer import DVRRenderer
from iss.svr import points_iou, render_comparison, sample_pixels, samples_at_step

__all__ = ["Stage1System", "load_svr"]


def load_svr(path: Optional[str], encoder: Optional[ResNetEncoder], decoder: Optional[DVRDecoder], config_key: str) -> dict:
    """Load ``E_S`` and/or ``D`` from an SVR checkpoint (:class:`iss.svr.SVRSystem`); returns its ``iss`` meta."""
    what = "ISS SVR (stage 0)"
    state, meta = read_checkpoint(path, what, config_key)
    stage = meta.get("stage")
    if stage is not None and stage != "svr":
        raise CheckpointMismatchError(f"{path} is a '{stage}' checkpoint, not an SVR one: {config_key} takes the checkpoint "
                                      "of experiments/iss_svr.yaml (SVRSystem).")
    if encoder is not None and meta.get("encoder") == "clip":
        raise CheckpointMismatchError(f"{path} is the E_I + D baseline (D trained on frozen CLIP features), which has no "
                                      f"E_S for ISS's stage 1: point {config_key} at an E_S SVR run (experiments/iss_svr.yaml).")
    hint = f"make model.init_args.encoder/decoder match the SVR run's (c_dim, widths, hidden, n_blocks) or point {config_key} at it"
    if encoder is not None:
        load_part(encoder, sub_state(state, "encoder.", path, what), path, what, hint)
    if decoder is not None:
        load_part(decoder, sub_state(state, "decoder.", path, what), path, what, hint)
    return meta


class Stage1System(LightningModule):
    """Stage-1 alignment: trains the CLIP2Shape mapper ``M`` and fine-tunes ``D`` with ``L_bg``.

    Args:
        clip: the frozen CLIP (ViT-B/32 for the paper; its width is ``mapper.in_dim``).
        encoder, decoder: the SVR model's architecture (weights from ``svr_ckpt``).
        mapper: ``M`` (12 layers, §2.3), randomly initialised.
        renderer: the DVR renderer.
        svr_ckpt: the SVR checkpoint (``experiments/iss_svr.yaml``).
        allow_random_init: TEST ONLY — with ``svr_ckpt: null`` start from a freshly initialised SVR model.
        weights: DVR's ``L_D`` weights.
        lambda_bg: ``λ_bg`` (30 in stage 1, [C]); 0 is the "w/o L_bg1" ablation.
        bg_loss_form: ``l1_mean`` (code) or ``l2_sum`` (paper eq. 2).
        mapper_loss_form: ``l1`` (code, ``λ_M`` 2000) or ``mse`` (paper eq. 1, ``λ_M`` 1).
        lambda_mapper: ``λ_M`` (None: by form).
        stage1_feature_noise: the code's noise mixing of the mapper input (on) or the paper's ``normalize(f_I)`` (off).
        noise_weight: weight of ``f_I`` in the mixing (0.25, [C]).
        n_pixels: pixels per supervision view (768).
        lr: Adam learning rate over ``M ∪ D`` (1e-4, no schedule [C]).
        sample_milestones, sample_counts: ray-sample schedule (as DVR).
        n_val_images: objects rendered into ``media/`` at each validation.
        train_decoder: fine-tune ``D`` with ``L_D + λ_bg·L_bg`` (the code, True). False trains ``M`` alone by ``L_M``:
            no rendering, so a step costs a small fraction, but ``D`` keeps the SVR run's off-surface colours (no
            white background for stage 2's ``L_bg`` to start from) [S].
        mapper_warmup_steps: with ``train_decoder``, the first this many steps train ``M`` alone by ``L_M`` (as
            ``train_decoder: false``), then ``M`` and ``D`` train jointly as in the code: a cheap warm start of the
            mapper before the expensive joint steps (0, the code) [S].
    """

    def __init__(self, clip: CLIPModel, encoder: Optional[ResNetEncoder] = None, decoder: Optional[DVRDecoder] = None,
                 mapper: Optional[CLIP2ShapeMapper] = None, renderer: Optional[DVRRenderer] = None,
                 svr_ckpt: Optional[str] = None, allow_random_init: bool = False, weights: Optional[DVRLossWeights] = None,
                 lambda_bg: float = 30.0, bg_loss_form: BgForm = "l1_mean", mapper_loss_form: MapperForm = "l1",
                 lambda_mapper: Optional[float] = None, stage1_feature_noise: bool = True, noise_weight: float = 0.25,
                 n_pixels: int = 768, lr: float = 1e-4, sample_milestones: List[int] = [50000, 100000, 250000],
                 sample_counts: List[int] = [16, 32, 64, 128], n_val_images: int = 4, train_decoder: bool = True,
                 mapper_warmup_steps: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["clip", "encoder", "decoder", "mapper", "renderer"])
        self.clip = clip
        self.encoder = (encoder if encoder is not None else ResNetEncoder()).requires_grad_(False)
        self.decoder = decoder if decoder is not None else DVRDecoder()
        self.mapper = mapper if mapper is not None else CLIP2ShapeMapper()
        self.renderer = renderer if renderer is not None else DVRRenderer()
        self.weights = weights if weights is not None else DVRLossWeights()
        self.lambda_mapper = lambda_mapper if lambda_mapper is not None else default_mapper_weight(mapper_loss_form)
        if not (self.encoder.c_dim == self.decoder.c_dim == self.mapper.c_dim):
            raise ValueError(f"c_dim differs: encoder {self.encoder.c_dim}, decoder {self.decoder.c_dim}, mapper {self.mapper.c_dim}")
        samples_at_step(0, sample_milestones, sample_counts)
        if mapper_warmup_steps < 0:
            raise ValueError(f"mapper_warmup_steps must be >= 0, got {mapper_warmup_steps}")
        self.strict_loading = False  # E_S is not in this stage's checkpoints
        self._svr_loaded = False

    # ------------------------------------------------------------------ parts
    def load_pretrained(self) -> None:
        """Load CLIP and the SVR model (once); check that the widths fit."""
        self.clip.load()
        d = embed_dim(self.clip)
        if d != self.mapper.in_dim:
            raise ValueError(f"the CLIP embeds in {d} dims but mapper.in_dim is {self.mapper.in_dim}: set "
                             "model.init_args.mapper.init_args.in_dim (and hidden) to the CLIP width")
        if self._svr_loaded:
            return
        h = self.hparams
        if h.svr_ckpt is not None or not h.allow_random_init:
            load_svr(h.svr_ckpt, self.encoder, self.decoder, "model.init_args.svr_ckpt")
        self._svr_loaded = True

    def setup(self, stage: str) -> None:
        self.load_pretrained()

    def train(self, mode: bool = True) -> "Stage1System":
        super().train(mode)
        self.encoder.eval()  # frozen E_S: BN running statistics stay fixed [S]
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("encoder.")}
        checkpoint["iss"] = {"stage": "stage1", "c_dim": int(self.mapper.c_dim), "clip_dim": int(self.mapper.in_dim),
                             "decoder": decoder_meta(self.decoder), "svr_ckpt": str(self.hparams.svr_ckpt)}

    def decoder_trains_now(self) -> bool:
        """Whether this step fine-tunes ``D`` (``train_decoder``, past ``mapper_warmup_steps``)."""
        return bool(self.hparams.train_decoder) and self.global_step >= self.hparams.mapper_warmup_steps

    def n_steps(self) -> int:
        return samples_at_step(self.global_step, self.hparams.sample_milestones, self.hparams.sample_counts)

    # ------------------------------------------------------------------ losses
    def losses(self, batch: dict, generator: Optional[torch.Generator] = None,
               with_decoder: Optional[bool] = None) -> Dict[str, Tensor]:
        """``{"loss", "loss_mapper", "loss_bg", "loss_<dvr term>", ...}`` of one batch (gradients kept apart).

        ``with_decoder`` forces the rendering terms on or off (default: :meth:`decoder_trains_now`); validation
        always renders, so ``val/loss_bg`` shows how white ``D``'s off-surface colour is in every phase."""
        check_svr_batch(batch, need_depth=self.weights.depth > 0)
        h = self.hparams
        with torch.no_grad():
            f_s = self.encoder(batch["input"])  # [B, C], frozen
            f_i = encode_image_raw(self.clip, batch["input"])  # [B, D] raw CLIP feature
        x = stage1_mapper_input(f_i, h.stage1_feature_noise, h.noise_weight, generator)
        l_m = mapper_loss(self.mapper(x), f_s, h.mapper_loss_form)
        if not (self.decoder_trains_now() if with_decoder is None else with_decoder):  # M alone: no rendering
            zero = l_m.new_zeros(())
            return {"loss": self.lambda_mapper * l_m, "loss_mapper": l_m, "loss_decoder": zero,
                    "clip_feature_norm": f_i.norm(dim=-1).mean()}
        uv, rgb, mask, depth = sample_pixels(batch, h.n_pixels, generator)
        cams = DVRCameras(batch["c2w"], batch["focal"])
        terms, rays = dvr_losses(self.decoder, f_s, cams, uv, rgb, mask, depth, self.renderer, self.n_steps(),
                                 with_normal=self.weights.normal > 0, generator=generator)
        l_bg = bg_loss(rays.rgb, rays.hit, h.bg_loss_form)
        out = {f"loss_{k}": v for k, v in terms.items()}
        out.update(loss_mapper=l_m, loss_bg=l_bg, clip_feature_norm=f_i.norm(dim=-1).mean())
        out["loss_decoder"] = weighted_dvr_loss(terms, self.weights) + h.lambda_bg * l_bg
        out["loss"] = self.lambda_mapper * l_m + out["loss_decoder"]
        return out

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        terms = self.losses(batch)
        check_finite_loss(terms["loss"], self.global_step, terms)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=batch["image"].shape[0])
        return terms["loss"]

    @torch.no_grad()
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        B = batch["image"].shape[0]
        terms = self.losses(batch, torch.Generator().manual_seed(batch_idx), with_decoder=True)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, batch_size=B, sync_dist=True)
        f_s = self.encoder(batch["input"])
        f_i = F.normalize(encode_image_raw(self.clip, batch["input"]), dim=-1)
        m_img = self.mapper(f_i)
        # The paper's feature-space study (§3.2): cosine distances M(f_I)→f_S (0.21) and M(f_T)→f_S (0.45).
        stats = {"val/cosdist_mapped_image": 1 - F.cosine_similarity(m_img, f_s).mean()}
        if "caption" in batch:
            f_t = self.clip.encode_text(list(batch["caption"])).to(f_s)
            stats["val/cosdist_mapped_text"] = 1 - F.cosine_similarity(self.mapper(f_t), f_s).mean()
            stats["val/cosdist_text_image"] = 1 - F.cosine_similarity(f_t, f_i).mean()  # 0.783 on Text2Shape
        if "points" in batch:
            stats["val/iou_mapped_image"] = points_iou(self.decoder, m_img, batch["points"], batch["occupancy"]).mean()
            stats["val/iou_svr"] = points_iou(self.decoder, f_s, batch["points"], batch["occupancy"]).mean()
        self.log_dict(stats, batch_size=B, sync_dist=True)
        if batch_idx == 0 and self.hparams.n_val_images > 0 and not self.trainer.sanity_checking:
            from common.callbacks import save_and_log_image
            from common.export import image_grid

            imgs = render_comparison(self.renderer, self.decoder, m_img, batch, self.hparams.n_val_images, self.n_steps())
            save_and_log_image(self.trainer, "val/renders_mapped", image_grid(imgs, nrow=imgs.shape[0] // 3),
                               f"val_renders_mapped_{self.global_step:07d}.png")

    def configure_optimizers(self):
        params = list(self.mapper.parameters()) + (list(self.decoder.parameters()) if self.hparams.train_decoder else [])
        return torch.optim.Adam(params, lr=self.hparams.lr)
