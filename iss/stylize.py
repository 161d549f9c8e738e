"""Text-guided stylisation (specs/iss.md §6), a LightningModule; optional after stage 2.

The shape code ``c = M'(f_T)`` of a stage-2 result stays fixed; a style text ``T_s`` (e.g. "wooden") gives the
CLIP target ``f_s``. Per iteration: ``n_views`` random cameras pulled back by ``1 + U(a, b)``, renders at
``render_res``, the renders put on random backgrounds (``R̃ = h·R + (1 − h)·bg``, ``h`` detached [P]), then

* ``mode: texture`` (§6.1) — ``D`` is split into ``D_o`` (occupancy) and ``D_c`` (colour) copies; only ``D_c`` is
  optimised with ``λ_C·(1 − cos(E_I(R̃), f_s)) + λ_bg·L_bg`` (40 / 30 [C]). Occupancy stays bit-identical.
* ``mode: shape_texture`` (§6.2) — all of ``D`` is optimised with ``λ_C·(1 − cos) + λ_P·L_P`` (40 / 100 [C]),
  ``L_P = mean_p |D'_o(p) − D_o(p)|`` against a frozen copy ``D_0`` at the rays' points (eq. 5). The code's
  "white surface" term is behind ``use_white_surface_term``.

Losses are summed over the views (``stylize_last_view_only`` reproduces the code, which resets the loss inside
its view loop). Adam 1e-4 [C]; the run length is ``trainer.max_steps`` (500 suggested [S]). The datamodule is
:class:`common.data.CameraDataModule` (an index stream). At the end the mesh, previews and a turntable are
written to ``media/``; the checkpoint holds the stylised decoder.
"""

import copy
from pathlib import Path
from typing import Dict, Literal, Optional, Sequence

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from common.checks import check_finite_loss
from common.priors.clip import CLIPModel
from iss.cameras import ViewSampler
from iss.checkpoints import CheckpointMismatchError, decoder_meta
from iss.clip_features import ClipNorm, ResizeMode, embed_renders
from iss.losses import BackgroundKind, BgForm, augment_background, bg_loss, prior_loss, random_backgrounds
from iss.models import DVRDecoder, SplitDecoder
from iss.renderer import DVRRenderer
from iss.stage2 import load_stage1, white_background

__all__ = ["StylizeSystem", "load_stage2_result"]


