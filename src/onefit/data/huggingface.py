"""Hugging Face ``datasets`` as a source: a ``Dataset``/``DatasetDict`` in memory, or a
folder written by ``save_to_disk``, with an image column and a label column.

Rows are read one at a time from the dataset's memory-mapped Arrow files (in the loader's
workers during training), so a large dataset never sits decoded in memory. The
``datasets`` package is optional: ``pip install datasets`` (or ``onefit[hf]``).

Which columns hold the images and the labels: given by name, or found from the
dataset's features (the ``Image`` column; the ``ClassLabel`` column, else one named
``label``/``labels``). A ``DatasetDict`` gives its ``train`` split for training and
its ``validation``/``val``/``test`` split, when there is one, for validation.

Example:
    >>> import datasets, numpy as np
    >>> from PIL import Image
    >>> images = [Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)) for i in range(10)]
    >>> features = datasets.Features({"img": datasets.Image(),
    ...                               "y": datasets.ClassLabel(names=["a", "b"])})
    >>> table = datasets.Dataset.from_dict({"img": images, "y": [i % 2 for i in range(10)]},
    ...                                    features=features)
    >>> splits = from_huggingface(table, val_fraction=0.2)
    >>> splits.classes, len(splits.train), tuple(splits.train[0][0].shape)
    (('a', 'b'), 8, (3, 8, 8))
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image  # a dependency of torchvision

from onefit.data.augment import NoAugment, Recipe
from onefit.data.base import DataError, DatasetSource, LazyData, register_dataset
from onefit.data.lazy import LazyImages
from onefit.data.prepare import check_stats, split_lazy
from onefit.data.splits import DataSplits, check_options, check_val_fraction
from onefit.errors import MissingDependencyError, UserTypeError

TRAIN_SPLITS = ("train",)
VAL_SPLITS = ("validation", "val", "test")
LABEL_NAMES = ("label", "labels")
INSTALL = "pip install datasets (or pip install 'onefit[hf]')"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as error:
        raise MissingDependencyError(
            f"Hugging Face datasets are read with the datasets package: {INSTALL}"
        ) from error
    return datasets


class HuggingFaceImages(LazyImages):
    """One row per sample of a Hugging Face dataset; the image decoded per item."""

    def __init__(self, dataset: Any, column: str, labels: torch.Tensor, **kwargs: Any) -> None:
        super().__init__(labels, **kwargs)
        self.column = column
        self.dataset = dataset.select_columns([column])

    def where(self, position: int) -> str:
        return f"row {position} of column {self.column!r}"

    def read(self, position: int) -> torch.Tensor:
        value = self.dataset[int(position)][self.column]
        mode = "RGB" if self.channels == 3 else "L"
        try:
            if isinstance(value, dict) and value.get("bytes") is not None:  # Image(decode=False)
                value = Image.open(io.BytesIO(value["bytes"]))
            if isinstance(value, Image.Image):
                array = np.asarray(value.convert(mode))
            else:  # an array column (uint8 H x W x C or H x W)
                array = np.asarray(value, dtype=np.uint8)
        except (OSError, ValueError, TypeError) as error:
            raise DataError(f"{self.where(position)}: cannot read this image ({error})") from None
        if array.ndim not in (2, 3):
            raise DataError(
                f"{self.where(position)}: an image must be H x W or H x W x C, got an array "
                f"of shape {array.shape}"
            )
        tensor = torch.from_numpy(array.copy())
        if tensor.dim() == 2:
            return tensor[None]
        return tensor.permute(2, 0, 1).contiguous()[: self.channels]


def _columns(table: Any, image_column: str | None, label_column: str | None) -> tuple[str, str]:
    datasets = _datasets()
    features = table.features
    names = list(features)

    def pick(given: str | None, what: str, found: list[str]) -> str:
        if given is not None:
            if given not in features:
                raise DataError(f"the dataset has no column {given!r}; its columns: {names}")
            return given
        if len(found) != 1:
            raise DataError(
                f"cannot tell which column holds the {what} (candidates {found}; columns "
                f"{names}); name it with {what[:-1] if what.endswith('s') else what}_column="
            )
        return found[0]

    images = [n for n, f in features.items() if isinstance(f, datasets.Image)]
    labels = [n for n, f in features.items() if isinstance(f, datasets.ClassLabel)]
    labels = labels or [n for n in names if n in LABEL_NAMES]
    image, label = pick(image_column, "images", images), pick(label_column, "label", labels)
    _check_types(features, image, label)
    return image, label


def _describe(feature: Any) -> str:
    kind = type(feature).__name__
    dtype = getattr(feature, "dtype", None)
    return f"{kind}({dtype})" if isinstance(dtype, str) else kind


def _check_types(features: Any, image: str, label: str) -> None:
    """The label column must hold integers, the image column images or arrays."""
    datasets = _datasets()
    columns = {name: _describe(f) for name, f in features.items()}
    if image == label:
        raise DataError(f"the image and label columns are both {image!r}; columns: {columns}")
    feature = features[label]
    integer = isinstance(feature, datasets.Value) and str(feature.dtype).startswith(("int", "uint"))
    if not (isinstance(feature, datasets.ClassLabel) or integer):
        raise DataError(
            f"column {label!r} must hold class indices (a ClassLabel or an integer Value), "
            f"it holds {_describe(feature)}; columns: {columns}"
        )
    kinds = tuple(
        getattr(datasets, name)
        for name in ("Image", "Array2D", "Array3D", "Sequence", "List", "LargeList")
        if isinstance(getattr(datasets, name, None), type)
    )
    if not (isinstance(features[image], (*kinds, list))):
        raise DataError(
            f"column {image!r} must hold images (an Image feature or uint8 arrays), it holds "
            f"{_describe(features[image])}; columns: {columns}"
        )


def _items(
    table: Any, image: str, label: str, image_size: int | None, in_channels: int | None
) -> HuggingFaceImages:
    if len(table) == 0:
        raise DataError("the Hugging Face dataset has no rows")
    try:
        labels = torch.as_tensor(np.asarray(table[label], dtype=np.int64))
    except (TypeError, ValueError, OverflowError) as error:
        raise DataError(
            f"column {label!r} must hold one integer class index per row ({error}); "
            f"columns: {list(table.features)}"
        ) from None
    if labels.dim() != 1 or int(labels.min()) < 0:
        raise DataError(f"column {label!r} must hold one class index >= 0 per row")
    probe = HuggingFaceImages(table, image, labels, size=image_size or 1, channels=3)
    first = probe.read(0)
    channels = in_channels or (3 if _is_color(table, image) else 1)
    size = image_size or int(min(first.shape[-2:]))
    return HuggingFaceImages(table, image, labels, size=size, channels=channels)


def _is_color(table: Any, column: str) -> bool:
    value = table.select_columns([column])[0][column]
    return getattr(value, "mode", "RGB") not in ("L", "1", "I;16", "I", "F")


def _split_of(dataset: Any, names: Sequence[str]) -> Any:
    return next((dataset[name] for name in names if name in dataset), None)


def _lazy(
    dataset: Any,
    image_column: str | None,
    label_column: str | None,
    image_size: int | None,
    in_channels: int | None,
    name: str,
) -> LazyData:
    datasets = _datasets()
    val_table = None
    if isinstance(dataset, datasets.DatasetDict):
        table = _split_of(dataset, TRAIN_SPLITS)
        if table is None:
            raise DataError(f"the DatasetDict has no 'train' split; its splits: {list(dataset)}")
        val_table = _split_of(dataset, VAL_SPLITS)
    elif isinstance(dataset, datasets.Dataset):
        table = dataset
    else:
        raise UserTypeError(
            f"expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}"
        )
    image, label = _columns(table, image_column, label_column)
    items = _items(table, image, label, image_size, in_channels)
    val_items = None
    if val_table is not None:
        val_items = _items(val_table, image, label, items.size, items.channels)
    feature = table.features[label]
    classes = tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return LazyData(items=items, name=name, classes=classes, val_items=val_items)


def from_huggingface(
    dataset: Any,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    image_size: int | None = None,
    in_channels: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    recipe: Recipe | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str = "huggingface",
) -> DataSplits:
    """Train/val splits of a Hugging Face ``Dataset`` or ``DatasetDict`` (see the module
    docstring); the other arguments mean what they mean in :func:`onefit.data.load_dataset`."""
    check_val_fraction(val_fraction)
    check_options(image_size, in_channels)
    stats = check_stats(mean, std)
    raw = _lazy(dataset, image_column, label_column, image_size, in_channels, name)
    return split_lazy(raw, image_size, val_fraction, seed, recipe or NoAugment(), stats)


@register_dataset("huggingface")
class HuggingFaceFolder(DatasetSource):
    """A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""

    expected = (
        "a folder written by datasets' save_to_disk (dataset_dict.json, or state.json "
        "and dataset_info.json), with an Image column and a ClassLabel column"
    )

    def detect(self, folder: Path) -> bool:
        return (folder / "dataset_dict.json").is_file() or (
            (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
        )

    def load(
        self, path: Path | None, *, image_size: int | None, in_channels: int | None
    ) -> LazyData:
        if path is None or not self.detect(path):
            raise DataError(f"{path}: not a saved Hugging Face dataset; expected {self.expected}")
        datasets = _datasets()
        try:
            dataset = datasets.load_from_disk(os.fspath(path))
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"{path}: cannot open this saved dataset ({error})") from None
        return _lazy(dataset, None, None, image_size, in_channels, path.resolve().name)


__all__ = ["HuggingFaceFolder", "HuggingFaceImages", "from_huggingface"]
