"""The settings of a training run, as one dataclass that round-trips through JSON/TOML.

Every field is validated when a :class:`TrainConfig` is made (with pydantic v2, one
strict validator per field): its type, its range, finiteness and the names it allows. A
value read from a settings file or ``--set`` may be text that spells the field's type
(``"1e-4"`` for a float, ``"false"`` or ``"no"`` for a bool); anything else is a
:class:`onefit.errors.UserError` naming the setting, the value received and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from pydantic import AllowInfNan, BeforeValidator, Field, Strict, TypeAdapter, ValidationError

from onefit.data.augment import Recipe, create_recipe
from onefit.data.loader import BAD_ITEM_POLICIES
from onefit.errors import UnknownNameError, UserError, UserTypeError
from onefit.tasks import list_tasks
from onefit.training.strategies import list_strategies

AMP_DTYPES = ("auto", "bfloat16", "float16")
OPTIMIZERS = ("sgd", "adamw")
# Devices a run may ask for; whether the machine has it is checked when training starts.
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
DEVICES = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
MAX_BATCH_SIZE = 2**20
MAX_EPOCHS = 10**6
MAX_IMAGE_SIZE = 8192
MAX_WORKERS = 256
MAX_STEPS = 10**9  # log_every and bn_batches: past any run's length
MAX_SEED = 2**32 - 1  # numpy's and torch's generators take seeds in [0, 2**32)
# Text a bool setting accepts (any case), as files and --set spell it.
BOOL_TEXT = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


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
    # 0 trains nothing: the run holds the initial weights (an imported supernet, say)
    # so it can be searched and exported as it is.
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

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping, each value checked and converted to its field's type.

        An unknown key is a ``UserError`` listing the known ones; a value of the wrong
        type or out of range is a ``UserError`` naming the setting, the value and what is
        allowed. Text that spells a value of the field's type is accepted (``"1e-4"`` for
        a float, as YAML reads 1e-4; ``"false"``, ``"no"`` or ``"0"`` for a bool, as
        ``--set amp=False`` gives), so a settings file or ``--set`` means the same as the
        Python value; any other value for a bool is refused, never read as "truthy".

        Example:
            >>> TrainConfig.from_dict({"weight_decay": "1e-4", "amp": "false"}).weight_decay
            0.0001
            >>> TrainConfig.from_dict({"lr": "abc"})
            Traceback (most recent call last):
            ...
            onefit.errors.UserError: training setting lr='abc' must be a number (float)
            >>> TrainConfig.from_dict({"momentum": float("nan")})
            Traceback (most recent call last):
            ...
            onefit.errors.UserError: training setting momentum=nan must be a finite number (float)
        """
        if not isinstance(values, Mapping):
            raise UserTypeError(
                f"training settings must be a table of setting = value, got {type(values).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        odd = [key for key in values if not isinstance(key, str)]
        if odd:
            raise UserTypeError(
                f"training setting names must be text, got {odd[0]!r}; known: {sorted(known)}"
            )
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{name: convert_setting(name, value) for name, value in values.items()})

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
        """Check (and convert, for text spellings) every field; raise ``UserError`` naming
        the first setting that is wrong, its value and what is allowed."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, convert_setting(f.name, getattr(self, f.name)))
        checks = [
            ("warmup_epochs", self.warmup_epochs <= self.epochs, "in [0, epochs]"),
            ("mean", len(self.mean) == len(self.std), "given with std, one value per channel"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise UserError(
                    f"training setting {name}={_show(getattr(self, name))} must be {allowed}"
                )
        _check_names(self)
        _check_supernet_kwargs(self.supernet_kwargs)
        self.recipe()  # an unknown recipe or option fails here, before any data is read


def parse_setting(name: str, text: str) -> Any:
    """The value of ``--set NAME=TEXT``: ``TEXT`` as JSON, except that a text setting
    keeps the text itself (``--set run_dir=2024`` is the folder "2024") and a dotted or
    table setting is JSON (or a bare word). The result is then checked by
    :meth:`TrainConfig.from_dict` like any other value.

    Example:
        >>> parse_setting("run_dir", "2024"), parse_setting("epochs", "3"), parse_setting("amp", "no")
        ('2024', 3, 'no')
        >>> parse_setting("init_weights", "null") is None
        True
    """  # noqa: E501
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text  # a bare word is a string
    hint = _hints().get(name)
    if hint is None:
        return value
    base, optional = _unwrap(hint)
    if base is str and not isinstance(value, str) and not (optional and value is None):
        return text
    return value


def convert_setting(name: str, value: Any) -> Any:
    """``value`` as the type of setting ``name``, checked against the setting's range, or a
    ``UserError`` naming the setting, the value and what is allowed.

    Example:
        >>> convert_setting("epochs", "3"), convert_setting("tensorboard", "false")
        (3, False)
        >>> convert_setting("epochs", 1.5)
        Traceback (most recent call last):
        ...
        onefit.errors.UserError: training setting epochs=1.5 must be a whole number (int)
    """
    try:
        converted = _adapter(name).validate_python(value)
    except ValidationError as invalid:
        raise UserError(_explain(name, value, invalid)) from None
    except RecursionError:
        raise UserError(f"training setting {name} is nested too deeply") from None
    if name in _CHOICES and converted not in _CHOICES[name]:
        raise UserError(f"training setting {name}={_show(value)} must be {_RULES[name][1]}")
    return converted


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)``, shortened: a message stays one readable line whatever was given."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (Python's limit on digits)
        return f"<a number of about {value.bit_length() * 0.30103:.0f} digits>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the validators ---------------------------------------------------------------------------
def _bool_in(value: Any) -> Any:
    """A real bool; the text (or the 0/1) that spells one; anything else as it is (refused)."""
    if isinstance(value, str) and value.strip().lower() in BOOL_TEXT:
        return BOOL_TEXT[value.strip().lower()]
    if type(value) is int and value in (0, 1):
        return bool(value)
    return value


def _int_in(value: Any) -> Any:
    """A whole number from its text or from a float without a fraction (``2.0``, ``"1e3"``)."""
    if isinstance(value, bool):
        return value  # refused: True is not a count
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _float_in(value: Any) -> Any:
    """A float from its text or from any real number (an int too large for a float: inf)."""
    if isinstance(value, bool):
        return value  # refused
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    return value


def _sequence_in(value: Any) -> Any:
    """A list (as JSON, TOML and YAML give) as the tuple the setting holds."""
    return tuple(value) if isinstance(value, list) else value


def _dict_in(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) and not isinstance(value, dict) else value


_FLOAT = (BeforeValidator(_float_in), Strict(), AllowInfNan(False))
_INT = (BeforeValidator(_int_in), Strict())
# What each setting allows beyond its type: (pydantic constraints, the words for them).
_RULES: dict[str, tuple[tuple[Any, ...], str]] = {
    "supernet": ((Field(min_length=1),), "a supernet family's name (onefit.list_supernets())"),
    "dataset": ((Field(min_length=1),), "a dataset name or a folder (not empty)"),
    "val_fraction": ((Field(gt=0, lt=1),), "a finite number strictly between 0 and 1"),
    "image_size": ((Field(ge=1, le=MAX_IMAGE_SIZE),), f"a whole number in 1..{MAX_IMAGE_SIZE}"),
    "augment": ((Field(min_length=1),), "a recipe name (onefit.data.list_recipes())"),
    "num_workers": ((Field(ge=0, le=MAX_WORKERS),), f"a whole number in 0..{MAX_WORKERS}"),
    "bad_items": ((), f"one of {list(BAD_ITEM_POLICIES)}"),
    "log_every": ((Field(ge=1, le=MAX_STEPS),), f"a whole number in 1..{MAX_STEPS}"),
    "strategy": ((Field(min_length=1),), "a training strategy (onefit.list_strategies())"),
    "task": ((Field(min_length=1),), "a task (onefit.tasks.list_tasks())"),
    "init_weights": ((Field(min_length=1),), "the path of a state-dict file (not empty)"),
    "optimizer": ((), "'sgd' or 'adamw'"),
    "epochs": ((Field(ge=0, le=MAX_EPOCHS),), f"a whole number in 0..{MAX_EPOCHS}"),
    "batch_size": ((Field(ge=1, le=MAX_BATCH_SIZE),), f"a whole number in 1..{MAX_BATCH_SIZE}"),
    "lr": ((Field(gt=0),), "a finite number > 0"),
    "momentum": ((Field(ge=0, lt=1),), "a finite number in [0, 1)"),
    "weight_decay": ((Field(ge=0),), "a finite number >= 0"),
    "warmup_epochs": ((Field(ge=0),), "a finite number in [0, epochs]"),
    "label_smoothing": ((Field(ge=0, lt=1),), "a finite number in [0, 1)"),
    "temperature": ((Field(gt=0),), "a finite number > 0"),
    "grad_clip": ((Field(ge=0),), "a finite number >= 0 (0 disables)"),
    "bn_batches": ((Field(ge=1, le=MAX_STEPS),), f"a whole number in 1..{MAX_STEPS}"),
    "eval_configs": ((Field(min_length=1),), "a non-empty list of 'smallest', 'largest' or "
                     "config JSON objects"),
    "seed": ((Field(ge=0, le=MAX_SEED),), f"a whole number in 0..{MAX_SEED}"),
    "device": ((Field(pattern=f"^(?:{DEVICE_PATTERN.pattern})$"),), DEVICES),
    "amp_dtype": ((), f"one of {list(AMP_DTYPES)}"),
    "run_dir": ((Field(min_length=1),), "a folder (not empty)"),
    "std": ((), "a list of finite numbers > 0, one per channel"),
    "mean": ((), "a list of finite numbers, one per channel"),
}  # fmt: skip
_CHOICES = {"bad_items": BAD_ITEM_POLICIES, "optimizer": OPTIMIZERS, "amp_dtype": AMP_DTYPES}
# The type errors of pydantic (as opposed to a value of the right type out of range).
_TYPE_ERRORS = ("_type", "_parsing", "int_from_float")


@cache
def _hints() -> dict[str, Any]:
    return get_type_hints(TrainConfig)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(hint, False)``."""
    if get_origin(hint) in (Union, types.UnionType):
        (inner,) = [arg for arg in get_args(hint) if arg is not type(None)]
        return inner, True
    return hint, False


