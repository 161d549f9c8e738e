"""Tiny random-initialised priors of the *same* classes as the real ones, built offline in < 1 s.

* :func:`tiny_clip` -> a :class:`~common.priors.clip.CLIPModel` built from ``tiny_clip.json`` (an
  open_clip architecture config shipped next to this file: ViT width 32, 1 layer, 32² input, 16-d
  embedding, 16-token context, open_clip's own BPE tokenizer).
* :func:`save_tiny_sd_pipeline` writes a tiny Stable-Diffusion-style pipeline folder (UNet2DCondition
  with blocks (4, 8) and cross-attention 16, a 2-block AutoencoderKL, a transformers CLIPTextModel,
  a toy byte-level CLIPTokenizer and a scaled-linear DDPM scheduler) with ``save_pretrained``;
  :func:`tiny_sd` loads it back through :class:`~common.priors.diffusion.DiffusionModel`, i.e. the
  real ``from_pretrained`` code path.
* :func:`save_tiny_pixel_pipeline` does the same for a pixel-space model (text-conditional
  UNet2DCondition or unconditional UNet2DModel, linear DDPM schedule), like the shapeworld prior.

Everything is seeded and nothing touches the network (conventions.md #13; diffusers'
``get_dummy_components`` without the hub-downloaded tokenizer).
"""

import json
from pathlib import Path
from typing import Optional, Union

import torch

from common.priors.clip import CLIPModel
from common.priors.diffusion import DiffusionModel

__all__ = [
    "TINY_CLIP_CONFIG",
    "tiny_clip",
    "write_toy_tokenizer",
    "save_tiny_sd_pipeline",
    "save_tiny_pixel_pipeline",
    "tiny_sd",
    "tiny_pixel_diffusion",
]

TINY_CLIP_CONFIG = str(Path(__file__).with_name("tiny_clip.json"))
TEXT_DIM = 16


def tiny_clip(seed: int = 0, model_config: str = TINY_CLIP_CONFIG) -> CLIPModel:
    """A loaded tiny random :class:`CLIPModel` (seeded; the global RNG is left untouched)."""
    clip = CLIPModel(name="tiny-clip", pretrained=None, model_config=model_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip.load()
    return clip


def _bytes_to_unicode() -> list:
    """GPT-2/CLIP byte -> printable unicode table (the alphabet of byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_toy_tokenizer(path: Union[str, Path], model_max_length: int = 16):
    """Write a byte-level :class:`transformers.CLIPTokenizer` with no merges (514 tokens) to ``path``.

    Every character is its own token, so prompts tokenise to one id per character (+ start/end).
    """
    from transformers import CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"),
                        model_max_length=model_max_length)
    tok.save_pretrained(path)
    return tok


def _text_encoder(vocab_size: int, max_len: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=max_len, bos_token_id=vocab_size - 2,
                         eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    return CLIPTextModel(cfg)


def _cond_unet(channels: int, sample_size: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, block_out_channels=(4, 8),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=TEXT_DIM, norm_num_groups=2,
        attention_head_dim=2)


def _write_index(path: Path, components: dict) -> None:
    index = {"_class_name": "DiffusionPipeline", "_diffusers_version": "0.0"}
    index.update(components)
    (path / "model_index.json").write_text(json.dumps(index, indent=2))


def save_tiny_sd_pipeline(path: Union[str, Path], seed: int = 0, latent_size: int = 16,
                          model_max_length: int = 16, prediction_type: str = "epsilon") -> Path:
    """Write a tiny random latent-diffusion (SD-style) pipeline folder and return its path.

    Args:
        path: output directory.
        seed: torch seed for the random weights.
        latent_size: UNet sample size; images are ``2·latent_size`` (the VAE downsamples by 2).
        model_max_length: tokenizer context length.
        prediction_type: scheduler prediction type (``"epsilon"`` or ``"v_prediction"``).
    """
    from diffusers import AutoencoderKL, DDPMScheduler

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _cond_unet(4, latent_size)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 8),
                            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), layers_per_block=1,
                            norm_num_groups=2, sample_size=2 * latent_size)
        tok = write_toy_tokenizer(path / "tokenizer", model_max_length)
        text_encoder = _text_encoder(len(tok), model_max_length)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", prediction_type=prediction_type)
    unet.save_pretrained(path / "unet")
    vae.save_pretrained(path / "vae")
    text_encoder.save_pretrained(path / "text_encoder")
    scheduler.save_pretrained(path / "scheduler")
    _write_index(path, {"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                        "scheduler": ["diffusers", "DDPMScheduler"]})
    return path


def save_tiny_pixel_pipeline(path: Union[str, Path], seed: int = 0, image_size: int = 16, conditional: bool = True,
                             model_max_length: int = 16) -> Path:
    """Write a tiny random pixel-space diffusion pipeline (linear β 1e-4..0.02, T = 1000).

    Args:
        path: output directory.
        seed: torch seed for the random weights.
        image_size: UNet sample size (RGB).
        conditional: text-conditional UNet2DCondition + text encoder, else an unconditional UNet2DModel.
        model_max_length: tokenizer context length.
    """
    from diffusers import DDPMScheduler, UNet2DModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    comps = {"scheduler": ["diffusers", "DDPMScheduler"]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if conditional:
            unet = _cond_unet(3, image_size)
            tok = write_toy_tokenizer(path / "tokenizer", model_max_length)
            _text_encoder(len(tok), model_max_length).save_pretrained(path / "text_encoder")
            comps.update({"unet": ["diffusers", "UNet2DConditionModel"],
                          "text_encoder": ["transformers", "CLIPTextModel"],
                          "tokenizer": ["transformers", "CLIPTokenizer"]})
        else:
            unet = UNet2DModel(sample_size=image_size, in_channels=3, out_channels=3, block_out_channels=(4, 8),
                               layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                               up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=2,
                               attention_head_dim=2)
            comps["unet"] = ["diffusers", "UNet2DModel"]
    unet.save_pretrained(path / "unet")
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                  beta_schedule="linear").save_pretrained(path / "scheduler")
    _write_index(path, comps)
    return path


def tiny_sd(path: Union[str, Path], seed: int = 0, **kwargs) -> DiffusionModel:
    """Write a tiny SD pipeline to ``path`` (if absent) and load it through :class:`DiffusionModel`."""
    if not (Path(path) / "model_index.json").is_file():
        save_tiny_sd_pipeline(path, seed=seed, **kwargs)
    return DiffusionModel(model=str(path)).load()


def tiny_pixel_diffusion(path: Union[str, Path], seed: int = 0, conditional: bool = True,
                         **kwargs) -> DiffusionModel:
    """Write a tiny pixel-space pipeline to ``path`` (if absent) and load it through :class:`DiffusionModel`."""
    if not (Path(path) / "model_index.json").is_file():
        save_tiny_pixel_pipeline(path, seed=seed, conditional=conditional, **kwargs)
    return DiffusionModel(model=str(path)).load()
