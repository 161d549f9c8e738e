"""Stage 2: text → shape test-time optimisation of the mapper (specs/iss.md §5), a LightningModule.

Per prompt (one item of :class:`iss.data.PromptDataModule`)::

    f_T = normalize(CLIP.encode_text(T))             # mapper input and CLIP target
    M'  = copy(M from stage 1); D, CLIP frozen        # only M' is optimised [P][C]
    opt = Adam(M', lr 1e-4), fresh state              # [C]
    for it in 1..20:                                  # n_iters [P][C]
        cams = 10 random cameras, translation × 1.5   # n_views, cam_scale [C]
        R, h = render(D, M'(f_T), cams) at 90²        # DVR ray marching + secant, implicit depth gradient
        L = Σ_v 4·(1 − cos(E_I(R_v), f_T)) + 3·bg_loss(R_v, h_v)   # λ_C, λ_bg [C]
        one optimiser step per iteration (after all views)

Diversified generation (§5.1, ``diversity: true``): the mapper input is ``normalize(τ1·f_T + (1−τ1)·z1)`` and
the CLIP target ``τ2·f_T + (1−τ2)·z2`` with unit Gaussian noise drawn from the item's seed.

Everything runs under manual optimisation so that ``trainer.global_step`` counts optimiser steps
(``n_iters`` per prompt). For every prompt the run folder gets ``prompts/<k>_<slug>/`` with ``result.pt``
(``M'``'s weights, the shape code, the prompt; loads with ``weights_only=True``), ``mesh.ply`` (marching cubes
at τ = 0.5 with vertex colours), ``views.png`` (previews) and ``turntable.mp4``, plus ``metrics.json``. With
an ``eval_clip`` (a CLIP other than the one optimised) the stage-1-only shape ``D(·, M(f_T))`` and the stage-2
shape are both scored by R-precision and CLIP similarity; ``stage2_metrics.json`` sums the run up.
"""

import copy
import json
import re
import time
from pathlib import Path
from typing import Dict, List, Literal, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from common.checks import check_finite_loss
from common.io import atomic_path, atomic_write_text
from common.metrics import mean_sem
from common.priors.clip import CLIPModel
from iss.cameras import DVRCameras, ViewSampler
from iss.checkpoints import CheckpointMismatchError, check_decoder_meta, decoder_meta, load_part, read_checkpoint, sub_state
from iss.clip_features import ClipNorm, ResizeMode, embed_dim, embed_renders, perturb
from iss.losses import BgForm, bg_loss, clip_loss
from iss.models import CLIP2ShapeMapper, DVRDecoder
from iss.renderer import DVRRenderer

__all__ = ["Stage2System", "load_stage1", "slugify", "white_background"]


def slugify(text: str, max_len: int = 48) -> str:
    """File-system-safe short name of a prompt."""
    s = re.sub(r"[^a-zA-Z0-9]+", "_", text.strip().lower()).strip("_")
    return (s or "prompt")[:max_len]


def white_background(rgb: Tensor, hit: Tensor) -> Tensor:
    """Paint misses white (ISS's previews [C])."""
    return torch.where(hit[..., None], rgb, torch.ones_like(rgb))