def _annotated(base: Any, *metadata: Any) -> Any:
    """``Annotated[base, *metadata]``, built at run time (Python 3.10 has no ``*`` there)."""
    return Annotated.__class_getitem__((base, *metadata))  # type: ignore[attr-defined]


def _scalar(hint: Any, rules: tuple[Any, ...]) -> Any:
    if hint is bool:
        return _annotated(bool, BeforeValidator(_bool_in), Strict(), *rules)
    if hint is int:
        return _annotated(int, *_INT, *rules)
    if hint is float:
        return _annotated(float, *_FLOAT, *rules)
    if hint is str:
        return _annotated(str, Strict(), *rules)
    raise AssertionError(f"no validator for {hint}")  # pragma: no cover


@cache
def _adapter(name: str) -> TypeAdapter[Any]:
    """The pydantic validator of setting ``name``."""
    hint, optional = _unwrap(_hints()[name])
    rules = _RULES.get(name, ((), ""))[0]
    origin = get_origin(hint)
    if origin is dict:
        key = _annotated(str, Strict())
        kind: Any = _annotated(dict.__class_getitem__((key, Any)), BeforeValidator(_dict_in))
    elif origin is tuple:
        item_rules = (Field(gt=0),) if name == "std" else ()
        items = tuple.__class_getitem__((_scalar(get_args(hint)[0], item_rules), ...))
        kind = _annotated(items, BeforeValidator(_sequence_in), Strict(), *rules)
    else:
        kind = _scalar(hint, rules)
    return TypeAdapter(kind | None if optional else kind)


