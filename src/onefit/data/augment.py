"""Augmentation and preprocessing recipes, built on ``torchvision.transforms.v2``.

A recipe turns one stored image (a uint8 ``C x H x W`` tensor) into the float tensor a
supernet reads, in two forms: the *training* transform (random: crops, flips, optional
RandAugment / TrivialAugment) and the *evaluation* transform (deterministic: the same
geometry every time). Both end in scaling to [0, 1] and normalizing with the train
split's per-channel mean and std. Mixup and CutMix mix whole batches and so are a
separate, batch-level transform (:meth:`Recipe.batch_transform`).

======== ===================================================== ===========================
recipe   training                                              evaluation
======== ===================================================== ===========================
none     fit to size (resize shorter side, center crop)        the same
cifar    fit, random crop with 4-pixel zero padding, h-flip    fit
imagenet random-resized crop (scale 0.08..1), h-flip           resize to size / 0.875,
                                                               center crop (0.875 ratio)
======== ===================================================== ===========================

Randomness comes from torch's global generator, which the data loader seeds per item
from (seed, epoch, position) (:mod:`onefit.data.loader`): an item's augmentation is the
same whatever the number of workers, and a resumed run replays it exactly.

Example:
    >>> import torch
    >>> recipe = create_recipe("cifar")
    >>> image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    >>> train = recipe.train_transform(32, mean=(0.5,) * 3, std=(0.25,) * 3)
    >>> _ = torch.manual_seed(0); a = train(image)
    >>> _ = torch.manual_seed(1); b = train(image)
    >>> a.shape, a.dtype, bool((a != b).any())
    (torch.Size([3, 32, 32]), torch.float32, True)
    >>> evaluate = recipe.eval_transform(32, mean=(0.5,) * 3, std=(0.25,) * 3)
    >>> bool((evaluate(image) == evaluate(image)).all())
    True
    >>> list_recipes()
    ['cifar', 'imagenet', 'none']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from onefit.errors import UserError
from onefit.registry import Registry

Transform = Callable[[torch.Tensor], torch.Tensor]
BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

AUTO_AUGMENTS = ("randaugment", "trivialaugment")
# The share of the resized image that ImageNet evaluation keeps (224 of 256).
IMAGENET_CROP_RATIO = 0.875


def fit(size: int) -> list[v2.Transform]:
    """Resize the shorter side to ``size`` and crop the center square: no distortion,
    and a no-op for images already ``size`` x ``size``."""
    return [v2.Resize(size, antialias=True), v2.CenterCrop(size)]


@dataclass(frozen=True)
class Recipe:
    """Base class of recipes: the geometry of training and evaluation, plus options.

    Subclasses set ``name`` and implement :meth:`train_geometry` and
    :meth:`eval_geometry`. The options apply to every recipe:

    - ``auto_augment``: ``"randaugment"`` (Cubuk et al. 2020, 2 ops at magnitude 9) or
      ``"trivialaugment"`` (Müller & Hutter 2021), after the geometry, training only.
    - ``mixup_alpha`` / ``cutmix_alpha``: Beta parameters of Mixup (Zhang et al. 2018)
      and CutMix (Yun et al. 2019); 0 disables, both > 0 picks one per batch.
    """

    auto_augment: str | None = None
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0

    name = ""

    def __post_init__(self) -> None:
        if self.auto_augment is not None and self.auto_augment not in AUTO_AUGMENTS:
            raise UserError(
                f"auto_augment must be one of {list(AUTO_AUGMENTS)} or None, "
                f"got {self.auto_augment!r}"
            )
        for name in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{name} must be a number >= 0, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"{name} must be a finite number >= 0, got {value!r}")

    def train_geometry(self, size: int) -> list[v2.Transform]:
        raise NotImplementedError

    def eval_geometry(self, size: int) -> list[v2.Transform]:
        raise NotImplementedError

    @property
    def augments_items(self) -> bool:
        """Whether each training image is transformed at random (crops, flips, ...)."""
        return True

    @property
    def augments(self) -> bool:
        """Whether training inputs differ from evaluation inputs (items or batches)."""
        return self.augments_items or self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def train_transform(
        self, size: int, *, mean: Sequence[float], std: Sequence[float]
    ) -> Transform:
        """uint8 image -> augmented, normalized float32 image of ``size`` x ``size``."""
        steps = self.train_geometry(size)
        if self.auto_augment == "randaugment":
            steps.append(v2.RandAugment())
        elif self.auto_augment == "trivialaugment":
            steps.append(v2.TrivialAugmentWide())
        return v2.Compose([*steps, *_to_normalized(mean, std)])

    def eval_transform(
        self, size: int, *, mean: Sequence[float], std: Sequence[float]
    ) -> Transform:
        """uint8 image -> normalized float32 image, deterministic."""
        return v2.Compose([*self.eval_geometry(size), *_to_normalized(mean, std)])

    def describe_eval(self, size: int) -> str:
        """The evaluation geometry in words (what a model card says deployment does)."""
        return f"resize shorter side to {size}, center crop {size}x{size}"

    def geometry(self, size: int) -> Transform:
        """The evaluation geometry alone (uint8 in, uint8 out): what statistics are
        computed on."""
        return v2.Compose(self.eval_geometry(size))

    def batch_transform(self, num_classes: int) -> BatchTransform | None:
        """Mixup/CutMix on a batch ``(images, labels)`` -> ``(images, soft labels)``;
        ``None`` when both are off."""
        mixers: list[v2.Transform] = []
        if self.mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=float(self.mixup_alpha), num_classes=num_classes))
        if self.cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=float(self.cutmix_alpha), num_classes=num_classes))
        if not mixers:
            return None
        mixer = mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)
        return mixer

    def describe(self) -> dict[str, Any]:
        """Name and options: what the run and the model card record."""
        return {"name": self.name, **asdict(self)}


def _to_normalized(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


@dataclass(frozen=True)
class NoAugment(Recipe):
    """Preprocessing only: every image fitted to the size, the same in training."""

    name = "none"

    @property
    def augments_items(self) -> bool:
        return self.auto_augment is not None

    def train_geometry(self, size: int) -> list[v2.Transform]:
        return fit(size)

    def eval_geometry(self, size: int) -> list[v2.Transform]:
        return fit(size)


@dataclass(frozen=True)
class CifarAugment(Recipe):
    """The standard CIFAR recipe (He et al. 2016): pad 4, random 32-crop, flip."""

    padding: int = 4
    name = "cifar"

    def train_geometry(self, size: int) -> list[v2.Transform]:
        return [*fit(size), v2.RandomCrop(size, padding=self.padding), v2.RandomHorizontalFlip()]

    def eval_geometry(self, size: int) -> list[v2.Transform]:
        return fit(size)


@dataclass(frozen=True)
class ImagenetAugment(Recipe):
    """The standard ImageNet recipe (Szegedy et al. 2015; torchvision's references):
    random-resized crop and flip; evaluation resizes to size / 0.875 and crops the
    center."""

    scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: float = IMAGENET_CROP_RATIO
    name = "imagenet"

    def train_geometry(self, size: int) -> list[v2.Transform]:
        return [
            v2.RandomResizedCrop(size, scale=tuple(self.scale), antialias=True),
            v2.RandomHorizontalFlip(),
        ]

    def eval_geometry(self, size: int) -> list[v2.Transform]:
        return [v2.Resize(round(size / self.crop_ratio), antialias=True), v2.CenterCrop(size)]

    def describe_eval(self, size: int) -> str:
        return f"resize shorter side to {round(size / self.crop_ratio)}, center crop {size}x{size}"


RECIPES: Registry[Recipe] = Registry("augmentation recipe")
register_recipe = RECIPES.register
register_recipe("none")(NoAugment)
register_recipe("cifar")(CifarAugment)
register_recipe("imagenet")(ImagenetAugment)


def create_recipe(name: str, **kwargs: Any) -> Recipe:
    """The recipe registered as ``name`` with its options (see :class:`Recipe`)."""
    try:
        return RECIPES.create(name, **kwargs)
    except TypeError as error:  # an option this recipe does not have
        raise UserError(f"augmentation recipe {name!r}: {error}") from None


def list_recipes() -> list[str]:
    """Names of the registered augmentation recipes."""
    return RECIPES.names()


__all__ = [
    "RECIPES",
    "CifarAugment",
    "ImagenetAugment",
    "NoAugment",
    "Recipe",
    "create_recipe",
    "fit",
    "list_recipes",
    "register_recipe",
]
