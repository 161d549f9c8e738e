"""Export a trained :class:`~ddpm.system.DDPMSystem` as a diffusers pipeline folder.

The folder (``model_index.json``, ``unet/``, ``scheduler/`` and, for text-conditional models,
``text_encoder/`` + ``tokenizer/``) is what :class:`common.priors.diffusion.DiffusionModel` loads, so
the shapeworld prior goes through the same code path as Stable Diffusion. The open_clip text tower of
the conditioner is converted into a ``transformers.CLIPTextModel`` (same pre-LN transformer, causal
mask, exact GELU; the fused ``in_proj`` is split into q, k, v) and open_clip's BPE vocabulary into a
``CLIPTokenizer`` whose pad token is ``"!"`` (id 0, open_clip's padding), so that both produce the same
per-token hidden states (checked in tests/ddpm/test_export.py).

Training writes the folder at its end (``export_pipeline: true``); any checkpoint can be exported too:

    python -m ddpm.export --config runs/<name>/version_k/config.yaml --ckpt <ckpt> --out <folder> [--raw] [--dtype float16]
"""

import gzip
import json
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ddpm.conditioning import CLIPTextConditioner


def _bytes_to_unicode() -> dict:
    from open_clip.tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def save_open_clip_tokenizer(path: Union[str, Path], context_length: int):
    """Write open_clip's BPE vocabulary as a ``transformers.CLIPTokenizer`` (pad ``"!"`` = id 0)."""
    from open_clip.tokenizer import default_bpe
    from transformers import CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    merges_text = gzip.open(default_bpe()).read().decode("utf-8")
    merges = [tuple(m.split()) for m in merges_text.split("\n")[1:49152 - 256 - 2 + 1]]
    alphabet = list(_bytes_to_unicode().values())
    vocab = alphabet + [v + "</w>" for v in alphabet] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tok = CLIPTokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"),
                        pad_token="!", model_max_length=context_length)
    tok.save_pretrained(path)
    # tokenizer.json (3.6 MB) repeats vocab.json + merges.txt; CLIPTokenizer loads from those two, and
    # dropping it keeps the shipped shapeworld prior under 20 MB
    (path / "tokenizer.json").unlink(missing_ok=True)
    return tok


