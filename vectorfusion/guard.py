"""Non-finite guard of the SVG parameters: skip or roll back a bad step, stop after too many.

A latent-SDS step can produce NaN/Inf (a fp16 UNet overflow, an exploding learning rate, corrupt
input). VectorFusion's parameters are tiny (a few thousand floats), so the guard keeps a copy of the
last finite ones and:

* skips the optimiser step when the loss or a gradient is non-finite;
* restores the last finite parameters (and resets Adam, whose moments may be poisoned) when the
  parameters themselves turn non-finite, after an update or between steps;
* raises :class:`NonFiniteParametersError` with a message naming the fix once more than
  ``max_bad_steps`` steps in a row went wrong.

SVGs are only ever written from finite parameters (:func:`vectorfusion.svg.write_svg` refuses NaN),
so the last SVG on disk stays valid whatever happens.
"""

import logging

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


class NonFiniteParametersError(RuntimeError):
    """The SVG parameters kept turning NaN/Inf; the run stops (the last finite SVG on disk is intact)."""


class NonFiniteGuard:
    """Snapshot / rollback of a module's finite state and a count of consecutive bad steps.

    Args:
        module: the module whose ``state_dict`` is guarded (the SVG primitives).
        max_bad_steps: consecutive bad steps tolerated before :class:`NonFiniteParametersError`.
    """

    def __init__(self, module: nn.Module, max_bad_steps: int = 5) -> None:
        self.module, self.max_bad_steps = module, max_bad_steps
        self.bad_steps = 0
        self._last_good: dict[str, Tensor] = {}

    def finite(self) -> bool:
        """Whether every parameter of the module is finite."""
        return all(bool(torch.isfinite(p).all()) for p in self.module.parameters())

    @torch.no_grad()
    def snapshot(self) -> None:
        """Remember the current (finite) state."""
        self._last_good = {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    @torch.no_grad()
    def restore(self) -> None:
        """Put the last finite state back (in place: parameter identities are kept)."""
        if self._last_good:
            self.module.load_state_dict(self._last_good, strict=False)

    def good(self) -> None:
        """A successful step: reset the count and take a snapshot."""
        self.bad_steps = 0
        self.snapshot()

    def bad(self, step: int, what: str) -> bool:
        """Count a bad step (returns False); raise once there were too many in a row."""
        self.bad_steps += 1
        log.warning("VectorFusion step %d: %s; the step was skipped (%d in a row)", step, what, self.bad_steps)
        if self.bad_steps > self.max_bad_steps:
            raise NonFiniteParametersError(
                f"VectorFusion step {step}: {what} for {self.bad_steps} steps in a row. The run stops; the last "
                "SVG written to the run's media/ folder holds finite parameters (NaN is never written). Lower the "
                "learning rates (model.init_args.schedule), the guidance scale, or check the priors for NaNs.")
        return False

    @torch.no_grad()
    def restore_if_nonfinite(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """At the start of a step: roll back NaN/Inf parameters and reset the optimiser state."""
        if self.finite():
            return
        self.restore()
        optimizer.state.clear()
        self.bad_steps += 1
        log.warning("VectorFusion step %d: the SVG parameters were NaN/Inf at the start of the step; restored the "
                    "last finite ones and reset the optimiser state", step)
        if self.bad_steps > self.max_bad_steps or not self.finite():
            raise NonFiniteParametersError(f"VectorFusion step {step}: the SVG parameters are NaN/Inf and no finite "
                                           "snapshot is left; the run stops without writing a corrupt SVG.")