def _explain(name: str, value: Any, invalid: ValidationError) -> str:
    """One line: the setting (or its item), the value received and what is allowed."""
    error = invalid.errors()[0]
    hint, optional = _unwrap(_hints()[name])
    where = _location(error["loc"])
    shown = value if not where else error.get("input")
    kind = error["type"]
    null = " or null" if optional else ""
    origin = get_origin(hint)
    if origin is dict:
        if where and kind.endswith("_type"):
            return (f"training setting {name} has a key {_show(shown)} that is not text; "
                    f"{name} is a table whose keys are names")  # fmt: skip
        return f"training setting {name}={_show(value)} must be a table of settings (dict){null}"
    if origin is tuple and not where and (kind.endswith("_type") or kind.endswith("_parsing")):
        item = get_args(hint)[0].__name__
        return f"training setting {name}={_show(value)} must be a list of {item}{null}"
    if where:
        item_hint = get_args(hint)[0]
        if any(kind.endswith(t) or kind == t for t in _TYPE_ERRORS) or kind == "finite_number":
            allowed = _type_words(item_hint, finite=kind == "finite_number")
        else:
            allowed = _RULES.get(name, ((), _type_words(item_hint)))[1]
        return f"training setting {name}{where}={_show(shown)} must be {allowed}"
    if name in _CHOICES and isinstance(value, str):
        return f"training setting {name}={_show(value)} must be {_RULES[name][1]}"
    if any(kind.endswith(t) or kind == t for t in _TYPE_ERRORS) or kind == "finite_number":
        words = _type_words(hint, finite=kind == "finite_number")
        return f"training setting {name}={_show(value)} must be {words}{null}"
    words = _RULES.get(name, ((), _type_words(hint)))[1]
    if name == "device":
        words += "; e.g. 'cuda:0' (whether the machine has it is checked when training starts)"
    elif hint in (int, float):
        words += f" ({hint.__name__})"
    return f"training setting {name}={_show(value)} must be {words}{null}"