def open_clip_text_to_transformers(clip_model: nn.Module):
    """A ``transformers.CLIPTextModel`` with the weights of an open_clip ``CLIP``'s text tower."""
    from transformers import CLIPTextConfig, CLIPTextModel

    m = clip_model
    width = m.token_embedding.weight.shape[1]
    blocks = m.transformer.resblocks
    cfg = CLIPTextConfig(vocab_size=m.token_embedding.weight.shape[0], hidden_size=width,
                         intermediate_size=blocks[0].mlp.c_fc.out_features, num_hidden_layers=len(blocks),
                         num_attention_heads=blocks[0].attn.num_heads, max_position_embeddings=m.positional_embedding.shape[0],
                         hidden_act="gelu", layer_norm_eps=m.ln_final.eps, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=0)
    hf = CLIPTextModel(cfg)
    sd = {"text_model.embeddings.token_embedding.weight": m.token_embedding.weight,
          "text_model.embeddings.position_embedding.weight": m.positional_embedding,
          "text_model.final_layer_norm.weight": m.ln_final.weight, "text_model.final_layer_norm.bias": m.ln_final.bias}
    for i, blk in enumerate(blocks):
        p = f"text_model.encoder.layers.{i}."
        q, k, v = blk.attn.in_proj_weight.chunk(3)
        qb, kb, vb = blk.attn.in_proj_bias.chunk(3)
        sd.update({p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
                   p + "self_attn.q_proj.bias": qb, p + "self_attn.k_proj.bias": kb, p + "self_attn.v_proj.bias": vb,
                   p + "self_attn.out_proj.weight": blk.attn.out_proj.weight, p + "self_attn.out_proj.bias": blk.attn.out_proj.bias,
                   p + "layer_norm1.weight": blk.ln_1.weight, p + "layer_norm1.bias": blk.ln_1.bias,
                   p + "layer_norm2.weight": blk.ln_2.weight, p + "layer_norm2.bias": blk.ln_2.bias,
                   p + "mlp.fc1.weight": blk.mlp.c_fc.weight, p + "mlp.fc1.bias": blk.mlp.c_fc.bias,
                   p + "mlp.fc2.weight": blk.mlp.c_proj.weight, p + "mlp.fc2.bias": blk.mlp.c_proj.bias})
    sd = {k.removeprefix("text_model."): v.detach().float().clone() for k, v in sd.items()}
    target = getattr(hf, "text_model", hf)  # transformers < 5 nests the tower under .text_model
    missing, unexpected = target.load_state_dict(sd, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"open_clip -> CLIPTextModel conversion: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def export_pipeline(system, path: Union[str, Path], use_ema: bool = True, dtype: str = "float32",
                    guidance_scale: Optional[float] = None) -> Path:
    """Write ``system`` (a :class:`~ddpm.system.DDPMSystem`) as a diffusers pipeline folder at ``path``.

    ``dtype="float16"`` halves the files (the shipped shapeworld prior: under 20 MB); loaders cast the
    weights to their compute dtype (``common.priors.base.FrozenPrior._place``). ``guidance_scale`` writes
    ``sampler.json`` naming the scale chosen for these weights (read back as ``DiffusionModel.sampler_config``;
    the shapeworld diffusion bar samples with it).
    """
    import copy

    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"export dtype must be float32, float16 or bfloat16, got {dtype!r}")
    if guidance_scale is not None and not guidance_scale > 0:  # refused before anything is written
        raise ValueError(f"guidance_scale must be > 0, got {guidance_scale}")
    torch_dtype = getattr(torch, dtype)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    net = system.ema if (use_ema and system.ema is not None) else system.unet
    unet = copy.deepcopy(net).cpu().to(torch_dtype)
    unet.save_pretrained(path / "unet")
    system.scheduler.save_pretrained(path / "scheduler")
    index = {"_class_name": "DiffusionPipeline", "_diffusers_version": "0.0",
             "unet": ["diffusers", type(unet).__name__], "scheduler": ["diffusers", "DDPMScheduler"]}
    if system.vae is not None:  # latent model: the frozen autoencoder goes with it (loaded as SD's VAE)
        copy.deepcopy(system.vae).cpu().to(torch_dtype).save_pretrained(path / "vae")
        index["vae"] = ["diffusers", "AutoencoderKL"]
    enc = system.text_encoder
    if enc is not None:
        if not isinstance(enc, CLIPTextConditioner) or enc.mode != "tokens":
            raise ValueError("export_pipeline converts a CLIPTextConditioner in 'tokens' mode only")
        enc.load()
        open_clip_text_to_transformers(enc.clip.model).to(torch_dtype).save_pretrained(path / "text_encoder")
        save_open_clip_tokenizer(path / "tokenizer", int(enc.clip.model.positional_embedding.shape[0]))
        index.update({"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"]})
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    if guidance_scale is not None:
        (path / "sampler.json").write_text(json.dumps({"guidance_scale": float(guidance_scale)}, indent=2))
    return path


def export_checkpoint(config: Union[str, Path], ckpt: Union[str, Path], out: Union[str, Path], use_ema: bool = True,
                      dtype: str = "float32", guidance_scale: Optional[float] = None) -> Path:
    """Rebuild the run's :class:`~ddpm.system.DDPMSystem` from its saved ``config.yaml``, load ``ckpt`` and export it."""
    from common.cli import SuiteCLI

    for f in (config, ckpt):
        if not Path(f).is_file():
            raise FileNotFoundError(f"{f} does not exist (a run folder holds config.yaml and checkpoints/*.ckpt)")
    import tempfile

    import yaml

    cfg = yaml.safe_load(Path(config).read_text())
    for key in ("ckpt_path", "weights_only"):  # options of `fit`, not of the model/data/trainer
        cfg.pop(key, None)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text(yaml.safe_dump(cfg))
        cli = SuiteCLI(args=["--config", str(Path(tmp) / "config.yaml"), "--run.logger", "none"], run=False)
    system = cli.model
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    missing, unexpected = system.load_state_dict(state, strict=False)
    ours = [k for k in missing if k.startswith(("unet.", "ema."))]
    if ours or unexpected:
        raise ValueError(f"{ckpt} does not match the model of {config}: missing {ours[:5]}, unexpected {unexpected[:5]}")
    return export_pipeline(system.eval(), out, use_ema=use_ema, dtype=dtype, guidance_scale=guidance_scale)


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Export a DDPMSystem checkpoint as a diffusers pipeline folder.")
    ap.add_argument("--config", required=True, help="the run's config.yaml")
    ap.add_argument("--ckpt", required=True, help="a checkpoint of that run")
    ap.add_argument("--out", required=True, help="the pipeline folder to write")
    ap.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--guidance-scale", type=float, default=None,
                    help="write sampler.json naming this guidance scale (the one chosen for these weights)")
    args = ap.parse_args(argv)
    print(export_checkpoint(args.config, args.ckpt, args.out, use_ema=not args.raw, dtype=args.dtype,
                            guidance_scale=args.guidance_scale))


if __name__ == "__main__":
    main()
