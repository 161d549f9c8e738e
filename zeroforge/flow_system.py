"""CLIP-Forge stage 2 as a LightningModule: the conditional flow over shape embeddings (specs/zeroforge.md §3.3).

The stage-1 encoder ``E`` is frozen (eval mode, no latent noise) and read from ``autoencoder_ckpt``;
each shape's embedding ``s = E(voxels)`` is paired with the unit-norm CLIP **image** embedding of one
random rendering of it. The loss is the NLL ``−log p(s + 0.1ε | c)``. At test time the condition is
the CLIP **text** embedding instead (CLIP-Forge's zero-shot trick, §3.3), which is what
:meth:`generate` does.

Condition sources (``condition``): ``image`` — the dataset's renders (ShapeNet's 3D-R2N2 views, through
CLIP's own preprocessing, [CF]); ``render`` — renders of the input grid by the ZeroForge renderer from a
random view (shapeworld; §5.3); ``text`` — the CLIP text embedding of the item's caption (a fallback
without CLIP-Forge's image/text modality gap). Renders are drawn fresh every step instead of
CLIP-Forge's precomputed ``num_views`` pairs (the limit of many views; a documented deviation).

Checkpoints hold only the flow: the frozen encoder and decoder are reloaded from ``autoencoder_ckpt``.
"""

from typing import List, Literal, Optional

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from common.checks import check_finite_loss
from common.priors.clip import CLIPModel
from zeroforge.autoencoder import OccSimpleDecoder, VoxelEncoderBN
from zeroforge.checkpoints import load_autoencoder, read_state_dict, sub_state, load_part
from zeroforge.clip_renders import encode_renders
from zeroforge.flow import ConditionalRealNVP
from zeroforge.generator import TextToShapeMixin, check_latent_sizes
from zeroforge.geometry import sample_views
from zeroforge.renderer import VoxelEARenderer
from zeroforge.visualize import log_shape_grid

__all__ = ["CLIPForgeFlowSystem"]

_FROZEN = ("encoder.", "decoder.")


