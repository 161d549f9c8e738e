"""LMConvSystem: order-agnostic training and evaluation of the LMConv PixelCNN (thesis ch. 2; specs/lmconv.md).

Training (spec §2.8): each step draws one order ``k ~ Uniform{0..K−1}`` from a generator keyed on
``global_step`` (all DDP ranks agree), one teacher-forced pass gives all conditionals, and the loss is
the NLL in nats *summed* over batch and dimensions (so the thesis's clip value 2e6 applies; set
``trainer.gradient_clip_val: 2.0e6``). Adam(2e−4, betas (0.9, 0.999)), LR × ``lr_decay`` per step or
per epoch (spec §6 item 1).

Evaluation (spec §2.9): NLL in nats per image and bits/dim ``= NLL / (D ln 2)`` with ``D = C·H·W`` under
order 0 ("1 order") and the order ensemble ``logsumexp_k log p(x; π_k) − log K``; conditional NLL of the
hidden T/B/L half under a max-context and an adversarial order (nats per image). At the end of
validation epochs it writes a sample grid and a completion grid (Obs | sample | GT) as PNGs.
"""

import math
from typing import Literal, Optional

import torch
from lightning.pytorch import LightningModule

from lmconv.imaging import completion_rows, image_grid, levels_to_uint8, log_image
from lmconv.likelihoods import BinaryLikelihood, DiscretizedLogisticMixtureLikelihood
from lmconv.masks import MaskBank
from lmconv.model import LMConvModel, log_mean_exp
from lmconv.network import LMConvNetwork
from lmconv.sampling import complete, sample

Region = Literal["T", "B", "L"]


