"""The embedded default dataset: scikit-learn's copy of the UCI handwritten digits.

1,797 grayscale 8x8 images of the digits 0-9 with pixel values 0..16. It ships inside
scikit-learn, so examples and tests train on real images with no download.

Example:
    >>> raw = Digits().load(None, image_size=None, in_channels=None)
    >>> tuple(raw.images.shape), raw.images.dtype, float(raw.images.max())
    ((1797, 1, 8, 8), torch.float32, 1.0)
"""

from __future__ import annotations

from pathlib import Path

import torch

from onefit.data.base import DatasetSource, RawData, register_dataset
from onefit.errors import MissingDependencyError

# The UCI digits count set pixels in 4x4 blocks of a 32x32 bitmap: 0..16.
_MAX_VALUE = 16.0


@register_dataset("digits")
class Digits(DatasetSource):
    """Built-in: 1,797 digits, 1 x 8 x 8, 10 classes (needs scikit-learn, no download)."""

    needs_path = False
    expected = "the built-in digits dataset (scikit-learn's load_digits)"

    def load(
        self, path: Path | None, *, image_size: int | None, in_channels: int | None
    ) -> RawData:
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:  # scikit-learn is a dependency; a broken install lands here
            raise MissingDependencyError(
                "the digits dataset comes from scikit-learn: pip install 'scikit-learn>=1.3'"
            ) from exc
        bunch = load_digits()
        # Stored as float in [0, 1]: a 1,797 x 64 array is tiny, and staying in float
        # keeps an upscale (8 -> 32 px) free of rounding to 17 grey levels.
        images = torch.from_numpy(bunch.images / _MAX_VALUE).to(torch.float32).unsqueeze(1)
        labels = torch.from_numpy(bunch.target).to(torch.int64)
        classes = tuple(str(name) for name in bunch.target_names)
        return RawData(images=images, labels=labels, name="digits", classes=classes)
