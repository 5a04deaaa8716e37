"""What a supernet reads: an input specification every family declares.

A supernet's ``input_spec`` says what one input is (an image batch or token ids), its
dtype, the shape of one sample for a config, how to make an example batch, and how to
check a batch with an error that says what was expected. Everything that feeds a
supernet (training, BN recalibration, latency and memory measurement, export) asks the
spec instead of assuming images.

Example:
    >>> spec = ImageInput(channels=3, resolutions=(24, 32))
    >>> spec.shape({"r": 24}), spec.kind
    ((3, 24, 24), 'image')
    >>> tuple(spec.example(2, {"r": 32}).shape)
    (2, 3, 32, 32)
    >>> TokenInput(length=6, vocab_size=50).shape({})
    (6,)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from onefit.errors import UserError, UserTypeError


class InputSpec(ABC):
    """Base class of input specifications (see the module docstring)."""

    kind: ClassVar[str]
    dtype: ClassVar[torch.dtype]

    @abstractmethod
    def shape(self, config: Mapping[str, Any]) -> tuple[int, ...]:
        """Shape of one sample (no batch dimension) for sub-network ``config``."""

    @abstractmethod
    def example(
        self,
        batch_size: int,
        config: Mapping[str, Any],
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """A random batch of ``batch_size`` valid inputs for ``config``."""

    @abstractmethod
    def check(self, x: object) -> None:
        """Raise ``TypeError``/``ValueError`` unless ``x`` is a batch this spec accepts."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (recorded in runs and model cards)."""

    def require(self, kind: str, what: str) -> None:
        """Raise ``ValueError`` unless inputs are of ``kind`` (``what`` needs them)."""
        if self.kind != kind:
            raise UserError(
                f"{what} needs {kind} inputs; this supernet reads {self.kind} inputs "
                f"({self.to_dict()}); search it on accuracy, MACs and parameters, and export "
                "an extracted model with onefit.metrics.runtimes.onnx_runtime.export_onnx"
            )


@dataclass(frozen=True)
class ImageInput(InputSpec):
    """Square float images ``(N, channels, r, r)``, ``r`` one of ``resolutions``
    (the config's ``"r"`` choice)."""

    channels: int
    resolutions: tuple[int, ...]
    kind: ClassVar[str] = "image"
    dtype: ClassVar[torch.dtype] = torch.float32

    def shape(self, config: Mapping[str, Any]) -> tuple[int, ...]:
        r = int(config["r"]) if "r" in config else max(self.resolutions)
        return (self.channels, r, r)

    def example(
        self,
        batch_size: int,
        config: Mapping[str, Any],
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(batch_size, *self.shape(config), generator=generator).to(device)

    def check(self, x: object) -> None:
        if not isinstance(x, torch.Tensor):
            raise UserTypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise UserError(f"expected a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise UserError(f"expected float images, got {x.dtype} (convert with x.float())")
        if x.shape[1] != self.channels:
            raise UserError(
                f"expected {self.channels} input channel(s), got {x.shape[1]} "
                f"(input shape {tuple(x.shape)}); build the supernet with "
                f"in_channels={x.shape[1]} or convert the images"
            )
        height, width = x.shape[-2:]
        if height != width or height not in self.resolutions:
            raise UserError(
                f"input resolution {height}x{width} is not in the search space; "
                f"r is one of {list(self.resolutions)} (square images)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dtype": "float32",
            "layout": "NCHW",
            "channels": self.channels,
            "resolutions": list(self.resolutions),
        }


@dataclass(frozen=True)
class TokenInput(InputSpec):
    """Integer token ids ``(N, length)``, each in ``0..vocab_size-1``."""

    length: int
    vocab_size: int
    kind: ClassVar[str] = "tokens"
    dtype: ClassVar[torch.dtype] = torch.long

    def shape(self, config: Mapping[str, Any]) -> tuple[int, ...]:
        return (self.length,)

    def example(
        self,
        batch_size: int,
        config: Mapping[str, Any],
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, self.vocab_size, (batch_size, self.length), generator=generator)
        return ids.to(device)

    def check(self, x: object) -> None:
        if not isinstance(x, torch.Tensor):
            raise UserTypeError(f"expected a torch.Tensor of token ids, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.length or x.is_floating_point():
            raise UserError(
                f"expected integer token ids of shape (N, {self.length}), got "
                f"{x.dtype} {tuple(x.shape)}"
            )
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise UserError(
                f"token ids must lie in 0..{self.vocab_size - 1} (vocab_size="
                f"{self.vocab_size}), got {int(x.min())}..{int(x.max())}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dtype": "int64",
            "layout": "NL",
            "length": self.length,
            "vocab_size": self.vocab_size,
        }
