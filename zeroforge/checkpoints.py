"""Chaining the stages through checkpoint files: load safely (``weights_only=True``), validate, explain.

Stage 2 (the flow) reads the encoder from the stage-1 checkpoint; ZeroForge reads the decoder from
the stage-1 checkpoint and the flow from the stage-2 checkpoint. A checkpoint is a Lightning ``.ckpt``
(its ``state_dict``) or a plain ``torch.save(state_dict)`` file. Mismatches fail with an error that
names the file, the tensors and the config key to change. Reading and checking the files is
:mod:`common.checkpoints` (shared with ISS).
"""

from typing import Dict, Optional

from torch import Tensor, nn

from common.checkpoints import CheckpointMismatchError, load_part, read_stage_checkpoint, sub_state

__all__ = ["CheckpointMismatchError", "read_state_dict", "sub_state", "load_part", "latent_dim_in"]


def read_state_dict(path: Optional[str], what: str, config_key: str) -> Dict[str, Tensor]:
    """The tensors of checkpoint ``path`` (``weights_only=True``).

    Args:
        path: the ``.ckpt`` / ``.pt`` file.
        what: description for messages (``"CLIP-Forge autoencoder"``).
        config_key: the config key that holds the path (``model.init_args.autoencoder_ckpt``).
    """
    state, _ = read_stage_checkpoint(path, what, config_key, source="a .ckpt from the earlier stage",
                                     random_init="random weights", readme="zeroforge/README.md")
    return state


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
