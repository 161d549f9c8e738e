"""ZeroForge (Marshall et al. 2023): data-free fine-tuning of CLIP-Forge to an open vocabulary (specs/zeroforge.md).

One step (§2): for the fixed batch of ``B = 3k`` prompts with text embeddings ``T = g(t)``:
``z ~ N(0, I)`` -> ``s = F⁻¹(z; T)`` -> ``o = D(s, grid)`` on ``N³`` points -> soft voxels
``V = sigmoid(β(o − γ))`` (eq. 5, A1) -> one random view per row (Archimedes) -> ``ω(V, θ, φ)`` -> CLIP
image embedding ``I`` -> ``L = L_sim + λ_C·L_con`` (eqs. 3–4) -> Adam on the trainable parts of F and D.

Frozen (§3.10): CLIP (eval, out of checkpoints), the renderer (no weights), and with ZeroConv the
pretrained decoder blocks. The flow is trained but always kept in eval mode (frozen BatchNormFlow
statistics, A9). Initialisation from CLIP-Forge is read from ``autoencoder_ckpt`` (decoder) and
``flow_ckpt`` (flow); checkpoints of this stage hold the whole flow and decoder, so generation from a
ZeroForge checkpoint needs nothing else.
"""

from typing import List, Literal, Optional, Sequence, Tuple

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from common.checks import check_finite_loss
from common.priors.clip import CLIPModel
from zeroforge.autoencoder import OccSimpleDecoder
from zeroforge.checkpoints import latent_dim_in, load_autoencoder, load_flow, load_part, read_state_dict
from zeroforge.clip_renders import encode_renders
from zeroforge.evaluation import query_metrics
from zeroforge.flow import ConditionalRealNVP
from zeroforge.generator import TextToShapeMixin, check_latent_sizes, decode_grid, soft_binarize
from zeroforge.geometry import sample_views
from zeroforge.losses import ContrastAxis, DupMode, zeroforge_loss
from zeroforge.prompts import DEFAULT_TEMPLATES, build_prompt_batch, resolve_queries
from zeroforge.renderer import VoxelEARenderer
from zeroforge.visualize import log_shape_grid
from zeroforge.zeroconv import ZeroConvDecoder

__all__ = ["ZeroForgeSystem"]


