"""CIFAR-10 and CIFAR-100 in their "python version" folders (Krizhevsky, 2009).

CIFAR-10: ``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``.
CIFAR-100: ``train``, ``test``, ``meta`` (the 100 ``fine_labels`` are used). Either may
sit inside the ``cifar-10-batches-py`` / ``cifar-100-python`` folder the archives unpack
to. Each file is a Python 2 pickle of ``{"data": uint8 (N, 3072), "labels": [...]}``,
a row holding the 1,024 red, then green, then blue values of a 32 x 32 image.

A pickle can name any callable to run while loading (``os.system`` included), so these
files are read by :class:`RestrictedUnpickler`, which resolves only the few numpy and
builtin names the files need and refuses everything else before it runs.

Example:
    >>> Cifar().detect(Path("."))
    False
"""

from __future__ import annotations

import functools
import importlib
import pickle
import re
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from onefit.data.base import DataError, DatasetSource, RawData, data_error, register_dataset

EXPECTED = (
    "CIFAR-10 (data_batch_1..5, test_batch, batches.meta) or CIFAR-100 (train, test, meta) "
    "python-version batch files"
)

_BATCH = re.compile(r"^data_batch_(\d+)$")
_SUBFOLDERS = ("cifar-10-batches-py", "cifar-100-python")
_SIDE = 32
_ROW = 3 * _SIDE * _SIDE


def _error(path: Path, problem: str) -> DataError:
    return data_error(path, problem, EXPECTED)


def _numpy_module(name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; importing the old name there warns.
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{name}")


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it to store bytes; other codecs refused."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode to {encoding!r} does not encode bytes")
    return text.encode("latin1")


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Every ``(module, name)`` a CIFAR pickle may refer to, mapped to the object it means.

    Files written by numpy 1.x name ``numpy.core``, by numpy 2 ``numpy._core``; protocol 5
    writes arrays through ``_frombuffer``. Python 2 and protocol-2 pickles spell builtins
    ``__builtin__`` and encode bytes with ``_codecs.encode(text, "latin1")``.
    """
    multiarray = _numpy_module("multiarray")
    numeric = _numpy_module("numeric")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    for builtins_module in ("builtins", "__builtin__"):
        for constructor in (bytes, bytearray, set, frozenset):
            allowed[(builtins_module, constructor.__name__)] = constructor
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, dicts, lists and bytes, and nothing else.

    Example:
        >>> import io, pickle
        >>> class Evil:
        ...     def __reduce__(self):
        ...         return (eval, ("print('pwned')",))
        >>> data = io.BytesIO(pickle.dumps(Evil()))
        >>> RestrictedUnpickler(data, Path("x")).load()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        onefit.data.base.DataError: x: the pickle asks for builtins.eval, ...
    """

    def __init__(self, file: IO[bytes], path: Path) -> None:
        # CIFAR was pickled by Python 2, whose str held bytes; numpy documents latin1 as
        # the encoding that restores Python 2 arrays (and it maps every byte).
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_globals().get((module, name))
        if found is None:
            raise _error(
                self._path,
                f"the pickle asks for {module}.{name}, which a CIFAR batch never needs; "
                "refused before running anything (only numpy arrays, dicts, lists and "
                "bytes are allowed)",
            )
        return found


