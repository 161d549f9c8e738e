"""Datasets for LMConv (specs/lmconv.md §3, §5). Every batch is ``[B, C, H, W]`` integer levels (long).

* :class:`DigitsDataModule`: scikit-learn's bundled 8×8 digits (UCI "Optical Recognition of Handwritten
  Digits", CC BY 4.0), the offline default; ``binary`` (dynamic binarization ``1[u < v/16]``) or ``gray17``
  (17 levels for the DLM). Seeded 80/20 split, 1437 train / 360 test.
* :class:`MNISTDataModule`, :class:`CIFAR10DataModule`: torchvision datasets from a user folder
  (``download=True`` on a machine that can reach the internet).
* :class:`CelebAHQDataModule`: a folder of images, resized (antialiased) then quantized to ``bits``.

Dynamic binarization redraws ``u`` every time a training image is loaded [T]; the evaluation split is
binarized once with a fixed seed (spec §6 item 12). There is no separate validation split: validation
and test both read the held-out split, as the thesis reports test numbers.
"""

import math
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset


class LevelsDataset(Dataset):
    """Images as integer levels ``[N, C, H, W]``; optional dynamic binarization with ``p = v / max_value``."""

    def __init__(self, levels: torch.Tensor, binarize: bool = False, max_value: int = 255) -> None:
        self.levels, self.binarize, self.max_value = levels, binarize, max_value

    def __len__(self) -> int:
        return len(self.levels)

    def __getitem__(self, i: int) -> torch.Tensor:
        v = self.levels[i]
        if self.binarize:
            return (torch.rand(v.shape) < v.float() / self.max_value).long()  # x_bin = 1[u < v/max]
        return v.long()


def binarize_once(levels: torch.Tensor, max_value: int, seed: int) -> torch.Tensor:
    """Fixed-seed binarization of an evaluation split (spec §6 item 12)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(levels.shape, generator=g) < levels.float() / max_value).to(torch.uint8)


class _LevelsDataModule(LightningDataModule):
    """Shared loaders; subclasses fill ``self.train_levels`` / ``self.test_levels`` in :meth:`setup`."""

    channels: int = 1
    image_size: tuple[int, int] = (8, 8)
    n_bins: int = 2

    def __init__(self, batch_size: int, num_workers: int, binarize: bool, max_value: int, seed: int) -> None:
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.binarize, self.max_value, self.seed = binarize, max_value, seed
        self.train_set: Optional[Dataset] = None
        self.test_set: Optional[Dataset] = None

    def _finish(self, train_levels: torch.Tensor, test_levels: torch.Tensor) -> None:
        self.train_set = LevelsDataset(train_levels, self.binarize, self.max_value)
        if self.binarize:
            test_levels = binarize_once(test_levels, self.max_value, self.seed)
        self.test_set = LevelsDataset(test_levels)

    def _fake(self, n: int) -> None:
        """Random images of the dataset's shape (tests only; requested explicitly)."""
        g = torch.Generator().manual_seed(self.seed)
        shape = (n, self.channels, *self.image_size)
        levels = torch.randint(0, self.max_value + 1, shape, generator=g, dtype=torch.uint8)
        self._finish(levels, levels.clone())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, self.batch_size, shuffle=True, drop_last=len(self.train_set) > self.batch_size,
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class DigitsDataModule(_LevelsDataModule):
    """scikit-learn's 8×8 digits (1797 images, levels 0–16), no network needed.

    Args:
        variant: ``binary`` (2 levels, dynamic binarization ``p = v/16``) or ``gray17`` (17 levels).
        batch_size: images per batch.
        seed: seed of the 80/20 split and of the test-set binarization.
        test_fraction: held-out fraction (360 of 1797 at 0.2).
        num_workers: DataLoader workers.
    """

    def __init__(self, variant: Literal["binary", "gray17"] = "binary", batch_size: int = 32, seed: int = 0,
                 test_fraction: float = 0.2, num_workers: int = 0) -> None:
        super().__init__(batch_size, num_workers, variant == "binary", 16, seed)
        self.variant, self.test_fraction = variant, test_fraction
        self.channels, self.image_size, self.n_bins = 1, (8, 8), 2 if variant == "binary" else 17

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
            raise ImportError("DigitsDataModule needs scikit-learn (pip install scikit-learn).") from e
        images = torch.from_numpy(load_digits().images.astype(np.uint8))[:, None]  # [1797, 1, 8, 8], 0..16
        perm = torch.from_numpy(np.random.RandomState(self.seed).permutation(len(images)))
        n_test = int(math.ceil(self.test_fraction * len(images)))  # 360 of 1797 (spec §5)
        self._finish(images[perm[n_test:]], images[perm[:n_test]])