def load_stage2_result(path: str, decoder: DVRDecoder, config_key: str = "model.init_args.stage2_result") -> dict:
    """A stage-2 ``result.pt`` (``weights_only=True``), checked against the configured decoder."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"stage-2 result not found: {file} ({config_key}); stage 2 writes "
                                "<run>/prompts/<k>_<prompt>/result.pt for every prompt")
    data = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("stage") != "stage2_result" or "code" not in data:
        raise CheckpointMismatchError(f"{file} is not a stage-2 result.pt ({config_key})")
    if data["code"].numel() != decoder.c_dim:
        raise CheckpointMismatchError(f"{file}: the shape code has {data['code'].numel()} dims but the decoder takes "
                                      f"c_dim={decoder.c_dim}: the result comes from a different SVR model")
    stored = data.get("decoder") or {}
    own = decoder_meta(decoder)
    if any(stored.get(k) not in (None, v) for k, v in own.items()):
        raise CheckpointMismatchError(f"{file} was produced with decoder {stored}, the configured decoder is {own}: "
                                      "use the stage-1 checkpoint and decoder of the stage-2 run")
    return data


class StylizeSystem(LightningModule):
    """Texture or shape-and-texture stylisation of one stage-2 shape toward a style text.

    Args:
        clip: the frozen CLIP.
        decoder: the SVR decoder architecture (weights from ``stage1_ckpt``).
        renderer: the DVR renderer.
        views: random cameras.
        style: the style text ``T_s``.
        mode: ``texture`` (§6.1) or ``shape_texture`` (§6.2).
        stage1_ckpt: the stage-1 checkpoint (its fine-tuned ``D``).
        stage2_result: a stage-2 ``result.pt`` (its shape code).
        allow_random_init: TEST ONLY — without them use a freshly initialised ``D`` and a random code.
        lr: Adam learning rate (1e-4 [C]).
        n_views: views per iteration (3 [C]); render_res: render size (100 [C]).
        cam_scale_range: translation multiplier ``1 + U(a, b)``: (1, 2) texture, (0.5, 1) shape [C]; None picks by mode.
        lambda_clip: ``λ_C`` (40 [C]).
        lambda_bg: ``λ_bg`` (None: 30 texture, 0 shape [C]).
        lambda_prior: ``λ_P`` (100 [C], shape mode).
        bg_loss_form: ``l1_mean`` (code) / ``l2_sum`` (paper).
        background: ``uniform`` (paper), ``code_texture`` / ``code_shape`` (code variants), ``none``.
        stylize_last_view_only: the code's quirk (only the last view's loss is back-propagated).
        use_white_surface_term: the code's extra term pushing near-white surface toward empty space (shape mode).
        prior_uniform_points: also evaluate ``L_P`` at this many uniform points in the box per step [S] (0: rays only).
        clip_norm, clip_resize_mode, transpose_clip_input: CLIP input of renders (§2.1).
        n_steps: ray samples (None: the renderer's).
        mesh_resolution_0, mesh_upsampling_steps, mesh_bound: final mesh grid; video_frames, video_res: turntable.
        seed: seed of cameras and backgrounds.
    """

    def __init__(self, clip: CLIPModel, decoder: Optional[DVRDecoder] = None, renderer: Optional[DVRRenderer] = None,
                 views: Optional[ViewSampler] = None, style: str = "wooden", mode: Literal["texture", "shape_texture"] = "texture",
                 stage1_ckpt: Optional[str] = None, stage2_result: Optional[str] = None, allow_random_init: bool = False,
                 lr: float = 1e-4, n_views: int = 3, render_res: int = 100, cam_scale_range: Optional[Sequence[float]] = None,
                 lambda_clip: float = 40.0, lambda_bg: Optional[float] = None, lambda_prior: float = 100.0,
                 bg_loss_form: BgForm = "l1_mean", background: BackgroundKind = "uniform", stylize_last_view_only: bool = False,
                 use_white_surface_term: bool = False, prior_uniform_points: int = 0, clip_norm: ClipNorm = "clip",
                 clip_resize_mode: ResizeMode = "nearest", transpose_clip_input: bool = False, n_steps: Optional[int] = None,
                 mesh_resolution_0: int = 32, mesh_upsampling_steps: int = 3, mesh_bound: float = 0.5, video_frames: int = 30,
                 video_res: int = 100, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["clip", "decoder", "renderer", "views"])
        if mode not in ("texture", "shape_texture"):
            raise ValueError(f"mode must be 'texture' or 'shape_texture', got {mode!r}")
        if not style or not style.strip():
            raise ValueError("StylizeSystem needs a non-empty style text")
        self.clip = clip
        base = decoder if decoder is not None else DVRDecoder()
        self.renderer = renderer if renderer is not None else DVRRenderer()
        self.views = views if views is not None else ViewSampler()
        self.mode = mode
        if mode == "texture":
            self.decoder = SplitDecoder(base)  # D_o / D_c
            self.decoder.occ.requires_grad_(False)
            self.decoder_ref = None
        else:
            self.decoder = base
            self.decoder_ref = copy.deepcopy(base).requires_grad_(False)  # D_0, refreshed after loading
        self.cam_range = tuple(cam_scale_range) if cam_scale_range is not None else ((1.0, 2.0) if mode == "texture" else (0.5, 1.0))
        self.lambda_bg = lambda_bg if lambda_bg is not None else (30.0 if mode == "texture" else 0.0)
        self.register_buffer("code", torch.zeros(base.c_dim))
        self.strict_loading = False
        self._loaded = False
        self._generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ parts
    def load_pretrained(self) -> None:
        """Load CLIP, the stage-1 decoder and the stage-2 code (once)."""
        self.clip.load()
        if self._loaded:
            return
        h = self.hparams
        base = self.decoder.occ if self.mode == "texture" else self.decoder
        if h.stage1_ckpt is not None or not h.allow_random_init:
            load_stage1(h.stage1_ckpt, None, base, "model.init_args.stage1_ckpt")
        if h.stage2_result is not None or not h.allow_random_init:
            if h.stage2_result is None:
                raise ValueError("model.init_args.stage2_result is not set: give a stage-2 result.pt "
                                 "(<stage-2 run>/prompts/<k>_<prompt>/result.pt)")
            self.code.copy_(load_stage2_result(h.stage2_result, base)["code"].reshape(-1).to(self.code))
        else:
            self.code.copy_(0.1 * torch.randn(self.code.shape[0], generator=torch.Generator().manual_seed(h.seed)))
        if self.mode == "texture":
            self.decoder.tex.load_state_dict(self.decoder.occ.state_dict())  # the split: identical copies
        else:
            self.decoder_ref.load_state_dict(self.decoder.state_dict())
        self._loaded = True

    def setup(self, stage: str) -> None:
        self.load_pretrained()
        if self._trainer is not None:  # DDP: each rank its own random views, gradients averaged (one scene)
            self._generator.manual_seed(self.hparams.seed + self.trainer.global_rank)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("decoder_ref.")}
        checkpoint["iss"] = {"stage": "stylize", "mode": self.mode, "style": self.hparams.style}

    def trainable_parameters(self):
        return list(self.decoder.tex.parameters()) if self.mode == "texture" else list(self.decoder.parameters())

    def configure_optimizers(self):
        return torch.optim.Adam(self.trainable_parameters(), lr=self.hparams.lr)

    # ------------------------------------------------------------------ losses
    def losses(self) -> Dict[str, Tensor]:
        """One iteration's losses (see the module docstring)."""
        h, g = self.hparams, self._generator
        cams = self.views.sample(h.n_views, g)
        lo, hi = self.cam_range
        cams = cams.scale_translation(1.0 + lo + (hi - lo) * torch.rand(h.n_views, generator=g)).to(self.device)
        c = self.code[None].expand(h.n_views, -1)
        out = self.renderer.render_image(self.decoder, c, cams, h.render_res, n_steps=h.n_steps)
        bg = random_backgrounds(h.n_views, h.background, g).to(self.device)
        mode = "multiply" if h.background.startswith("code") else "composite"
        rgb = augment_background(out.rgb, out.hit, bg, mode)
        emb = embed_renders(self.clip, rgb.permute(0, 3, 1, 2), h.clip_resize_mode, h.clip_norm, h.transpose_clip_input)
        target = torch.nn.functional.normalize(self.clip.encode_text([h.style]).float(), dim=-1).to(self.device)
        cos = torch.nn.functional.cosine_similarity(emb, target.expand_as(emb), dim=-1)  # [V]
        per_view = {"clip": 1.0 - cos,
                    "bg": torch.stack([bg_loss(out.rgb[v], out.hit[v], h.bg_loss_form) for v in range(h.n_views)])}
        if self.mode == "shape_texture":
            per_view["prior"], per_view["white"] = self._prior_terms(out, c)
        views = slice(h.n_views - 1, h.n_views) if h.stylize_last_view_only else slice(None)
        terms = {f"loss_{k}": v[views].sum() for k, v in per_view.items()}
        loss = h.lambda_clip * terms["loss_clip"] + self.lambda_bg * terms["loss_bg"]
        if self.mode == "shape_texture":
            loss = loss + h.lambda_prior * terms["loss_prior"]
            if h.use_white_surface_term:
                loss = loss + terms["loss_white"]
        terms["loss"] = loss
        terms["hit_fraction"] = out.hit.float().mean()
        return terms

    def _prior_terms(self, out, c: Tensor):
        """Per view: ``L_P`` at the rays' points (+ uniform points) and the code's white-surface term."""
        h = self.hparams
        V = c.shape[0]
        pts = out.points.reshape(V, -1, 3).detach()  # the fine-tuned model's ray points (hits p̂, misses x_pix) [C]
        if h.prior_uniform_points > 0:
            box = self.renderer.bound
            uni = (torch.rand(V, h.prior_uniform_points, 3, generator=self._generator) * 2 - 1).to(pts) * box
            pts = torch.cat([pts, uni], 1)
        new = self.decoder(pts, c, only_occupancy=True)
        with torch.no_grad():
            ref = self.decoder_ref(pts, c, only_occupancy=True)
        prior = torch.stack([prior_loss(new[v], ref[v]) for v in range(V)])
        # [C only]: hit points whose colour is near white (RGB sum > 2.8) -> push D_0's logit there down
        rgb = out.rgb.reshape(V, -1, 3)
        hit = out.hit.reshape(V, -1)
        white = []
        for v in range(V):
            sel = hit[v] & (rgb[v].sum(-1) > 2.8)
            white.append(self.decoder_ref(out.points.reshape(V, -1, 3)[v:v + 1, sel], c[v:v + 1], only_occupancy=True).mean()
                         if sel.any() else prior.new_zeros(()))
        return prior, torch.stack(white)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        terms = self.losses()
        check_finite_loss(terms["loss"], self.global_step, terms)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=1, prog_bar=False)
        return terms["loss"]

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def render_views(self, n: int, res: int) -> Tensor:
        """``[n, H, W, 3]`` ring renders with white misses."""
        cams = self.views.ring(n).scale_translation(1.0 + sum(self.cam_range) / 2).to(self.device)
        out = self.renderer.render_image(self.decoder, self.code[None].expand(n, -1), cams, res, ray_chunk=4096)
        return white_background(out.rgb, out.hit).clamp(0, 1).cpu()

    def on_train_end(self) -> None:
        from common.callbacks import log_media, save_and_log_image
        from common.export import image_grid, save_mesh, save_video
        from iss.mesh import code_field, extract_mesh

        if not self.trainer.is_global_zero:
            return
        h = self.hparams
        media = Path(self.trainer.default_root_dir) / "media"
        step = self.global_step
        save_and_log_image(self.trainer, "media/views", image_grid(self.render_views(5, h.video_res), nrow=5), f"views_{step:07d}.png")
        if h.video_frames > 0:
            path = save_video(self.render_views(h.video_frames, h.video_res), media / f"turntable_{step:07d}.mp4")
            log_media(self.trainer, "media/turntable", path, "video")
        logits, colours = code_field(self.decoder, self.code)
        mesh = extract_mesh(logits, colours, h.mesh_resolution_0, h.mesh_upsampling_steps, h.mesh_bound)
        if len(mesh.faces):
            log_media(self.trainer, "media/mesh", save_mesh(mesh, media / f"mesh_{step:07d}.ply"), "mesh")
