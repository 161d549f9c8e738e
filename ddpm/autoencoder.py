"""A KL-regularised image autoencoder for latent diffusion (LDM stage 1), as a LightningModule.

Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", §3.1 and App. G:
an encoder E maps ``x`` ``[B, 3, H, W]`` to a diagonal Gaussian over latents ``z`` ``[B, c, H/f, W/f]``, a
decoder D maps ``z`` back, and training minimises a reconstruction loss plus a small KL term towards
N(0, I) (the "KL-reg." variant, weight ~1e-6), so that the latent space stays close to a standard normal
without losing detail. The network is diffusers' ``AutoencoderKL`` (the class of Stable Diffusion's VAE), so
the exported folder loads through :class:`common.priors.diffusion.DiffusionModel` like SD's.

Differences from LDM's recipe (written here because they are deliberate):

* the reconstruction loss is L1 only: LDM adds LPIPS (its VGG weights cannot be downloaded offline) and a
  patch-GAN from step ~50k (out of reach of a CPU run). For shapeworld's flat-shaded objects at 64² this is
  enough (``shapeworld/README.md`` gives the PSNR);
* the latent scale factor is computed after training as ``1 / std(z)`` over training latents, which is how
  LDM obtained SD's 0.18215 (LDM App. G, "rescale the latent ... by the component-wise standard deviation"),
  and stored in the exported config's ``scaling_factor``.
"""

import copy
import json
import math
from pathlib import Path
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from common.callbacks import log_media, run_dir
from common.export import image_grid, save_image
from common.io import atomic_dir


def latent_scale(vae: nn.Module, images: Tensor, batch: int = 64) -> float:
    """``1 / std`` of posterior samples ``z ~ q(z|x)`` of ``images`` ``[N, 3, H, W]`` in [−1, 1] (LDM App. G)."""
    zs = []
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i in range(0, len(images), batch):
            dist = vae.encode(images[i:i + batch].to(next(vae.parameters()).device)).latent_dist
            zs.append(dist.sample(g))
    return float(1.0 / torch.cat(zs).float().std())


