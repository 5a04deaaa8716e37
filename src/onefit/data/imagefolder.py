"""An image-per-file folder: ``root/<class name>/<image files>``, as torchvision's ImageFolder.

Classes are the sub-folders in sorted name order, so label ``i`` is the ``i``-th name
whatever order the file system lists them in. Only the file list is read up front;
each image is decoded when its item is asked for (in the data loader's workers during
training), converted to RGB (or gray for ``in_channels=1``) and fitted to
``image_size`` (default 32) by the run's recipe, so a folder of any size trains in
bounded memory. A root whose images sit under ``root/train/<class name>/`` works too;
then ``root/val/`` (or ``validation/``, ``test/``), when there, is the validation split.

Example:
    >>> ImageFolder().detect(Path("."))
    False
"""

from __future__ import annotations

from pathlib import Path

import torch

from onefit.data.base import DataError, DatasetSource, LazyData, data_error, register_dataset
from onefit.data.lazy import FileImages

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
EXPECTED = f"an image folder: root/<class name>/<image files> ({', '.join(EXTENSIONS)})"
DEFAULT_SIZE = 32
# Next to root/train/, the first of these that is an image folder is the validation split.
VAL_FOLDERS = ("val", "validation", "test")


def _error(path: Path, problem: str) -> DataError:
    return data_error(path, problem, EXPECTED)


def _class_folders(root: Path) -> list[Path]:
    # Hidden folders (.ipynb_checkpoints, .git) are never classes.
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())


def _is_image_folder(root: Path) -> bool:
    return root.is_dir() and any(_images_in(folder) for folder in _class_folders(root))


@register_dataset("imagefolder")
class ImageFolder(DatasetSource):
    """``root/<class>/<image>`` (or ``root/train/<class>/<image>``), read with Pillow."""

    expected = EXPECTED

    def detect(self, folder: Path) -> bool:
        return _is_image_folder(folder) or _is_image_folder(folder / "train")

    def load(
        self, path: Path | None, *, image_size: int | None, in_channels: int | None
    ) -> LazyData:
        if path is None or not path.is_dir():
            raise _error(Path(str(path)), "not a folder")
        root, val_root = path, None
        if not _is_image_folder(path) and _is_image_folder(path / "train"):
            root = path / "train"
            val_root = next(
                (path / name for name in VAL_FOLDERS if _is_image_folder(path / name)), None
            )
        classes = _class_folders(root)
        if not classes:
            raise _error(root, "no class sub-folders found")
        files: list[tuple[Path, int]] = []
        for label, folder in enumerate(classes):
            images = _images_in(folder)
            if not images:
                raise _error(folder, "class folder holds no image files")
            files += [(image, label) for image in images]
        size, channels = image_size or DEFAULT_SIZE, 1 if in_channels == 1 else 3
        val_items = None
        if val_root is not None:
            val_files = _files(val_root, [folder.name for folder in classes])
            val_items = FileImages(
                [f for f, _ in val_files], _labels(val_files), size=size, channels=channels
            )
        return LazyData(
            items=FileImages([f for f, _ in files], _labels(files), size=size, channels=channels),
            name=path.resolve().name,
            classes=tuple(folder.name for folder in classes),
            val_items=val_items,
        )


def _labels(files: list[tuple[Path, int]]) -> torch.Tensor:
    return torch.tensor([label for _, label in files], dtype=torch.int64)


def _files(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """The images of a validation folder, labelled by the training folder's class names."""
    found = [folder.name for folder in _class_folders(root)]
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise _error(root, f"class folders {unknown} are not among the training classes")
    return [(image, label) for label, name in enumerate(classes) for image in
            (_images_in(root / name) if (root / name).is_dir() else [])]  # fmt: skip
