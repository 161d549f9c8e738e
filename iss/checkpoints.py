"""Chaining ISS's stages through checkpoint files: load safely (``weights_only=True``), validate, explain.

* stage 1 reads ``E_S`` and ``D`` from the SVR checkpoint (``svr_ckpt``);
* stage 2 reads ``M`` and the fine-tuned ``D`` from the stage-1 checkpoint (``stage1_ckpt``);
* stylisation reads ``D`` from the stage-1 checkpoint and the shape code from a stage-2 result file.

Each stage writes an ``iss`` entry into its Lightning checkpoint (``stage``, ``c_dim``, ``clip_dim`` and the
decoder's architecture), so a checkpoint of the wrong stage or of a different SVR model fails with an
error that names the file, the mismatch and the config key to change, before any work.
"""

from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import Tensor, nn

__all__ = ["CheckpointMismatchError", "read_checkpoint", "sub_state", "load_part", "decoder_meta", "check_decoder_meta"]


class CheckpointMismatchError(ValueError):
    """A stage checkpoint does not fit the configured model."""


def read_checkpoint(path: Optional[str], what: str, config_key: str) -> tuple[Dict[str, Tensor], dict]:
    """``(state_dict, iss_meta)`` of checkpoint ``path``, read with ``weights_only=True``.

    Args:
        path: a Lightning ``.ckpt`` or a ``torch.save(state_dict)`` file.
        what: description for messages (``"ISS stage-1"``).
        config_key: the config key holding the path (``model.init_args.stage1_ckpt``).
    """
    if path is None:
        raise ValueError(f"{config_key} is not set: give the {what} checkpoint (checkpoints/last.ckpt of that run). "
                         "For tests only, allow_random_init: true starts from freshly initialised weights instead.")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{what} checkpoint not found: {file} ({config_key}). Train that stage first "
                                "(see iss/README.md) or point the key at its checkpoints/last.ckpt.")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused or a corrupt file
        raise CheckpointMismatchError(f"{what} checkpoint {file} could not be read with weights_only=True: {err}") from err
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{what} checkpoint {file} holds no state_dict of tensors")
    meta = ckpt.get("iss", {}) if isinstance(ckpt, dict) else {}
    return state, meta if isinstance(meta, dict) else {}


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


def decoder_meta(decoder: nn.Module) -> dict:
    """Architecture of a DVR decoder as plain values (stored in checkpoints)."""
    return {"c_dim": int(decoder.c_dim), "hidden": int(getattr(decoder, "hidden", -1)),
            "n_blocks": int(getattr(decoder, "n_blocks", -1))}


def check_decoder_meta(meta: dict, decoder: nn.Module, path: str, what: str, config_key: str) -> None:
    """Compare the decoder architecture recorded in ``meta`` with the configured one (clear error if different)."""
    stored = meta.get("decoder")
    if not stored:
        return
    own = decoder_meta(decoder)
    diff = {k: (stored.get(k), v) for k, v in own.items() if stored.get(k) is not None and stored.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a} vs configured {b}" for k, (a, b) in diff.items())
        raise CheckpointMismatchError(
            f"{what} checkpoint {path} was trained with a different SVR model ({detail}). The stages must share one SVR "
            f"model: set model.init_args.decoder to the SVR run's decoder, or point {config_key} at a checkpoint of this SVR model.")