def unpickle(path: Path) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler`; any failure is a ``DataError``."""
    try:
        with path.open("rb") as file:
            return RestrictedUnpickler(file, path).load()
    except DataError:
        raise
    except Exception as exc:  # only allowed constructors run, so any error means bad bytes
        raise _error(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from None


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _entries(path: Path) -> dict[str, Any]:
    """The pickled dict in ``path`` with str keys (Python 3 re-pickles often have bytes keys)."""
    content = unpickle(path)
    if not isinstance(content, dict):
        raise _error(
            path, f"not a CIFAR file (a pickled dict expected, got {type(content).__name__})"
        )
    return {_text(key): value for key, value in content.items()}


def _read_batch(path: Path, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    entries = _entries(path)
    missing = [key for key in ("data", labels_key) if key not in entries]
    if missing:
        raise _error(path, f"not a CIFAR batch: no {missing} entry (found {sorted(entries)})")
    data = entries["data"]
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == _ROW
    ):
        got = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise _error(path, f"'data' must be a uint8 array of shape (N, {_ROW}), got {got}")
    labels = np.asarray(entries[labels_key])
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise _error(
            path,
            f"'{labels_key}' must hold one integer label per image ({len(data)}), "
            f"got {labels.dtype} of shape {labels.shape}",
        )
    return data, labels


def _class_names(path: Path, key: str) -> tuple[str, ...] | None:
    """Class names from a meta file, or None if there is no meta file."""
    if not path.is_file():
        return None
    names = _entries(path).get(key)
    if not isinstance(names, list):
        raise _error(path, f"a CIFAR meta file lists class names under {key!r}; none found")
    return tuple(_text(name) for name in names)


def _variant(folder: Path) -> str | None:
    """``"cifar10"``, ``"cifar100"`` or None, from the file names in ``folder``."""
    if not folder.is_dir():
        return None
    names = {p.name for p in folder.iterdir() if p.is_file()}
    if "test_batch" in names or any(_BATCH.match(name) for name in names):
        return "cifar10"
    if "train" in names or "test" in names:
        return "cifar100"
    return None


def _locate(folder: Path) -> tuple[Path, str] | None:
    for candidate in (folder, *(folder / sub for sub in _SUBFOLDERS)):
        variant = _variant(candidate)
        if variant is not None:
            return candidate, variant
    return None


@register_dataset("cifar")
class Cifar(DatasetSource):
    """CIFAR-10/100 python batches; the training batches if present, else the test batch."""

    expected = EXPECTED

    def detect(self, folder: Path) -> bool:
        return _locate(folder) is not None

    def load(
        self, path: Path | None, *, image_size: int | None, in_channels: int | None
    ) -> RawData:
        found = _locate(path) if path is not None else None
        if found is None:
            raise _error(
                Path(str(path)),
                "no CIFAR batch files (data_batch_N, test_batch, train, test) here "
                f"or in {' or '.join(_SUBFOLDERS)}/",
            )
        root, variant = found
        if variant == "cifar10":
            numbered = [p for p in root.iterdir() if _BATCH.match(p.name)]
            batches = sorted(numbered, key=lambda p: int(p.name.rsplit("_", 1)[1]))
            # The validation split comes out of the training batches; a folder holding only
            # the test batch is used whole.
            files = batches or [root / "test_batch"]
            labels_key, meta, names_key = "labels", root / "batches.meta", "label_names"
        else:
            files = [root / "train"] if (root / "train").is_file() else [root / "test"]
            labels_key, meta, names_key = "fine_labels", root / "meta", "fine_label_names"
        arrays = [_read_batch(file, labels_key) for file in files]
        for file, (_, batch_labels) in zip(files, arrays):
            known = 10 if variant == "cifar10" else 100
            if batch_labels.size and (batch_labels.min() < 0 or batch_labels.max() >= known):
                raise _error(
                    file,
                    f"'{labels_key}' must lie in 0..{known - 1} for {variant}, got labels from "
                    f"{batch_labels.min()} to {batch_labels.max()}",
                )
        labels = np.concatenate([labels for _, labels in arrays]).astype(np.int64)
        if not labels.size:
            raise _error(files[0], "holds no images")
        classes = _class_names(meta, names_key)
        if (
            classes is not None
            and labels.size
            and (labels.min() < 0 or labels.max() >= len(classes))
        ):
            raise _error(
                meta,
                f"names {len(classes)} classes but the labels run from "
                f"{labels.min()} to {labels.max()}",
            )
        data = np.concatenate([data for data, _ in arrays])
        return RawData(
            images=torch.from_numpy(data.reshape(-1, 3, _SIDE, _SIDE)),
            labels=torch.from_numpy(labels),
            name=variant,
            classes=classes,
        )
