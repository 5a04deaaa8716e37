"""MNIST-style IDX files: ``<prefix>-images-idx3-ubyte[.gz]`` + ``<prefix>-labels-idx1-ubyte``.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian header
-- a magic number ``0x0000TTNN`` (``TT`` = 0x08 for unsigned bytes, ``NN`` = number of
dimensions) and one uint32 per dimension -- followed by the raw values. MNIST,
Fashion-MNIST, KMNIST and EMNIST all use it. The header is parsed here with numpy, and
every size is checked, so a truncated download fails with the file's name instead of a
reshape error.

Example:
    >>> Idx().detect(Path("."))
    False
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from pathlib import Path

import numpy as np
import torch

from onefit.data.base import DataError, DatasetSource, RawData, data_error, register_dataset

EXPECTED = "MNIST/Fashion-MNIST IDX files (gzip or raw)"

# "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz", and the "train-images.idx3-ubyte"
# spelling some mirrors use. Images must be 3-D and labels 1-D.
_NAME = re.compile(
    r"^(?P<prefix>.+?)-(?:(?P<images>images[-.]idx3)|labels[-.]idx1)-ubyte(?P<gz>\.gz)?$"
)
_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08


def _error(path: Path, problem: str) -> DataError:
    return data_error(path, problem, EXPECTED)


def _find_pairs(folder: Path) -> dict[str, dict[str, Path]]:
    """``{prefix: {"images": path, "labels": path}}`` for every IDX file in ``folder``."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        kind = "images" if match["images"] else "labels"
        entry = found.setdefault(match["prefix"], {})
        # With both "x" and "x.gz" present (a gunzip that kept the archive) the raw file
        # wins: it is the same data and reads faster.
        if kind not in entry or entry[kind].suffix == ".gz":
            entry[kind] = path
    return found


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    # Decide by content, not by name: mirrors serve gunzipped files under ".gz" names.
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise _error(path, f"corrupt or truncated gzip data ({exc})") from None
    return data


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in an IDX file of ``ndim`` dimensions (gzip or raw).

    Raises :class:`~onefit.data.DataError` naming ``path`` for a wrong magic number, a
    truncated file or trailing bytes.
    """
    data = _read_bytes(path)
    what = "image" if ndim == 3 else "label"
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise _error(path, f"truncated: {len(data)} bytes, shorter than an IDX magic number")
    expected_magic = (_UBYTE << 8) | ndim
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise _error(
            path,
            f"not an IDX {what} file (magic 0x{expected_magic:08x} expected, got 0x{magic:08x})",
        )
    if len(data) < header:
        raise _error(path, f"truncated: {len(data)} bytes, shorter than its {header}-byte header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = header + math.prod(shape)
    if len(data) != size:
        problem = "truncated" if len(data) < size else "has trailing bytes"
        raise _error(
            path,
            f"{problem}: the header declares shape {shape}, {size} bytes in all, "
            f"but the file holds {len(data)} bytes",
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _load_pair(folder: Path, prefix: str, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    for kind, other, ndim in (("images", "labels", 1), ("labels", "images", 3)):
        if other not in files:
            missing = folder / f"{prefix}-{other}-idx{ndim}-ubyte[.gz]"
            raise _error(missing, f"missing, so {files[kind].name} has no matching {other} file")
    images = read_idx(files["images"], ndim=3)
    labels = read_idx(files["labels"], ndim=1)
    if len(images) != len(labels):
        raise _error(
            files["images"],
            f"holds {len(images)} images but {files['labels'].name} holds {len(labels)} labels",
        )
    return images, labels


@register_dataset("idx")
class Idx(DatasetSource):
    """A folder of IDX pairs; the ``train`` pair if there is one, otherwise every pair."""

    expected = f"{EXPECTED}: <prefix>-images-idx3-ubyte[.gz] with <prefix>-labels-idx1-ubyte[.gz]"

    def detect(self, folder: Path) -> bool:
        return folder.is_dir() and any(_NAME.match(p.name) for p in folder.iterdir())

    def load(
        self, path: Path | None, *, image_size: int | None, in_channels: int | None
    ) -> RawData:
        if path is None or not path.is_dir():
            raise _error(Path(str(path)), "not a folder")
        pairs = _find_pairs(path)
        if not pairs:
            raise _error(path, "no <prefix>-images-idx3-ubyte / -labels-idx1-ubyte files found")
        # The validation split is cut from the training set; the official test set stays
        # untouched unless it is all there is (e.g. a folder holding only t10k files).
        train = [p for p in pairs if p == "train" or p.endswith("-train")]
        prefixes = train or sorted(pairs)
        arrays = [_load_pair(path, prefix, pairs[prefix]) for prefix in prefixes]
        shapes = {images.shape[1:] for images, _ in arrays}
        if len(shapes) > 1:
            raise _error(path, f"image files disagree on image size: {sorted(shapes)}")
        images = np.concatenate([images for images, _ in arrays])
        labels = np.concatenate([labels for _, labels in arrays])
        # np.concatenate copies, so the tensors own writable memory, not the file's bytes.
        return RawData(
            images=torch.from_numpy(images).unsqueeze(1),
            labels=torch.from_numpy(labels.astype(np.int64)),
            name=path.resolve().name,
        )
