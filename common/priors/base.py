"""Base class for frozen pretrained priors (CLIP, diffusion) that never enter a checkpoint.

A prior is an ``nn.Module`` whose constructor arguments only *name* the weights (a model name and a
weights location), so that jsonargparse can build it from YAML for free. The weights are loaded
lazily by :meth:`FrozenPrior.load`, which a LightningModule calls from its ``setup()`` hook (any
method that needs the weights also calls it on first use).

The loaded networks are kept in a plain ``dict`` attribute rather than registered as submodules:

* they never appear in ``state_dict()`` (checkpoints hold only what was trained) and
  ``load_state_dict(strict=True)`` of the owning system does not expect them;
* they never appear in ``parameters()``, so optimisers, DDP parameter broadcasts and model summaries
  ignore them;
* ``.to(device)`` / ``.cuda()`` still reach them, because :meth:`FrozenPrior._apply` forwards the
  move; a ``train()`` call does not, so they stay in ``eval()`` mode.

Convention 5 of ``shared/conventions.md`` (frozen pretrained models stay out of checkpoints).
"""

import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, Literal, Optional

import torch
from torch import nn

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "bf16"]


class PriorWeightsNotFoundError(FileNotFoundError):
    """Raised when the weights of a pretrained prior cannot be found locally (offline).

    The message names what was looked for, where, and how to provide it.
    """


SUITE_ROOT = Path(__file__).resolve().parents[2]


def resolve_suite_path(path: str) -> str:
    """``path`` as given when it exists; else, when relative, the same path under the suite's root.

    The shipped shapeworld priors are named in the configs relative to the repository
    (``shapeworld/weights/...``), so that they read the same in every YAML; this lets those configs run
    from any working directory. A path found in neither place is returned unchanged, so the caller's
    not-found error names what the user wrote.
    """
    if os.path.exists(path) or os.path.isabs(path) or path.startswith("~"):
        return path
    candidate = SUITE_ROOT / path
    return str(candidate) if candidate.exists() else path


def hf_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE=1``)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def hf_cache_dir(cache_dir: Optional[str] = None) -> str:
    """The hub cache directory that ``huggingface_hub`` reads (``HF_HUB_CACHE``) unless overridden."""
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def torch_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    """Compute dtype for a precision name; half precisions apply on CUDA only (CPU stays fp32)."""
    if device.type != "cuda" or precision == "fp32":
        return torch.float32
    return torch.float16 if precision == "fp16" else torch.bfloat16


class FrozenPrior(nn.Module):
    """A frozen pretrained network held outside the module tree (see the module docstring).

    Subclasses implement :meth:`_load_networks`, returning a dict of ``nn.Module``s, and keep any
    tensors they derive from the weights (e.g. a noise schedule) in ``self._tensors``.

    Args:
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``. Half precisions are used on CUDA only; on
            CPU the networks stay in fp32.
    """

    def __init__(self, precision: Precision = "fp32") -> None:
        super().__init__()
        if precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be 'fp32', 'fp16' or 'bf16', got {precision!r}")
        self.precision = precision
        # Empty non-persistent buffer: tracks the device the owner moved us to; not in state_dict.
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)
        self._nets: Dict[str, nn.Module] = {}
        self._tensors: Dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------- loading
    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` has run."""
        return bool(self._nets)

    @property
    def device(self) -> torch.device:
        """Device of the prior (follows ``.to()`` calls on the owning module)."""
        return self._device_anchor.device

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the networks on the current device."""
        return torch_dtype(self.precision, self.device)

    def load(self) -> "FrozenPrior":
        """Load the weights (once), freeze them and move them to this module's device.

        Returns:
            ``self``, so that ``prior = CLIPModel(...).load()`` works.
        """
        if self.loaded:
            return self
        nets = self._load_networks()
        for name, net in nets.items():
            net.requires_grad_(False)
            net.eval()
            self._nets[name] = net
        self._place()
        return self

    def setup(self, stage: Optional[str] = None) -> None:
        """Alias of :meth:`load` for symmetry with Lightning hooks."""
        self.load()

    def _load_networks(self) -> Dict[str, nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ensure_loaded(self) -> None:
        if not self.loaded:
            log.info("%s: loading weights on first use", type(self).__name__)
            self.load()

    # ---------------------------------------------------------------- device moves
    def _place(self) -> None:
        """Move the hidden networks and tensors to the anchor's device and compute dtype."""
        device, dtype = self.device, self.dtype
        for net in self._nets.values():
            first = next(iter(net.parameters()), None)
            if first is not None and (first.device != device or first.dtype != dtype):
                net.to(device=device, dtype=dtype)
        for key, value in self._tensors.items():
            self._tensors[key] = value.to(device)

    def _apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> "FrozenPrior":
        super()._apply(fn, *args, **kwargs)
        if self._nets or self._tensors:
            self._place()
        return self

    def train(self, mode: bool = True) -> "FrozenPrior":
        """Keep the hidden networks in eval mode whatever the owner's mode."""
        super().train(mode)
        for net in self._nets.values():
            net.eval()
        return self

    def extra_repr(self) -> str:
        return f"precision={self.precision}, loaded={self.loaded}"
