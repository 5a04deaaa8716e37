"""Train/val splits of an in-memory image dataset, normalized with train statistics.

Images stay in the dtype they were stored in (uint8 for every on-disk format, a quarter
of float32's memory, so all of CIFAR fits easily) and are converted, scaled to [0, 1]
and normalized one item at a time in :meth:`ImageDataset.__getitem__`.

Example:
    >>> import torch
    >>> images = torch.arange(10 * 3 * 4 * 4, dtype=torch.uint8).reshape(10, 3, 4, 4)
    >>> splits = from_tensors(images, torch.arange(10) % 2, val_fraction=0.3, seed=0)
    >>> len(splits.train), len(splits.val), splits.num_classes, splits.in_channels
    (7, 3, 2, 3)
    >>> x, y = splits.train[0]
    >>> x.shape, x.dtype, type(y)
    (torch.Size([3, 4, 4]), torch.float32, <class 'int'>)
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from onefit.errors import UserError, UserTypeError

# Rows converted to float64 at a time when computing statistics or resizing: large
# enough to be fast, small enough that CIFAR never needs a full float copy (~25 MB).
_CHUNK = 1024
# A channel whose train std is below this (a constant border, blank images) is left
# unscaled: dividing by ~0 would turn every other split's values into inf.
_MIN_STD = 1e-6
# ITU-R 601-2 luma, the weights Pillow uses for RGB -> L, so a folder read as L and an
# RGB tensor converted here agree.
_LUMA = (0.299, 0.587, 0.114)


def check_val_fraction(val_fraction: float) -> None:
    """Raise ``ValueError`` unless ``0 < val_fraction < 1``."""
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, numbers.Real)
        or not 0 < val_fraction < 1
    ):
        raise UserError(
            f"val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}"
        )


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted train and val indices of a seeded random split of ``range(n)``.

    ``round(val_fraction * n)`` samples go to validation. numpy's PCG64 generator gives
    the same permutation for a seed on every platform.

    Example:
        >>> train, val = split_indices(10, 0.3, seed=0)
        >>> len(train), len(val), sorted(train.tolist() + val.tolist()) == list(range(10))
        (7, 3, True)
    """
    check_val_fraction(val_fraction)
    n_val = round(val_fraction * n)
    if n_val < 1 or n_val >= n:
        raise UserError(
            f"val_fraction={val_fraction} of {n} samples gives {n - n_val} for training and "
            f"{n_val} for validation; both need at least one sample"
        )
    permutation = np.random.default_rng(seed).permutation(n)
    # Sorted indices read the stored tensor in order; the DataLoader shuffles anyway.
    val = np.sort(permutation[:n_val])
    train = np.sort(permutation[n_val:])
    return torch.from_numpy(train), torch.from_numpy(val)


def calibration_indices(n: int, count: int, seed: int = 0) -> list[int]:
    """``count`` of the indices ``range(n)``, drawn without replacement under ``seed`` and
    sorted: the items a BN recalibration reads.

    Not the first ``count``: image folders list their files class by class, so the
    first items of a CIFAR-10 tree are all airplanes, and statistics from one class
    mis-calibrate every sub-network (accuracy fell from 40 % to 24 % in the benchmark
    that found it). The same every call, so evaluations stay comparable.

    Example:
        >>> calibration_indices(10, 4)
        [1, 4, 5, 7]
        >>> calibration_indices(3, 5)
        [0, 1, 2]
    """
    if count >= n:
        return list(range(n))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=generator)[:count].tolist())


def _divisor(images: torch.Tensor) -> float:
    """What stored values are divided by to land in [0, 1]."""
    return 255.0 if images.dtype == torch.uint8 else 1.0


