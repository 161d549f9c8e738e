"""Chaining ISS's stages through checkpoint files: load safely (``weights_only=True``), validate, explain.

* stage 1 reads ``E_S`` and ``D`` from the SVR checkpoint (``svr_ckpt``);
* stage 2 reads ``M`` and the fine-tuned ``D`` from the stage-1 checkpoint (``stage1_ckpt``);
* stylisation reads ``D`` from the stage-1 checkpoint and the shape code from a stage-2 result file.

Each stage writes an ``iss`` entry into its Lightning checkpoint (``stage``, ``c_dim``, ``clip_dim`` and the
decoder's architecture), so a checkpoint of the wrong stage or of a different SVR model fails with an
error that names the file, the mismatch and the config key to change, before any work. Reading and
checking the files is :mod:`common.checkpoints` (shared with ZeroForge).
"""

from typing import Dict, Optional

from torch import Tensor, nn

from common.checkpoints import CheckpointMismatchError, load_part, read_stage_checkpoint, sub_state

__all__ = ["CheckpointMismatchError", "read_checkpoint", "sub_state", "load_part", "decoder_meta", "check_decoder_meta"]


def read_checkpoint(path: Optional[str], what: str, config_key: str) -> tuple[Dict[str, Tensor], dict]:
    """``(state_dict, iss_meta)`` of checkpoint ``path``, read with ``weights_only=True``.

    Args:
        path: a Lightning ``.ckpt`` or a ``torch.save(state_dict)`` file.
        what: description for messages (``"ISS stage-1"``).
        config_key: the config key holding the path (``model.init_args.stage1_ckpt``).
    """
    state, ckpt = read_stage_checkpoint(path, what, config_key, source="checkpoints/last.ckpt of that run",
                                        random_init="freshly initialised weights", readme="iss/README.md")
    meta = ckpt.get("iss", {}) if isinstance(ckpt, dict) else {}
    return state, meta if isinstance(meta, dict) else {}


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
