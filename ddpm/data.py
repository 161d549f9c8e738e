"""Image datamodules for DDPM: any image folder, and CIFAR-10 from a user folder (no downloads by default).

Items are dicts ``{"image": [C, H, W] in [0, 1]}`` (plus ``"caption"`` where a folder provides one:
a ``<image stem>.txt`` file beside the image), the format :class:`ddpm.system.DDPMSystem` reads.
Training applies random horizontal flips (DDPM paper App. B: "random horizontal flips" on CIFAR-10).
"""

from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class ImageFolderDataset(Dataset):
    """Every image under ``root`` (recursively), resized and centre-cropped to ``size``."""

    def __init__(self, root: str, size: int, flip: bool = False, channels: int = 3) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}. Point data.init_args.root to a folder of images.")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {self.root}")
        self.mode = "RGB" if channels == 3 else "L"
        ops = [T.Resize(size), T.CenterCrop(size)] + ([T.RandomHorizontalFlip()] if flip else []) + [T.ToTensor()]
        self.transform = T.Compose(ops)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        path = self.files[i]
        item = {"image": self.transform(Image.open(path).convert(self.mode))}
        txt = path.with_suffix(".txt")
        if txt.is_file():
            item["caption"] = txt.read_text(encoding="utf-8").strip()
        return item


class ImageFolderDataModule(LightningDataModule):
    """Images from a folder, split deterministically into training and validation.

    Args:
        root: folder of images (searched recursively; optional ``<stem>.txt`` captions).
        image_size: side of the square training images.
        val_fraction: fraction of the images held out for validation (fixed split by ``seed``).
        flip: random horizontal flips in training.
        channels: 3 (RGB) or 1 (grey).
        seed: split seed.
        batch_size: batch size.
        num_workers: data loader workers.
    """

    def __init__(self, root: str, image_size: int = 32, val_fraction: float = 0.02, flip: bool = True, channels: int = 3,
                 seed: int = 0, batch_size: int = 128, num_workers: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: Optional[str] = None) -> None:
        h = self.hparams
        train = ImageFolderDataset(h.root, h.image_size, flip=h.flip, channels=h.channels)
        val = ImageFolderDataset(h.root, h.image_size, flip=False, channels=h.channels)
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(h.seed)).tolist()
        n_val = max(1, int(round(h.val_fraction * len(train))))
        self.val_set, self.train_set = Subset(val, perm[:n_val]), Subset(train, perm[n_val:])

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self.train_set, batch_size=h.batch_size, shuffle=True, drop_last=True, num_workers=h.num_workers,
                          persistent_workers=h.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)


class _DictImages(Dataset):
    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        image, label = self.base[i]
        return {"image": image, "label": label}


class CIFAR10DataModule(LightningDataModule):
    """CIFAR-10 (32×32) from a local folder: train split for training, test split for validation/FID.

    Args:
        root: folder that holds (or will hold) ``cifar-10-batches-py/``.
        download: let torchvision download it (needs internet; off by default).
        flip: random horizontal flips in training (DDPM paper).
        batch_size: batch size (128, DDPM paper).
        num_workers: data loader workers.
    """

    def __init__(self, root: str = "~/data/cifar10", download: bool = False, flip: bool = True, batch_size: int = 128,
                 num_workers: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()

    def _dataset(self, train: bool):
        from torchvision.datasets import CIFAR10

        root = Path(self.hparams.root).expanduser()
        ops = ([T.RandomHorizontalFlip()] if (train and self.hparams.flip) else []) + [T.ToTensor()]
        try:
            return CIFAR10(str(root), train=train, download=self.hparams.download, transform=T.Compose(ops))
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted."
            raise FileNotFoundError(
                f"CIFAR-10 not found in {root} (expected {root / 'cifar-10-batches-py'}). Fix: download "
                "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into "
                f"{root}, or pass --data.init_args.download=true on a machine with internet, or point "
                "--data.init_args.root to the folder that holds cifar-10-batches-py/."
            ) from e

    def prepare_data(self) -> None:
        self._dataset(True)

    def setup(self, stage: Optional[str] = None) -> None:
        self.train_set, self.val_set = _DictImages(self._dataset(True)), _DictImages(self._dataset(False))

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self.train_set, batch_size=h.batch_size, shuffle=True, drop_last=True, num_workers=h.num_workers,
                          persistent_workers=h.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)