def channel_stats(
    images: torch.Tensor, indices: torch.Tensor
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``images[indices]`` scaled to [0, 1]."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    divisor = _divisor(images)
    for start in range(0, len(indices), _CHUNK):
        x = images[indices[start : start + _CHUNK]].to(torch.float64) / divisor
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    count = len(indices) * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean**2).clamp_min(0).sqrt()
    std = torch.where(std > _MIN_STD, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """One split: items ``(image, label)``, the image float32 ``C x H x W``, normalized.

    ``indices`` are the positions of this split's samples in the stored tensor, which
    train and val share (no copy is made). ``transform``, when given, maps one stored
    image to the item (an augmentation recipe's, see :mod:`onefit.data.augment`) in place
    of plain scaling and normalization.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self._images = images
        self._labels = labels
        self.indices = indices
        self._divisor = _divisor(images)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.transform = transform

    def with_transform(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> ImageDataset:
        """The same samples through ``transform`` (nothing is copied)."""
        view = copy.copy(self)
        view.transform = transform
        return view

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def divisor(self) -> float:
        """What stored pixel values are divided by before normalizing (255 for uint8)."""
        return self._divisor

    def _normalize(self, stored: torch.Tensor) -> torch.Tensor:
        return (stored.to(torch.float32) / self._divisor - self._mean) / self._std

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        position = self.indices[index]
        stored = self._images[position]
        image = self._normalize(stored) if self.transform is None else self.transform(stored)
        return image, int(self._labels[position])

    @property
    def labels(self) -> torch.Tensor:
        """This split's labels, ``(len(self),)`` int64."""
        return self._labels[self.indices]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All items at once: ``(x, y)`` with x float32 ``(N, C, H, W)`` (small datasets only)."""
        if self.transform is not None:
            return torch.stack([self[i][0] for i in range(len(self))]), self.labels
        return self._normalize(self._images[self.indices]), self.labels


class TokenDataset(Dataset[tuple[torch.Tensor, int]]):
    """One split of token-id sequences: items ``(ids int64 (L,), label)``, as stored."""

    divisor = 1.0

    def __init__(self, ids: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        self._ids, self._labels, self.indices = ids, labels, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        position = self.indices[index]
        return self._ids[position], int(self._labels[position])

    @property
    def labels(self) -> torch.Tensor:
        return self._labels[self.indices]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All items at once: ``(ids (N, L) int64, labels (N,))``."""
        return self._ids[self.indices], self.labels


class Samples(Protocol):
    """What a split is to onefit: a sized, indexable set of ``(input, target)`` pairs."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


@dataclass(frozen=True)
class DataSplits:
    """Train and validation splits of one dataset, with what a model needs to know about it.

    ``mean``/``std`` are per channel, computed on the train split only (so nothing about
    the validation images leaks into training) and already applied to every item.
    """

    # onefit's own datasets, or any torch Dataset of (input, target) pairs (from_datasets).
    train: Samples
    val: Samples
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    # How items are made: the recipe, the size, the statistics and where they came from
    # (recorded in the run and in model cards); empty for plain in-memory tensors.
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """A one-line summary.

        Example:
            >>> import torch
            >>> images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
            >>> from_tensors(images, torch.tensor([0, 1, 0, 1]), val_fraction=0.5).describe()
            'tensors: 2 train / 2 val images, 1x2x2, 2 classes, mean (0.000,) std (1.000,)'
        """
        if isinstance(self.train, TokenDataset):
            return (
                f"{self.name}: {len(self.train)} train / {len(self.val)} val sequences of "
                f"{self.image_size} tokens, {self.num_classes} classes"
            )
        mean = ", ".join(f"{m:.3f}" for m in self.mean)
        std = ", ".join(f"{s:.3f}" for s in self.std)
        comma = "," if len(self.mean) == 1 else ""
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val images, "
            f"{self.in_channels}x{self.image_size}x{self.image_size}, "
            f"{self.num_classes} classes, mean ({mean}{comma}) std ({std}{comma})"
        )

    def train_tensors(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The train split as ``(x, y)`` tensors (x float32 normalized for images): all of
        it, or ``limit`` items spread over it (:func:`calibration_indices`: all a BN
        recalibration reads; a lazy dataset then decodes only those)."""
        if limit is not None and limit < len(self.train):
            return stack_items(self.train, calibration_indices(len(self.train), limit))
        return split_tensors(self.train)

    def val_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole validation split as ``(x, y)`` tensors (x float32 normalized for images)."""
        return split_tensors(self.val)

    @property
    def divisor(self) -> float:
        """What stored pixel values are divided by before normalizing (1 when unknown)."""
        return float(getattr(self.train, "divisor", 1.0))


def stack_items(
    dataset: Samples, indices: Iterable[int], target_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(input, target)`` items at ``indices`` stacked into ``(inputs, targets)``,
    targets converted to ``target_dtype`` when given (a batch)."""
    items = [dataset[int(i)] for i in indices]
    inputs = torch.stack([torch.as_tensor(x) for x, _ in items])
    targets = torch.stack([torch.as_tensor(y) for _, y in items])
    return inputs, targets if target_dtype is None else targets.to(target_dtype)


def split_tensors(dataset: Samples) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item of ``dataset`` stacked: ``(inputs, targets)`` (small datasets only)."""
    tensors = getattr(dataset, "tensors", None)
    if callable(tensors):
        return tensors()
    return stack_items(dataset, range(len(dataset)))


def from_datasets(
    train: Samples,
    val: Samples,
    *,
    name: str = "datasets",
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
) -> DataSplits:
    """Wrap two torch Datasets of ``(input, target)`` pairs as :class:`DataSplits`.

    Inputs are used as they are (normalize them in the dataset; the recorded mean and
    std are empty). ``num_classes`` defaults to ``len(classes)``, the dataset's
    ``classes`` attribute (as torchvision's datasets have), the largest integer target
    + 1 over the train split, or, for real-valued targets, the number of values in one.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> x, y = torch.randn(10, 3, 8, 8), torch.randn(10, 2)
        >>> splits = from_datasets(TensorDataset(x[:8], y[:8]), TensorDataset(x[8:], y[8:]))
        >>> splits.num_classes, splits.in_channels, splits.image_size
        (2, 3, 8)
    """
    for role, dataset in (("train", train), ("val", val)):
        if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__"):
            raise UserTypeError(
                f"{role} data must be a torch Dataset with a length, got {type(dataset).__name__}"
            )
        if len(dataset) == 0:
            raise UserError(f"{role} data is empty")
    first = train[0]
    if not isinstance(first, (tuple, list)) or len(first) != 2:
        raise UserError(
            "each item of the train data must be an (input, target) pair, got "
            f"{type(first).__name__}"
        )
    x, y = torch.as_tensor(first[0]), torch.as_tensor(first[1])
    classes = classes if classes is not None else getattr(train, "classes", None)
    if num_classes is None:
        if classes is not None:
            num_classes = len(classes)
        elif y.is_floating_point():
            num_classes = max(1, y.numel())
        else:
            num_classes = int(split_tensors(train)[1].max()) + 1
    return DataSplits(
        train=train,
        val=val,
        name=name,
        num_classes=num_classes,
        in_channels=int(x.shape[0]) if x.dim() == 3 else 1,
        image_size=int(x.shape[-1]) if x.dim() >= 1 else 1,
        mean=(),
        std=(),
        classes=tuple(classes) if classes is not None else tuple(map(str, range(num_classes))),
    )


def _as_tensor(value: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value
    raise UserTypeError(f"{what} must be a torch.Tensor or numpy array, got {type(value).__name__}")


def _check_labels(
    labels: torch.Tensor, n: int, num_classes: int | None, classes: Sequence[str] | None
) -> int:
    """Validate labels against the images; return the number of classes."""
    if labels.ndim != 1 or len(labels) != n:
        raise UserError(
            f"labels must be a (N,) tensor with N = {n} (one per image), "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise UserTypeError(f"labels must be integers, got dtype {labels.dtype}")
    if classes is not None:
        if num_classes is not None and num_classes != len(classes):
            raise UserError(f"num_classes={num_classes} but {len(classes)} class names given")
        num_classes = len(classes)
    low, high = int(labels.min()), int(labels.max())
    if num_classes is None:
        num_classes = high + 1
    if low < 0 or high >= num_classes:
        raise UserError(
            f"labels must lie in 0..{num_classes - 1} ({num_classes} classes), "
            f"got values from {low} to {high}"
        )
    return num_classes


def from_tensors(
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    name: str = "tensors",
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
) -> DataSplits:
    """Split in-memory images into normalized train/val datasets.

    ``images`` is ``(N, C, H, W)`` with ``H == W``: uint8 (divided by 255) or floating
    point (used as given, expected in [0, 1]). ``labels`` is ``(N,)`` of integers in
    ``0..num_classes-1``; ``num_classes`` defaults to ``len(classes)`` or the largest
    label + 1. The tensors are kept, not copied.

    Example:
        >>> import torch
        >>> images = torch.rand(20, 1, 6, 6)
        >>> splits = from_tensors(images, torch.arange(20) % 4, val_fraction=0.25, seed=1)
        >>> len(splits.train), len(splits.val), splits.num_classes, splits.image_size
        (15, 5, 4, 6)
    """
    images = _as_tensor(images, "images")
    labels = _as_tensor(labels, "labels")
    if images.ndim != 4:
        raise UserError(f"images must be a (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    n, channels, height, width = images.shape
    if n == 0 or channels == 0:
        raise UserError(f"images must hold at least one image, got shape {tuple(images.shape)}")
    if height != width:
        raise UserError(
            f"images must be square (H == W), got {height}x{width}; resize or crop them first"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise UserTypeError(f"images must be uint8 (0..255) or floating point, got {images.dtype}")
    num_classes = _check_labels(labels, n, num_classes, classes)
    labels = labels.to(torch.int64)
    train, val = split_indices(n, val_fraction, seed)
    mean, std = channel_stats(images, train)
    return DataSplits(
        train=ImageDataset(images, labels, train, mean=mean, std=std),
        val=ImageDataset(images, labels, val, mean=mean, std=std),
        name=name,
        num_classes=num_classes,
        in_channels=channels,
        image_size=height,
        mean=mean,
        std=std,
        classes=tuple(classes) if classes is not None else tuple(map(str, range(num_classes))),
    )


def from_tokens(
    ids: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    name: str = "tokens",
    num_classes: int | None = None,
) -> DataSplits:
    """Split sequences of token ids ``(N, L)`` for text supernets (the ``bert`` family).

    Splits carry the sequence length as ``image_size`` (what supernets are built with)
    and one "channel".

    Example:
        >>> import torch
        >>> splits = from_tokens(torch.randint(0, 9, (10, 6)), torch.arange(10) % 2, seed=0)
        >>> splits.describe()
        'tokens: 8 train / 2 val sequences of 6 tokens, 2 classes'
    """
    ids = _as_tensor(ids, "ids")
    labels = _as_tensor(labels, "labels")
    if ids.ndim != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise UserError(f"ids must be an integer (N, L) tensor, got {ids.dtype} {tuple(ids.shape)}")
    if len(ids) == 0 or int(ids.min()) < 0:
        raise UserError("ids must hold at least one sequence of non-negative token ids")
    num_classes = _check_labels(labels, len(ids), num_classes, None)
    ids, labels = ids.to(torch.int64), labels.to(torch.int64)
    train, val = split_indices(len(ids), val_fraction, seed)
    return DataSplits(
        train=TokenDataset(ids, labels, train),
        val=TokenDataset(ids, labels, val),
        name=name,
        num_classes=num_classes,
        in_channels=1,
        image_size=int(ids.shape[1]),
        mean=(0.0,),
        std=(1.0,),
        classes=tuple(map(str, range(num_classes))),
    )


def _to_gray(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    out = torch.empty((len(images), 1, *images.shape[2:]), dtype=images.dtype)
    for start in range(0, len(images), _CHUNK):
        gray = (images[start : start + _CHUNK].to(torch.float32) * weights).sum(1, keepdim=True)
        out[start : start + _CHUNK] = gray.round() if images.dtype == torch.uint8 else gray
    return out


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    out = torch.empty((*images.shape[:2], size, size), dtype=images.dtype)
    for start in range(0, len(images), _CHUNK):
        chunk = images[start : start + _CHUNK].to(torch.float32)
        # Antialiasing matters when shrinking (CIFAR to 16 px): plain bilinear aliases.
        resized = F.interpolate(
            chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        if images.dtype == torch.uint8:
            resized = resized.round().clamp(0, 255)
        out[start : start + _CHUNK] = resized.to(images.dtype)
    return out


def conform(
    images: torch.Tensor, *, image_size: int | None = None, in_channels: int | None = None
) -> torch.Tensor:
    """Bring ``(N, C, H, W)`` images to ``in_channels`` (1 <-> 3) and ``image_size`` squared.

    ``None`` keeps what is there. One channel becomes three as a view (no copy); three
    become one by the luma weights Pillow uses.

    Example:
        >>> import torch
        >>> conform(torch.zeros(2, 1, 28, 28), image_size=32, in_channels=3).shape
        torch.Size([2, 3, 32, 32])
    """
    channels = images.shape[1]
    if in_channels is not None and in_channels != channels:
        if (channels, in_channels) == (1, 3):
            images = images.expand(-1, 3, -1, -1)
        elif (channels, in_channels) == (3, 1):
            images = _to_gray(images)
        else:
            raise UserError(
                f"can convert images between 1 and 3 channels only, "
                f"got {channels} channels and in_channels={in_channels}"
            )
    if image_size is not None and tuple(images.shape[2:]) != (image_size, image_size):
        images = _resize(images, image_size)
    return images


def check_options(image_size: int | None, in_channels: int | None) -> None:
    """Raise ``ValueError`` for an image size or channel count no loader can honour."""
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise UserError(f"image_size must be a positive int or None, got {image_size!r}")
    if in_channels is not None and in_channels not in (1, 3):
        raise UserError(f"in_channels must be 1, 3 or None (as stored), got {in_channels!r}")


__all__ = [
    "DataSplits",
    "ImageDataset",
    "channel_stats",
    "check_options",
    "check_val_fraction",
    "conform",
    "from_tensors",
    "split_indices",
]