def _missing(what: str, root: Path, expected: str, how: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: looked for {expected} under '{root.resolve()}'. {how}")


class MNISTDataModule(_LevelsDataModule):
    """MNIST 28×28 from a user folder, dynamically binarized (2 levels) or 8-bit (256 levels).

    Args:
        root: folder holding ``MNIST/raw/*-ubyte`` (torchvision layout).
        binarize: dynamic binarization (binarized MNIST, Table 2.1) or 8-bit grayscale.
        download: let torchvision download into ``root`` (needs internet).
        batch_size / num_workers: loader settings (32 [T]).
        seed: seed of the test-set binarization.
        fake_samples: TESTS ONLY: if > 0, use this many random images instead of reading ``root``.
    """

    def __init__(self, root: str = "data/mnist", binarize: bool = True, download: bool = False, batch_size: int = 32,
                 num_workers: int = 0, seed: int = 0, fake_samples: int = 0) -> None:
        super().__init__(batch_size, num_workers, binarize, 255, seed)
        self.root, self.download, self.fake_samples = Path(root), download, fake_samples
        self.channels, self.image_size, self.n_bins = 1, (28, 28), 2 if binarize else 256

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        if self.fake_samples > 0:
            return self._fake(self.fake_samples)
        from torchvision.datasets import MNIST

        try:
            train, test = (MNIST(str(self.root), train=t, download=self.download) for t in (True, False))
        except RuntimeError as e:
            raise _missing("MNIST", self.root, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", (
                "Copy the torchvision MNIST folder there, point data.init_args.root at it, or set "
                "data.init_args.download=true on a machine with internet access.")) from e
        self._finish(train.data[:, None], test.data[:, None])


class CIFAR10DataModule(_LevelsDataModule):
    """CIFAR-10 32×32×3, 8-bit (256 levels), from a user folder.

    Args:
        root: folder holding ``cifar-10-batches-py/`` (torchvision layout).
        download: let torchvision download into ``root`` (needs internet).
        batch_size / num_workers: loader settings.
        seed: unused except by ``fake_samples``.
        fake_samples: TESTS ONLY: if > 0, use this many random images instead of reading ``root``.
    """

    def __init__(self, root: str = "data/cifar10", download: bool = False, batch_size: int = 32, num_workers: int = 0,
                 seed: int = 0, fake_samples: int = 0) -> None:
        super().__init__(batch_size, num_workers, False, 255, seed)
        self.root, self.download, self.fake_samples = Path(root), download, fake_samples
        self.channels, self.image_size, self.n_bins = 3, (32, 32), 256

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        if self.fake_samples > 0:
            return self._fake(self.fake_samples)
        from torchvision.datasets import CIFAR10

        try:
            train, test = (CIFAR10(str(self.root), train=t, download=self.download) for t in (True, False))
        except RuntimeError as e:
            raise _missing("CIFAR-10", self.root, "cifar-10-batches-py/{data_batch_1..5,test_batch}", (
                "Extract cifar-10-python.tar.gz there, point data.init_args.root at it, or set "
                "data.init_args.download=true on a machine with internet access.")) from e
        to_levels = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731 [N, 3, 32, 32]
        self._finish(to_levels(train.data), to_levels(test.data))


class CelebAHQDataModule(_LevelsDataModule):
    """CelebA-HQ from a folder of images, resized (antialiased) to ``image_size`` then quantized to ``bits``.

    Resize-then-quantize with ``floor(v / 2^(8−bits))`` (spec §6 item 13).

    Args:
        root: folder with ``train/`` and ``validation/`` subfolders of ``.png``/``.jpg`` images (Glow split
            27k/3k).
        image_size: side after resizing (256, or 64 / 32 for the qualitative model).
        bits: bits per channel (5 → 32 levels).
        batch_size / num_workers: loader settings (5 at 256×256 [T]).
        seed: unused except by ``fake_samples``.
        fake_samples: TESTS ONLY: if > 0, use this many random images instead of reading ``root``.
    """

    def __init__(self, root: str = "data/celebahq", image_size: int = 256, bits: int = 5, batch_size: int = 5,
                 num_workers: int = 0, seed: int = 0, fake_samples: int = 0) -> None:
        super().__init__(batch_size, num_workers, False, 2**bits - 1, seed)
        self.root, self.bits, self.fake_samples = Path(root), bits, fake_samples
        self.channels, self.image_size, self.n_bins = 3, (image_size, image_size), 2**bits

    def _load(self, split: str) -> torch.Tensor:
        from PIL import Image

        folder = self.root / split
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise _missing("CelebA-HQ", self.root, f"{split}/*.png|jpg", (
                "Export the Glow CelebA-HQ splits as image files into train/ and validation/ there, "
                "and point data.init_args.root at that folder."))
        out = []
        for f in files:
            img = Image.open(f).convert("RGB").resize(self.image_size[::-1], Image.Resampling.BILINEAR)
            v = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)  # [3, H, W]
            out.append(torch.div(v, 2 ** (8 - self.bits), rounding_mode="floor").to(torch.uint8))
        return torch.stack(out)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        if self.fake_samples > 0:
            return self._fake(self.fake_samples)
        self._finish(self._load("train"), self._load("validation"))