def region_mask(region: str, height: int, width: int) -> torch.Tensor:
    """``[H, W]`` bool hidden mask: T rows ``[0, H/2)``, B rows ``[H/2, H)``, L columns ``[0, W/2)`` (spec §2.9)."""
    m = torch.zeros(height, width, dtype=torch.bool)
    if region == "T":
        m[: height // 2] = True
    elif region == "B":
        m[height // 2:] = True
    elif region == "L":
        m[:, : width // 2] = True
    else:
        raise ValueError(f"Unknown completion region {region!r}; use 'T', 'B' or 'L'.")
    return m


class LMConvSystem(LightningModule):
    """Locally masked PixelCNN trained over a set of generation orders.

    Args:
        image_size: ``(H, W)`` of the data; the order masks are built for it once.
        extra_image_sizes: further resolutions to build masks for (progressive training).
        channels: image channels (1 or 3).
        likelihood: ``binary`` (2-way softmax) or ``dlm`` (discretized logistic mixture).
        n_bins: levels per channel for ``dlm`` (256 8-bit, 32 5-bit, 17 digits); ``binary`` uses 2.
        n_mix: mixture components (10).
        filters: ``F`` (160 [C]; 46M parameters at nr_resnet 5).
        nr_resnet: gated residual blocks per stage (5).
        kernel_size: LMConv kernel (3).
        dilation: dilation of the 4 down/up-sampling replacements (2).
        dropout: Dropout2d in residual blocks (0 [T]).
        mask_conditioning: Algorithm 4 (off [T]).
        memory_efficient: recomputing LMConv backward (less memory, slower).
        order_family: ``raster``, ``s_curve``, ``hilbert`` or ``random``.
        train_variants: the K variant indices (0..7) trained on; ``[0]`` with ``raster`` is PixelCNN++ (1 stream).
        order_seed: seed of the per-step order draw (and of the ``random`` family).
        lr: Adam learning rate (2e−4 [T]).
        lr_decay: multiplicative decay (0.999995 [T]).
        lr_decay_interval: apply the decay every ``step`` [T] or every ``epoch`` [C].
        eval_ensemble: evaluate all K orders and their ensemble (K passes) besides order 0.
        completion_regions: hidden halves whose conditional NLL is logged.
        num_samples: images in the sample grid (0 switches sample grids off).
        num_completions: validation images completed per grid (0 switches completion grids off).
        images_every_n_epochs: write grids every N validation epochs.
    """

    def __init__(self, image_size: tuple[int, int] = (8, 8), extra_image_sizes: list[tuple[int, int]] = [],
                 channels: int = 1, likelihood: Literal["binary", "dlm"] = "binary", n_bins: int = 256,
                 n_mix: int = 10, filters: int = 160, nr_resnet: int = 5, kernel_size: int = 3, dilation: int = 2,
                 dropout: float = 0.0, mask_conditioning: bool = False, memory_efficient: bool = False,
                 order_family: Literal["raster", "s_curve", "hilbert", "random"] = "s_curve",
                 train_variants: list[int] = [0, 1, 2, 3, 4, 5, 6, 7], order_seed: int = 1, lr: float = 2e-4,
                 lr_decay: float = 0.999995, lr_decay_interval: Literal["step", "epoch"] = "step",
                 eval_ensemble: bool = True, completion_regions: list[Region] = ["T"], num_samples: int = 16,
                 num_completions: int = 8, images_every_n_epochs: int = 1) -> None:
        super().__init__()
        self.save_hyperparameters()
        if likelihood == "binary":
            if channels != 1:
                raise ValueError("The binary likelihood models 1-channel images; use likelihood='dlm' for colour.")
            lik = BinaryLikelihood()
        else:
            lik = DiscretizedLogisticMixtureLikelihood(channels, n_bins, n_mix)
        sizes = [tuple(image_size)] + [tuple(s) for s in extra_image_sizes]
        network = LMConvNetwork(channels, lik.out_channels, filters, nr_resnet, kernel_size, dilation, dropout,
                                mask_conditioning, memory_efficient)
        masks = MaskBank(order_family, train_variants, sizes, kernel_size, dilation, order_seed)
        self.model = LMConvModel(network, lik, masks)
        self._first_val: Optional[torch.Tensor] = None

    # -- training ------------------------------------------------------------------------------------
    def order_index(self, step: int) -> int:
        """Order for ``step``: uniform over K, keyed on the step so every rank agrees (spec §2.8 [S])."""
        g = torch.Generator().manual_seed(self.hparams.order_seed * 1_000_003 + int(step))
        return int(torch.randint(self.model.num_orders, (1,), generator=g))

    def _dims(self, batch: torch.Tensor) -> int:
        return batch[0].numel()  # D = C·H·W

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        k = self.order_index(self.global_step)  # 1. one order per minibatch (eq. 2.6, single-sample estimate)
        log_p = self.model.log_prob(batch, k)  # 2. all conditionals in one pass (eq. 2.1)  [B]
        loss = -log_p.sum()  # 3. summed nats [C]; clipping at 2e6 assumes this scale
        b = batch.shape[0]
        self.log_dict({"train/loss": loss, "train/nll_nats": loss / b,
                       "train/bpd": loss / (b * self._dims(batch) * math.log(2)), "train/order": float(k)},
                      batch_size=b, prog_bar=False)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, betas=(0.9, 0.999), eps=1e-8)
        decay = self.hparams.lr_decay
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda n: decay**n)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.hparams.lr_decay_interval}}

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluation_metrics(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image metrics (means over the batch) for one batch of levels (spec §2.9)."""
        d_ln2 = self._dims(batch) * math.log(2)
        orders = range(self.model.num_orders) if self.hparams.eval_ensemble else [0]
        lp = torch.stack([self.model.log_prob(batch, k) for k in orders])  # [K, B]
        out = {"nll_nats_1order": -lp[0].mean(), "bpd_1order": -lp[0].mean() / d_ln2}
        if self.hparams.eval_ensemble:
            kk = lp.shape[0]
            ens = log_mean_exp(lp)  # log p_ens(x) = logsumexp_k log p(x; π_k) − log K
            out[f"nll_nats_ens{kk}"], out[f"bpd_ens{kk}"] = -ens.mean(), -ens.mean() / d_ln2
            for k in range(kk):
                out[f"bpd_order{k}"] = -lp[k].mean() / d_ln2
        h, w = batch.shape[-2:]
        for region in self.hparams.completion_regions:
            hidden = region_mask(region, h, w)
            for name, last in (("maxctx", True), ("adv", False)):
                order = self.model.completion_order(hidden, hidden_last=last)
                out[f"cond_{region}_{name}"] = -self.model.conditional_log_prob(batch, hidden, order).mean()
        return out

    def _eval_step(self, batch: torch.Tensor, stage: str) -> None:
        metrics = self.evaluation_metrics(batch)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, batch_size=batch.shape[0], sync_dist=True)
        if stage == "val":
            self.log("val/loss", metrics["nll_nats_1order"], batch_size=batch.shape[0], sync_dist=True)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        if batch_idx == 0:
            self._first_val = batch[: max(self.hparams.num_completions, 1)].detach()
        self._eval_step(batch, "val")

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # -- data sanity and image logging ---------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        lik = self.model.likelihood
        for attr, want in (("channels", lik.channels), ("n_bins", lik.n_bins)):
            have = getattr(dm, attr, None)
            if have is not None and have != want:
                raise ValueError(f"The datamodule gives {attr}={have} but the model was configured for {want}; "
                                 f"set model.init_args to match the data.")
        size = getattr(dm, "image_size", None)
        if size is not None:
            self.model.masks._check_size(*size)

    def on_validation_epoch_end(self) -> None:
        hp = self.hparams
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        if hp.images_every_n_epochs <= 0 or self.current_epoch % hp.images_every_n_epochs:
            return
        self.write_image_grids(f"step{self.global_step:07d}")

    @torch.no_grad()
    def write_image_grids(self, tag: str) -> None:
        """Sample grid (order 0) and completion grid of the first validation images (T hidden, max context)."""
        hp, lik = self.hparams, self.model.likelihood
        g = torch.Generator(device=self.device).manual_seed(0)
        size = tuple(hp.image_size)
        if hp.num_samples > 0:
            imgs = sample(self.model, hp.num_samples, size, order=0, generator=g)
            grid = image_grid(levels_to_uint8(imgs, lik.n_bins), ncols=int(math.ceil(math.sqrt(hp.num_samples))),
                              upscale=max(1, 64 // size[0]))
            log_image(self.trainer, "samples", grid, f"samples_{tag}.png", "samples, order 0")
        if hp.num_completions > 0 and self._first_val is not None:
            gt = self._first_val[: hp.num_completions]
            hidden = region_mask("T", *gt.shape[-2:])
            done = complete(self.model, gt, hidden, generator=g)
            obs = gt.clone()
            obs[:, :, hidden.to(obs.device)] = 0
            rows = completion_rows(*(levels_to_uint8(t, lik.n_bins) for t in (obs, done, gt)))
            grid = image_grid(rows, ncols=3, upscale=max(1, 64 // size[0]))
            log_image(self.trainer, "completions", grid, f"completions_{tag}.png", "Obs | sample | GT (top hidden)")
