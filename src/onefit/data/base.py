"""What every dataset source shares: the error type, the loader's result and its base class.

A *source* is either a dataset that ships with a package (``digits``) or an on-disk
format (``idx``, ``cifar``, ``imagefolder``). Each one is a small :class:`DatasetSource`
registered in :data:`DATASETS`; :func:`onefit.data.load_dataset` picks one by name or by
looking at a folder, and turns the :class:`RawData` it returns into train/val splits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from onefit.errors import UserError
from onefit.registry import Registry


class DataError(UserError):
    """A dataset path, file or file content is not what its format expects.

    The message names the file or folder and the format that was expected, so a wrong
    path can be told apart from a corrupt or truncated download.

    Example:
        >>> issubclass(DataError, ValueError)
        True
    """


def data_error(path: Path | str, problem: str, expected: str) -> DataError:
    """A :class:`DataError` in the one shape every loader uses: where, what, what was expected."""
    return DataError(f"{path}: {problem}; expected {expected}")


@dataclass(frozen=True)
class RawData:
    """A whole dataset as a source read it, before it is split and normalized.

    ``images`` is ``(N, C, H, W)``, either uint8 (0..255) or floating point already in
    [0, 1]; ``labels`` is ``(N,)`` int64. ``classes`` names the classes when the source
    knows them (CIFAR meta files, ImageFolder folder names).
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LazyData:
    """A whole dataset that is read item by item (an image folder, a Hugging Face dataset):
    ``items`` names every sample and decodes one when asked (see :mod:`onefit.data.lazy`)."""

    items: Any  # a onefit.data.lazy.LazyImages over every sample, before the split
    name: str
    classes: tuple[str, ...] | None = None
    # The dataset's own validation split (an image folder's val/ or test/ folder, a
    # DatasetDict's "validation"), used instead of holding out val_fraction of items.
    val_items: Any = None


class DatasetSource(ABC):
    """One registered dataset or on-disk format.

    A built-in dataset sets ``needs_path = False`` and ignores the path. A format reads a
    folder and tells from file names alone whether a folder looks like its layout
    (:meth:`detect`), which is how :func:`~onefit.data.load_dataset` picks a format when
    none is given. Loaders may honour ``image_size``/``in_channels`` themselves (images of
    mixed sizes must be resized while reading); whatever they return is brought to the
    requested size and channel count afterwards anyway.
    """

    #: False for datasets that ship with a package and need no path.
    needs_path: ClassVar[bool] = True
    #: The layout this source expects, quoted in error messages.
    expected: ClassVar[str] = ""

    def detect(self, folder: Path) -> bool:
        """True if ``folder`` looks like this format (file names only, nothing is read)."""
        return False

    @abstractmethod
    def load(
        self, path: Path | None, *, image_size: int | None, in_channels: int | None
    ) -> RawData | LazyData:
        """Read the dataset: all of it into memory (:class:`RawData`, small formats) or an
        index of its samples to decode per item (:class:`LazyData`); raise
        :class:`DataError` naming a bad file or folder."""


DATASETS: Registry[DatasetSource] = Registry("dataset")
register_dataset = DATASETS.register


def create_dataset(name: str) -> DatasetSource:
    """The source registered as ``name`` (a built-in dataset or a folder format).

    It only knows how to read; :func:`onefit.data.load_dataset` is what loads and
    splits the data.
    """
    return DATASETS.create(name)


def list_datasets() -> list[str]:
    """Names of the registered built-in datasets and on-disk formats, sorted."""
    return DATASETS.names()
