"""Datasets: an embedded default and the standard on-disk image formats.

:func:`load_dataset` takes a built-in dataset name (``"digits"``, shipped with
scikit-learn, no download) or a folder, whose format -- MNIST-style ``idx`` files,
``cifar`` python batches, an ``imagefolder`` of class sub-folders (read lazily) or a
``huggingface`` dataset saved with ``save_to_disk`` -- is recognized from its file
names. :func:`from_huggingface` takes a ``datasets.Dataset`` in memory and
:func:`from_tensors` tensors in memory. All return :class:`DataSplits`: seeded
train/val splits whose items are normalized with statistics of the train split.
Nothing is ever downloaded.

Example:
    >>> from onefit.data import load_dataset, list_datasets
    >>> list_datasets()
    ['cifar', 'digits', 'huggingface', 'idx', 'imagefolder']
    >>> splits = load_dataset("digits", val_fraction=0.2, seed=0)
    >>> splits.describe()
    'digits: 1438 train / 359 val images, 1x8x8, 10 classes, mean (0.305,) std (0.376,)'
    >>> x, y = splits.train[0]
    >>> tuple(x.shape), x.dtype, y
    ((1, 8, 8), torch.float32, 0)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from onefit.data.augment import NoAugment, Recipe, create_recipe, list_recipes
from onefit.data.base import (
    DATASETS,
    DataError,
    DatasetSource,
    LazyData,
    RawData,
    create_dataset,
    list_datasets,
    register_dataset,
)
from onefit.data.lazy import LazyImages
from onefit.data.prepare import Stats, check_stats, preprocessing_record, split_lazy
from onefit.data.splits import (
    DataSplits,
    ImageDataset,
    TokenDataset,
    check_options,
    check_val_fraction,
    conform,
    from_datasets,
    from_tensors,
    from_tokens,
    split_tensors,
)
from onefit.errors import UserError


def _sources() -> list[tuple[str, DatasetSource]]:
    return [(name, DATASETS.create(name)) for name in DATASETS.names()]


def _available() -> str:
    """What :func:`load_dataset` accepts, for error messages."""
    sources = _sources()
    builtin = ", ".join(name for name, source in sources if not source.needs_path)
    formats = "; ".join(
        f"{name}: {source.expected}" for name, source in sources if source.needs_path
    )
    return f"built-in datasets: {builtin}; folder formats (format=...): {formats}"


def _pick_format(folder: Path, format: str | None) -> DatasetSource:
    if format is not None:
        source = DATASETS.create(format)  # an unknown name raises, listing the known ones
        if not source.needs_path:
            raise UserError(
                f"{format!r} is a built-in dataset, not a file format; "
                f"load it with load_dataset({format!r}) and no path"
            )
        return source
    matches = [(name, s) for name, s in _sources() if s.needs_path and s.detect(folder)]
    if not matches:
        raise DataError(f"{folder}: no known dataset format recognized; {_available()}")
    if len(matches) > 1:
        names = ", ".join(name for name, _ in matches)
        raise DataError(f"{folder}: looks like several formats ({names}); choose one with format=")
    return matches[0][1]


def load_dataset(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    image_size: int | None = None,
    in_channels: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    recipe: Recipe | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DataSplits:
    """Load a built-in dataset or a dataset folder and split it into train and val.

    ``source`` is a built-in name (see :func:`list_datasets`; a name wins over a folder
    of the same name, pass a ``Path`` to mean the folder) or a folder. ``format``
    (``"idx"``, ``"cifar"``, ``"imagefolder"``) skips auto-detection. ``image_size``
    resizes to a square side and ``in_channels`` converts between 1 and 3 channels;
    ``None`` keeps the stored size and channels (ImageFolder: 32 px, RGB). The split
    puts ``round(val_fraction * N)`` samples, drawn with ``seed``, in ``val`` (unless
    the folder has its own validation split). Items follow ``recipe``'s evaluation
    transform (default: none); training takes its training transform from the same
    recipe. ``mean``/``std`` give the normalization statistics instead of computing them
    on the train split. Image folders are read lazily, one item at a time.

    Raises :class:`DataError` (a ``ValueError``) naming the path or file for a missing
    path, an unrecognized folder or a corrupt file.

    Example:
        >>> splits = load_dataset("digits", image_size=16, in_channels=3, seed=1)
        >>> splits.in_channels, splits.image_size, len(splits.val)
        (3, 16, 359)
        >>> load_dataset("no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        onefit.data.base.DataError: no/such/folder: no such file or folder; ...
    """
    check_val_fraction(val_fraction)
    check_options(image_size, in_channels)
    stats = check_stats(mean, std)
    recipe = recipe or NoAugment()
    if format is None and isinstance(source, str) and source in DATASETS:
        builtin = DATASETS.create(source)
        if not builtin.needs_path:
            raw = builtin.load(None, image_size=image_size, in_channels=in_channels)
            return _split(raw, image_size, in_channels, val_fraction, seed, recipe, stats)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; {_available()}")
    if not path.is_dir():
        raise DataError(
            f"{path}: a file; give the folder that holds the dataset files. {_available()}"
        )
    raw = _pick_format(path, format).load(path, image_size=image_size, in_channels=in_channels)
    return _split(raw, image_size, in_channels, val_fraction, seed, recipe, stats)


def _split(
    raw: RawData | LazyData,
    image_size: int | None,
    in_channels: int | None,
    val_fraction: float,
    seed: int,
    recipe: Recipe,
    stats: Stats | None,
) -> DataSplits:
    if isinstance(raw, LazyData):
        return split_lazy(raw, image_size, val_fraction, seed, recipe, stats)
    images = conform(raw.images, image_size=image_size, in_channels=in_channels)
    splits = from_tensors(
        images,
        raw.labels,
        val_fraction=val_fraction,
        seed=seed,
        name=raw.name,
        classes=raw.classes,
    )
    if stats is not None:
        splits = _renormalized(splits, stats)
    source = "given" if stats is not None else f"computed on all {len(splits.train)} train images"
    record = preprocessing_record(recipe, splits.image_size, (splits.mean, splits.std), source)
    if recipe == NoAugment():  # items exactly as stored, scaled and normalized
        return dataclasses.replace(splits, preprocessing=record)
    transform = recipe.eval_transform(splits.image_size, mean=splits.mean, std=splits.std)
    return dataclasses.replace(
        splits,
        train=splits.train.with_transform(transform),  # type: ignore[attr-defined]
        val=splits.val.with_transform(transform),  # type: ignore[attr-defined]
        preprocessing=record,
    )


def _renormalized(splits: DataSplits, stats: Stats) -> DataSplits:
    mean, std = stats
    if len(mean) != splits.in_channels:
        raise UserError(
            f"mean/std give {len(mean)} channel(s), the images have {splits.in_channels}"
        )
    rebuilt = [
        ImageDataset(split._images, split._labels, split.indices, mean=mean, std=std)  # type: ignore[attr-defined]
        for split in (splits.train, splits.val)
    ]
    return dataclasses.replace(splits, train=rebuilt[0], val=rebuilt[1], mean=mean, std=std)


# Importing the source modules registers them.
from onefit.data import cifar, digits, huggingface, idx, imagefolder  # noqa: E402
from onefit.data.huggingface import from_huggingface  # noqa: E402

__all__ = [
    "DATASETS",
    "DataError",
    "DataSplits",
    "DatasetSource",
    "ImageDataset",
    "LazyData",
    "LazyImages",
    "RawData",
    "Recipe",
    "TokenDataset",
    "cifar",
    "create_dataset",
    "create_recipe",
    "digits",
    "from_datasets",
    "from_huggingface",
    "from_tensors",
    "from_tokens",
    "huggingface",
    "idx",
    "imagefolder",
    "list_datasets",
    "list_recipes",
    "load_dataset",
    "register_dataset",
    "split_tensors",
]
