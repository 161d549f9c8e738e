"""Reading an earlier stage's checkpoint into part of a model: load safely (``weights_only=True``), validate, explain.

Shared by the multi-stage methods (:mod:`iss.checkpoints`, :mod:`zeroforge.checkpoints`). A checkpoint is a
Lightning ``.ckpt`` (its ``state_dict``) or a plain ``torch.save(state_dict)`` file. Mismatches fail with an
error that names the file, the tensors and the config key to change, before any work.
"""

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = ["CheckpointMismatchError", "read_stage_checkpoint", "sub_state", "load_part"]


class CheckpointMismatchError(ValueError):
    """A stage checkpoint does not fit the configured model."""


def read_stage_checkpoint(path: Optional[str], what: str, config_key: str, *, source: str, random_init: str,
                          readme: str) -> Tuple[Dict[str, Tensor], Any]:
    """``(state_dict, checkpoint)`` of checkpoint file ``path``, read with ``weights_only=True``.

    Args:
        path: a Lightning ``.ckpt`` or a ``torch.save(state_dict)`` file.
        what: description for messages (``"ISS stage-1"``).
        config_key: the config key holding the path (``model.init_args.stage1_ckpt``).
        source, random_init, readme: message parts: where the checkpoint comes from (``"checkpoints/last.ckpt
            of that run"``), what ``allow_random_init`` starts from (``"random weights"``), the README that
            says how to train the stage.

    Raises:
        ValueError: ``path`` is None. FileNotFoundError: no such file.
        CheckpointMismatchError: unreadable with ``weights_only=True``, or no state_dict of tensors.
    """
    if path is None:
        raise ValueError(f"{config_key} is not set: give the {what} checkpoint ({source}). "
                         f"For tests only, allow_random_init: true starts from {random_init} instead.")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{what} checkpoint not found: {file} ({config_key}). Train that stage first "
                                f"(see {readme}) or point the key at its checkpoints/last.ckpt.")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused or a corrupt file
        raise CheckpointMismatchError(f"{what} checkpoint {file} could not be read with weights_only=True: {err}") from err
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{what} checkpoint {file} holds no state_dict of tensors")
    return state, ckpt


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
