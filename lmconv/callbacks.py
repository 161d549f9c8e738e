"""Parameter averaging over the last N epochs (thesis §2.6, CIFAR-10: "the last 45 epochs"; spec §2.8)."""

from typing import Optional

import torch
from lightning.pytorch import Callback


class EpochAveragingCallback(Callback):
    """At the end of training, load the uniform average of the parameters saved at the end of each of the
    last ``last_n_epochs`` training epochs (buffers are left as they are; the masks are not parameters).

    Args:
        last_n_epochs: how many final epochs to average (45 for CIFAR-10 [T]).
    """

    def __init__(self, last_n_epochs: int = 45) -> None:
        if last_n_epochs < 1:
            raise ValueError("last_n_epochs must be at least 1.")
        self.last_n_epochs = last_n_epochs
        self.sum: Optional[dict[str, torch.Tensor]] = None
        self.count = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.max_epochs is None or trainer.max_epochs < 1:
            raise ValueError("EpochAveragingCallback needs trainer.max_epochs to know which epochs are the last "
                             f"{self.last_n_epochs}; set trainer.max_epochs.")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch < trainer.max_epochs - self.last_n_epochs:
            return
        # A running float64 sum: one extra copy of the parameters, whatever N is.
        if self.sum is None:
            self.sum = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in pl_module.named_parameters()}
        for n, p in pl_module.named_parameters():
            self.sum[n] += p.detach().to(torch.float64)
        self.count += 1

    def averaged(self) -> dict[str, torch.Tensor]:
        """The element-wise mean of the stored parameter snapshots."""
        if not self.count:
            raise RuntimeError("No epoch has ended yet: nothing to average.")
        return {n: s / self.count for n, s in self.sum.items()}

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.count:
            return
        avg = self.averaged()
        with torch.no_grad():
            for n, p in pl_module.named_parameters():
                p.copy_(avg[n].to(p.dtype))
