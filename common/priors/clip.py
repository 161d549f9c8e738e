"""Frozen CLIP image/text encoders over open_clip, with differentiable tensor preprocessing.

A model is named by an open_clip architecture plus a pretrained tag (``ViT-B-32``/``openai``,
``ViT-B-16``/``laion400m_e32``, ...), by a local checkpoint file, by an open_clip ``local-dir:``
folder, or by a custom architecture JSON (``model_config``; the shapeworld CLIP and the tiny test
CLIP are built this way). Weights are only ever read from local files: a pretrained tag is resolved
in the Hugging Face hub cache (and open_clip's URL cache) and, when absent, a
:class:`~common.priors.base.PriorWeightsNotFoundError` names the file, the directory searched, and
the fix. Nothing is downloaded unless ``allow_download=True`` and ``HF_HUB_OFFLINE`` is unset.

Embeddings are L2-normalised (``g(I)ᵀh(y)`` is then the cosine similarity of eq. 4.7 of the Jain
thesis, Dream Fields). Rendered images go through :meth:`CLIPModel.preprocess`, a tensor version of
open_clip's preprocessing (resize shortest side, centre crop, normalise with the model's mean/std)
that keeps the autograd graph to the render.
"""

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.priors.base import (FrozenPrior, Precision, PriorWeightsNotFoundError, hf_cache_dir, hf_offline,
                                 resolve_suite_path)

log = logging.getLogger(__name__)

__all__ = ["CLIPModel", "CLIPEnsemble", "check_images"]


def check_images(images: Tensor, name: str = "images", channels: int = 3, check_range: bool = True) -> None:
    """Validate a batch of images ``[B, C, H, W]`` with values in [0, 1].

    Args:
        images: tensor to check.
        name: name used in error messages.
        channels: expected channel count.
        check_range: also require every value in [-1e-3, 1 + 1e-3] (NaN fails too).

    Raises:
        ValueError: wrong type, rank, channel count, or value range.
    """
    if not isinstance(images, Tensor) or not images.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor [B, {channels}, H, W], got {type(images).__name__}"
                         + (f" of dtype {images.dtype}" if isinstance(images, Tensor) else ""))
    if images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(f"{name} must have shape [B, {channels}, H, W] (channels first), got {tuple(images.shape)}")
    if check_range and images.numel() > 0:
        lo, hi = torch.aminmax(images.detach())
        if not (lo.item() >= -1e-3 and hi.item() <= 1 + 1e-3):
            raise ValueError(
                f"{name} must have values in [0, 1], got min {lo.item():.4g}, max {hi.item():.4g}; "
                "map [-1, 1] images with (x + 1) / 2 and uint8 images with x / 255, "
                "or pass check_range=False for deliberately unclamped augmentations (PureCLIPNeRF)."
            )