class ZeroForgeSystem(TextToShapeMixin, LightningModule):
    """ZeroForge fine-tuning (and feed-forward text -> shape generation through :meth:`generate`).

    Args:
        clip: the frozen CLIP (ViT-B/32 in the paper; its width must equal ``flow.cond_dim``).
        queries: the k text queries; or
        query_set: the name of a shipped query set (``object_five_with_original``, ``four``, ``paper_twelve``, ...).
        novel_queries: queries outside the pretraining classes (grouping of the evaluation only).
        decoder: CLIP-Forge's decoder architecture (default: width 128, 5 blocks, 128-d latent).
        flow: CLIP-Forge's flow architecture (default: 128-d, condition 512, hidden 1024, 5 blocks).
        renderer: the differentiable renderer ω (default: the analytic EA renderer, A5).
        autoencoder_ckpt: stage-1 checkpoint (the decoder's initialisation).
        flow_ckpt: stage-2 checkpoint (the flow's initialisation).
        allow_random_init: TEST ONLY: with a checkpoint set to null, start that part from random weights
            (the paper's E4 ablation shows this yields only blobs).
        zeroconv: wrap the decoder's residual blocks with trainable copies and zero maps (§3.9).
        zeroconv_freeze_io: also freeze ``fc_p``, ``fc_z``, ``fc_out`` (A6; the code trains them).
        copies_per_query: rows per query in the batch (3, [P]).
        templates: prompt templates, one drawn per slot at start ([C]).
        template_seed: seed of that draw (identical on every DDP rank).
        grid_resolution: N of the training grid (128 [P]; 64 is the reduced-budget setting, A18).
        beta: sharpness β of the soft binarisation (200 [P]; the code uses 150, A12).
        gamma: threshold γ (0.05).
        lambda_sim: weight of ``L_sim`` (1).
        lambda_contrast: λ_C (0.01 [P], 0.1 for near-synonym sets, A12/A13).
        tau: inverse temperature τ (50).
        contrast_axis: ``text`` (code), ``image`` (paper) or ``symmetric`` (A2).
        dup_mode: ``zero`` (code) or ``exclude`` (A2).
        views_per_sample: random views per row, embeddings averaged (1, A4).
        clip_normalize_renders: CLIP mean/std on renders (True; the code skips it, A7).
        lr: Adam learning rate (1e-5 [P]).
        betas: Adam betas ((0.9, 0.999)).
        decode_chunk: points per decoder call (None: all; set it with ``checkpoint_decoder`` at 128³).
        checkpoint_decoder: recompute decoder chunks in backward (activation checkpointing, A18).
        eval_resolution: grid size of the validation shapes (default: ``grid_resolution``).
    """

    def __init__(
        self,
        clip: CLIPModel,
        queries: Optional[List[str]] = None,
        query_set: Optional[str] = None,
        novel_queries: Optional[List[str]] = None,
        decoder: Optional[OccSimpleDecoder] = None,
        flow: Optional[ConditionalRealNVP] = None,
        renderer: Optional[VoxelEARenderer] = None,
        autoencoder_ckpt: Optional[str] = None,
        flow_ckpt: Optional[str] = None,
        allow_random_init: bool = False,
        zeroconv: bool = True,
        zeroconv_freeze_io: bool = False,
        copies_per_query: int = 3,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        template_seed: int = 0,
        grid_resolution: int = 128,
        beta: float = 200.0,
        gamma: float = 0.05,
        lambda_sim: float = 1.0,
        lambda_contrast: float = 0.01,
        tau: float = 50.0,
        contrast_axis: ContrastAxis = "text",
        dup_mode: DupMode = "zero",
        views_per_sample: int = 1,
        clip_normalize_renders: bool = True,
        lr: float = 1e-5,
        betas: Tuple[float, float] = (0.9, 0.999),
        decode_chunk: Optional[int] = None,
        checkpoint_decoder: bool = False,
        eval_resolution: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["clip", "decoder", "flow", "renderer"])
        self.queries = resolve_queries(queries, query_set)
        unknown = [q for q in (novel_queries or []) if q not in self.queries]
        if unknown:
            raise ValueError(f"novel_queries {unknown} are not among the queries {self.queries}")
        self.batch = build_prompt_batch(self.queries, copies_per_query, templates, template_seed)
        self.clip = clip
        base = decoder if decoder is not None else OccSimpleDecoder()
        self.flow = (flow if flow is not None else ConditionalRealNVP()).eval()  # A9, see train()
        check_latent_sizes(self.flow, base)
        self.decoder = ZeroConvDecoder(base, zeroconv_freeze_io) if zeroconv else base
        self.renderer = renderer if renderer is not None else VoxelEARenderer()
        self.register_buffer("text_emb", torch.zeros(0), persistent=False)  # [B, D], set in setup
        self.register_buffer("query_id", self.batch.query_id, persistent=False)  # [B]
        self._noise_gen: Optional[torch.Generator] = None
        self.strict_loading = False  # CLIP is never in the checkpoint

    # ------------------------------------------------------------------ parts
    @property
    def base_decoder(self) -> OccSimpleDecoder:
        return self.decoder.base if isinstance(self.decoder, ZeroConvDecoder) else self.decoder

    def load_clip(self) -> None:
        """Load CLIP, check its width against the flow, and embed the fixed prompts (no grad)."""
        self.clip.load()
        check_latent_sizes(self.flow, self.base_decoder, self.clip.embed_dim)
        self.text_emb = self.clip.encode_text(self.batch.prompts).to(self.query_id.device)

    def load_pretrained(self) -> None:
        """Initialise the decoder and flow from the CLIP-Forge checkpoints (or keep random weights, tests only)."""
        h = self.hparams
        for key in ("autoencoder_ckpt", "flow_ckpt"):
            if h[key] is None and not h.allow_random_init:
                raise ValueError(f"model.init_args.{key} is not set: ZeroForge starts from CLIP-Forge (train "
                                 "experiments/clipforge_autoencoder.yaml and clipforge_flow.yaml first). "
                                 "allow_random_init: true is for tests only.")
        dec_state = None
        if h.autoencoder_ckpt is not None:
            dec_state = load_autoencoder(h.autoencoder_ckpt, "model.init_args.autoencoder_ckpt", decoder=self.base_decoder)
        if h.flow_ckpt is not None:
            d = latent_dim_in(dec_state, "decoder") if dec_state is not None else self.base_decoder.latent_dim
            load_flow(h.flow_ckpt, "model.init_args.flow_ckpt", self.flow, d, h.autoencoder_ckpt)
        if isinstance(self.decoder, ZeroConvDecoder):
            self.decoder.reset_branch()  # trainable copies := the pretrained blocks, Z := 0

    def setup(self, stage: str) -> None:
        self.load_clip()
        self.load_pretrained()  # a resumed run's checkpoint is restored after this and overrides it

    def prepare_inference(self, ckpt: Optional[str] = None) -> "ZeroForgeSystem":
        """Ready :meth:`generate`: the ZeroForge checkpoint ``ckpt``, or (None) the CLIP-Forge initialisation."""
        self.load_clip()
        if ckpt is None:
            self.load_pretrained()
        else:
            state = read_state_dict(ckpt, "ZeroForge", "--ckpt")
            load_part(self, {k: v for k, v in state.items() if k.startswith(("flow.", "decoder."))}, ckpt, "ZeroForge",
                      "use the config.yaml of the run that wrote this checkpoint")
        return self.eval()

    def train(self, mode: bool = True) -> "ZeroForgeSystem":
        super().train(mode)
        # A9: the flow stays in eval mode (its BatchNormFlow statistics are the pretraining ones; our inverse
        # pass reads only the running statistics anyway, so this guards any direct() use)
        self.flow.eval()
        return self

    def on_fit_start(self) -> None:
        # independent noise and views per DDP rank, reproducible from the global seed
        self._noise_gen = torch.Generator().manual_seed(torch.initial_seed() + 7919 * self.global_rank)

    # ------------------------------------------------------------------ training
    def compute_losses(self, generator: Optional[torch.Generator] = None) -> dict:
        """One ZeroForge step's loss terms (§2) for the fixed prompt batch."""
        h, T = self.hparams, self.text_emb
        B, V = T.shape[0], h.views_per_sample
        z = torch.randn(B, self.flow.latent_dim, generator=generator).to(T)  # fresh, independent per row
        s = self.flow.sample(z, T)  # [B, d] = F⁻¹(z; g(t))
        o = decode_grid(self.decoder, s, h.grid_resolution, h.decode_chunk, h.checkpoint_decoder)  # [B, N, N, N]
        vox = soft_binarize(o.float(), h.beta, h.gamma)  # eq. 5
        theta, phi = sample_views(B * V, generator)  # one view per row per step (A4)
        img = self.renderer(vox.repeat_interleave(V, 0), theta.to(vox), phi.to(vox)).image  # [B·V, 3, R, R]
        emb = encode_renders(self.clip, img, h.clip_normalize_renders, V)  # [B, D]
        return zeroforge_loss(emb, T, self.query_id, h.lambda_sim, h.lambda_contrast, h.tau, h.contrast_axis, h.dup_mode)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        terms = self.compute_losses(self._noise_gen)
        check_finite_loss(terms["loss"], self.global_step, terms)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=True, batch_size=self.text_emb.shape[0])
        return terms["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        N = self.hparams.eval_resolution or self.hparams.grid_resolution
        _, vox = self.generate(self.queries, "zero", N)  # z = 0 per query, hard threshold (§3.12)
        metrics = query_metrics(self.clip, self.renderer, vox, self.queries, self.hparams.novel_queries or [],
                                self.hparams.templates, self.hparams.clip_normalize_renders)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, batch_size=len(self.queries))
        log_shape_grid(self.trainer, self.renderer, vox, "val/shapes", f"shapes_step{self.global_step:07d}.png")

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.hparams.lr, betas=tuple(self.hparams.betas))