class AutoencoderSystem(LightningModule):
    """Trains a diffusers ``AutoencoderKL`` with L1 reconstruction + β·KL.

    Args:
        block_out_channels: widths of the encoder's levels (reversed in the decoder); ``len − 1`` halvings give
            the downsampling factor f.
        layers_per_block: resnet blocks per level.
        latent_channels: c of the latents (4, as Stable Diffusion).
        norm_num_groups: group-norm groups.
        sample_size: training image size (informative, stored in the config).
        kl_weight: β of the KL term (LDM's KL-reg. first stages: 1e-6).
        lr: Adam learning rate (LDM: 4.5e-6 × batch for its large models; small models train faster).
        scale_images: training images used to compute the latent ``scaling_factor`` at export.
        image_key: batch key of images ``[B, 3, H, W]`` in [0, 1].
        export_dtype: dtype of the exported ``vae/`` folder.
        val_images: reconstructions in the validation grid.
    """

    def __init__(self, block_out_channels: Sequence[int] = (32, 64, 64), layers_per_block: int = 1,
                 latent_channels: int = 4, norm_num_groups: int = 16, sample_size: int = 64, kl_weight: float = 1e-6,
                 lr: float = 1e-3, scale_images: int = 512, image_key: str = "image",
                 export_dtype: Literal["float32", "float16"] = "float32", val_images: int = 16) -> None:
        super().__init__()
        from diffusers import AutoencoderKL

        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        if any(c % norm_num_groups for c in block_out_channels):
            raise ValueError(f"every block_out_channels {list(block_out_channels)} must be divisible by norm_num_groups "
                             f"{norm_num_groups}")
        self.save_hyperparameters()
        n = len(block_out_channels)
        self.vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                                 up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(block_out_channels),
                                 layers_per_block=layers_per_block, latent_channels=latent_channels,
                                 norm_num_groups=norm_num_groups, sample_size=sample_size)

    def _images(self, batch) -> Tensor:
        x = batch[self.hparams.image_key] if isinstance(batch, dict) else batch[0]
        return x * 2.0 - 1.0  # [0, 1] -> [−1, 1], the range of SD's VAE

    def losses(self, x: Tensor, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(total, L1, KL)`` of a batch ``x`` in [−1, 1]; KL is summed over latent elements, averaged over the batch."""
        dist = self.vae.encode(x).latent_dist
        z = dist.sample(generator)  # reparameterised: μ + σ·u
        recon = self.vae.decode(z).sample
        l1 = (recon - x).abs().mean()
        kl = dist.kl().mean()  # Σ over latent elements of KL(q(z|x) ‖ N(0, I)), mean over the batch
        return l1 + self.hparams.kl_weight * kl, l1, kl

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x = self._images(batch)
        loss, l1, kl = self.losses(x)
        self.log("train/l1", l1, prog_bar=True, batch_size=x.shape[0])
        self.log("train/kl", kl, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x = self._images(batch)
        with torch.no_grad():
            recon = self.vae.decode(self.vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        mse = F.mse_loss((recon + 1) / 2, (x + 1) / 2)
        self.log("val/psnr", -10 * torch.log10(mse), prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        if batch_idx == 0 and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            n = min(self.hparams.val_images, x.shape[0])
            grid = image_grid(torch.cat([(x[:n] + 1) / 2, (recon[:n] + 1) / 2]).permute(0, 2, 3, 1).cpu(), nrow=n)
            path = save_image(grid, run_dir(self.trainer) / "reconstructions" / f"step_{self.global_step:07d}.png")
            log_media(self.trainer, "val/reconstructions", path, "image")

    def configure_optimizers(self):
        return torch.optim.Adam(self.vae.parameters(), lr=self.hparams.lr, betas=(0.5, 0.9))  # LDM's first-stage betas

    # ------------------------------------------------------------------ export
    def export(self, path: Path, images: Optional[Tensor] = None) -> Path:
        """Write ``path/vae`` (diffusers folder) with ``scaling_factor`` = 1 / std of training latents (``images``
        ``[N, 3, H, W]`` in [0, 1]; without them the network's current factor is kept)."""
        vae = copy.deepcopy(self.vae).float().eval().cpu()
        if images is not None:
            vae.register_to_config(scaling_factor=latent_scale(vae, images.cpu() * 2 - 1))
        vae = vae.to(getattr(torch, self.hparams.export_dtype))
        target = Path(path) / "vae"
        with atomic_dir(target) as tmp:  # write, then rename
            vae.save_pretrained(tmp)
        return target

    def on_train_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        dm = self.trainer.datamodule
        images, n = [], 0
        for batch in dm.train_dataloader() if dm is not None else []:
            images.append(batch[self.hparams.image_key])
            n += len(images[-1])
            if n >= self.hparams.scale_images:
                break
        folder = self.export(run_dir(self.trainer) / "autoencoder", torch.cat(images)[: self.hparams.scale_images] if images else None)
        cfg = json.loads((folder / "config.json").read_text())
        print(f"autoencoder written to {folder} (scaling_factor {cfg['scaling_factor']:.4f}, "
              f"downsampling ×{2 ** (len(cfg['block_out_channels']) - 1)}, latent channels {cfg['latent_channels']})")


def downsampling_factor(vae: nn.Module) -> int:
    """f of an ``AutoencoderKL``: latents are ``[B, c, H/f, W/f]``."""
    return int(2 ** (len(vae.config.block_out_channels) - 1))


def load_autoencoder(folder: str) -> nn.Module:
    """A frozen fp32 ``AutoencoderKL`` from a diffusers folder, or a pipeline/run folder holding ``vae/`` or
    ``autoencoder/vae/``; a clear error if there is none."""
    from diffusers import AutoencoderKL

    root = Path(folder)
    for cand in (root, root / "vae", root / "autoencoder" / "vae"):
        if (cand / "config.json").is_file() and json.loads((cand / "config.json").read_text()).get("_class_name") == "AutoencoderKL":
            vae = AutoencoderKL.from_pretrained(str(cand)).float().eval().requires_grad_(False)
            if not math.isfinite(vae.config.scaling_factor):
                raise ValueError(f"{cand}: scaling_factor {vae.config.scaling_factor} is not finite")
            return vae
    raise FileNotFoundError(
        f"no diffusers AutoencoderKL in {root} (looked for config.json in {root}, {root}/vae and {root}/autoencoder/vae); "
        "train one with `lightning fit --config experiments/shapeworld/train_autoencoder.yaml` or pass the folder of "
        "a Stable Diffusion pipeline")