def _location(loc: tuple[Any, ...]) -> str:
    """``[2]`` or ``['key']`` for an error inside a list or table setting; "" at the top."""
    parts = [p for p in loc if isinstance(p, int) or (isinstance(p, str) and "[" not in p)]
    return "".join(f"[{p}]" if isinstance(p, int) else f"[{p!r}]" for p in parts)


def _type_words(hint: Any, finite: bool = False) -> str:
    if hint is float:
        return "a finite number (float)" if finite else "a number (float)"
    return {
        bool: "true or false (bool), or yes/no, 1/0",
        int: "a whole number (int)",
        str: "a string (str)",
    }.get(hint, str(hint))


def _check_names(config: TrainConfig) -> None:
    """Registry names and eval configs: each must be one the library knows."""

    for name, kind, known in (
        ("strategy", "training strategy", list_strategies()),
        ("task", "task", list_tasks()),
    ):
        if getattr(config, name) not in known:
            raise UnknownNameError(
                f"unknown {kind} {getattr(config, name)!r} (training setting {name}); "
                f"known: {', '.join(known)}"
            )
    for name in ("strategy_kwargs", "supernet_kwargs", "task_kwargs", "augment_kwargs"):
        _check_finite(name, getattr(config, name))
    for i, entry in enumerate(config.eval_configs):
        if entry in ("smallest", "largest"):
            continue
        try:
            parsed = json.loads(entry)
        except (json.JSONDecodeError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict) or not parsed:
            raise UserError(
                f"training setting eval_configs[{i}]={_show(entry)} must be 'smallest', 'largest' "
                "or a config as a JSON object"
            )


def _check_finite(name: str, value: Any, depth: int = 0) -> None:
    """Every number in a table setting finite, every key of every nested table text."""
    if depth > 50:
        raise UserError(f"training setting {name} is nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"training setting {name}={_show(value)} must be a finite number")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UserError(f"training setting {name} has a key {key!r} that is not text")
            _check_finite(f"{name}.{key}", item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(f"{name}[{i}]", item, depth + 1)


def _check_supernet_kwargs(kwargs: Mapping[str, Any]) -> None:
    """The constructor arguments every family shares, checked before any data is read."""
    dropout = kwargs.get("dropout")
    if dropout is not None and (
        isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1
    ):
        raise UserError(
            f"training setting supernet_kwargs.dropout={_show(dropout)} must be a finite number "
            "in [0, 1)"
        )
    classes = kwargs.get("num_classes")
    if classes is not None and (type(classes) is not int or classes < 1):
        raise UserError(
            f"training setting supernet_kwargs.num_classes={_show(classes)} must be a whole number "
            ">= 1 (leave it out: it comes from the data)"
        )
