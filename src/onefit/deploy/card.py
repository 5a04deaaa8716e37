"""The model card: what an export says about itself, as a typed, versioned document.

:func:`onefit.deploy.export` writes one ``model_card.json`` next to every exported model.
Every figure in it was measured at export time on the exported model (and
``tests/test_model_card.py`` re-measures each one): parameters and MACs, the primary
metric on the validation split per runtime, latency with the device profile it was
measured under, and the output checks the export passed. The card also records what is
needed to use the model: the input shape and preprocessing, the class names, the
config and the supernet it was cut from.

The file is :meth:`ModelCard.to_dict` as JSON. It is marked ``"schema":
"onefit-model-card/3"`` (:data:`SCHEMA`), and ``schemas/model_card.schema.json`` in the
repository describes it for readers without onefit. :meth:`ModelCard.load` checks the
schema version and every field's presence and type, and raises :class:`ModelCardError`
naming the field for a damaged file or one of another version. :func:`read_export`
also checks each model file against the SHA-256 the card records, so a torn or edited
model is never listed or loaded as the card's.

Example:
    >>> import os, tempfile
    >>> card = ModelCard(
    ...     onefit_version="0.1.0", created="2025-01-01T00:00:00+00:00", source_run="runs/demo",
    ...     pick="smallest", format="pt", files={"model": "model.pt"}, sha256={"model": "0" * 64},
    ...     supernet={"name": "mobilenetv3", "kwargs": {}}, config=ArchConfig({"r": 8}),
    ...     input=InputSpec(shape=(1, 1, 8, 8), preprocessing=Preprocessing(
    ...         resize_to=(8, 8), divide_by=1.0, mean=(0.3,), std=(0.4,))),
    ...     classes=("0", "1"), params=1200, macs=34000,
    ...     evaluation=Evaluation(split="validation", samples=359, fp32=0.9),
    ...     latency=Latency(median_ms=0.2, iqr_ms=0.01, repeats=50,
    ...                     profile=DeviceProfile.detect(runtime="eager", threads=1)),
    ...     checks=Checks(max_abs_diff_vs_supernet=0.0, tolerance=1e-4))
    >>> path = os.path.join(tempfile.mkdtemp(), "model_card.json")
    >>> card.save(path)
    >>> loaded = ModelCard.load(path)
    >>> loaded == card, loaded.schema, loaded.evaluation.metric, loaded.evaluation.figures()
    (True, 'onefit-model-card/3', 'accuracy', {'fp32': 0.9})
    >>> ModelCard.from_dict({**card.to_dict(), "macs": "many"})
    Traceback (most recent call last):
    ...
    onefit.deploy.card.ModelCardError: model card field 'macs': expected an integer, got 'many'
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, cast, get_args, get_origin, get_type_hints

from onefit.digest import file_sha256, refuse_json_constant
from onefit.errors import UserError, UserTypeError
from onefit.files import write_json_atomic
from onefit.metrics.device import DeviceProfile
from onefit.metrics.latency import LatencyResult
from onefit.space import ArchConfig
from onefit.version import __version__

#: Bumped whenever a field is added, removed, renamed or changes meaning.
# 2: preprocessing records the training recipe, the evaluation transform and where the
# statistics came from.
# 3: the SHA-256 of every model file (``sha256``) and the source run's id.
SCHEMA_VERSION = 3
#: The value of a card's ``schema`` field.
SCHEMA = f"onefit-model-card/{SCHEMA_VERSION}"
#: How raw pixels become the model's input (the fields of :class:`Preprocessing`).
FORMULA = "(pixels / divide_by - mean) / std, per channel"
#: The card's file name in an export folder.
CARD_FILE = "model_card.json"


class ModelCardError(UserError):
    """A model card file or dict is damaged, incomplete or of another schema version.

    The message names the file (when there is one) and the field at fault.

    Example:
        >>> ModelCard.from_dict({"schema": "onefit-model-card/0"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        onefit.deploy.card.ModelCardError: model card schema is 'onefit-model-card/0'; ...
    """


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """How to turn stored pixels into the model's input (see :data:`FORMULA`)."""

    resize_to: tuple[int, int]  # height, width the image is resized to first
    divide_by: float  # brings stored pixel values into [0, 1] (255 for uint8 images)
    mean: tuple[float, ...]  # per channel, of the training split after divide_by
    std: tuple[float, ...]  # per channel, same
    formula: str = FORMULA
    # Before resize_to: how a stored image became an evaluation input of the data's size
    # (e.g. "resize shorter side to 37, center crop 32"), and where mean/std came from.
    eval_transform: str = "none (images as stored)"
    statistics: str = "computed on the train split"
    # The augmentation the supernet was trained with (onefit.data.augment), for the record.
    training_recipe: dict[str, Any] = field(default_factory=lambda: {"name": "none"})


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """The one input the model takes."""

    shape: tuple[int, ...]  # batch first (1 here; exported ONNX models take any batch)
    layout: str = "NCHW"
    dtype: str = "float32"
    preprocessing: Preprocessing


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """The primary metric of the exported model on a held-out split, once per runtime.

    Every figure is the value of ``metric`` (for the ``task``) on ``samples`` samples of
    ``split``; ``None`` where that runtime was not part of the export.
    """

    task: str = "classification"
    metric: str = "accuracy"
    split: str
    samples: int
    fp32: float  # the exported weights in PyTorch
    onnx_fp32: float | None = None  # the .onnx file in ONNX Runtime (format "onnx")
    int8: float | None = None  # the INT8 .onnx file in ONNX Runtime (int8=True)
    int8_drop: float | None = None  # onnx_fp32 - int8

    def figures(self) -> dict[str, float]:
        """The measured figures by runtime (``fp32``, ``onnx_fp32``, ``int8``), no drop."""
        named = {"fp32": self.fp32, "onnx_fp32": self.onnx_fp32, "int8": self.int8}
        return {name: value for name, value in named.items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Median latency of one batch, with the device profile it was measured under."""

    median_ms: float
    iqr_ms: float
    repeats: int  # timed calls (after untimed warm-up ones)
    profile: DeviceProfile

    @classmethod
    def from_result(cls, result: LatencyResult) -> Latency:
        """The card's summary of a :class:`~onefit.metrics.latency.LatencyResult`."""
        return cls(
            median_ms=result.median_ms,
            iqr_ms=result.iqr_ms,
            repeats=len(result.samples_ms),
            profile=result.profile,
        )


@dataclass(frozen=True, kw_only=True)
class Checks:
    """Largest absolute output differences the export measured, each within ``tolerance``."""

    tolerance: float  # the largest difference accepted: 1e-4 times the outputs' scale (>= 1)
    max_abs_diff_vs_supernet: float  # exported model vs the supernet, same input
    onnx_max_abs_diff_vs_pytorch: float | None = None  # format "onnx"
    torchscript_max_abs_diff_vs_pytorch: float | None = None  # format "torchscript"


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """Everything measured about one exported sub-network (see the module doc).

    Build one with keywords; read one with :meth:`load` or :meth:`from_dict`, write one
    with :meth:`save`. ``schema`` is set by the class, never passed.
    """

    schema: str = field(default=SCHEMA, init=False)
    onefit_version: str  # the onefit that exported the model
    created: str  # ISO 8601, UTC
    source_run: str  # the run directory the supernet was trained in
    pick: str  # the pick that chose the config ("knee", "latency_ms <= 5", "config"...)
    format: str  # the export format: "pt", "torchscript" or "onnx"
    files: dict[str, str]  # role ("model", "model_int8") -> file name in the card's folder
    sha256: dict[str, str]  # role -> SHA-256 (hex) of that file, checked by verify_files
    source_run_id: str | None = None  # the source run's id (RunDir.run_id), when it had one
    supernet: dict[str, Any]  # the supernet's spec (rebuilds it: rebuild_supernet)
    config: ArchConfig  # the exported sub-network
    input: InputSpec
    classes: tuple[str, ...]  # class names, in the order of the model's outputs
    params: int
    macs: int  # of one sample at input.shape
    evaluation: Evaluation
    latency: Latency  # of the model file, on its runtime
    latency_int8: Latency | None = None  # of the INT8 model (int8=True)
    checks: Checks

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data: tuples become lists, every field is written."""
        return cast(dict[str, Any], _plain(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """The card in ``data`` (as :meth:`to_dict` writes it), checked field by field.

        Raises :class:`ModelCardError` for another schema version, a missing or unknown
        field, or a value of the wrong type, naming the field (``"latency.median_ms"``).
        """
        if not isinstance(data, Mapping):
            raise ModelCardError(f"a model card is a JSON object, got {type(data).__name__}")
        if "schema" not in data:
            raise ModelCardError(
                f"not a onefit model card: no 'schema' field ({SCHEMA!r} expected); a card "
                "written before cards had a schema version must be exported again"
            )
        if data["schema"] != SCHEMA:
            raise ModelCardError(
                f"model card schema is {data['schema']!r}; onefit {__version__} reads "
                f"{SCHEMA!r}: export the model again with this onefit, or read the card with "
                f"the onefit that wrote it (its onefit_version: {data.get('onefit_version')!r})"
            )
        return cast(ModelCard, _build(cls, data, ""))

    def save(self, path: str | Path) -> None:
        """Write the card as indented JSON, atomically (never half a file)."""
        write_json_atomic(path, self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        """Read and check the card at ``path`` (see :meth:`from_dict`).

        Raises :class:`ModelCardError` naming the file for a missing file, text that is
        not JSON, or a card that :meth:`from_dict` refuses.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse_json_constant)
        except FileNotFoundError:
            raise ModelCardError(f"no model card at {path}") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as problem:
            raise ModelCardError(f"{path} is not a model card (JSON expected): {problem}") from None
        try:
            return cls.from_dict(data)
        except ModelCardError as problem:
            raise ModelCardError(f"{path}: {problem}") from None

    def verify_files(self, folder: str | Path) -> None:
        """Raise :class:`ModelCardError` naming the file unless every model file the card
        lists is in ``folder`` with the SHA-256 the card records."""
        folder = Path(folder)
        card = folder / CARD_FILE
        if "model" not in self.files:
            raise ModelCardError(f"{card}: model card field 'files' names no 'model' file")
        for role, name in self.files.items():
            path = folder / name
            if Path(name).name != name or name in ("", ".", ".."):
                raise ModelCardError(
                    f"{card}: model card field 'files.{role}': {name!r} is not a file name"
                )
            expected = self.sha256.get(role)
            if expected is None:
                raise ModelCardError(f"{card}: model card field 'sha256' has no {role!r} entry")
            if not path.is_file():
                raise ModelCardError(f"{path}: the model file the card lists is missing")
            if file_sha256(path) != expected:
                raise ModelCardError(
                    f"{path}: content hash mismatch: damaged or modified (its SHA-256 is not "
                    f"the one {card} records); export it again"
                )


def read_export(folder: str | Path) -> ModelCard:
    """The model card of the export in ``folder``, its model files verified (see
    :meth:`ModelCard.verify_files`); a :class:`ModelCardError` naming the file otherwise."""
    card = ModelCard.load(Path(folder) / CARD_FILE)
    card.verify_files(folder)
    return card


def _plain(value: Any) -> Any:
    """JSON-ready data: dataclasses and mappings to dicts, tuples to lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _name(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _build(cls: type, data: Any, where: str) -> Any:
    """An instance of the dataclass ``cls`` from ``data``: every field present, typed."""
    if not isinstance(data, Mapping):
        raise ModelCardError(f"model card field {where!r}: expected an object, got {data!r}")
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    missing = [name for name in known if name not in data]
    if missing:
        raise ModelCardError(
            f"model card is missing field {_name(where, missing[0])!r} (required by {SCHEMA})"
        )
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ModelCardError(
            f"model card has unknown field {_name(where, unknown[0])!r} "
            f"(schema {SCHEMA} knows {known})"
        )
    values = {name: _convert(data[name], hints[name], _name(where, name)) for name in known}
    init = {f.name: values[f.name] for f in fields(cls) if f.init}
    return cls(**init)


_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` read from JSON as the type ``hint``, or a ModelCardError naming ``where``."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _convert(value, inner, where)
    if isinstance(hint, type) and is_dataclass(hint):
        return _build(hint, value, where)
    if hint is ArchConfig:
        if not isinstance(value, Mapping):
            raise ModelCardError(f"model card field {where!r}: expected an object, got {value!r}")
        try:
            return ArchConfig(value)
        except (TypeError, ValueError) as problem:
            raise ModelCardError(f"model card field {where!r}: {problem}") from None
    if origin is tuple:
        if not isinstance(value, list):
            raise ModelCardError(f"model card field {where!r}: expected a list, got {value!r}")
        if args[-1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(value) != len(args):
            raise ModelCardError(
                f"model card field {where!r}: expected {len(args)} items, got {value!r}"
            )
        return tuple(_convert(v, a, _name(where, i)) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ModelCardError(f"model card field {where!r}: expected an object, got {value!r}")
        return {k: _convert(v, args[1], _name(where, k)) for k, v in value.items()}
    if hint in _KINDS:
        # JSON has one number type: an integer is a valid float, a bool is neither.
        valid = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if hint is float and isinstance(value, float) and not math.isfinite(value):
            raise ModelCardError(
                f"model card field {where!r}: expected a finite number, got {value!r}"
            )
        if not valid:
            raise ModelCardError(
                f"model card field {where!r}: expected {_KINDS[hint]}, got {value!r}"
            )
        return value
    raise UserTypeError(f"model card field {where!r} has a type the reader does not know: {hint!r}")


__all__ = [
    "CARD_FILE",
    "FORMULA",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Checks",
    "Evaluation",
    "InputSpec",
    "Latency",
    "ModelCard",
    "ModelCardError",
    "Preprocessing",
    "file_sha256",
    "read_export",
]