class CLIPModel(FrozenPrior):
    """Frozen open_clip model: normalised image and text embeddings.

    Args:
        name: open_clip architecture (``"ViT-B-16"``, ``"ViT-B-32"``, ``"ViT-L-14"``, ...), or
            ``"local-dir:/path"`` (a folder with ``open_clip_config.json`` and weights). Ignored as an
            architecture when ``model_config`` is given (then it is only a label).
        pretrained: open_clip pretrained tag (``"openai"``, ``"laion2b_e16"``, ...), or ``None`` for
            random initialisation (tests only; a warning is logged).
        checkpoint: local weights file (``open_clip_pytorch_model.bin``, ``.safetensors``, OpenAI
            ``.pt``). Takes precedence over ``pretrained``.
        model_config: path to an open_clip architecture JSON (``embed_dim``, ``vision_cfg``,
            ``text_cfg``) for custom models such as the shapeworld CLIP.
        precision: ``"fp32"`` (default) or ``"fp16"``/``"bf16"``, applied on CUDA only.
        cache_dir: hub cache to look in (default: ``HF_HUB_CACHE``).
        allow_download: let open_clip download a missing tag (never when ``HF_HUB_OFFLINE=1``).
        interpolation: resize filter of the tensor preprocessing (default: the model's own).

    Shape:
        - :meth:`encode_image`: ``[B, 3, H, W]`` in [0, 1] -> ``[B, D]`` unit norm.
        - :meth:`encode_text`: ``list[str]`` of length N -> ``[N, D]`` unit norm.
    """

    def __init__(
        self,
        name: str = "ViT-B-16",
        pretrained: Optional[str] = "openai",
        checkpoint: Optional[str] = None,
        model_config: Optional[str] = None,
        precision: Precision = "fp32",
        cache_dir: Optional[str] = None,
        allow_download: bool = False,
        interpolation: Optional[str] = None,
    ) -> None:
        super().__init__(precision=precision)
        if not name:
            raise ValueError("CLIPModel needs a model name, e.g. name='ViT-B-16'")
        self.name = name
        self.pretrained = pretrained
        self.checkpoint = checkpoint
        self.model_config = model_config
        self.cache_dir = cache_dir
        self.allow_download = allow_download
        self.interpolation = interpolation
        self._text_cache: Dict[str, Tensor] = {}
        self.tokenizer = None
        self.image_size: Tuple[int, int] = (224, 224)
        self.mean: Tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)
        self.std: Tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)
        self.resize_mode = "shortest"
        self.context_length = 77

    # ------------------------------------------------------------------ loading
    def _arch_name(self) -> str:
        import open_clip

        if self.model_config is not None:
            path = Path(resolve_suite_path(self.model_config))
            if not path.is_file():
                raise FileNotFoundError(f"CLIP model_config JSON not found: {path}")
            cfg = json.loads(path.read_text())
            if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
                raise ValueError(f"{path} is not an open_clip architecture config (needs embed_dim, vision_cfg, text_cfg)")
            open_clip.add_model_config(path)  # registers under the file stem
            return path.stem
        arch = self.name.replace("/", "-")
        if arch.startswith("local-dir:"):
            return arch
        if arch.startswith("hf-hub:"):
            raise ValueError(f"'hf-hub:' names are not loaded (no downloads); use checkpoint=<local file> for {arch}")
        if arch not in open_clip.list_models():
            close = [m for m in open_clip.list_models() if arch.lower().split("-")[0] in m.lower()][:12]
            raise ValueError(f"Unknown CLIP architecture {self.name!r}. Similar open_clip models: {close}. "
                             "For a custom architecture pass model_config=<open_clip JSON>.")
        return arch

    def _resolve_tag(self, arch: str) -> Tuple[str, dict]:
        """Local file for ``(arch, pretrained tag)``; raises a clear error when it is not cached."""
        import open_clip
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
        from open_clip.pretrained import get_pretrained_cfg

        cfg = get_pretrained_cfg(arch, self.pretrained)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise ValueError(f"Unknown pretrained tag {self.pretrained!r} for CLIP {arch!r}; known tags: {tags}. "
                             "For your own weights pass checkpoint=<local file> instead.")
        looked: List[str] = []
        hub, repo = cfg.get("hf_hub", ""), "<repo>"
        cache = hf_cache_dir(self.cache_dir)
        if hub:
            from huggingface_hub import try_to_load_from_cache

            if hub.endswith("/"):  # a repo with open_clip's default weights file names
                repo, filenames = hub.rstrip("/"), [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
            else:
                repo, filename = os.path.split(hub)
                stem = filename.rsplit(".", 1)[0]
                filenames = [stem + ".safetensors", filename] if not filename.endswith(".safetensors") else [filename]
            for fn in filenames:
                hit = try_to_load_from_cache(repo_id=repo, filename=fn, cache_dir=cache)
                looked.append(f"hf://{repo}/{fn}")
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit, cfg
        url = cfg.get("url", "")
        url_cache = self.cache_dir or os.path.expanduser("~/.cache/clip")
        if url:
            target = os.path.join(url_cache, os.path.basename(url))
            looked.append(target)
            if os.path.isfile(target):
                return target, cfg
        if self.allow_download and not hf_offline():
            return "", cfg  # let open_clip fetch it
        raise PriorWeightsNotFoundError(
            f"CLIP weights for {arch!r} with pretrained tag {self.pretrained!r} are not available offline.\n"
            f"Looked for: {', '.join(looked)} (hub cache: {cache}; URL cache: {url_cache}).\n"
            "Fix: pass checkpoint=/path/to/open_clip_pytorch_model.bin (or .safetensors / OpenAI .pt), "
            "or populate the hub cache on a networked machine (e.g. "
            f"`huggingface-cli download {repo}`) and run with "
            "HF_HUB_OFFLINE=1, or set allow_download=true on a machine with internet."
        )

    def _load_networks(self) -> Dict[str, nn.Module]:
        import open_clip

        arch = self._arch_name()
        kwargs: dict = {}
        tag_cfg: dict = {}
        if self.checkpoint is not None:
            checkpoint = resolve_suite_path(self.checkpoint)
            if not os.path.isfile(checkpoint):
                raise PriorWeightsNotFoundError(
                    f"CLIP checkpoint file not found: {self.checkpoint} (for architecture {arch!r}). "
                    "Fix: point checkpoint to an existing open_clip_pytorch_model.bin / .safetensors / OpenAI .pt file.")
            pretrained: Optional[str] = checkpoint
        elif arch.startswith("local-dir:") or not self.pretrained:
            pretrained = None
            if not arch.startswith("local-dir:"):
                log.warning("CLIPModel %s: no pretrained tag or checkpoint, weights are RANDOM", arch)
        else:
            path, tag_cfg = self._resolve_tag(arch)
            pretrained = path or self.pretrained
            if tag_cfg.get("quick_gelu", False) and not open_clip.get_model_config(arch).get("quick_gelu", False):
                kwargs["force_quick_gelu"] = True  # e.g. OpenAI weights on the plain ViT-B-32 config
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = open_clip.create_model(arch, pretrained=pretrained, cache_dir=self.cache_dir,
                                           pretrained_text=False, **kwargs)
        pp = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = pp.get("size", getattr(model.visual, "image_size", 224))
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = tuple(tag_cfg.get("mean", pp.get("mean", self.mean)))
        self.std = tuple(tag_cfg.get("std", pp.get("std", self.std)))
        self.resize_mode = pp.get("resize_mode", "shortest")
        if self.interpolation is None:
            self.interpolation = "bilinear" if pp.get("interpolation", "bicubic") == "bilinear" else "bicubic"
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.context_length = int(getattr(self.tokenizer, "context_length", None) or getattr(model, "context_length", 77))
        self._text_cache.clear()
        return {"clip": model}

    @property
    def model(self) -> nn.Module:
        """The wrapped open_clip model (loads on first access)."""
        self._ensure_loaded()
        return self._nets["clip"]

    @property
    def embed_dim(self) -> int:
        """Embedding size D."""
        return int(self.model.text_projection.shape[1] if getattr(self.model, "text_projection", None) is not None
                   else self.encode_text(["a"]).shape[-1])

    # ------------------------------------------------------------------ images
    def preprocess(self, images: Tensor, check_range: bool = True) -> Tensor:
        """Differentiable version of open_clip's image preprocessing.

        Resizes the shortest side to the model's input size (bicubic/bilinear, antialiased when
        shrinking), centre-crops, and normalises with the model's mean and std. No PIL round trip.

        Args:
            images: ``[B, 3, H, W]`` in [0, 1].
            check_range: raise on values outside [0, 1] (see :func:`check_images`).

        Returns:
            ``[B, 3, S, S]`` normalised model input.
        """
        self._ensure_loaded()
        check_images(images, check_range=check_range)
        th, tw = self.image_size
        h, w = images.shape[-2:]
        if (h, w) != (th, tw):
            if self.resize_mode == "squash":
                size = (th, tw)
            else:  # 'shortest': scale so that the shortest side matches, then centre crop
                scale = max(th / h, tw / w)
                size = (max(th, round(h * scale)), max(tw, round(w * scale)))
            images = F.interpolate(images, size=size, mode=self.interpolation, align_corners=False,
                                   antialias=size[0] < h or size[1] < w)
            top, left = (images.shape[-2] - th) // 2, (images.shape[-1] - tw) // 2
            images = images[..., top:top + th, left:left + tw]
        mean = images.new_tensor(self.mean).view(1, -1, 1, 1)
        std = images.new_tensor(self.std).view(1, -1, 1, 1)
        return (images - mean) / std

    def encode_image(self, images: Tensor, check_range: bool = True) -> Tensor:
        """Unit-norm image embeddings ``g(I)``; differentiable w.r.t. ``images``.

        Args:
            images: ``[B, 3, H, W]`` in [0, 1], any size (resized by :meth:`preprocess`).
            check_range: raise on values outside [0, 1].

        Returns:
            ``[B, D]`` float32, unit L2 norm.
        """
        x = self.preprocess(images, check_range=check_range).to(self.dtype)
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    # ------------------------------------------------------------------ text
    def tokenize(self, prompts: Sequence[str]) -> Tensor:
        """Token ids ``[N, context_length]``; prompts longer than the context are truncated with a warning.

        Raises:
            ValueError: on an empty list, a non-string, or an empty/blank prompt.
        """
        self._ensure_loaded()
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) == 0:
            raise ValueError("encode_text needs at least one prompt")
        for p in prompts:
            if not isinstance(p, str):
                raise ValueError(f"prompts must be strings, got {type(p).__name__}")
            if not p.strip():
                raise ValueError("Empty prompt: CLIP guidance needs a non-empty text prompt")
            encode = getattr(self.tokenizer, "encode", None)
            if encode is not None:
                n = len(encode(p)) + 2  # + start/end tokens
                if n > self.context_length:
                    warnings.warn(f"Prompt has {n} tokens, more than the text encoder's context of "
                                  f"{self.context_length}; it is truncated: {p[:60]!r}...", UserWarning, stacklevel=3)
        return self.tokenizer(list(prompts))

    def encode_text(self, prompts: Union[str, Sequence[str]]) -> Tensor:
        """Unit-norm text embeddings ``h(y)``, cached per prompt (no gradient).

        Args:
            prompts: one prompt or a list of N prompts.

        Returns:
            ``[N, D]`` float32, unit L2 norm, on this module's device.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing or len(prompts) == 0:
            tokens = self.tokenize(missing).to(self.device)
            with torch.no_grad():
                emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            for p, e in zip(missing, emb):
                self._text_cache[p] = e
        return torch.stack([self._text_cache[p].to(self.device) for p in prompts])

    def _place(self) -> None:
        super()._place()
        self._text_cache = {k: v.to(self.device) for k, v in self._text_cache.items()}


class CLIPEnsemble(nn.Module):
    """A list of :class:`CLIPModel`s used together (PureCLIPNeRF's CLIP ensembles, spec §3.8).

    The members stay frozen and out of checkpoints (see :class:`~common.priors.base.FrozenPrior`).

    Args:
        models: the member models.
    """

    def __init__(self, models: List[CLIPModel]) -> None:
        super().__init__()
        if len(models) == 0:
            raise ValueError("CLIPEnsemble needs at least one CLIPModel")
        self.models = nn.ModuleList(models)

    def load(self) -> "CLIPEnsemble":
        """Load every member."""
        for m in self.models:
            m.load()
        return self

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self):
        return iter(self.models)

    def __getitem__(self, i: int) -> CLIPModel:
        return self.models[i]
