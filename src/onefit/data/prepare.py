"""From a dataset read item by item to train/val splits: the split, the statistics, the
recipe's evaluation transform, and the record of it all (shared by every lazy source)."""

from __future__ import annotations

from collections.abc import Sequence

from onefit.data.augment import Recipe
from onefit.data.base import LazyData
from onefit.data.lazy import LazyImages, sample_stats
from onefit.data.splits import DataSplits, Samples, split_indices
from onefit.errors import UserError

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def check_stats(mean: Sequence[float] | None, std: Sequence[float] | None) -> Stats | None:
    """``(mean, std)`` as tuples of floats, or None when neither is given; a
    ``ValueError`` unless both are given with one value per channel, std > 0."""
    if mean is None and std is None:
        return None
    if mean is None or std is None or len(mean) != len(std) or not len(mean):
        raise UserError(
            f"give both mean and std, one number per channel, got mean={mean!r} std={std!r}"
        )
    if not all(s > 0 for s in std):
        raise UserError(f"std must be > 0 for every channel, got {std!r}")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def split_lazy(
    raw: LazyData,
    image_size: int | None,
    val_fraction: float,
    seed: int,
    recipe: Recipe,
    stats: Stats | None,
) -> DataSplits:
    """Split ``raw`` (unless it has its own validation items), estimate or take the
    statistics, and give both splits the recipe's evaluation transform."""
    items: LazyImages = raw.items
    size = image_size or items.size
    if raw.val_items is not None:
        train, val = items, raw.val_items
    else:
        train_idx, val_idx = split_indices(len(items), val_fraction, seed)
        train, val = items.subset(train_idx), items.subset(val_idx)
    if stats is None:
        mean, std, read = sample_stats(train, recipe.geometry(size), seed=seed)
        source = f"estimated on {read} of {len(train)} train images (seed {seed})"
    else:
        (mean, std), source = stats, "given"
        if len(mean) != items.channels:
            raise UserError(
                f"mean/std give {len(mean)} channel(s), the images have {items.channels}"
            )
    transform = recipe.eval_transform(size, mean=mean, std=std)
    classes = raw.classes or tuple(map(str, range(int(items.labels.max()) + 1)))
    return DataSplits(
        train=train.with_transform(transform),
        val=val.with_transform(transform),
        name=raw.name,
        num_classes=len(classes),
        in_channels=items.channels,
        image_size=size,
        mean=mean,
        std=std,
        classes=classes,
        preprocessing=preprocessing_record(recipe, size, (mean, std), source),
    )


def preprocessing_record(recipe: Recipe, size: int, stats: Stats, source: str) -> dict[str, object]:
    """What a run and a model card record of how items were made."""
    return {
        "recipe": recipe.describe(),
        "image_size": size,
        "eval_transform": recipe.describe_eval(size),
        "mean": list(stats[0]),
        "std": list(stats[1]),
        "statistics": source,
    }


def training_view(splits: DataSplits, recipe: Recipe) -> Samples:
    """The train split as training reads it: through ``recipe``'s training transform
    (the split itself when the recipe does not augment items)."""
    if not recipe.augments_items:
        return splits.train
    with_transform = getattr(splits.train, "with_transform", None)
    if with_transform is None or not splits.mean:
        raise UserError(
            f"augment={recipe.name!r} applies to onefit's image datasets (load_dataset, "
            "from_tensors, from_huggingface); this train data is a "
            f"{type(splits.train).__name__}: augment inside your own Dataset instead, "
            "with augment='none'"
        )
    transform = recipe.train_transform(splits.image_size, mean=splits.mean, std=splits.std)
    return with_transform(transform)