class CLIPForgeFlowSystem(TextToShapeMixin, LightningModule):
    """Trains CLIP-Forge's conditional RealNVP on frozen autoencoder embeddings.

    Args:
        clip: the frozen CLIP (ViT-B/32 for the paper; its width must equal ``flow.cond_dim``).
        flow: the flow (default: CLIP-Forge's, 128-d, condition 512, hidden 1024, 5 blocks).
        encoder: the stage-1 encoder architecture (weights from ``autoencoder_ckpt``).
        decoder: the stage-1 decoder architecture (for validation shapes and :meth:`generate`).
        autoencoder_ckpt: the stage-1 checkpoint.
        allow_random_init: TEST ONLY: with ``autoencoder_ckpt: null``, use randomly initialised E and D.
        condition: ``image`` (dataset renders, [CF]), ``render`` (renders of the voxels) or ``text``.
        renderer: the voxel renderer for ``condition: render`` and for validation images.
        clip_normalize_renders: apply CLIP's mean/std to voxel renders (A7).
        latent_noise: std of the noise added to the embeddings in the NLL (0.1, [CF]).
        lr: Adam learning rate (3e-5, [CF]).
        sample_prompts: prompts whose z = 0 shapes are rendered into ``media/`` at each validation.
        sample_resolution: grid size of those shapes.
        gamma: occupancy threshold γ (0.05).
        decode_chunk: points per decoder call when generating (None: all).
    """

    def __init__(self, clip: CLIPModel, flow: Optional[ConditionalRealNVP] = None, encoder: Optional[VoxelEncoderBN] = None,
                 decoder: Optional[OccSimpleDecoder] = None, autoencoder_ckpt: Optional[str] = None,
                 allow_random_init: bool = False, condition: Literal["image", "render", "text"] = "image",
                 renderer: Optional[VoxelEARenderer] = None, clip_normalize_renders: bool = True, latent_noise: float = 0.1,
                 lr: float = 3e-5, sample_prompts: Optional[List[str]] = None, sample_resolution: int = 32,
                 gamma: float = 0.05, decode_chunk: Optional[int] = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["clip", "flow", "encoder", "decoder", "renderer"])
        if condition not in ("image", "render", "text"):
            raise ValueError(f"condition must be 'image', 'render' or 'text', got {condition!r}")
        self.clip = clip
        self.flow = flow if flow is not None else ConditionalRealNVP()
        self.encoder = (encoder if encoder is not None else VoxelEncoderBN()).requires_grad_(False).eval()
        self.decoder = (decoder if decoder is not None else OccSimpleDecoder()).requires_grad_(False).eval()
        self.renderer = renderer if renderer is not None else VoxelEARenderer()
        check_latent_sizes(self.flow, self.decoder)
        if self.encoder.latent_dim != self.flow.latent_dim:
            raise ValueError(f"encoder latent_dim {self.encoder.latent_dim} != flow latent_dim {self.flow.latent_dim}")
        self.strict_loading = False  # the frozen stage-1 parts are not in this stage's checkpoints
        self._pretrained_loaded = False

    # ------------------------------------------------------------------ parts
    def load_pretrained(self) -> None:
        """Load CLIP and the frozen stage-1 encoder/decoder (once)."""
        self.clip.load()
        check_latent_sizes(self.flow, self.decoder, self.clip.embed_dim)
        if self._pretrained_loaded:
            return
        h = self.hparams
        if h.autoencoder_ckpt is not None or not h.allow_random_init:
            load_autoencoder(h.autoencoder_ckpt, "model.init_args.autoencoder_ckpt", self.encoder, self.decoder)
        self._pretrained_loaded = True

    def setup(self, stage: str) -> None:
        self.load_pretrained()

    def prepare_inference(self, ckpt: Optional[str] = None) -> "CLIPForgeFlowSystem":
        """Load everything for :meth:`generate`: stage-1 parts, then the flow from ``ckpt`` (a stage-2 checkpoint)."""
        self.load_pretrained()
        if ckpt is not None:
            state = sub_state(read_state_dict(ckpt, "CLIP-Forge flow", "--ckpt"), "flow.", ckpt, "CLIP-Forge flow")
            load_part(self.flow, state, ckpt, "CLIP-Forge flow", "use the config.yaml of the run that wrote this checkpoint")
        return self.eval()

    def train(self, mode: bool = True) -> "CLIPForgeFlowSystem":
        super().train(mode)
        self.encoder.eval()  # frozen: BN running statistics, no latent noise
        self.decoder.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(_FROZEN)}

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def conditions(self, batch: dict) -> Tensor:
        """``[B, D]`` unit-norm CLIP conditions of a batch (see ``condition``)."""
        mode = self.hparams.condition
        if mode == "image":
            if "image" not in batch:
                raise ValueError("condition: image needs renders in the batch (ShapeNetVoxelDataModule images: true); "
                                 "use condition: render to render the voxels instead")
            return self.clip.encode_image(batch["image"])  # CLIP's preprocessing incl. normalisation, [CF]
        if mode == "render":
            vox = batch["voxels"].float()
            theta, phi = sample_views(vox.shape[0])
            img = self.renderer(vox, theta.to(vox), phi.to(vox)).image
            return encode_renders(self.clip, img, self.hparams.clip_normalize_renders)
        return self.clip.encode_text(list(batch["caption"])).to(self.device)

    def nll(self, batch: dict) -> Tensor:
        """``−mean log p(E(voxels) + σε | c)``."""
        with torch.no_grad():
            s = self.encoder(batch["voxels"])  # [B, d], eval mode
        x = s + self.hparams.latent_noise * torch.randn_like(s)
        return -self.flow.log_prob(x, self.conditions(batch)).mean()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.nll(batch)
        check_finite_loss(loss, self.global_step)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["voxels"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/nll", self.nll(batch), prog_bar=True, batch_size=batch["voxels"].shape[0], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        prompts = self.hparams.sample_prompts
        if prompts and not self.trainer.sanity_checking:
            _, vox = self.generate(prompts, "zero", self.hparams.sample_resolution)
            log_shape_grid(self.trainer, self.renderer, vox, "val/shapes", f"shapes_step{self.global_step:07d}.png")

    def configure_optimizers(self):
        return torch.optim.Adam([p for p in self.flow.parameters() if p.requires_grad], lr=self.hparams.lr)