def load_stage1(path: Optional[str], mapper: Optional[CLIP2ShapeMapper], decoder: Optional[DVRDecoder],
                config_key: str) -> dict:
    """Load ``M`` and the fine-tuned ``D`` from a stage-1 checkpoint, refusing other stages and other SVR models."""
    what = "ISS stage-1"
    state, meta = read_checkpoint(path, what, config_key)
    stage = meta.get("stage")
    if stage == "svr" or (stage is None and any(k.startswith("encoder.") for k in state) and
                          not any(k.startswith("mapper.") for k in state)):
        raise CheckpointMismatchError(f"{path} is an SVR (stage-0) checkpoint, not a stage-1 one: train stage 1 on it "
                                      f"(experiments/iss_stage1.yaml, svr_ckpt) and point {config_key} at that run's checkpoint.")
    if stage is not None and stage != "stage1":
        raise CheckpointMismatchError(f"{path} is a '{stage}' checkpoint; {config_key} takes a stage-1 checkpoint.")
    hint = (f"the stage-1 run used a different SVR model / mapper: make model.init_args.decoder and mapper match it, "
            f"or point {config_key} at a stage-1 checkpoint trained on this SVR model")
    if decoder is not None:
        check_decoder_meta(meta, decoder, path, what, config_key)
        load_part(decoder, sub_state(state, "decoder.", path, what), path, what, hint)
    if mapper is not None:
        m_state = sub_state(state, "mapper.", path, what)
        out_dim = next((v.shape[0] for k, v in reversed(list(m_state.items())) if k.endswith("weight")), None)
        if decoder is not None and out_dim is not None and out_dim != decoder.c_dim:
            raise CheckpointMismatchError(f"{path}: the stage-1 mapper outputs {out_dim}-d codes but the configured SVR decoder "
                                          f"takes c_dim={decoder.c_dim}: the checkpoint comes from a different SVR model. {hint}")
        load_part(mapper, m_state, path, what, hint)
    return meta


