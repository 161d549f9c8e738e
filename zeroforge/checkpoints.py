"""Chaining the stages through checkpoint files: load safely (``weights_only=True``), validate, explain.

Stage 2 (the flow) reads the encoder from the stage-1 checkpoint; ZeroForge reads the decoder from
the stage-1 checkpoint and the flow from the stage-2 checkpoint. A checkpoint is a Lightning ``.ckpt``
(its ``state_dict``) or a plain ``torch.save(state_dict)`` file. Mismatches fail with an error that
names the file, the tensors and the config key to change.
"""

from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import Tensor, nn

__all__ = ["CheckpointMismatchError", "read_state_dict", "sub_state", "load_part", "latent_dim_in"]


class CheckpointMismatchError(ValueError):
    """A stage checkpoint does not fit the configured model."""


def read_state_dict(path: Optional[str], what: str, config_key: str) -> Dict[str, Tensor]:
    """The tensors of checkpoint ``path`` (``weights_only=True``).

    Args:
        path: the ``.ckpt`` / ``.pt`` file.
        what: description for messages (``"CLIP-Forge autoencoder"``).
        config_key: the config key that holds the path (``model.init_args.autoencoder_ckpt``).
    """
    if path is None:
        raise ValueError(f"{config_key} is not set: give the {what} checkpoint (a .ckpt from the earlier stage). "
                         "For tests only, allow_random_init: true starts from random weights instead.")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{what} checkpoint not found: {file} ({config_key}). Train that stage first "
                                "(see zeroforge/README.md) or point the key at its checkpoints/last.ckpt.")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused or a corrupt file
        raise CheckpointMismatchError(f"{what} checkpoint {file} could not be read with weights_only=True: {err}") from err
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{what} checkpoint {file} holds no state_dict of tensors")
    return state


def sub_state(state: Dict[str, Tensor], prefix: str, path: str, what: str) -> Dict[str, Tensor]:
    """Entries under ``prefix`` (``"decoder."``) with the prefix removed; an error if there are none."""
    out = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
    if not out:
        roots = sorted({k.split(".")[0] + "." for k in state})
        raise CheckpointMismatchError(f"{path} is not a {what} checkpoint: it has no '{prefix}*' weights "
                                      f"(it holds {roots}). Check which stage's checkpoint the config points to.")
    return out


def load_part(module: nn.Module, state: Dict[str, Tensor], path: str, what: str, config_hint: str) -> None:
    """``module.load_state_dict(state)`` after checking key sets and shapes, with a clear error on mismatch."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        lines = [f"{what} checkpoint {path} does not fit the configured {type(module).__name__}:"]
        lines += [f"  {k}: checkpoint {a} vs configured {b}" for k, a, b in wrong[:8]]
        if missing:
            lines.append(f"  missing in checkpoint: {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            lines.append(f"  not in the configured model: {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        lines.append(f"Fix: {config_hint}")
        raise CheckpointMismatchError("\n".join(lines))
    module.load_state_dict(state)


def latent_dim_in(state: Dict[str, Tensor], kind: str) -> int:
    """Shape-embedding size stored in a decoder (``fc_z.weight [H, d]``) or flow (``*.log_gamma [d]``) state."""
    if kind == "decoder":
        key = next((k for k in state if k.endswith("fc_z.weight")), None)
        return int(state[key].shape[1]) if key else -1
    key = next((k for k in state if k.endswith("log_gamma")), None)
    return int(state[key].shape[0]) if key else -1


def load_autoencoder(path: Optional[str], config_key: str, encoder: Optional[nn.Module] = None,
                     decoder: Optional[nn.Module] = None) -> Dict[str, Tensor]:
    """Load the stage-1 ``encoder`` and/or ``decoder`` from a CLIP-Forge autoencoder checkpoint; returns its decoder state."""
    what = "CLIP-Forge autoencoder"
    state = read_state_dict(path, what, config_key)
    hint = ("make the configured encoder/decoder match the autoencoder run's (latent_dim, hidden, n_blocks, resolution), "
            f"or point {config_key} at the right run")
    if encoder is not None:
        load_part(encoder, sub_state(state, "encoder.", path, what), path, what, hint)
    dec = sub_state(state, "decoder.", path, what)
    if decoder is not None:
        load_part(decoder, dec, path, what, hint)
    return dec


def load_flow(path: Optional[str], config_key: str, flow: nn.Module, decoder_latent_dim: Optional[int] = None,
              autoencoder_path: Optional[str] = None) -> None:
    """Load the stage-2 flow; first check that its latent size equals the autoencoder's embedding size."""
    what = "CLIP-Forge flow"
    state = sub_state(read_state_dict(path, what, config_key), "flow.", path, what)
    d = latent_dim_in(state, "flow")
    if decoder_latent_dim is not None and d != decoder_latent_dim:
        raise CheckpointMismatchError(
            f"flow checkpoint {path} maps to {d}-d shape embeddings, but the autoencoder "
            f"({autoencoder_path or 'configured decoder'}) has a {decoder_latent_dim}-d embedding: the two stages come from "
            "different runs. Train the flow on this autoencoder (its autoencoder_ckpt) or point flow_ckpt at the matching flow.")
    load_part(flow, state, path, what, "make model.init_args.flow match the flow run's latent_dim, cond_dim, hidden and "
                                       f"n_blocks, or point {config_key} at the right run")
