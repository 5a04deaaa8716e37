"""Images read one at a time: a folder of files or a Hugging Face dataset, never all at once.

A :class:`LazyImages` split holds only what names its samples (file paths, row numbers)
and their labels; an item is decoded when it is asked for, which in training happens
in the data loader's worker processes. Memory therefore stays bounded by the loader
(its batches in flight), not by the dataset.

Each item goes through the split's ``transform`` (by default the evaluation transform
of the run's recipe: fit to size, scale, normalize; see :mod:`onefit.data.augment`).
Normalization statistics are estimated from a seeded sample of training images
(:func:`sample_stats`), since reading every image of a large dataset only for them
would cost a pass over the data.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "red.png")
    >>> images = FileImages([root / "red.png"], torch.tensor([0]), size=16, channels=3)
    >>> x, y = images[0]
    >>> tuple(x.shape), x.dtype, y
    ((3, 16, 16), torch.float32, 0)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image  # a dependency of torchvision
from torch.utils.data import Dataset
from torchvision.transforms import v2

from onefit.data.base import DataError
from onefit.errors import UserError

Transform = Callable[[torch.Tensor], torch.Tensor]
# Training images whose statistics stand for the whole split (ImageNet: ~5 s to read).
STATS_SAMPLE = 1000


class LazyImages(Dataset[tuple[torch.Tensor, int]]):
    """Base class: items ``(image, label)`` decoded per item; subclasses implement
    :meth:`read` (one stored image as uint8 ``C x H x W``) and :meth:`where` (what to
    name in an error)."""

    divisor = 255.0  # stored values are 0..255

    def __init__(
        self,
        labels: torch.Tensor,
        *,
        size: int,
        channels: int,
        indices: torch.Tensor | None = None,
        transform: Transform | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise UserError(f"channels must be 1 or 3, got {channels!r}")
        self._labels = labels
        self.size, self.channels = size, channels
        self.indices = torch.arange(len(labels)) if indices is None else indices
        # Until a recipe sets one: fit to size and scale to [0, 1].
        self.transform: Transform = transform or v2.Compose(
            [v2.Resize(size, antialias=True), v2.CenterCrop(size),
             v2.ToDtype(torch.float32, scale=True)]
        )  # fmt: skip

    def read(self, position: int) -> torch.Tensor:
        """The stored image at ``position`` as uint8 ``(channels, H, W)``."""
        raise NotImplementedError

    def where(self, position: int) -> str:
        """Where the image at ``position`` lives (a path, a row), for error messages."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        position = int(self.indices[index])
        return self.transform(self.read(position)), int(self._labels[position])

    def subset(self, indices: torch.Tensor) -> LazyImages:
        """The samples at ``indices`` of this one (a view: nothing is read)."""
        view = copy.copy(self)
        view.indices = self.indices[indices]
        return view

    def with_transform(self, transform: Transform) -> LazyImages:
        """The same samples through another transform (a recipe's training one, say)."""
        view = copy.copy(self)
        view.transform = transform
        return view

    @property
    def labels(self) -> torch.Tensor:
        return self._labels[self.indices]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every item decoded and stacked (small datasets only: this reads them all)."""
        items = [self[i] for i in range(len(self))]
        return torch.stack([x for x, _ in items]), self.labels


class FileImages(LazyImages):
    """One image file per sample (an ImageFolder tree), decoded with Pillow (torchvision's
    own decoders are deprecated since 0.29 in favour of TorchCodec)."""

    def __init__(self, files: Sequence[Path], labels: torch.Tensor, **kwargs: Any) -> None:
        super().__init__(labels, **kwargs)
        # Paths as strings in one numpy array: cheap to copy into every worker process.
        self.files = np.array([os.fspath(f) for f in files])

    def where(self, position: int) -> str:
        return str(self.files[position])

    def read(self, position: int) -> torch.Tensor:
        path = str(self.files[position])
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB" if self.channels == 3 else "L"))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise DataError(f"{path}: cannot read this image ({error})") from None
        tensor = torch.from_numpy(array.copy())
        return tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


def sample_stats(
    items: LazyImages,
    geometry: Transform,
    *,
    sample: int = STATS_SAMPLE,
    seed: int = 0,
) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """Per-channel mean and std (in [0, 1] units) of up to ``sample`` of ``items``
    (drawn with ``seed``) after ``geometry``; returns them and the number read."""
    n = len(items)
    chosen = np.sort(np.random.default_rng(seed).permutation(n)[: min(n, sample)])
    total = torch.zeros(items.channels, dtype=torch.float64)
    squares = torch.zeros(items.channels, dtype=torch.float64)
    pixels = 0
    for i in chosen:
        image = geometry(items.read(int(items.indices[int(i)]))).to(torch.float64) / 255.0
        total += image.sum(dim=(1, 2))
        squares += (image * image).sum(dim=(1, 2))
        pixels += image.shape[1] * image.shape[2]
    mean = total / pixels
    std = (squares / pixels - mean**2).clamp_min(0).sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist()), len(chosen)


__all__ = ["FileImages", "LazyImages", "sample_stats"]
