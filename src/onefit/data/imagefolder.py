"""An image-per-file folder: ``root/<class name>/<image files>``, as torchvision's ImageFolder.

Classes are the sub-folders in sorted name order, so label ``i`` is the ``i``-th name
whatever order the file system lists them in. Images are read with Pillow, converted to
RGB (or L for ``in_channels=1``), center-cropped to a square and resized to
``image_size`` (default 32), and kept in memory as uint8: this format is meant for
small datasets. A root whose images sit under ``root/train/<class name>/`` works too.

Example:
    >>> ImageFolder().detect(Path("."))
    False
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from onefit.data.base import DataError, DatasetSource, RawData, data_error, register_dataset

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
EXPECTED = f"an image folder: root/<class name>/<image files> ({', '.join(EXTENSIONS)})"
DEFAULT_SIZE = 32


def _error(path: Path, problem: str) -> DataError:
    return data_error(path, problem, EXPECTED)


def _class_folders(root: Path) -> list[Path]:
    # Hidden folders (.ipynb_checkpoints, .git) are never classes.
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())


def _is_image_folder(root: Path) -> bool:
    return root.is_dir() and any(_images_in(folder) for folder in _class_folders(root))


def _pillow() -> Any:
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:
        raise ImportError(
            "the imagefolder format reads images with Pillow: "
            "pip install pillow (or pip install 'onefit[images]')"
        ) from exc
    return Image, ImageOps


def _bilinear(image_module: Any) -> Any:
    # Pillow >= 9.1 keeps filters in Image.Resampling; 9.0 only has the module constant.
    return getattr(image_module, "Resampling", image_module).BILINEAR


def _read_image(path: Path, mode: str, size: int) -> np.ndarray:
    """One image as a uint8 ``(C, size, size)`` array."""
    image_module, image_ops = _pillow()
    try:
        with image_module.open(path) as image:
            # fit = center crop to the target's aspect ratio, then resize: a squash would
            # distort every non-square photo.
            fitted = image_ops.fit(image.convert(mode), (size, size), _bilinear(image_module))
    except (OSError, ValueError, image_module.DecompressionBombError) as exc:
        raise _error(path, f"cannot read this image ({exc})") from None
    array = np.asarray(fitted, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


@register_dataset("imagefolder")
class ImageFolder(DatasetSource):
    """``root/<class>/<image>`` (or ``root/train/<class>/<image>``), read with Pillow."""

    expected = EXPECTED

    def detect(self, folder: Path) -> bool:
        return _is_image_folder(folder) or _is_image_folder(folder / "train")

    def load(
        self, path: Path | None, *, image_size: int | None, in_channels: int | None
    ) -> RawData:
        if path is None or not path.is_dir():
            raise _error(Path(str(path)), "not a folder")
        root = path
        if not _is_image_folder(path) and _is_image_folder(path / "train"):
            root = path / "train"
        classes = _class_folders(root)
        if not classes:
            raise _error(root, "no class sub-folders found")
        files: list[tuple[Path, int]] = []
        for label, folder in enumerate(classes):
            images = _images_in(folder)
            if not images:
                raise _error(folder, "class folder holds no image files")
            files += [(image, label) for image in images]
        _pillow()  # fail on a missing Pillow before reading anything
        size = image_size or DEFAULT_SIZE
        mode = "L" if in_channels == 1 else "RGB"
        pixels = np.empty((len(files), 1 if mode == "L" else 3, size, size), dtype=np.uint8)
        for i, (file, _) in enumerate(files):
            pixels[i] = _read_image(file, mode, size)
        labels = torch.tensor([label for _, label in files], dtype=torch.int64)
        return RawData(
            images=torch.from_numpy(pixels),
            labels=labels,
            name=path.resolve().name,
            classes=tuple(folder.name for folder in classes),
        )
