"""The settings of a training run, as one dataclass that round-trips through JSON/TOML."""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

from onefit.data.augment import Recipe, create_recipe
from onefit.data.loader import BAD_ITEM_POLICIES
from onefit.errors import UserError

AMP_DTYPES = ("auto", "bfloat16", "float16")


@dataclass
class TrainConfig:
    """Everything a training run needs; each field says why it has its default.

    Example:
        >>> cfg = TrainConfig.from_dict({"epochs": 2, "strategy": "deps"})
        >>> cfg.epochs, cfg.strategy, cfg.lr
        (2, 'deps', 0.05)
    """

    # What to train.
    supernet: str = "mobilenetv3"  # a registered family (onefit.list_supernets())
    # Extra constructor arguments; num_classes/in_channels/image_size come from the data.
    supernet_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"  # a dataset name or a folder (onefit.data.load_dataset)
    val_fraction: float = 0.2  # held out of the training files for validation
    # The side images are brought to; None keeps the stored size (image folders: 32).
    image_size: int | None = None

    # Input pipeline. Augmentation recipes (onefit.data.list_recipes()): "none", "cifar"
    # (pad-4 crop, flip), "imagenet" (random-resized crop, flip; 0.875 center-crop
    # evaluation); augment_kwargs: auto_augment="randaugment"|"trivialaugment",
    # mixup_alpha, cutmix_alpha and the recipe's own (padding, scale, crop_ratio).
    augment: str = "none"
    augment_kwargs: dict[str, Any] = field(default_factory=dict)
    # Normalization statistics per channel; empty: computed on the train split.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    # Loader worker processes per training process; None: one core per process kept for
    # training, at most 8 (onefit.data.loader.default_workers). 0 reads in the process.
    num_workers: int | None = None
    bad_items: str = "error"  # an unreadable sample: "error" names it; "skip" warns
    log_every: int = 20  # steps between reading losses back from the device
    strategy: str = "sandwich"  # BigNAS's rule: the strongest default in the literature
    strategy_kwargs: dict[str, Any] = field(default_factory=dict)
    # What the outputs mean (onefit.tasks.list_tasks()): the loss, the distillation loss
    # and the evaluation metrics. Classification's label smoothing is label_smoothing.
    task: str = "classification"
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    # Start from these supernet weights (a state-dict file, e.g. of onefit.elasticize's
    # result): fine-tuning a converted pretrained model, InstaTune's recipe. A resumed
    # run continues from its checkpoint instead.
    init_weights: str | None = None

    # Optimisation: SGD with Nesterov momentum and a cosine schedule, as OFA and BigNAS;
    # "adamw" for transformers (HAT, InstaTune), which SGD trains poorly.
    optimizer: str = "sgd"
    epochs: int = 10
    batch_size: int = 64  # global batch (split across processes when distributed)
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-5  # OFA's value; not applied to norms, biases, kernel transforms
    warmup_epochs: float = 0.0  # linear learning-rate warm-up before the cosine decay
    label_smoothing: float = 0.1  # on the labels loss (BigNAS, OFA)
    temperature: float = 1.0  # of the soft targets in distillation
    grad_clip: float = 0.0  # max global gradient norm; 0 disables

    # Evaluation and bookkeeping.
    bn_batches: int = 10  # training batches to recalibrate BN before each evaluation
    eval_configs: tuple[str, ...] = ("smallest", "largest")  # evaluated after every epoch
    seed: int = 0  # weights, data order, sub-network sampling: all follow it
    device: str = "auto"  # "auto": CUDA when available, else CPU
    amp: bool = True  # automatic mixed precision (used on CUDA only)
    # "auto": bfloat16 where the GPU supports it (no loss scaling), else float16 with a
    # gradient scaler; or "bfloat16" / "float16".
    amp_dtype: str = "auto"
    channels_last: bool = True  # NHWC memory format for image supernets on CUDA
    run_dir: str = "runs/default"
    progress: bool = True  # progress bars (rank 0 only)
    tensorboard: bool = True  # also log epoch metrics to RUN_DIR/tensorboard when installed

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping, each value converted to its field's type.

        An unknown key is a ``ValueError`` listing the known ones; a value of the wrong
        type is a ``ValueError`` naming the setting, the value and what is allowed. Text
        that spells a value of the field's type is accepted (``"1e-4"`` for a float, as
        YAML reads 1e-4; ``"false"`` for a bool, as ``--set amp=False`` gives), so a
        settings file or ``--set`` means the same as the Python value.

        Example:
            >>> TrainConfig.from_dict({"weight_decay": "1e-4", "amp": "false"}).weight_decay
            0.0001
            >>> TrainConfig.from_dict({"lr": "abc"})
            Traceback (most recent call last):
            ...
            onefit.errors.UserError: training setting lr='abc' must be a number (float)
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        hints = get_type_hints(cls)
        config = cls(**{name: _convert(name, value, hints[name]) for name, value in values.items()})
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for name in ("eval_configs", "mean", "std"):
            values[name] = list(getattr(self, name))
        return values

    def recipe(self) -> Recipe:
        """The augmentation recipe these settings name, with its options."""
        return create_recipe(self.augment, **self.augment_kwargs)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of range."""
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("val_fraction", 0 < self.val_fraction < 1, "between 0 and 1"),
            ("bn_batches", self.bn_batches >= 1, ">= 1"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("temperature", self.temperature > 0, "> 0"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, "in [0, epochs]"),
            ("grad_clip", self.grad_clip >= 0, ">= 0"),
            ("optimizer", self.optimizer in ("sgd", "adamw"), "'sgd' or 'adamw'"),
            ("amp_dtype", self.amp_dtype in AMP_DTYPES, f"one of {list(AMP_DTYPES)}"),
            ("bad_items", self.bad_items in BAD_ITEM_POLICIES, f"one of {list(BAD_ITEM_POLICIES)}"),
            ("log_every", self.log_every >= 1, ">= 1"),
            ("num_workers", self.num_workers is None or self.num_workers >= 0, ">= 0 or null"),
            ("image_size", self.image_size is None or self.image_size >= 1, ">= 1 or null"),
            ("std", all(s > 0 for s in self.std), "> 0 for every channel"),
            ("mean", len(self.mean) == len(self.std), "given with std, one value per channel"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise UserError(
                    f"training setting {name}={getattr(self, name)!r} must be {allowed}"
                )
        self.recipe()  # an unknown recipe or option fails here, before any data is read
        for name in self.eval_configs:
            if name not in ("smallest", "largest") and not name.startswith("{"):
                raise UserError(
                    f"eval_configs entries are 'smallest', 'largest' or a config JSON, got {name!r}"
                )


def _convert(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` of setting ``name``, or a ``ValueError`` saying why not."""
    origin, args = get_origin(hint), get_args(hint)
    optional = origin in (Union, types.UnionType)  # only ``X | None`` occurs in the settings
    if optional:
        if value is None:
            return None
        (hint,) = [arg for arg in args if arg is not type(None)]
        origin, args = get_origin(hint), get_args(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif hint is int:
        number = _number(value)
        if number is not None and number == int(number):
            return int(number)
    elif hint is float:
        number = _number(value)
        if number is not None:
            return float(number)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
    elif origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            items = [_convert(f"{name}[{i}]", item, args[0]) for i, item in enumerate(value)]
            return tuple(items) if origin is tuple else items
    else:
        return value  # Any: whatever the strategy or the supernet accepts
    allowed = _allowed(value, hint) + (" or null" if optional else "")
    raise UserError(f"training setting {name}={value!r} must be {allowed}")


def _number(value: Any) -> float | None:
    """A finite number from a number or its text; None for anything else (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value)  # exact for long integers, which float() would round
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _allowed(value: Any, hint: Any) -> str:
    """What a setting of type ``hint`` accepts, in the words of an error about ``value``."""
    if hint is float:
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError, OverflowError):
            finite = True
        return "a number (float)" if finite else "a finite number (float)"
    origin, args = get_origin(hint), get_args(hint)
    if origin in (tuple, list):
        return f"a list of {getattr(args[0], '__name__', args[0])}"
    return {
        bool: "true or false (bool)",
        int: "a whole number (int)",
        str: "a string (str)",
        dict: "a table of settings (dict)",
    }.get(origin or hint, str(hint))