class Stage2System(LightningModule):
    """Stage-2 text → shape optimisation of the mapper, one prompt per training item.

    Args:
        clip: the frozen CLIP whose consistency is optimised (ViT-B/32 for the paper).
        decoder, mapper: architectures of the stage-1 run (weights from ``stage1_ckpt``).
        renderer: the DVR renderer (128 ray samples at test time [S]).
        views: random cameras (ISS: random training cameras; ``camera_files`` of DVR ``cameras.npz``).
        stage1_ckpt: the stage-1 checkpoint (``experiments/iss_stage1.yaml``).
        svr_ckpt: the "w/o stage 1" ablation (Table 1, spec §10.3): with ``stage1_ckpt: null``, ``D`` is the stage-0
            SVR decoder (no ``L_bg`` fine-tuning) and ``M`` starts from its random initialisation (seeded) [P][S].
        allow_random_init: TEST ONLY — with ``stage1_ckpt: null`` start from freshly initialised ``M`` and ``D``.
        n_iters: optimiser steps per prompt (20, [P][C]).
        n_views: views per iteration (10, [C]).
        render_res: render size (90, [C]); renders are resized to CLIP's input size.
        cam_scale: world_mat translation multiplier (1.5, [C]).
        lr: Adam learning rate of ``M'`` (1e-4, [C]).
        lambda_clip: ``λ_C`` (4, [C]).
        lambda_bg: ``λ_bg`` (3, [C]); 0 is the "w/o L_bg2" ablation.
        bg_loss_form: ``l1_mean`` (code) or ``l2_sum`` (paper).
        clip_norm, clip_resize_mode, transpose_clip_input: CLIP input of renders (§2.1; defaults: CLIP's mean/std,
            nearest resize, upright).
        clip_background: what CLIP sees where a ray misses the shape. ``field``: the colour field ``D_c`` at the miss
            point, which ``L_bg`` pushes to white (the code, [C]); ``white``: white, so only the shape's own pixels
            carry the prompt. With ``field`` the optimisation can paint the prompt into the off-surface colour field
            while shrinking the shape, which the mesh and any white-background render do not show (measured on
            shapeworld, iss/README.md) [S].
        n_steps: ray samples while optimising (None: the renderer's).
        diversity: diversified generation (§5.1); tau1, tau2: its mixing weights (0.75 / 0.9, [S]).
        export_mesh: write ``mesh.ply`` per prompt; mesh_resolution_0, mesh_upsampling_steps, mesh_bound: the
            marching-cubes grid (32³ + 3 upsamplings over [−0.5, 0.5]³, [C]).
        n_preview_views, preview_res: the preview images (5 views, 100², [C]).
        video_frames, video_res: the turntable video (0 frames: none).
        eval_clip: a CLIP **different** from ``clip`` for R-precision / similarity (None: no evaluation).
        n_eval_views, eval_res: views per shape for evaluation.
        snapshot_iters: iterations after which ``M'`` is also kept (the code checkpoints at local iterations 5 and 15;
            results use iteration 20, [C]); each is written as ``result_it<k>.pt`` beside ``result.pt``.
    """

    def __init__(self, clip: CLIPModel, decoder: Optional[DVRDecoder] = None, mapper: Optional[CLIP2ShapeMapper] = None,
                 renderer: Optional[DVRRenderer] = None, views: Optional[ViewSampler] = None, stage1_ckpt: Optional[str] = None,
                 svr_ckpt: Optional[str] = None, allow_random_init: bool = False, n_iters: int = 20, n_views: int = 10, render_res: int = 90,
                 cam_scale: float = 1.5, lr: float = 1e-4, lambda_clip: float = 4.0, lambda_bg: float = 3.0,
                 bg_loss_form: BgForm = "l1_mean", clip_norm: ClipNorm = "clip", clip_resize_mode: ResizeMode = "nearest",
                 transpose_clip_input: bool = False, clip_background: Literal["field", "white"] = "field",
                 n_steps: Optional[int] = None, diversity: bool = False,
                 tau1: float = 0.75, tau2: float = 0.9, export_mesh: bool = True, mesh_resolution_0: int = 32,
                 mesh_upsampling_steps: int = 3, mesh_bound: float = 0.5, n_preview_views: int = 5, preview_res: int = 100,
                 video_frames: int = 30, video_res: int = 100, eval_clip: Optional[CLIPModel] = None, n_eval_views: int = 8,
                 eval_res: Optional[int] = None, snapshot_iters: List[int] = [5, 15]) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["clip", "decoder", "mapper", "renderer", "views", "eval_clip"])
        if n_iters < 0 or n_views < 1 or render_res < 2:
            raise ValueError(f"need n_iters >= 0, n_views >= 1, render_res >= 2; got {n_iters}, {n_views}, {render_res}")
        if stage1_ckpt is not None and svr_ckpt is not None:
            raise ValueError("give stage1_ckpt (ISS) or svr_ckpt (the 'w/o stage 1' ablation), not both")
        if clip_background not in ("field", "white"):
            raise ValueError(f"clip_background must be 'field' (the code) or 'white', got {clip_background!r}")
        if any(k < 1 for k in snapshot_iters):
            raise ValueError(f"snapshot_iters counts optimiser steps from 1; got {snapshot_iters}")
        self.clip, self.eval_clip = clip, eval_clip
        self.decoder = (decoder if decoder is not None else DVRDecoder()).requires_grad_(False)
        self.mapper = mapper if mapper is not None else CLIP2ShapeMapper()
        self.renderer = renderer if renderer is not None else DVRRenderer()
        self.views = views if views is not None else ViewSampler()
        if self.mapper.c_dim != self.decoder.c_dim:
            raise ValueError(f"mapper c_dim {self.mapper.c_dim} != decoder c_dim {self.decoder.c_dim}")
        self.automatic_optimization = False
        self.strict_loading = False
        self._mapper_init: Optional[Dict[str, Tensor]] = None
        self._results: List[dict] = []

    # ------------------------------------------------------------------ parts
    def load_pretrained(self) -> None:
        """Load CLIP(s) and the stage-1 mapper and decoder (once); remember ``M`` to reset it per prompt."""
        self.clip.load()
        if self.eval_clip is not None:
            self.eval_clip.load()
        d = embed_dim(self.clip)
        if d != self.mapper.in_dim:
            raise ValueError(f"the CLIP embeds in {d} dims but mapper.in_dim is {self.mapper.in_dim} (stage 1 used another CLIP?)")
        if self._mapper_init is not None:
            return
        h = self.hparams
        if h.svr_ckpt is not None:  # "w/o stage 1": stage-0 D, random M
            from iss.stage1 import load_svr

            load_svr(h.svr_ckpt, None, self.decoder, "model.init_args.svr_ckpt")
        elif h.stage1_ckpt is not None or not h.allow_random_init:
            meta = load_stage1(h.stage1_ckpt, self.mapper, self.decoder, "model.init_args.stage1_ckpt")
            if meta.get("clip_dim") is not None and int(meta["clip_dim"]) != d:
                raise CheckpointMismatchError(f"{h.stage1_ckpt}: stage 1 was trained with a {meta['clip_dim']}-d CLIP, this run's CLIP is {d}-d")
        self._mapper_init = copy.deepcopy(self.mapper.state_dict())

    def setup(self, stage: str) -> None:
        if self._trainer is not None and self.trainer.world_size > 1:
            raise ValueError("stage 2 optimises one mapper per prompt: data parallelism would average the gradients of "
                             "different prompts. Run one process per prompt shard instead (PromptDataModule shard / num_shards).")
        self.load_pretrained()

    def train(self, mode: bool = True) -> "Stage2System":
        super().train(mode)
        self.decoder.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("mapper.")}
        checkpoint["iss"] = {"stage": "stage2", "c_dim": int(self.mapper.c_dim), "decoder": decoder_meta(self.decoder),
                             "stage1_ckpt": str(self.hparams.stage1_ckpt),
                             "svr_ckpt": self.hparams.svr_ckpt}

    def configure_optimizers(self):
        return torch.optim.Adam(self.mapper.parameters(), lr=self.hparams.lr)

    # ------------------------------------------------------------------ the optimisation
    def text_features(self, prompt: str, generator: Optional[torch.Generator] = None):
        """``(mapper input [1, D], CLIP target [1, D])`` of a prompt (perturbed with ``diversity``)."""
        f_t = F.normalize(self.clip.encode_text([prompt]).float(), dim=-1).to(self.device)
        if not self.hparams.diversity:
            return f_t, f_t
        x = F.normalize(perturb(f_t, self.hparams.tau1, generator), dim=-1)
        return x, perturb(f_t, self.hparams.tau2, generator)

    def step_losses(self, x: Tensor, target: Tensor, cams: DVRCameras) -> Dict[str, Tensor]:
        """One iteration's losses over all views (rendered as one batch)."""
        h = self.hparams
        c = self.mapper(x).expand(len(cams), -1)  # [V, C]
        out = self.renderer.render_image(self.decoder, c, cams, h.render_res, n_steps=h.n_steps)
        images = out.chw() if h.clip_background == "field" else white_background(out.rgb, out.hit).permute(0, 3, 1, 2)
        emb = embed_renders(self.clip, images, h.clip_resize_mode, h.clip_norm, h.transpose_clip_input)
        l_clip = clip_loss(emb, target)
        l_bg = sum(bg_loss(out.rgb[v], out.hit[v], h.bg_loss_form) for v in range(len(cams)))  # Σ_v, per-view mean [C]
        return {"loss": h.lambda_clip * l_clip + h.lambda_bg * l_bg, "loss_clip": l_clip, "loss_bg": l_bg,
                "hit_fraction": out.hit.float().mean()}

    def optimise(self, prompt: str, seed: int = 0, optimizer=None) -> dict:
        """Run stage 2 for one prompt from the stage-1 mapper; returns the trajectory and the final code.

        Args:
            prompt: the text.
            seed: seeds the cameras and the diversity noise.
            optimizer: a (Lightning) optimiser over the mapper; None builds a fresh Adam (use outside a Trainer).
        """
        h = self.hparams
        if self._mapper_init is None:
            self.load_pretrained()
        self.mapper.load_state_dict(self._mapper_init)
        if optimizer is None:
            optimizer = torch.optim.Adam(self.mapper.parameters(), lr=h.lr)
        else:
            inner = getattr(optimizer, "optimizer", optimizer)
            inner.state.clear()  # fresh Adam state per prompt [C]
        g = torch.Generator().manual_seed(int(seed))
        x, target = self.text_features(prompt, g)
        history: Dict[str, List[float]] = {"loss": [], "loss_clip": [], "loss_bg": [], "hit_fraction": []}
        snapshots: Dict[int, dict] = {}  # iteration → {"code", "mapper"} (the code's intermediate checkpoints)
        start = time.perf_counter()
        for it in range(h.n_iters):
            cams = self.views.sample(h.n_views, g).scale_translation(h.cam_scale).to(self.device)
            terms = self.step_losses(x, target, cams)
            check_finite_loss(terms["loss"], it, terms, f"Prompt {prompt!r}: lower the stage-2 learning rate.")
            optimizer.zero_grad()
            if self._trainer is not None:
                self.manual_backward(terms["loss"])
            else:
                terms["loss"].backward()
            optimizer.step()
            for k in history:
                history[k].append(float(terms[k].detach()))
            if it + 1 in h.snapshot_iters and it + 1 < h.n_iters:
                with torch.no_grad():
                    snapshots[it + 1] = {"code": self.mapper(x)[0].detach().cpu(),
                                         "mapper": {k: v.detach().cpu().clone() for k, v in self.mapper.state_dict().items()}}
        seconds = time.perf_counter() - start
        with torch.no_grad():
            code = self.mapper(x)[0].detach()
        return {"prompt": prompt, "seed": int(seed), "mapper_input": x[0].detach().cpu(), "target": target[0].detach().cpu(),
                "code": code.cpu(), "history": history, "seconds": seconds, "snapshots": snapshots}

    @torch.no_grad()
    def stage1_code(self, x: Tensor) -> Tensor:
        """``M(x)`` with the stage-1 mapper (the "w/o stage 2" baseline)."""
        mapper = copy.deepcopy(self.mapper)
        mapper.load_state_dict(self._mapper_init)
        return mapper(x)[0]

    @torch.no_grad()
    def render_code(self, code: Tensor, cams: DVRCameras, res: int) -> Tensor:
        """``[V, H, W, 3]`` renders of a shape code with white misses."""
        c = code.reshape(1, -1).to(self.device).expand(len(cams), -1)
        out = self.renderer.render_image(self.decoder, c, cams.to(self.device), res, ray_chunk=4096)
        return white_background(out.rgb, out.hit).clamp(0, 1)

    # ------------------------------------------------------------------ Lightning
    def training_step(self, batch: dict, batch_idx: int) -> None:
        prompt, seed = batch["prompt"], int(batch.get("seed", 0))
        result = self.optimise(prompt, seed, self.optimizers())
        hist = result["history"]
        if hist["loss"]:
            self.log_dict({"train/loss": hist["loss"][-1], "train/loss_clip": hist["loss_clip"][-1],
                           "train/loss_bg": hist["loss_bg"][-1], "train/loss_clip_first": hist["loss_clip"][0],
                           "train/seconds_per_prompt": result["seconds"]}, batch_size=1)
        self._export(batch, result)

    def evaluate_code(self, code: Tensor, prompt: str, pool: Optional[List[str]] = None, true_index: int = 0,
                      clip: Optional[CLIPModel] = None) -> dict:
        """CLIP proxies of one shape with ``eval_clip``: mean similarity to the prompt over ``n_eval_views`` ring views and,
        with a caption ``pool``, the fraction of those views that retrieve ``pool[true_index]`` (R-precision@1) and the
        caption each view retrieved (``retrieved``: what a miss was read as).

        ``clip`` scores with another CLIP instead (e.g. the guidance CLIP, to tell an optimisation that fails from one
        that only fools the CLIP it optimised); reported figures use ``eval_clip``."""
        from iss.metrics import clip_r_precision, clip_similarity

        if clip is None and self.eval_clip is None:
            raise ValueError("evaluate_code needs eval_clip (a CLIP other than the optimised one)")
        scorer = clip if clip is not None else self.eval_clip
        h = self.hparams
        cams = self.views.ring(h.n_eval_views).scale_translation(h.cam_scale)
        res = h.eval_res or scorer.image_size[0]
        imgs = self.render_code(code, cams, res).permute(0, 3, 1, 2)
        out = {"clip_similarity": clip_similarity(scorer, imgs, prompt)}
        if pool:
            rp = clip_r_precision(scorer, imgs, pool, [int(true_index)] * imgs.shape[0])
            out["r_precision"], out["retrieved"] = rp.value, [pool[int(i)] for i in rp.retrieved]
        return out

    def _export(self, batch: dict, result: dict) -> None:
        from common.callbacks import log_media
        from common.export import image_grid, save_image, save_mesh, save_video
        from iss.mesh import code_field, extract_mesh

        h = self.hparams
        trainer = self.trainer
        root = Path(trainer.default_root_dir) / "prompts"
        name = f"{int(batch.get('index', 0)):03d}_{int(batch.get('variant', 0))}_{slugify(result['prompt'])}"
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        record = {k: v for k, v in result.items() if k not in ("mapper_input", "target", "code", "snapshots")}
        saved = dict(prompt=result["prompt"], seed=result["seed"], code=result["code"], mapper_input=result["mapper_input"],
                     target=result["target"], mapper={k: v.detach().cpu() for k, v in self.mapper.state_dict().items()},
                     stage1_ckpt=str(h.stage1_ckpt), decoder=decoder_meta(self.decoder), stage="stage2_result",
                     iteration=h.n_iters)
        files = {"result.pt": saved}
        for it, snap in result.get("snapshots", {}).items():
            files[f"result_it{it:03d}.pt"] = {**saved, **snap, "iteration": it}
        for fname, payload in files.items():
            with atomic_path(folder / fname) as tmp:
                torch.save(payload, tmp)
        pool = getattr(getattr(trainer, "datamodule", None), "retrieval_pool", None)
        if self.eval_clip is not None:
            true = int(batch.get("retrieval_index", 0))
            record["stage1"] = self.evaluate_code(self.stage1_code(result["mapper_input"][None].to(self.device)),
                                                  result["prompt"], pool, true)
            record["stage2"] = self.evaluate_code(result["code"], result["prompt"], pool, true)
            self.log_dict({f"eval/{s}_{k}": v for s in ("stage1", "stage2") for k, v in record[s].items()
                           if isinstance(v, (int, float))}, batch_size=1)
        if h.n_preview_views > 0:
            cams = self.views.ring(h.n_preview_views).scale_translation(h.cam_scale)
            grid = image_grid(self.render_code(result["code"], cams, h.preview_res).cpu(), nrow=h.n_preview_views)
            log_media(trainer, f"prompts/{name}/views", save_image(grid, folder / "views.png"), "image")
        if h.video_frames > 0:
            cams = self.views.ring(h.video_frames).scale_translation(h.cam_scale)
            frames = self.render_code(result["code"], cams, h.video_res).cpu()
            log_media(trainer, f"prompts/{name}/turntable", save_video(frames, folder / "turntable.mp4"), "video")
        if h.export_mesh:
            logits, colours = code_field(self.decoder, result["code"].to(self.device))
            mesh = extract_mesh(logits, colours, h.mesh_resolution_0, h.mesh_upsampling_steps, h.mesh_bound)
            record["mesh_vertices"], record["mesh_faces"] = int(len(mesh.vertices)), int(len(mesh.faces))
            if len(mesh.faces):
                log_media(trainer, f"prompts/{name}/mesh", save_mesh(mesh, folder / "mesh.ply"), "mesh")
        atomic_write_text(folder / "metrics.json", json.dumps(record, indent=2))
        self._results.append(record)

    def on_train_end(self) -> None:
        if not self._results:
            return
        summary: dict = {"n_prompts": len(self._results),
                         "seconds_per_prompt": sum(r["seconds"] for r in self._results) / len(self._results),
                         "n_iters": self.hparams.n_iters, "n_views": self.hparams.n_views, "render_res": self.hparams.render_res}
        for stage in ("stage1", "stage2"):
            rows = [r[stage] for r in self._results if stage in r]
            if rows:
                for key in [k for k, v in rows[0].items() if isinstance(v, (int, float))]:
                    vals = [row[key] for row in rows]
                    summary[f"{stage}_{key}"] = sum(vals) / len(vals)
                if "r_precision" in rows[0] and len(rows) > 1:  # s.e. over prompts: one shape's views are not independent
                    summary[f"{stage}_r_precision_sem"] = mean_sem([r["r_precision"] for r in rows])[1]
        atomic_write_text(Path(self.trainer.default_root_dir) / "stage2_metrics.json", json.dumps(summary, indent=2))
